package bench

import (
	"bufio"
	"math"
	"strconv"
	"strings"
)

// histSummary summarises a histogram of the processor's registry.
type histSummary struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
	Mean  float64 `json:"mean"`
	// P50 and P99 are estimated from the buckets by linear interpolation
	// within the bucket (as Prometheus' histogram_quantile does); Over
	// marks an estimate that fell in the +Inf bucket, where it is the
	// largest finite bound.
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	P50Over bool    `json:"p50_over_last_bound,omitempty"`
	P99Over bool    `json:"p99_over_last_bound,omitempty"`
}

// parseHistogram reads one unlabelled histogram from the text exposition
// of a promreg.Registry.
func parseHistogram(text, name string) histSummary {
	var h histSummary
	type bucket struct {
		le  float64
		cum float64
	}
	var bs []bucket
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		sample, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(sample, name+`_bucket{le="`):
			le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(sample, name+`_bucket{le="`), `"}`), 64)
			if err == nil {
				bs = append(bs, bucket{le, v})
			}
		case sample == name+"_sum":
			h.Sum = v
		case sample == name+"_count":
			h.Count = uint64(v)
		}
	}
	if h.Count == 0 {
		return h
	}
	h.Mean = h.Sum / float64(h.Count)
	quantile := func(q float64) (float64, bool) {
		rank := q * float64(h.Count)
		prevLE, prevCum := 0.0, 0.0
		for _, b := range bs {
			if b.cum >= rank {
				if math.IsInf(b.le, 1) {
					return prevLE, true
				}
				if b.cum == prevCum {
					return b.le, false
				}
				return prevLE + (b.le-prevLE)*(rank-prevCum)/(b.cum-prevCum), false
			}
			prevLE, prevCum = b.le, b.cum
		}
		return prevLE, true
	}
	h.P50, h.P50Over = quantile(0.5)
	h.P99, h.P99Over = quantile(0.99)
	return h
}

// parseCounter reads a labelled counter family: label set -> value.
func parseCounter(text, name string) map[string]int {
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		sample, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(sample, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		labels := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(sample, name+"{"), "}"), `"`, "")
		out[strings.TrimSuffix(labels, ",reason=")] = int(v)
	}
	return out
}
