package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/sample/sampletest"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/query"
)

// queryUser is one user of the query test: their readings and profile.
type queryUser struct {
	id     string
	sex    string
	values []float64
	rows   []sample.HeartRate
}

// getQuery GETs a query API path with token and decodes a 200 answer.
func getQuery(t *testing.T, base, token, path string, out any) int {
	t.Helper()
	status, body := askQuery(t, base, token, path)
	if status == http.StatusOK && out != nil {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			t.Fatalf("decode %s: %v", path, err)
		}
	}
	return status
}

// withoutAsOf is a JSON answer without its as_of, the moment it was asked.
func withoutAsOf(t *testing.T, raw json.RawMessage) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
	delete(m, "as_of")
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// near compares floats with a relative tolerance of 1e-9: sums of the
// same values in another order differ in the last bits.
func near(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

func nearPtr(p *float64, want float64) bool { return p != nil && near(*p, want) }

// independent statistics over plain values, written without the query
// package: sorted copy, two-pass mean and sample stddev.
type stats struct {
	sorted       []float64
	mean, stddev float64
}

func statsOf(values []float64) stats {
	s := stats{sorted: append([]float64(nil), values...)}
	sort.Float64s(s.sorted)
	s.mean, s.stddev = meanSD(values)
	return s
}

func (s stats) rank(p float64) float64 { return rankOf(s.sorted, p) }

// TestQueryAPI runs the pipeline on part of the Fitbit sample with
// synthetic profiles (6 female users, 2 male) and checks every endpoint's
// numbers against the same figures computed here from the input; the
// suppression of the 2-user cohort; 401 without a token; that a token of
// another tenant never sees this tenant's readings (and the reverse); and
// read-your-writes with the ingest response's consistency token.
func TestQueryAPI(t *testing.T) {
	s, ctx := newStackFor(t, 4*time.Minute)
	ingestURL := s.startPipeline(ctx)
	queryURL := s.startQuery(ctx)

	all := sampletest.HeartRates(t)
	const perUser = 1200
	var users []*queryUser
	byID := map[string]*queryUser{}
	for _, r := range all {
		u := byID[r.UserID()]
		if u == nil {
			u = &queryUser{id: r.UserID(), sex: "female"}
			if len(users) >= 6 {
				u.sex = "male"
			}
			byID[u.id] = u
			users = append(users, u)
		}
		if len(u.rows) < perUser {
			u.rows = append(u.rows, r)
			u.values = append(u.values, r.Value)
		}
	}
	if len(users) != 8 {
		t.Fatalf("sample has %d users, want 8", len(users))
	}

	// Profiles and paired devices (with a model) through ingest.
	var profiles, devices []any
	for i, u := range users {
		profiles = append(profiles, map[string]any{"event_id": u.id + "-registered", "user_id": u.id, "kind": "registered",
			"birth_year": 1980 + i, "sex": u.sex, "region": "US-CA", "occurred_at": "2016-01-01T00:00:00Z"})
		devices = append(devices, map[string]any{"event_id": u.rows[0].DeviceID() + "-paired", "user_id": u.id, "device_id": u.rows[0].DeviceID(),
			"kind": "paired", "model": "fitbit-charge-hr", "occurred_at": "2016-01-01T00:00:00Z"})
	}
	for _, b := range []struct {
		path   string
		events []any
	}{{"/v1/profile-events", profiles}, {"/v1/device-events", devices}} {
		var resp ingest.BatchResponse
		if code := s.postJSON(ingestURL+b.path, map[string]any{"gateway_id": "gw-q", "events": b.events}, &resp); code != http.StatusOK || resp.Accepted != len(b.events) {
			t.Fatalf("%s: status %d, %d accepted", b.path, code, resp.Accepted)
		}
	}
	// Every user's readings but the last user's final 200, then those 200
	// alone: their consistency token covers everything of that user.
	var first []sample.HeartRate
	for _, u := range users {
		first = append(first, u.rows...)
	}
	last := users[len(users)-1]
	tail := first[len(first)-200:]
	s.postReadings(ingestURL, "gw-q", first[:len(first)-200], 1000)
	var resp ingest.BatchResponse
	items := make([]wireReading, len(tail))
	for i, r := range tail {
		items[i] = wire(r)
	}
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-q", "readings": items}, &resp); code != http.StatusOK || resp.ConsistencyToken == "" {
		t.Fatalf("last batch: status %d, token %q", code, resp.ConsistencyToken)
	}
	tok := s.queryToken
	rangeQ := "from=2016-03-01&to=2016-06-01"

	t.Run("read your writes", func(t *testing.T) {
		var res query.PercentilesResult
		start := time.Now()
		path := "/v1/percentiles?metric=heart_rate&user=" + last.id + "&" + rangeQ + "&wait=10s&consistency=" + url.QueryEscape(resp.ConsistencyToken)
		if code := getQuery(t, queryURL, tok, path, &res); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		if res.Stale || res.Count != uint64(len(last.values)) {
			t.Fatalf("stale %v, count %d after %s; want not stale and %d", res.Stale, res.Count, time.Since(start), len(last.values))
		}
		t.Logf("read-your-writes answered after %s", time.Since(start).Round(time.Millisecond))
	})

	// Wait until everything is stored before checking the numbers.
	var everything []float64
	for _, u := range users {
		everything = append(everything, u.values...)
	}
	eventually(t, 90*time.Second, "every reading to be queryable", func() (bool, string) {
		var res query.PercentilesResult
		getQuery(t, queryURL, tok, "/v1/percentiles?metric=heart_rate&"+rangeQ, &res)
		if res.Count > uint64(len(everything)) {
			t.Fatalf("%d readings counted, %d sent", res.Count, len(everything))
		}
		return res.Count == uint64(len(everything)), fmt.Sprintf("%d of %d", res.Count, len(everything))
	})
	eventually(t, 30*time.Second, "the user dimension to know every user", func() (bool, string) {
		var res query.CohortsResult
		getQuery(t, queryURL, tok, "/v1/cohorts?metric=heart_rate&by=sex&"+rangeQ, &res)
		var n uint64
		for _, c := range res.Cohorts {
			n += c.Users
		}
		return n == 8, fmt.Sprintf("%d users in cohorts", n)
	})
	tenantStats := statsOf(everything)
	var female []float64
	var femaleMeans []float64
	for _, u := range users {
		if u.sex == "female" {
			female = append(female, u.values...)
			femaleMeans = append(femaleMeans, statsOf(u.values).mean)
		}
	}

	t.Run("percentiles", func(t *testing.T) {
		ps := []float64{0, 10, 50, 90, 99, 100}
		var res query.PercentilesResult
		getQuery(t, queryURL, tok, "/v1/percentiles?metric=heart_rate&p=0,10,50,90,99,100&per=day&"+rangeQ, &res)
		for i, p := range ps {
			if res.Percentiles[i].P != p || res.Percentiles[i].Value != tenantStats.rank(p) {
				t.Errorf("tenant p%g = %+v; want %g", p, res.Percentiles[i], tenantStats.rank(p))
			}
		}
		perDay := map[string][]float64{}
		for _, u := range users {
			for _, r := range u.rows {
				d := r.Time.UTC().Format(time.DateOnly)
				perDay[d] = append(perDay[d], r.Value)
			}
		}
		if len(res.Days) != len(perDay) {
			t.Fatalf("%d days; want %d", len(res.Days), len(perDay))
		}
		for _, d := range res.Days {
			want := statsOf(perDay[d.Day])
			if d.Count != uint64(len(perDay[d.Day])) || d.Percentiles[2].Value != want.rank(50) || d.Percentiles[4].Value != want.rank(99) {
				t.Errorf("day %s: %+v; want count %d p50 %g p99 %g", d.Day, d, len(perDay[d.Day]), want.rank(50), want.rank(99))
			}
		}
		// A cohort filter: females (6 users) answered, males (2) suppressed.
		var f, m query.PercentilesResult
		getQuery(t, queryURL, tok, "/v1/percentiles?metric=heart_rate&p=50&sex=female&"+rangeQ, &f)
		getQuery(t, queryURL, tok, "/v1/percentiles?metric=heart_rate&p=50&sex=male&"+rangeQ, &m)
		if f.Suppressed || f.Count != uint64(len(female)) || f.Percentiles[0].Value != statsOf(female).rank(50) {
			t.Errorf("female cohort: %+v", f)
		}
		if !m.Suppressed || m.Count != 0 || len(m.Percentiles) != 0 || m.Reason == "" {
			t.Errorf("male cohort must be suppressed: %+v", m)
		}
	})

	t.Run("distribution", func(t *testing.T) {
		for _, bins := range []string{"20", "auto"} {
			var res query.DistributionResult
			getQuery(t, queryURL, tok, "/v1/distribution?metric=heart_rate&bins="+bins+"&"+rangeQ, &res)
			st := tenantStats
			lo, hi := st.sorted[0], st.sorted[len(st.sorted)-1]
			if res.Count != uint64(len(everything)) || *res.Min != lo || *res.Max != hi || *res.Q1 != st.rank(25) ||
				*res.Median != st.rank(50) || *res.Q3 != st.rank(75) || !nearPtr(res.Mean, st.mean) || !nearPtr(res.Stddev, st.stddev) {
				t.Errorf("bins=%s: %+v; want min %g q1 %g median %g q3 %g max %g mean %g stddev %g", bins, res, lo, st.rank(25), st.rank(50), st.rank(75), hi, st.mean, st.stddev)
			}
			k := 20
			if bins == "auto" {
				k = 0 // Freedman–Diaconis
			}
			want := histogramCounts(everything, k)
			k = len(want)
			w := (hi - lo) / float64(k)
			if len(res.Histogram) != k {
				t.Fatalf("bins=%s: %d bins; want %d", bins, len(res.Histogram), k)
			}
			for i, b := range res.Histogram {
				if b.Count != want[i] || !near(b.Lower, lo+float64(i)*w) {
					t.Errorf("bins=%s bin %d: %+v; want lower %g count %d", bins, i, b, lo+float64(i)*w, want[i])
				}
			}
		}
	})

	t.Run("cohorts", func(t *testing.T) {
		var res query.CohortsResult
		getQuery(t, queryURL, tok, "/v1/cohorts?metric=heart_rate&by=sex&"+rangeQ, &res)
		if len(res.Cohorts) != 2 || res.Cohorts[0].Value != "female" || res.Cohorts[1].Value != "male" {
			t.Fatalf("cohorts %+v", res.Cohorts)
		}
		f, m := res.Cohorts[0], res.Cohorts[1]
		st := statsOf(female)
		if f.Suppressed || f.Users != 6 || f.Count != uint64(len(female)) || !nearPtr(f.Mean, st.mean) || !nearPtr(f.Stddev, st.stddev) ||
			*f.Median != st.rank(50) || *f.P10 != st.rank(10) || *f.P90 != st.rank(90) {
			t.Errorf("female: %+v; want users 6 count %d mean %g median %g p10 %g p90 %g stddev %g", f, len(female), st.mean, st.rank(50), st.rank(10), st.rank(90), st.stddev)
		}
		if !m.Suppressed || m.Users != 2 || m.Mean != nil || m.Count != 0 || !strings.Contains(m.Reason, "fewer than the minimum of 5") {
			t.Errorf("male must be suppressed: %+v", m)
		}
	})

	t.Run("compare", func(t *testing.T) {
		u := users[1]
		var res query.CompareResult
		getQuery(t, queryURL, tok, "/v1/compare?metric=heart_rate&by=sex&user="+u.id+"&"+rangeQ, &res)
		own := statsOf(u.values)
		means := statsOf(femaleMeans)
		var below, equal float64
		for _, m := range femaleMeans {
			if m < own.mean {
				below++
			} else if m == own.mean {
				equal++
			}
		}
		wantRank := 100 * (below + equal/2) / 6
		wantDiff := (own.mean - means.mean) / means.mean * 100
		if res.Suppressed || res.User.Count != uint64(len(u.values)) || !nearPtr(res.User.Mean, own.mean) || *res.User.Median != own.rank(50) ||
			res.Cohort.Value != "female" || res.Cohort.Users != 6 || res.Cohort.Count != uint64(len(female)) ||
			!nearPtr(res.Cohort.Mean, means.mean) || !nearPtr(res.Cohort.Median, means.rank(50)) ||
			!nearPtr(res.PercentDifference, wantDiff) || !nearPtr(res.PercentileRank, wantRank) {
			t.Errorf("compare %+v; want user mean %g median %g, cohort mean %g median %g, diff %g rank %g",
				res, own.mean, own.rank(50), means.mean, means.rank(50), wantDiff, wantRank)
		}
		var male query.CompareResult
		getQuery(t, queryURL, tok, "/v1/compare?metric=heart_rate&by=sex&user="+last.id+"&"+rangeQ, &male)
		if !male.Suppressed || male.Cohort.Mean != nil || male.PercentileRank != nil || male.Reason == "" {
			t.Errorf("a 2-user cohort must be suppressed: %+v", male)
		}
		// A user with no profile or device events has no cohort: 404, not
		// a 503 that says the store did not answer.
		status, body := askQuery(t, queryURL, tok, "/v1/compare?metric=heart_rate&by=sex&user=nobody-"+u.id+"&"+rangeQ)
		var apiErr query.APIError
		if err := json.Unmarshal([]byte(body), &apiErr); err != nil || status != http.StatusNotFound || apiErr.Code != "unknown_user" || apiErr.Parameter != "user" {
			t.Errorf("compare with an unknown user: %d %s; want 404 unknown_user on user", status, body)
		}
	})

	t.Run("trends", func(t *testing.T) {
		u := users[0]
		var res query.TrendsResult
		getQuery(t, queryURL, tok, "/v1/trends?metric=heart_rate&user="+u.id+"&"+rangeQ, &res)
		if len(res.Days) != 1 {
			t.Fatalf("%d days; want 1 (the sample has one day per user)", len(res.Days))
		}
		st := statsOf(u.values)
		d := res.Days[0]
		if d.Day != u.rows[0].Time.Format(time.DateOnly) || d.Count != uint64(len(u.values)) || !near(d.Avg, st.mean) ||
			d.Min != st.sorted[0] || d.Max != st.sorted[len(st.sorted)-1] || !nearPtr(d.Stddev, st.stddev) {
			t.Errorf("trend day %+v; want count %d avg %g min %g max %g stddev %g", d, len(u.values), st.mean, st.sorted[0], st.sorted[len(st.sorted)-1], st.stddev)
		}
		var period query.TrendsResult
		to := u.rows[0].Time.Add(24 * time.Hour).Format(time.DateOnly)
		getQuery(t, queryURL, tok, "/v1/trends?metric=heart_rate&period=week&to="+to, &period)
		var n uint64
		for _, d := range period.Days {
			n += d.Count
		}
		var want uint64
		for _, v := range users {
			if day := v.rows[0].Time; !day.Before(period.From) && day.Before(period.To) {
				want += uint64(len(v.values))
			}
		}
		if n != want || period.From.Add(7*24*time.Hour) != period.To {
			t.Errorf("week to %s: %d readings from %s to %s; want %d over 7 days", to, n, period.From, period.To, want)
		}
	})

	t.Run("summary", func(t *testing.T) {
		u := users[2]
		var res query.SummaryResult
		getQuery(t, queryURL, tok, "/v1/users/"+u.id+"/summary", &res)
		newest := u.rows[0]
		for _, r := range u.rows {
			if r.Time.After(newest.Time) {
				newest = r
			}
		}
		if len(res.Latest) != 1 || res.Latest[0].Value != newest.Value || !res.Latest[0].MeasuredAt.Equal(newest.Time) ||
			res.Counts[0].Count != uint64(len(u.values)) || res.OpenAlerts["critical"] != 0 {
			t.Errorf("summary %+v; want latest %g at %s, count %d", res, newest.Value, newest.Time, len(u.values))
		}
	})

	t.Run("authentication and tenant isolation", func(t *testing.T) {
		if code := getQuery(t, queryURL, "", "/v1/percentiles?metric=heart_rate", nil); code != http.StatusUnauthorized {
			t.Errorf("no token: %d", code)
		}
		if code := getQuery(t, queryURL, s.key, "/v1/percentiles?metric=heart_rate", nil); code != http.StatusUnauthorized {
			t.Errorf("a gateway key as token: %d", code)
		}
		// Tenant B posts 50 readings for a user id that tenant A has too.
		other := "other-" + s.id
		keyB := s.newKey(ctx, other)
		tokB := s.newCredential(ctx, credential.AnalystTokens, other)
		u := users[0]
		var r ingest.BatchResponse
		pair := map[string]any{"event_id": "b-pair", "user_id": u.id, "device_id": u.rows[0].DeviceID(), "kind": "paired", "occurred_at": "2016-01-01T00:00:00Z"}
		if code := postAs(t, keyB, ingestURL+"/v1/device-events", map[string]any{"gateway_id": "gw-b", "events": []any{pair}}, &r); code != http.StatusOK {
			t.Fatalf("tenant B pairing: %d", code)
		}
		itemsB := make([]wireReading, 50)
		for i := range itemsB {
			itemsB[i] = wire(u.rows[i])
		}
		if code := postAs(t, keyB, ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-b", "readings": itemsB}, &r); code != http.StatusOK {
			t.Fatalf("tenant B readings: %d", code)
		}
		path := "/v1/percentiles?metric=heart_rate&user=" + u.id + "&" + rangeQ + "&wait=10s&consistency=" + url.QueryEscape(r.ConsistencyToken)
		var b, a query.PercentilesResult
		getQuery(t, queryURL, tokB, path, &b)
		getQuery(t, queryURL, tok, path, &a)
		if b.Stale || b.Count != 50 || a.Count != uint64(len(u.values)) {
			t.Errorf("tenant B sees %d (stale %v), tenant A %d; want 50 and %d", b.Count, b.Stale, a.Count, len(u.values))
		}
		var bt query.PercentilesResult
		getQuery(t, queryURL, tokB, "/v1/percentiles?metric=heart_rate&"+rangeQ, &bt)
		if bt.Count != 50 {
			t.Errorf("tenant B's whole tenant: %d readings; want its own 50", bt.Count)
		}
	})

	// The whole-day ranges above were answered from the value rollup. A
	// second service reads only the readings (the raw path); both must
	// give identical answers, also over a range with partial days at both
	// ends (rollup in the middle, readings at the ends), and still after a
	// user is erased (hidden at once, then deleted by mutations) and after
	// both tables are merged.
	rawCfg := s.queryConfig()
	rawCfg.ValuesFromRollup = false
	rawURL := s.startQueryWith(ctx, rawCfg)
	erased := users[5] // female: the female cohort keeps the minimum of 5
	var kept []float64
	for _, u := range users {
		if u != erased {
			kept = append(kept, u.values...)
		}
	}
	keptStats := statsOf(kept)
	t.Run("rollup path equals raw path", func(t *testing.T) {
		ch := s.openWarehouse(t, ctx)
		// Partial days: from the middle of the earliest user's day to the
		// middle of the latest's.
		first, last := users[0].rows[len(users[0].rows)/2].Time, users[0].rows[len(users[0].rows)/2].Time
		for _, u := range users {
			if m := u.rows[len(u.rows)/2].Time; m.Before(first) {
				first = m
			} else if m.After(last) {
				last = m
			}
		}
		partial := "from=" + url.QueryEscape(first.UTC().Format(time.RFC3339Nano)) + "&to=" + url.QueryEscape(last.UTC().Format(time.RFC3339Nano))
		paths := []string{
			"/v1/percentiles?metric=heart_rate&p=0,10,50,90,99,100&per=day&" + rangeQ,
			"/v1/percentiles?metric=heart_rate&p=25,50,75&sex=female&" + rangeQ,
			"/v1/distribution?metric=heart_rate&bins=auto&" + rangeQ,
			"/v1/distribution?metric=heart_rate&bins=20&region=US-CA&" + rangeQ,
			"/v1/cohorts?metric=heart_rate&by=sex&" + rangeQ,
			"/v1/compare?metric=heart_rate&by=sex&user=" + users[1].id + "&" + rangeQ,
			"/v1/percentiles?metric=heart_rate&p=1,50,99&per=day&" + partial,
			"/v1/distribution?metric=heart_rate&bins=auto&sex=female&" + partial,
		}
		same := func(stage string) {
			t.Helper()
			for _, p := range paths {
				var a, b json.RawMessage
				getQuery(t, queryURL, tok, p, &a)
				getQuery(t, rawURL, tok, p, &b)
				a, b = withoutAsOf(t, a), withoutAsOf(t, b) // the moment each was asked
				if string(a) != string(b) || len(a) == 0 {
					t.Errorf("%s: %s\nrollup path: %s\nraw path:    %s", stage, p, a, b)
				}
			}
		}
		// The rollup holds every reading once, and the partial range's
		// count is the independent one.
		var rolled int64 // signed since revisions: a retracted version counts -1
		if err := ch.QueryRow(ctx, "SELECT sum(readings) FROM "+s.wh.Database+"."+warehouse.ValuesRollupTable+" WHERE tenant_id = ?", s.tenant).Scan(&rolled); err != nil {
			t.Fatal(err)
		}
		if rolled != int64(len(everything)) {
			t.Fatalf("value rollup counts %d readings; want %d", rolled, len(everything))
		}
		var inRange uint64
		for _, u := range users {
			for _, r := range u.rows {
				if !r.Time.Before(first) && r.Time.Before(last) {
					inRange++
				}
			}
		}
		var pr query.PercentilesResult
		getQuery(t, queryURL, tok, "/v1/percentiles?metric=heart_rate&p=50&"+partial, &pr)
		if pr.Count != inRange {
			t.Errorf("partial-day range: %d readings; want %d", pr.Count, inRange)
		}
		same("before the erasure")

		s.postEvents(ingestURL, "/v1/profile-events", []any{map[string]any{"event_id": erased.id + "-erase", "user_id": erased.id,
			"kind": "erasure_requested", "occurred_at": "2016-12-01T00:00:00Z"}})
		eventually(t, 60*time.Second, "the erasure to hide the user", func() (bool, string) {
			var res query.DistributionResult
			getQuery(t, queryURL, tok, "/v1/distribution?metric=heart_rate&"+rangeQ, &res)
			return res.Count == uint64(len(kept)), fmt.Sprintf("%d readings, want %d", res.Count, len(kept))
		})
		same("erasure stored")
		mutationsDone(t, ctx, ch, s.wh.Database, 90*time.Second)
		var left uint64
		if err := ch.QueryRow(ctx, "SELECT count() FROM "+s.wh.Database+"."+warehouse.ValuesRollupTable+" WHERE tenant_id = ? AND user_id = ?", s.tenant, erased.id).Scan(&left); err != nil || left != 0 {
			t.Errorf("value rollup rows of the erased user after the deletes: %d (%v)", left, err)
		}
		same("deletes done")
		for _, table := range []string{warehouse.ReadingsTable, warehouse.ValuesRollupTable} {
			if err := optimizeFinal(ctx, ch, s.wh.Database, table); err != nil {
				t.Fatal(err)
			}
		}
		same("merged")
		var res query.DistributionResult
		getQuery(t, queryURL, tok, "/v1/distribution?metric=heart_rate&"+rangeQ, &res)
		if res.Count != uint64(len(kept)) || !nearPtr(res.Mean, keptStats.mean) || *res.Median != keptStats.rank(50) || !nearPtr(res.Stddev, keptStats.stddev) {
			t.Errorf("after the erasure: %+v; want count %d mean %g median %g stddev %g", res, len(kept), keptStats.mean, keptStats.rank(50), keptStats.stddev)
		}
	})

	// Last, as it breaks the rollups' premise (rows inserted twice by
	// hand, not by the projector, which the rollup path would count
	// twice): the raw path's answers stay exact when partitions are merged
	// (read without grouping) and when copies then arrive in a merged
	// partition (grouped again).
	t.Run("merged partitions and copies", func(t *testing.T) {
		ch := s.openWarehouse(t, ctx)
		check := func(stage string) {
			t.Helper()
			var res query.DistributionResult
			getQuery(t, rawURL, tok, "/v1/distribution?metric=heart_rate&"+rangeQ, &res)
			if res.Count != uint64(len(kept)) || !nearPtr(res.Mean, keptStats.mean) || *res.Median != keptStats.rank(50) {
				t.Errorf("%s: count %d mean %v; want %d %g", stage, res.Count, res.Mean, len(kept), keptStats.mean)
			}
		}
		db := s.wh.Database
		if err := optimizeFinal(ctx, ch, db, warehouse.ReadingsTable); err != nil {
			t.Fatal(err)
		}
		check("merged")
		cols := strings.Join(warehouse.TableColumns(warehouse.ReadingsTable), ", ")
		if err := ch.Exec(ctx, fmt.Sprintf("INSERT INTO %s.readings (%s) SELECT %s FROM %s.readings WHERE user_id = ?", db, cols, cols, db), users[0].id); err != nil {
			t.Fatal(err)
		}
		var stored uint64
		if err := ch.QueryRow(ctx, "SELECT count() FROM "+db+".readings WHERE tenant_id = ?", s.tenant).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored <= uint64(len(kept)) {
			t.Fatalf("%d rows stored: the copies did not arrive", stored)
		}
		check("copies in a merged partition")
	})
}
