package integration

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"
)

// The independent oracle of TestRevisionsOracle: what every answer must be,
// computed straight from what the test sent, with none of the pipeline's
// code. A reading is an event id; each version sent of it has a revision.
// As of a phase, a reading's version is the highest revision sent by the
// end of that phase (of two sent with the same revision, the first); a
// withdrawn version means no reading. Everything else (percentiles,
// distributions, cohorts, trends, summaries, alerts) is computed over
// those versions by the plain definitions of docs/api.md.

// oVersion is one version of a reading as sent.
type oVersion struct {
	rev       int64
	value     float64
	at        int64 // measured, epoch ms
	withdrawn bool
	phase     int
	format    string // json, avro or fhir
}

// oEvent is one reading (event id) and every version sent of it.
type oEvent struct {
	user, id, device, metric string
	sent                     []oVersion
}

// current is the event's version as of phase, false when it has none (not
// sent yet, or withdrawn).
func (e *oEvent) current(phase int) (oVersion, bool) {
	var best oVersion
	found := false
	for _, v := range e.sent {
		if v.phase > phase {
			continue
		}
		if !found || v.rev > best.rev {
			best, found = v, true
		}
	}
	return best, found && !best.withdrawn
}

// oReading is a reading as it stands at some phase.
type oReading struct {
	user, metric string
	value        float64
	at           int64
}

// oracle holds what the test sent.
type oracle struct {
	events []*oEvent
	byID   map[string]*oEvent
	users  []string
	// sex[u] lists the user's stated sex by phase (index 0: phase 1).
	sex map[string][3]string
}

func newOracle() *oracle { return &oracle{byID: map[string]*oEvent{}, sex: map[string][3]string{}} }

// readings are the readings of metric standing as of phase.
func (o *oracle) readings(phase int, metricName string) []oReading {
	var out []oReading
	for _, e := range o.events {
		if e.metric != metricName {
			continue
		}
		if v, ok := e.current(phase); ok {
			out = append(out, oReading{user: e.user, metric: e.metric, value: v.value, at: v.at})
		}
	}
	return out
}

// values are the values of rs measured in [from, to) whose user keep
// accepts.
func values(rs []oReading, from, to time.Time, keep func(user string) bool) []float64 {
	var out []float64
	for _, r := range rs {
		if r.at >= from.UnixMilli() && r.at < to.UnixMilli() && keep(r.user) {
			out = append(out, r.value)
		}
	}
	sort.Float64s(out)
	return out
}

// rankOf is the nearest-rank percentile of sorted values (docs/api.md:
// the value at 0-based index floor(p/100 * n)).
func rankOf(sorted []float64, p float64) float64 {
	return sorted[min(int(p/100*float64(len(sorted))), len(sorted)-1)]
}

// meanSD is the mean and sample standard deviation (two passes).
func meanSD(vs []float64) (float64, float64) {
	var sum float64
	for _, v := range vs {
		sum += v
	}
	mean := sum / float64(len(vs))
	var ss float64
	for _, v := range vs {
		ss += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(ss / float64(len(vs)-1))
}

// dayOf is the UTC day of an epoch-ms time.
func dayOf(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.DateOnly) }

// oAlert is an alert the rules raise over a stream's readings.
type oAlert struct {
	user, rule, severity string
	start                int64
	open                 bool // no reading after it ended the condition
}

// alerts evaluates the alert rules straight over the readings standing as
// of phase, each stream (user and metric; one device each here) in
// measurement order: a run of readings meeting the condition raises an
// alert once it spans the rule's duration.
func (o *oracle) alerts(phase int) []oAlert {
	type rule struct {
		name, severity, metric string
		holds                  func(float64) bool
		dur                    time.Duration
	}
	rules := []rule{
		{"heart_rate_high_sustained", "warning", "heart_rate", func(v float64) bool { return v > 180 }, 5 * time.Minute},
		{"spo2_low_sustained", "critical", "spo2", func(v float64) bool { return v < 90 }, time.Minute},
	}
	var out []oAlert
	for _, ru := range rules {
		byUser := map[string][]oReading{}
		for _, r := range o.readings(phase, ru.metric) {
			byUser[r.user] = append(byUser[r.user], r)
		}
		for _, u := range o.users {
			rs := byUser[u]
			sort.Slice(rs, func(i, j int) bool { return rs[i].at < rs[j].at })
			var start int64 = -1
			raised := -1
			for _, r := range rs {
				if !ru.holds(r.value) {
					if raised >= 0 {
						out[raised].open = false
					}
					start, raised = -1, -1
					continue
				}
				if start < 0 {
					start = r.at
				}
				if raised < 0 && r.at-start >= ru.dur.Milliseconds() {
					out = append(out, oAlert{user: u, rule: ru.name, severity: ru.severity, start: start, open: true})
					raised = len(out) - 1
				}
			}
		}
	}
	return out
}

// oracleRNG is the test's random source; VITALS_ORACLE_SEED repeats a run.
func oracleRNG(seed string) (*rand.Rand, uint64) {
	n, err := strconv.ParseUint(seed, 10, 64)
	if err != nil {
		n = uint64(time.Now().UnixNano())
	}
	return rand.New(rand.NewPCG(n, 0x5eed)), n
}

// String shows a version in failure messages.
func (v oVersion) String() string {
	return fmt.Sprintf("r%d %g@%s w=%v p%d %s", v.rev, v.value, time.UnixMilli(v.at).UTC().Format(time.RFC3339), v.withdrawn, v.phase, v.format)
}
