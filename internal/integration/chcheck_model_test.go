package integration

import (
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/vitalshq/vitals/internal/sample"
)

// The check's input and the independent computation of every answer: the
// query service's figures recomputed here from the readings that were
// sent, without the query package or ClickHouse.

// ckUser is one user of the check with their synthetic profile.
type ckUser struct {
	id, sex, region, model string
	birthYear              int
	rows                   []sample.HeartRate // accepted readings
	erased                 bool
}

// dim is the user's value of a cohort dimension.
func (u *ckUser) dim(by string) string {
	switch by {
	case "sex":
		return u.sex
	case "region":
		return u.region
	case "device_model":
		return u.model
	}
	return ageBandOf(u.birthYear, time.Now())
}

// ageBandOf restates the documented age bands (docs/warehouse.md).
func ageBandOf(birthYear int, now time.Time) string {
	age := now.UTC().Year() - birthYear
	switch {
	case birthYear <= 0 || age < 0 || age > 130:
		return "unknown"
	case age < 18:
		return "0-17"
	case age < 30:
		return "18-29"
	case age >= 80:
		return "80+"
	}
	d := age / 10 * 10
	return strconv.Itoa(d) + "-" + strconv.Itoa(d+9)
}

// ckInput is everything the check sends.
type ckInput struct {
	users []*ckUser
	// rejected counts the readings sent that the processor must refuse.
	rejected int
	// alertUser is the user whose sustained high heart rate raises an alert.
	alertUser *ckUser
}

// ckProfiles are the synthetic profiles: sex, birth year, region, device
// model per user, chosen so that every dimension has cohorts of several
// users and cohorts of one (suppressed with a minimum of 2).
var ckProfiles = []struct {
	sex, region, model string
	birthYear          int
}{
	{"female", "US-CA", "fitbit-charge-hr", 1990},
	{"female", "US-CA", "fitbit-charge-hr", 1985},
	{"female", "US-CA", "fitbit-charge-hr", 1975},
	{"female", "GB", "fitbit-charge-hr", 1960},
	{"male", "US-CA", "fitbit-surge", 2001},
	{"male", "GB", "fitbit-charge-hr", 1988},
	{"male", "US-CA", "fitbit-surge", 1950},
	{"female", "GB", "fitbit-charge-hr", 1995},
}

// newCheckInput takes perUser readings of each of the sample's 8 users and
// adds, for the second user, 8 readings of 185/min a minute apart after
// their last (an alert: above 180 for 5 minutes).
func newCheckInput(all []sample.HeartRate, perUser int) *ckInput {
	in := &ckInput{}
	byID := map[string]*ckUser{}
	for _, r := range all {
		u := byID[r.UserID()]
		if u == nil {
			if len(in.users) == len(ckProfiles) {
				continue
			}
			p := ckProfiles[len(in.users)]
			u = &ckUser{id: r.UserID(), sex: p.sex, region: p.region, model: p.model, birthYear: p.birthYear}
			byID[u.id] = u
			in.users = append(in.users, u)
		}
		if len(u.rows) < perUser {
			u.rows = append(u.rows, r)
		}
	}
	in.alertUser = in.users[1]
	last := in.alertUser.rows[len(in.alertUser.rows)-1]
	for i := range 8 {
		in.alertUser.rows = append(in.alertUser.rows, sample.HeartRate{FitbitID: last.FitbitID, Time: last.Time.Add(time.Duration(i+1) * time.Minute), Value: 185})
	}
	return in
}

// scope selects readings: the users passing keep, measured in [from, to).
type scope struct {
	keep     func(*ckUser) bool
	from, to time.Time
}

// values are the scope's readings' values per user (erased users left out).
func (in *ckInput) values(sc scope) map[*ckUser][]float64 {
	out := map[*ckUser][]float64{}
	for _, u := range in.users {
		if u.erased || (sc.keep != nil && !sc.keep(u)) {
			continue
		}
		for _, r := range u.rows {
			if !r.Time.Before(sc.from) && r.Time.Before(sc.to) {
				out[u] = append(out[u], r.Value)
			}
		}
	}
	return out
}

// all is every value of the scope.
func (in *ckInput) all(sc scope) []float64 {
	var out []float64
	for _, u := range in.users {
		out = append(out, in.values(sc)[u]...)
	}
	return out
}

// perDay is the scope's values per UTC day.
func (in *ckInput) perDay(sc scope) map[string][]float64 {
	out := map[string][]float64{}
	for _, u := range in.users {
		if u.erased || (sc.keep != nil && !sc.keep(u)) {
			continue
		}
		for _, r := range u.rows {
			if !r.Time.Before(sc.from) && r.Time.Before(sc.to) {
				d := r.Time.UTC().Format(time.DateOnly)
				out[d] = append(out[d], r.Value)
			}
		}
	}
	return out
}

// sortedDays are a map's keys in order.
func sortedDays(m map[string][]float64) []string {
	var out []string
	for d := range m {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// histogramCounts restates the distribution's bins: k bins of equal width
// over [min, max], or Freedman–Diaconis when k is 0.
func histogramCounts(values []float64, k int) []uint64 {
	st := statsOf(values)
	lo, hi := st.sorted[0], st.sorted[len(st.sorted)-1]
	if lo == hi {
		return []uint64{uint64(len(values))}
	}
	if k == 0 {
		iqr := st.rank(75) - st.rank(25)
		if iqr > 0 {
			k = int(math.Ceil((hi - lo) / (2 * iqr / math.Cbrt(float64(len(values))))))
		} else {
			k = int(math.Ceil(math.Log2(float64(len(values))))) + 1
		}
		k = min(max(k, 1), 1000)
	}
	out := make([]uint64, k)
	w := (hi - lo) / float64(k)
	for _, v := range values {
		i := k - 1
		for j := 0; j < k-1; j++ {
			if v < lo+float64(j+1)*w {
				i = j
				break
			}
		}
		out[i]++
	}
	return out
}

// ckCohort is a cohort's figures as the check expects them.
type ckCohort struct {
	users  int
	values []float64
	means  []float64
}

// cohorts groups the scope's users with readings by a dimension.
func (in *ckInput) cohorts(by string, sc scope) map[string]*ckCohort {
	out := map[string]*ckCohort{}
	per := in.values(sc)
	for _, u := range in.users {
		vs := per[u]
		if len(vs) == 0 {
			continue
		}
		c := out[u.dim(by)]
		if c == nil {
			c = &ckCohort{}
			out[u.dim(by)] = c
		}
		c.users++
		c.values = append(c.values, vs...)
		c.means = append(c.means, statsOf(vs).mean)
	}
	return out
}

// trendDay is one expected day of a trend: count, mean, min, max and
// sample standard deviation.
type trendDay struct {
	n                   int
	avg, lo, hi, stddev float64
}

func trendOf(values []float64) trendDay {
	st := statsOf(values)
	return trendDay{n: len(values), avg: st.mean, lo: st.sorted[0], hi: st.sorted[len(st.sorted)-1], stddev: st.stddev}
}
