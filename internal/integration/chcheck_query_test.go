package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vitalshq/vitals/query"
)

// ckRequest is one query API request of the check and the independent
// check of its answer.
type ckRequest struct {
	path  string
	check func(body []byte) error
}

// ckMinUsers is the check's cohort minimum: low enough that most cohorts
// are shown (and so computed), high enough that one-user cohorts are
// suppressed.
const ckMinUsers = 2

func rangeParams(from, to time.Time) string {
	return "from=" + url.QueryEscape(from.UTC().Format(time.RFC3339Nano)) + "&to=" + url.QueryEscape(to.UTC().Format(time.RFC3339Nano))
}

func wantF(what string, got *float64, want float64) error {
	if got == nil || !near(*got, want) {
		return fmt.Errorf("%s = %v, computed independently %g", what, fmtPtr(got), want)
	}
	return nil
}

func fmtPtr(p *float64) string {
	if p == nil {
		return "null"
	}
	return strconv.FormatFloat(*p, 'g', -1, 64)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// checkPercentiles compares ps over values (nearest rank) with the answer.
func checkPercentiles(what string, got []query.Percentile, values []float64, ps []float64) error {
	if len(values) == 0 {
		if len(got) != 0 {
			return fmt.Errorf("%s: percentiles %v of no readings", what, got)
		}
		return nil
	}
	want := nearestRank(values, ps)
	if len(got) != len(ps) {
		return fmt.Errorf("%s: %d percentiles, want %d", what, len(got), len(ps))
	}
	for i := range ps {
		if got[i].P != ps[i] || got[i].Value != want[i] {
			return fmt.Errorf("%s: p%g = %g, computed independently %g", what, ps[i], got[i].Value, want[i])
		}
	}
	return nil
}

func decode[T any](body []byte) (T, error) {
	var v T
	err := json.Unmarshal(body, &v)
	return v, err
}

// queryRequests is the check's battery: every endpoint, over the whole
// range and a range with partial days at both ends, for the tenant, each
// dimension's cohorts and single users. Each request is made twice: for
// the present, and as of now, a moment after the data arrived (the as_of
// statements read revision rows and ingestion times instead of the
// rollups), which must answer the same. The moment keeps its fraction of
// a second: whole seconds cut off readings that arrived in the last one
// (a round once missed the 40 readings posted just before it).
func (in *ckInput) queryRequests(whole, partial scope) []ckRequest {
	var out []ckRequest
	asOf := "as_of=" + url.QueryEscape(time.Now().UTC().Format(time.RFC3339Nano))
	add := func(path string, check func([]byte) error) {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		out = append(out, ckRequest{path, check}, ckRequest{path + sep + asOf, check})
	}
	wq, pq := rangeParams(whole.from, whole.to), rangeParams(partial.from, partial.to)
	u0, alert := in.users[0], in.alertUser
	if u0.erased {
		u0 = in.users[2]
	}

	percentiles := func(params string, sc scope, ps []float64, cohort bool) {
		p := make([]string, len(ps))
		for i, x := range ps {
			p[i] = formatP(x)
		}
		add("/v1/percentiles?metric=heart_rate&per=day&p="+strings.Join(p, ",")+"&"+params, func(b []byte) error {
			res, err := decode[query.PercentilesResult](b)
			if err != nil {
				return err
			}
			users := len(in.values(sc))
			if cohort && users < ckMinUsers {
				if !res.Suppressed || res.Count != 0 {
					return fmt.Errorf("a cohort of %d users must be suppressed: %+v", users, res)
				}
				return nil
			}
			all := in.all(sc)
			if res.Suppressed || res.Count != uint64(len(all)) {
				return fmt.Errorf("count %d (suppressed %v), computed independently %d", res.Count, res.Suppressed, len(all))
			}
			days := in.perDay(sc)
			if len(res.Days) != len(days) {
				return fmt.Errorf("%d days, computed independently %d", len(res.Days), len(days))
			}
			for i, d := range sortedDays(days) {
				if res.Days[i].Day != d || res.Days[i].Count != uint64(len(days[d])) {
					return fmt.Errorf("day %d: %s %d readings, computed independently %s %d", i, res.Days[i].Day, res.Days[i].Count, d, len(days[d]))
				}
				if err := checkPercentiles(d, res.Days[i].Percentiles, days[d], ps); err != nil {
					return err
				}
			}
			return checkPercentiles("overall", res.Percentiles, all, ps)
		})
	}
	tenant := func(sc scope) scope { return sc }
	withDim := func(sc scope, by, value string) scope {
		sc.keep = func(u *ckUser) bool { return u.dim(by) == value }
		return sc
	}
	onlyUser := func(sc scope, u *ckUser) scope {
		sc.keep = func(x *ckUser) bool { return x == u }
		return sc
	}
	percentiles(wq, tenant(whole), []float64{0, 10, 50, 90, 99, 100}, false)
	percentiles(pq, tenant(partial), []float64{1, 50, 99}, false)
	percentiles("sex=female&"+wq, withDim(whole, "sex", "female"), []float64{25, 50, 75}, true)
	percentiles("sex=male&"+pq, withDim(partial, "sex", "male"), []float64{50}, true)
	percentiles("age_band=30-39&"+wq, withDim(whole, "age_band", "30-39"), []float64{50, 90}, true)
	percentiles("age_band=70-79&"+wq, withDim(whole, "age_band", "70-79"), []float64{50}, true)
	percentiles("region=GB&device_model=fitbit-charge-hr&"+wq, scope{func(u *ckUser) bool { return u.region == "GB" && u.model == "fitbit-charge-hr" }, whole.from, whole.to}, []float64{10, 90}, true)
	percentiles("user="+alert.id+"&"+wq, onlyUser(whole, alert), []float64{50, 99, 100}, false)

	// The first endpoint, per user.
	add("/v1/users/"+u0.id+"/percentiles?metric=heart_rate&p=5,50,95&"+wq, func(b []byte) error {
		res, err := decode[query.PercentilesResponse](b)
		if err != nil {
			return err
		}
		vs := in.values(onlyUser(whole, u0))[u0]
		if res.Count != uint64(len(vs)) {
			return fmt.Errorf("count %d, computed independently %d", res.Count, len(vs))
		}
		return checkPercentiles(u0.id, res.Percentiles, vs, []float64{5, 50, 95})
	})

	distribution := func(params string, sc scope, bins int, cohort bool) {
		b := "auto"
		if bins > 0 {
			b = strconv.Itoa(bins)
		}
		add("/v1/distribution?metric=heart_rate&bins="+b+"&"+params, func(body []byte) error {
			res, err := decode[query.DistributionResult](body)
			if err != nil {
				return err
			}
			all := in.all(sc)
			if cohort && len(in.values(sc)) < ckMinUsers {
				if !res.Suppressed {
					return fmt.Errorf("must be suppressed: %+v", res)
				}
				return nil
			}
			st := statsOf(all)
			if res.Count != uint64(len(all)) {
				return fmt.Errorf("count %d, computed independently %d", res.Count, len(all))
			}
			if err := firstErr(wantF("min", res.Min, st.sorted[0]), wantF("q1", res.Q1, st.rank(25)), wantF("median", res.Median, st.rank(50)),
				wantF("q3", res.Q3, st.rank(75)), wantF("max", res.Max, st.sorted[len(all)-1]), wantF("mean", res.Mean, st.mean),
				wantF("stddev", res.Stddev, st.stddev)); err != nil {
				return err
			}
			want := histogramCounts(all, bins)
			if len(res.Histogram) != len(want) {
				return fmt.Errorf("%d bins, computed independently %d", len(res.Histogram), len(want))
			}
			for i, bin := range res.Histogram {
				if bin.Count != want[i] {
					return fmt.Errorf("bin %d: %d readings, computed independently %d", i, bin.Count, want[i])
				}
			}
			return nil
		})
	}
	distribution(wq, tenant(whole), 20, false)
	distribution("sex=female&"+pq, withDim(partial, "sex", "female"), 0, true)
	distribution("device_model=fitbit-surge&"+wq, withDim(whole, "device_model", "fitbit-surge"), 10, true)
	distribution("user="+u0.id+"&"+pq, onlyUser(partial, u0), 0, false)

	for _, by := range []string{"sex", "age_band", "region", "device_model"} {
		for _, r := range []struct {
			sc     scope
			params string
		}{{whole, wq}, {partial, pq}} {
			sc, params := r.sc, r.params
			add("/v1/cohorts?metric=heart_rate&by="+by+"&"+params, func(b []byte) error {
				res, err := decode[query.CohortsResult](b)
				if err != nil {
					return err
				}
				want := in.cohorts(by, sc)
				if len(res.Cohorts) != len(want) {
					return fmt.Errorf("%d cohorts, computed independently %d", len(res.Cohorts), len(want))
				}
				for _, c := range res.Cohorts {
					w := want[c.Value]
					if w == nil || c.Users != uint64(w.users) {
						return fmt.Errorf("cohort %s: %d users, computed independently %v", c.Value, c.Users, w)
					}
					if w.users < ckMinUsers {
						if !c.Suppressed || c.Count != 0 || c.Mean != nil {
							return fmt.Errorf("cohort %s of %d users must be suppressed: %+v", c.Value, w.users, c)
						}
						continue
					}
					st := statsOf(w.values)
					if c.Suppressed || c.Count != uint64(len(w.values)) {
						return fmt.Errorf("cohort %s: %d readings (suppressed %v), computed independently %d", c.Value, c.Count, c.Suppressed, len(w.values))
					}
					if err := firstErr(wantF(c.Value+" mean", c.Mean, st.mean), wantF(c.Value+" stddev", c.Stddev, st.stddev),
						wantF(c.Value+" median", c.Median, st.rank(50)), wantF(c.Value+" p10", c.P10, st.rank(10)),
						wantF(c.Value+" p90", c.P90, st.rank(90))); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}

	for _, by := range []string{"sex", "age_band", "region", "device_model"} {
		for _, u := range []*ckUser{u0, alert} {
			add("/v1/compare?metric=heart_rate&by="+by+"&user="+u.id+"&"+wq, func(b []byte) error {
				res, err := decode[query.CompareResult](b)
				if err != nil {
					return err
				}
				own := statsOf(in.values(onlyUser(whole, u))[u])
				c := in.cohorts(by, whole)[u.dim(by)]
				if res.Cohort.Value != u.dim(by) || res.Cohort.Users != uint64(c.users) || res.User.Count != uint64(len(own.sorted)) {
					return fmt.Errorf("cohort %s of %d users, user count %d; computed independently %s, %d, %d",
						res.Cohort.Value, res.Cohort.Users, res.User.Count, u.dim(by), c.users, len(own.sorted))
				}
				if err := firstErr(wantF("user mean", res.User.Mean, own.mean), wantF("user median", res.User.Median, own.rank(50))); err != nil {
					return err
				}
				if c.users < ckMinUsers {
					if !res.Suppressed || res.Cohort.Mean != nil {
						return fmt.Errorf("a cohort of %d users must be suppressed: %+v", c.users, res)
					}
					return nil
				}
				means := statsOf(c.means)
				var below, equal float64
				for _, m := range c.means {
					if m < own.mean {
						below++
					} else if m == own.mean {
						equal++
					}
				}
				return firstErr(wantF("cohort mean", res.Cohort.Mean, means.mean), wantF("cohort median", res.Cohort.Median, means.rank(50)),
					wantF("percentile rank", res.PercentileRank, 100*(below+equal/2)/float64(c.users)),
					wantF("percent difference", res.PercentDifference, (own.mean-means.mean)/means.mean*100))
			})
		}
	}

	trends := func(params string, sc scope, cohort bool) {
		add("/v1/trends?metric=heart_rate&"+params, func(b []byte) error {
			res, err := decode[query.TrendsResult](b)
			if err != nil {
				return err
			}
			// Trends cover whole UTC days.
			sc.from, sc.to = res.From, res.To
			if cohort && len(in.values(sc)) < ckMinUsers {
				if !res.Suppressed {
					return fmt.Errorf("must be suppressed: %+v", res)
				}
				return nil
			}
			days := in.perDay(sc)
			if len(res.Days) != len(days) {
				return fmt.Errorf("%d days, computed independently %d", len(res.Days), len(days))
			}
			for i, d := range sortedDays(days) {
				got, want := res.Days[i], trendOf(days[d])
				if got.Day != d || got.Count != uint64(want.n) || !near(got.Avg, want.avg) || got.Min != want.lo || got.Max != want.hi {
					return fmt.Errorf("day %s: %+v, computed independently %s %+v", got.Day, got, d, want)
				}
				if want.n > 1 {
					if err := wantF(d+" stddev", got.Stddev, want.stddev); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	trends(wq, tenant(whole), false)
	trends("user="+alert.id+"&"+pq, onlyUser(partial, alert), false)
	trends("sex=female&"+wq, withDim(whole, "sex", "female"), true)
	trends("region=GB&"+wq, withDim(whole, "region", "GB"), true)
	weekEnd := alert.rows[len(alert.rows)-1].Time.Add(24 * time.Hour).Truncate(24 * time.Hour)
	trends("period=week&to="+weekEnd.Format(time.DateOnly), scope{}, false)

	for _, u := range []*ckUser{u0, alert} {
		add("/v1/users/"+u.id+"/summary", func(b []byte) error {
			res, err := decode[query.SummaryResult](b)
			if err != nil {
				return err
			}
			newest := u.rows[0]
			for _, r := range u.rows {
				if r.Time.After(newest.Time) {
					newest = r
				}
			}
			warnings := uint64(0)
			if u == alert {
				warnings = 1 // raised 5 minutes into the 185/min readings, within a day of the newest
			}
			if len(res.Latest) != 1 || res.Latest[0].Value != newest.Value || !res.Latest[0].MeasuredAt.Equal(newest.Time) ||
				len(res.Counts) != 1 || res.Counts[0].Count != uint64(len(u.rows)) || res.OpenAlerts["warning"] != warnings {
				return fmt.Errorf("%+v; computed independently latest %g at %s, count %d, %d warnings", res, newest.Value, newest.Time, len(u.rows), warnings)
			}
			return nil
		})
	}
	return out
}

func formatP(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) }

// sameAnswers reports whether answers are identical, byte for byte, but
// for the moment an answer for the present states (as_of: when it was
// asked).
func sameAnswers(answers [][]byte) bool {
	first := reAsOf.ReplaceAll(answers[0], []byte(`"as_of":""`))
	for _, a := range answers[1:] {
		if !slices.Equal(reAsOf.ReplaceAll(a, []byte(`"as_of":""`)), first) {
			return false
		}
	}
	return len(answers[0]) > 0
}

var reAsOf = regexp.MustCompile(`"as_of":"[^"]*"`)
