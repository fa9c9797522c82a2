package query

import (
	"math"
	"sort"
)

// The statistics here are computed in Go from exact inputs that ClickHouse
// returns: the distinct values of a selection with their counts, or
// per-user sums. One scan with a tiny answer gives exact percentiles,
// histograms, means and standard deviations, where quantilesExact would
// copy every value into memory (and be several times slower on 18.16).

// valueCount is one distinct value and how many readings have it.
type valueCount struct {
	v float64
	n uint64
}

// valueCounts is a selection's distinct values in ascending order.
type valueCounts []valueCount

// total is the number of readings.
func (vc valueCounts) total() uint64 {
	var n uint64
	for _, c := range vc {
		n += c.n
	}
	return n
}

// at returns the value at 0-based index i of the sorted readings.
func (vc valueCounts) at(i uint64) float64 {
	var seen uint64
	for _, c := range vc {
		seen += c.n
		if i < seen {
			return c.v
		}
	}
	return vc[len(vc)-1].v
}

// percentile is the nearest-rank percentile of Method: the value at index
// floor(p/100 * n), the last one for p = 100. vc must not be empty.
func (vc valueCounts) percentile(p float64) float64 {
	n := vc.total()
	i := uint64(p / 100 * float64(n))
	if i >= n {
		i = n - 1
	}
	return vc.at(i)
}

// moments are count, mean and sample standard deviation.
type moments struct {
	n      uint64
	mean   float64
	stddev *float64 // nil when n < 2
}

// moments computes the mean, then the sample variance around it (two
// passes, so no cancellation), as PostgreSQL's avg and stddev do.
func (vc valueCounts) moments() moments {
	m := moments{n: vc.total()}
	if m.n == 0 {
		return m
	}
	var sum float64
	for _, c := range vc {
		sum += c.v * float64(c.n)
	}
	m.mean = sum / float64(m.n)
	if m.n > 1 {
		var ss float64
		for _, c := range vc {
			d := c.v - m.mean
			ss += d * d * float64(c.n)
		}
		sd := math.Sqrt(ss / float64(m.n-1))
		m.stddev = &sd
	}
	return m
}

// momentsFromSums derives the same figures from count, sum and sum of
// squares (what the daily rollup stores). The one-pass variance loses
// precision only when the spread is tiny against the mean, which health
// values are not; the result is clamped at zero against rounding.
func momentsFromSums(n uint64, sum, sumSq float64) moments {
	m := moments{n: n}
	if n == 0 {
		return m
	}
	m.mean = sum / float64(n)
	if n > 1 {
		v := (sumSq - sum*sum/float64(n)) / float64(n-1)
		sd := math.Sqrt(math.Max(v, 0))
		m.stddev = &sd
	}
	return m
}

// Bin is one histogram bin: readings with lower <= value < upper (the last
// bin also holds value == upper).
type Bin struct {
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	Count uint64  `json:"count"`
}

// histogram puts the readings into k bins of equal width over [min, max].
// All readings equal: one bin [min, max].
func (vc valueCounts) histogram(k int) []Bin {
	lo, hi := vc[0].v, vc[len(vc)-1].v
	if lo == hi || k < 1 {
		return []Bin{{Lower: lo, Upper: hi, Count: vc.total()}}
	}
	w := (hi - lo) / float64(k)
	bins := make([]Bin, k)
	for i := range bins {
		bins[i].Lower = lo + float64(i)*w
		bins[i].Upper = lo + float64(i+1)*w
	}
	bins[k-1].Upper = hi
	for _, c := range vc {
		i := int((c.v - lo) / w)
		i = min(max(i, 0), k-1)
		// Rounding can put a value on the wrong side of an edge computed
		// by lower+i*w; the edges as returned decide.
		for i > 0 && c.v < bins[i].Lower {
			i--
		}
		for i < k-1 && c.v >= bins[i].Upper {
			i++
		}
		bins[i].Count += c.n
	}
	return bins
}

// autoBins is the Freedman–Diaconis rule: bin width 2·IQR·n^(-1/3), with
// IQR = q3 - q1 (nearest-rank quartiles); bins = ceil((max-min)/width),
// between 1 and MaxBins. When the IQR is zero (over half the readings
// equal) it falls back to Sturges' rule, ceil(log2 n) + 1.
func (vc valueCounts) autoBins() int {
	n := vc.total()
	lo, hi := vc[0].v, vc[len(vc)-1].v
	if lo == hi {
		return 1
	}
	iqr := vc.percentile(75) - vc.percentile(25)
	var k float64
	if iqr > 0 {
		k = math.Ceil((hi - lo) / (2 * iqr / math.Cbrt(float64(n))))
	} else {
		k = math.Ceil(math.Log2(float64(n))) + 1
	}
	return int(min(max(k, 1), MaxBins))
}

// percentileRank is the percentile rank of x among values (which include
// x's own): 100 · (values below x + half the values equal to x) / count,
// the usual definition that gives the middle of a tie.
func percentileRank(x float64, values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	var below, equal int
	for _, v := range values {
		switch {
		case v < x:
			below++
		case v == x:
			equal++
		}
	}
	return 100 * (float64(below) + 0.5*float64(equal)) / float64(len(values))
}

// median is the nearest-rank median of values (sorted here).
func median(values []float64) float64 {
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	return s[min(len(s)/2, len(s)-1)]
}
