package loadgen

import (
	"math"
	"slices"
	"time"
)

// Recorder keeps every latency sample up to a cap, so percentiles are exact
// (nearest rank over all samples) rather than estimated. A run is bounded
// in time and each sample is 8 bytes, so keeping them all is cheap; past the
// cap further samples are counted as dropped rather than stored. A Recorder
// is not safe for concurrent use: each client keeps its own and they are
// merged at the end.
type Recorder struct {
	samples []time.Duration
	cap     int
	dropped int
}

// NewRecorder returns a recorder that stores at most max samples.
func NewRecorder(max int) *Recorder {
	return &Recorder{cap: max, samples: make([]time.Duration, 0, min(max, 1<<16))}
}

// Add records one sample.
func (r *Recorder) Add(d time.Duration) {
	if len(r.samples) >= r.cap {
		r.dropped++
		return
	}
	r.samples = append(r.samples, d)
}

// Merge appends other's samples (within the cap) and dropped count.
func (r *Recorder) Merge(other *Recorder) {
	for _, d := range other.samples {
		r.Add(d)
	}
	r.dropped += other.dropped
}

// Len is the number of stored samples.
func (r *Recorder) Len() int { return len(r.samples) }

// Dropped is the number of samples past the cap.
func (r *Recorder) Dropped() int { return r.dropped }

// Summary sorts the samples and summarises them.
func (r *Recorder) Summary() Latency {
	slices.Sort(r.samples)
	return Summarize(r.samples)
}

// Latency summarises latency samples; durations are milliseconds in JSON.
type Latency struct {
	Count int           `json:"count"`
	Min   time.Duration `json:"-"`
	Mean  time.Duration `json:"-"`
	P50   time.Duration `json:"-"`
	P90   time.Duration `json:"-"`
	P99   time.Duration `json:"-"`
	Max   time.Duration `json:"-"`

	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Summarize summarises samples that are already sorted ascending.
func Summarize(sorted []time.Duration) Latency {
	l := Latency{Count: len(sorted)}
	if len(sorted) == 0 {
		return l
	}
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	l.Min, l.Max = sorted[0], sorted[len(sorted)-1]
	l.Mean = sum / time.Duration(len(sorted))
	l.P50, l.P90, l.P99 = Percentile(sorted, 50), Percentile(sorted, 90), Percentile(sorted, 99)
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 } // µs precision
	l.MinMs, l.MeanMs, l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs = ms(l.Min), ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max)
	return l
}

// Percentile is the nearest-rank percentile of samples sorted ascending:
// the smallest sample such that at least p percent of all samples are less
// than or equal to it, i.e. the one at 1-based rank ceil(p/100*n). p <= 0
// gives the minimum, p >= 100 the maximum, no samples zero.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(n) / 100)) // p*n first: exact for integral p
	return sorted[min(max(rank, 1), n)-1]
}
