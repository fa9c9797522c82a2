package integration

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/query"
)

// What TestRevisionsOracle compares, endpoint by endpoint and table by
// table, with the oracle.

// stored reports whether the pipeline has stored every version, rejection
// and alert event the stream makes.
func (c *oracleCheck) stored(rejected map[string]int) (bool, string) {
	db := c.s.wh.Database
	want := map[string]int64{}
	for _, m := range []string{"heart_rate", "spo2"} {
		want[m] = int64(len(c.o.readings(3, m)))
	}
	got, err := warehouse.ScanMap[string, int64](c.ch.Query(c.ctx, fmt.Sprintf(`SELECT metric, sum(n) FROM (
			SELECT metric, toInt64(1) AS n FROM %[1]s.%[2]s WHERE tenant_id = ?
			UNION ALL SELECT metric, toInt64(sign) AS n FROM %[1]s.%[3]s WHERE tenant_id = ?) GROUP BY metric`,
		db, warehouse.ReadingsTable, warehouse.RevisionsTable), c.s.tenant, c.s.tenant))
	if err != nil {
		c.t.Fatal(err)
	}
	// Printed like rejected (a map[string]int), they compare as text.
	reasons, err := warehouse.ScanMap[string, uint64](c.ch.Query(c.ctx, fmt.Sprintf(`SELECT reason, count() FROM %s.%s WHERE tenant_id = ? GROUP BY reason`, db, warehouse.RejectedTable), c.s.tenant))
	if err != nil {
		c.t.Fatal(err)
	}
	var alerts uint64
	if err := c.ch.QueryRow(c.ctx, fmt.Sprintf(`SELECT count() FROM %s.%s WHERE tenant_id = ?`, db, warehouse.AlertsTable), c.s.tenant).Scan(&alerts); err != nil {
		c.t.Fatal(err)
	}
	wantAlerts := c.alertEvents()
	state := fmt.Sprintf("readings %v of %v; rejections %v of %v; alert events %d of %d", got, want, reasons, rejected, alerts, wantAlerts)
	same := fmt.Sprint(got) == fmt.Sprint(want) && fmt.Sprint(reasons) == fmt.Sprint(rejected) && alerts == uint64(wantAlerts)
	return same, state
}

// alertEvents is how many alert events the stream makes: every alert
// raised by the readings as first sent, resolved if a reading ended it,
// and withdrawn when the final readings no longer raise it.
func (c *oracleCheck) alertEvents() int {
	first, final := c.o.alerts(1), c.o.alerts(3)
	n := 0
	for _, a := range first {
		n++
		if !a.open {
			n++
		}
		if !hasAlert(final, a) {
			n++
		}
	}
	return n
}

func hasAlert(as []oAlert, a oAlert) bool {
	return slices.ContainsFunc(as, func(b oAlert) bool { return b.user == a.user && b.rule == a.rule && b.start == a.start })
}

// tables compares the tables with the final readings: per user, metric
// and day the readings with their signed revision rows, the daily rollup
// with its revisions' companion, and the value rollup value by value; and
// the readings table holds every reading as first accepted once.
func (c *oracleCheck) tables() {
	db := c.s.wh.Database
	type key struct{ user, metric, day string }
	type agg struct {
		n   int64
		sum float64
	}
	want := map[key]agg{}
	wantValues := map[string]int64{}
	for _, m := range []string{"heart_rate", "spo2"} {
		for _, r := range c.o.readings(3, m) {
			k := key{r.user, m, dayOf(r.at)}
			a := want[k]
			a.n++
			a.sum += r.value
			want[k] = a
			wantValues[fmt.Sprintf("%s %s %s %g", r.user, m, dayOf(r.at), r.value)]++
		}
	}
	read := func(what, sql string) map[key]agg {
		out := map[key]agg{}
		rows, err := c.ch.Query(c.ctx, sql, c.s.tenant, c.s.tenant)
		if err != nil {
			c.t.Fatalf("%s: %v", what, err)
		}
		defer rows.Close()
		for rows.Next() {
			var k key
			var a agg
			if err := rows.Scan(&k.user, &k.metric, &k.day, &a.n, &a.sum); err != nil {
				c.t.Fatalf("%s: %v", what, err)
			}
			if a.n != 0 {
				out[k] = a
			}
		}
		return out
	}
	compare := func(what string, got map[key]agg) {
		bad := 0
		for k, w := range want {
			if g := got[k]; g.n != w.n || !near(g.sum, w.sum) {
				if bad++; bad <= 5 {
					c.t.Errorf("%s %v: %d readings, sum %g; want %d, %g", what, k, g.n, g.sum, w.n, w.sum)
				}
			}
		}
		for k, g := range got {
			if _, ok := want[k]; !ok {
				c.t.Errorf("%s %v: %d readings that should not be", what, k, g.n)
			}
		}
	}
	compare("readings and revisions", read("raw", fmt.Sprintf(`SELECT user_id, metric, toString(toDate(measured_at)) AS d, sum(n), sum(value * n) FROM (
			SELECT user_id, metric, measured_at, value, toInt64(1) AS n FROM %[1]s.%[2]s WHERE tenant_id = ?
			UNION ALL SELECT user_id, metric, measured_at, value, toInt64(sign) AS n FROM %[1]s.%[3]s WHERE tenant_id = ?)
		GROUP BY user_id, metric, d`, db, warehouse.ReadingsTable, warehouse.RevisionsTable)))
	compare("daily rollup", read("rollup", fmt.Sprintf(`SELECT user_id, metric, toString(day) AS d, sum(n), sum(s) FROM (
			SELECT user_id, metric, day, toInt64(countMerge(readings)) AS n, sumMerge(sum_value) AS s FROM %[1]s.%[2]s WHERE tenant_id = ? GROUP BY user_id, metric, day
			UNION ALL SELECT user_id, metric, day, sum(readings) AS n, sum(sum_value) AS s FROM %[1]s.%[3]s WHERE tenant_id = ? GROUP BY user_id, metric, day)
		GROUP BY user_id, metric, d`, db, warehouse.DailyRollupTable, warehouse.DailyRevisionsTable)))
	gotValues := map[string]int64{}
	rows, err := c.ch.Query(c.ctx, fmt.Sprintf(`SELECT user_id, metric, toString(day), value, sum(readings) AS n FROM %s.%s WHERE tenant_id = ?
		GROUP BY user_id, metric, day, value HAVING n != 0`, db, warehouse.ValuesRollupTable), c.s.tenant)
	if err != nil {
		c.t.Fatal(err)
	}
	for rows.Next() {
		var u, m, d string
		var v float64
		var n int64
		if err := rows.Scan(&u, &m, &d, &v, &n); err != nil {
			c.t.Fatal(err)
		}
		gotValues[fmt.Sprintf("%s %s %s %g", u, m, d, v)] = n
	}
	rows.Close()
	if fmt.Sprint(gotValues) != fmt.Sprint(wantValues) {
		c.t.Errorf("value rollup: %d (user, metric, day, value) counts, want %d; they differ", len(gotValues), len(wantValues))
	}
	var rowsN, distinct uint64
	if err := c.ch.QueryRow(c.ctx, fmt.Sprintf(`SELECT count(), uniqExact(user_id, event_id) FROM %s.%s WHERE tenant_id = ?`, db, warehouse.ReadingsTable), c.s.tenant).Scan(&rowsN, &distinct); err != nil {
		c.t.Fatal(err)
	}
	if rowsN != distinct || rowsN != uint64(len(c.o.events)) {
		c.t.Errorf("readings: %d rows, %d distinct readings; want %d once each", rowsN, distinct, len(c.o.events))
	}
	var dup uint64
	if err := c.ch.QueryRow(c.ctx, fmt.Sprintf(`SELECT count() FROM (SELECT count() AS k FROM %s.%s WHERE tenant_id = ?
		GROUP BY user_id, event_id, revision, sign HAVING k > 1)`, db, warehouse.RevisionsTable), c.s.tenant).Scan(&dup); err != nil || dup != 0 {
		c.t.Errorf("revision rows stored more than once: %d (%v)", dup, err)
	}
}

// get asks the query API as of the check's phase; the answer's as_of
// must be the one asked for.
func (c *oracleCheck) get(path string, params url.Values, out any) {
	c.t.Helper()
	if !c.asOf.IsZero() {
		params.Set("as_of", c.asOf.Format(time.RFC3339Nano))
	}
	full := path + "?" + params.Encode()
	var raw map[string]any
	if code := getQuery(c.t, c.queryURL, c.tok, full, &raw); code != http.StatusOK {
		c.t.Fatalf("%s: status %d", full, code)
	}
	at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(raw["as_of"]))
	switch {
	case err != nil:
		c.t.Errorf("%s: as_of %v: %v", full, raw["as_of"], err)
	case !c.asOf.IsZero() && !at.Equal(c.asOf):
		c.t.Errorf("%s: answered as of %s, asked %s", full, at, c.asOf)
	case c.asOf.IsZero() && time.Since(at) > time.Minute:
		c.t.Errorf("%s: answered as of %s, not now", full, at)
	}
	if getQuery(c.t, c.queryURL, c.tok, full, out) != http.StatusOK {
		c.t.Fatalf("%s: second ask failed", full)
	}
}

// sexAt says whether user u is of sex as of the check's phase.
func (c *oracleCheck) sexAt(sex string) func(string) bool {
	return func(u string) bool { return c.o.sex[u][c.phase-1] == sex }
}

func all(string) bool { return true }

func only(user string) func(string) bool { return func(u string) bool { return u == user } }

// endpoints checks every query endpoint as of the check's phase.
func (c *oracleCheck) endpoints() {
	from, to := c.day0.Add(5*time.Hour), c.day0.Add(75*time.Hour) // partial days at both ends
	rs := c.o.readings(c.phase, "heart_rate")
	rangeQ := func(extra ...string) url.Values {
		v := url.Values{"metric": {"heart_rate"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	ps := []float64{10, 50, 90}
	for _, sc := range []struct {
		name  string
		extra []string
		keep  func(string) bool
	}{{"tenant", nil, all}, {"user", []string{"user", "u05"}, only("u05")},
		{"female", []string{"sex", "female"}, c.sexAt("female")}, {"male", []string{"sex", "male"}, c.sexAt("male")}} {
		var res query.PercentilesResult
		c.get("/v1/percentiles", rangeQ(append(sc.extra, "p", "10,50,90", "per", "day")...), &res)
		vs := values(rs, from, to, sc.keep)
		if res.Suppressed || res.Count != uint64(len(vs)) || len(res.Percentiles) != 3 {
			c.t.Fatalf("percentiles %s: %+v; want %d readings", sc.name, res, len(vs))
		}
		for i, p := range ps {
			if res.Percentiles[i].Value != rankOf(vs, p) {
				c.t.Errorf("percentiles %s p%g: %g, want %g", sc.name, p, res.Percentiles[i].Value, rankOf(vs, p))
			}
		}
		days := map[string][]float64{}
		for _, r := range rs {
			if r.at >= from.UnixMilli() && r.at < to.UnixMilli() && sc.keep(r.user) {
				days[dayOf(r.at)] = append(days[dayOf(r.at)], r.value)
			}
		}
		if len(res.Days) != len(days) {
			c.t.Errorf("percentiles %s: %d days, want %d", sc.name, len(res.Days), len(days))
		}
		for _, d := range res.Days {
			dv := days[d.Day]
			sort.Float64s(dv)
			if d.Count != uint64(len(dv)) || len(dv) == 0 || d.Percentiles[1].Value != rankOf(dv, 50) {
				c.t.Errorf("percentiles %s %s: %+v, want %d readings", sc.name, d.Day, d, len(dv))
			}
		}
	}
	c.distribution(rangeQ("sex", "male"), values(rs, from, to, c.sexAt("male")))
	c.trends(rs, "")
	c.trends(rs, "u05")
	c.cohorts(rangeQ("by", "sex"), rs, from, to)
	c.compare(rangeQ("by", "sex", "user", "u00"), rs, from, to)
	var up query.PercentilesResponse
	c.get("/v1/users/u06/percentiles", rangeQ("p", "50"), &up)
	if vs := values(rs, from, to, only("u06")); up.Count != uint64(len(vs)) || up.Percentiles[0].Value != rankOf(vs, 50) {
		c.t.Errorf("user percentiles: %+v, want %d readings, median %g", up, len(vs), rankOf(vs, 50))
	}
	for _, u := range []string{"u03", "u05", "u07"} {
		c.summary(u)
	}
	c.overview(rs)
	c.alertSummary()
}

func (c *oracleCheck) distribution(params url.Values, vs []float64) {
	var res query.DistributionResult
	c.get("/v1/distribution", params, &res)
	mean, sd := meanSD(vs)
	if res.Count != uint64(len(vs)) || *res.Min != vs[0] || *res.Max != vs[len(vs)-1] || *res.Q1 != rankOf(vs, 25) ||
		*res.Median != rankOf(vs, 50) || *res.Q3 != rankOf(vs, 75) || !nearPtr(res.Mean, mean) || !nearPtr(res.Stddev, sd) {
		c.t.Errorf("distribution: count %d min %v q1 %v median %v q3 %v max %v mean %v sd %v; want %d %g %g %g %g %g %g %g",
			res.Count, *res.Min, *res.Q1, *res.Median, *res.Q3, *res.Max, *res.Mean, *res.Stddev,
			len(vs), vs[0], rankOf(vs, 25), rankOf(vs, 50), rankOf(vs, 75), vs[len(vs)-1], mean, sd)
	}
}

// trends: whole days, from the rollups now, from the readings as of a
// past phase.
func (c *oracleCheck) trends(rs []oReading, user string) {
	params := url.Values{"metric": {"heart_rate"}, "from": {c.day0.Format(time.DateOnly)}, "to": {c.day0.AddDate(0, 0, 4).Format(time.DateOnly)}}
	keep := all
	if user != "" {
		params.Set("user", user)
		keep = only(user)
	}
	var res query.TrendsResult
	c.get("/v1/trends", params, &res)
	days := map[string][]float64{}
	for _, r := range rs {
		if keep(r.user) {
			days[dayOf(r.at)] = append(days[dayOf(r.at)], r.value)
		}
	}
	if len(res.Days) != len(days) {
		c.t.Errorf("trends %q (%s): %d days, want %d", user, res.Source, len(res.Days), len(days))
	}
	for _, d := range res.Days {
		vs := days[d.Day]
		sort.Float64s(vs)
		mean, sd := meanSD(vs)
		if d.Count != uint64(len(vs)) || d.Min != vs[0] || d.Max != vs[len(vs)-1] || math.Abs(d.Avg-mean) > 1e-9*mean ||
			d.Stddev == nil || math.Abs(*d.Stddev-sd) > 1e-6*sd {
			c.t.Errorf("trends %q (%s) %s: %+v; want count %d min %g max %g avg %g sd %g", user, res.Source, d.Day, d, len(vs), vs[0], vs[len(vs)-1], mean, sd)
		}
	}
}

// userMeans are the mean readings of each user keep accepts who has any.
func userMeans(rs []oReading, from, to time.Time, keep func(string) bool) map[string][]float64 {
	out := map[string][]float64{}
	for _, r := range rs {
		if r.at >= from.UnixMilli() && r.at < to.UnixMilli() && keep(r.user) {
			out[r.user] = append(out[r.user], r.value)
		}
	}
	return out
}

func (c *oracleCheck) cohorts(params url.Values, rs []oReading, from, to time.Time) {
	var res query.CohortsResult
	c.get("/v1/cohorts", params, &res)
	if len(res.Cohorts) != 2 {
		c.t.Fatalf("cohorts: %+v", res)
	}
	for _, row := range res.Cohorts {
		vs := values(rs, from, to, c.sexAt(row.Value))
		users := userMeans(rs, from, to, c.sexAt(row.Value))
		mean, sd := meanSD(vs)
		if row.Suppressed || row.Users != uint64(len(users)) || row.Count != uint64(len(vs)) || !nearPtr(row.Mean, mean) || !nearPtr(row.Stddev, sd) ||
			*row.Median != rankOf(vs, 50) || *row.P10 != rankOf(vs, 10) || *row.P90 != rankOf(vs, 90) {
			c.t.Errorf("cohort %s: %+v; want %d users, %d readings, mean %g", row.Value, row, len(users), len(vs), mean)
		}
	}
}

func (c *oracleCheck) compare(params url.Values, rs []oReading, from, to time.Time) {
	var res query.CompareResult
	c.get("/v1/compare", params, &res)
	sex := c.o.sex["u00"][c.phase-1]
	users := userMeans(rs, from, to, c.sexAt(sex))
	var means []float64
	var count int
	for _, vs := range users {
		m, _ := meanSD(vs)
		means = append(means, m)
		count += len(vs)
	}
	sort.Float64s(means)
	var sum float64
	for _, m := range means {
		sum += m
	}
	own := values(rs, from, to, only("u00"))
	ownMean, _ := meanSD(own)
	if res.Cohort.Value != sex || res.Cohort.Users != uint64(len(users)) || res.Cohort.Count != uint64(count) ||
		!nearPtr(res.Cohort.Mean, sum/float64(len(means))) || *res.Cohort.Median != means[len(means)/2] ||
		res.User.Count != uint64(len(own)) || !nearPtr(res.User.Mean, ownMean) || *res.User.Median != rankOf(own, 50) {
		c.t.Errorf("compare: %+v (cohort %+v, user %+v); want %s, %d users, %d readings, mean of means %g; user %d readings, mean %g",
			res, res.Cohort, res.User, sex, len(users), count, sum/float64(len(means)), len(own), ownMean)
	}
}

func (c *oracleCheck) summary(user string) {
	var res query.SummaryResult
	c.get("/v1/users/"+user+"/summary", url.Values{}, &res)
	var newest int64
	var want []string
	for _, m := range []string{"heart_rate", "spo2"} {
		var n int
		var latest oReading
		for _, r := range c.o.readings(c.phase, m) {
			if r.user != user {
				continue
			}
			n++
			if r.at > latest.at {
				latest = r
			}
		}
		if n > 0 {
			want = append(want, fmt.Sprintf("%s %d %g@%d", m, n, latest.value, latest.at))
			newest = max(newest, latest.at)
		}
	}
	var got []string
	for i, l := range res.Latest {
		got = append(got, fmt.Sprintf("%s %d %g@%d", l.Metric, res.Counts[i].Count, l.Value, l.MeasuredAt.UnixMilli()))
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		c.t.Errorf("summary %s: %v, want %v", user, got, want)
	}
	open := map[string]uint64{"critical": 0, "warning": 0, "info": 0}
	for _, a := range c.o.alerts(c.phase) {
		if a.user == user && a.open && a.start >= newest-query.OpenAlertWindow.Milliseconds() && a.start <= newest {
			open[a.severity]++
		}
	}
	if fmt.Sprint(res.OpenAlerts) != fmt.Sprint(open) {
		c.t.Errorf("summary %s: open alerts %v, want %v", user, res.OpenAlerts, open)
	}
}

func (c *oracleCheck) overview(rs []oReading) {
	var res query.OverviewResult
	c.get("/v1/overview", url.Values{"metric": {"heart_rate"}}, &res)
	last := map[string]string{}
	counts := map[string]uint64{}
	first, lastDay := "", ""
	for _, r := range rs {
		d := dayOf(r.at)
		counts[r.user]++
		last[r.user] = max(last[r.user], d)
		if first == "" || d < first {
			first = d
		}
		lastDay = max(lastDay, d)
	}
	if res.Readings != uint64(len(rs)) || res.FirstDay != first || res.LastDay != lastDay || len(res.Users) != len(counts) {
		c.t.Errorf("overview: %d readings %s..%s, %d users; want %d %s..%s %d", res.Readings, res.FirstDay, res.LastDay, len(res.Users), len(rs), first, lastDay, len(counts))
	}
	for _, u := range res.Users {
		if u.Readings != counts[u.ID] || u.LastDay != last[u.ID] {
			c.t.Errorf("overview user %+v; want %d readings, last day %s", u, counts[u.ID], last[u.ID])
		}
	}
}

func (c *oracleCheck) alertSummary() {
	var res query.AlertSummaryResult
	c.get("/v1/alerts/summary", url.Values{"from": {c.day0.Format(time.DateOnly)}, "to": {c.day0.AddDate(0, 0, 4).Format(time.DateOnly)}}, &res)
	want := map[string]*query.AlertDay{}
	day := func(ms int64) *query.AlertDay {
		d := dayOf(ms)
		if want[d] == nil {
			want[d] = &query.AlertDay{Day: d}
		}
		return want[d]
	}
	now := c.o.alerts(c.phase)
	for _, a := range now {
		switch a.severity {
		case "critical":
			day(a.start).Critical++
		case "warning":
			day(a.start).Warning++
		}
	}
	for _, a := range c.o.alerts(1) {
		if !hasAlert(now, a) {
			day(a.start).Withdrawn++
		}
	}
	var got, exp []string
	for _, d := range res.Days {
		got = append(got, fmt.Sprintf("%+v", d))
	}
	var keys []string
	for d := range want {
		keys = append(keys, d)
	}
	sort.Strings(keys)
	for _, d := range keys {
		exp = append(exp, fmt.Sprintf("%+v", *want[d]))
	}
	if strings.Join(got, " ") != strings.Join(exp, " ") {
		c.t.Errorf("alert summary: %v, want %v", got, exp)
	}
}
