package query

import (
	"context"
	"encoding/json"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/consistency"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/internal/promreg"
	"github.com/vitalshq/vitals/internal/quota"
)

func TestParsePercentiles(t *testing.T) {
	tests := []struct {
		in      string
		want    []float64
		wantErr bool
	}{
		{"", []float64{50, 90, 99}, false},
		{"50", []float64{50}, false},
		{"0, 99.9,100", []float64{0, 99.9, 100}, false},
		{"101", nil, true},
		{"-1", nil, true},
		{"NaN", nil, true},
		{"p50", nil, true},
		{"1,2,3,4", nil, true}, // more than the limit of 3 used here
		{"50,", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePercentiles(tc.in, 3)
			if (err != nil) != tc.wantErr || (!tc.wantErr && !reflect.DeepEqual(got, tc.want)) {
				t.Fatalf("ParsePercentiles(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

// fakeTokens stands in for the PostgreSQL token store (the integration
// tests use the real one).
type fakeTokens map[string]credential.Credential

const goodToken, revokedToken, otherToken = "va_good", "va_revoked", "va_other"

func (f fakeTokens) Verify(_ context.Context, presented string) (credential.Credential, error) {
	c, ok := f[presented]
	switch {
	case !ok:
		return c, credential.ErrUnknown
	case c.RevokedAt != nil:
		return c, credential.ErrRevoked
	}
	return c, nil
}

// newTestService has no ClickHouse, PostgreSQL or Kafka: every request
// these tests make must be answered before any of them is needed.
func newTestService() *Service {
	now := time.Now()
	cfg := DefaultConfig()
	cfg.PerToken = quota.Limits{} // these tests ask many questions at once; TestLimits checks the shares
	return newTestServiceWith(cfg, fakeTokens{
		goodToken:    {ID: "good", Tenant: "t1"},
		revokedToken: {ID: "revoked", Tenant: "t1", RevokedAt: &now},
	})
}

func newTestServiceWith(cfg Config, tokens fakeTokens) *Service {
	s := newService(cfg, zerolog.Nop())
	s.tokens, s.reg, s.trail = tokens, promreg.New(), &memTrail{}
	s.handler = s.routes()
	if _, err := promreg.Register(s.reg, s.m.collectors()...); err != nil {
		panic(err) // a fresh registry holds nothing of ours
	}
	return s
}

func get(t *testing.T, s *Service, path, token string) (int, APIError) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	s.Handler().ServeHTTP(rec, req)
	var e APIError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("%s: status %d, body %q is not JSON", path, rec.Code, rec.Body)
	}
	return rec.Code, e
}

// Every API endpoint needs a valid, unrevoked analyst token; the
// dashboard's page and /healthz need none.
func TestAuthentication(t *testing.T) {
	s := newTestService()
	paths := []string{"/v1/percentiles?metric=heart_rate", "/v1/distribution?metric=heart_rate", "/v1/compare?metric=heart_rate&user=u&by=sex",
		"/v1/cohorts?metric=heart_rate&by=sex", "/v1/trends?metric=heart_rate", "/v1/users/u/summary", "/v1/users/u/percentiles?metric=heart_rate"}
	for _, p := range paths {
		for _, tc := range []struct {
			token, code string
			status      int
		}{
			{"", "unauthenticated", http.StatusUnauthorized},
			{"va_unknown", "unauthenticated", http.StatusUnauthorized},
			{"vk_a_gateway_key", "unauthenticated", http.StatusUnauthorized},
			{revokedToken, "token_revoked", http.StatusForbidden},
		} {
			if status, e := get(t, s, p, tc.token); status != tc.status || e.Code != tc.code {
				t.Errorf("%s with token %q: %d %+v; want %d %s", p, tc.token, status, e, tc.status, tc.code)
			}
		}
	}
	for _, p := range []string{"/healthz", "/dashboard/"} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s without a token: %d; want 200", p, rec.Code)
		}
	}
}

// Invalid requests are answered 400 naming the parameter, before any SQL
// is built (the service here has no ClickHouse connection at all).
func TestRejectsBadParameters(t *testing.T) {
	s := newTestService()
	foreign := consistency.Token{"other.readings.v1": {0: 1}}.Encode()
	const day = "from=2016-05-02T00:00:00Z&to=2016-05-03T00:00:00Z"
	tests := []struct {
		name, path, param string
	}{
		{"legacy bad user", "/v1/users/a%20b/percentiles?metric=heart_rate&" + day, "user"},
		{"legacy sql in user", "/v1/users/x';DROP%20TABLE/percentiles?metric=heart_rate&" + day, "user"},
		{"legacy unknown metric", "/v1/users/u/percentiles?metric=mood&" + day, "metric"},
		{"legacy missing from", "/v1/users/u/percentiles?metric=heart_rate&to=2016-05-03T00:00:00Z", "from"},
		{"legacy bad p", "/v1/users/u/percentiles?metric=heart_rate&" + day + "&p=50,150", "p"},
		{"missing metric", "/v1/percentiles", "metric"},
		{"unknown metric", "/v1/percentiles?metric=mood", "metric"},
		{"bad from", "/v1/percentiles?metric=heart_rate&from=yesterday", "from"},
		{"bad to", "/v1/distribution?metric=heart_rate&to=2016-13-01", "to"},
		{"to before from", "/v1/percentiles?metric=heart_rate&from=2016-05-03&to=2016-05-02", "to"},
		{"empty range", "/v1/percentiles?metric=heart_rate&from=2016-05-03&to=2016-05-03", "to"},
		{"range too long", "/v1/percentiles?metric=heart_rate&from=1900-01-01&to=2016-05-03", "from"},
		{"percentile above 100", "/v1/percentiles?metric=heart_rate&p=50,100.5", "p"},
		{"percentile not a number", "/v1/percentiles?metric=heart_rate&p=median", "p"},
		{"too many percentiles", "/v1/percentiles?metric=heart_rate&p=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33", "p"},
		{"per week", "/v1/percentiles?metric=heart_rate&per=week", "per"},
		{"bad user", "/v1/percentiles?metric=heart_rate&user=a%20b", "user"},
		{"user and cohort", "/v1/percentiles?metric=heart_rate&user=u&sex=female", "user"},
		{"unknown sex", "/v1/percentiles?metric=heart_rate&sex=f", "sex"},
		{"bad age band", "/v1/distribution?metric=heart_rate&age_band=30-35", "age_band"},
		{"bad region", "/v1/distribution?metric=heart_rate&region=germany", "region"},
		{"bad device model", "/v1/distribution?metric=heart_rate&device_model=a%27b", "device_model"},
		{"bins zero", "/v1/distribution?metric=heart_rate&bins=0", "bins"},
		{"bins too many", "/v1/distribution?metric=heart_rate&bins=1001", "bins"},
		{"bins word", "/v1/distribution?metric=heart_rate&bins=many", "bins"},
		{"compare without by", "/v1/compare?metric=heart_rate&user=u", "by"},
		{"compare unknown dimension", "/v1/compare?metric=heart_rate&user=u&by=weight", "by"},
		{"compare without user", "/v1/compare?metric=heart_rate&by=sex", "user"},
		{"compare with filter", "/v1/compare?metric=heart_rate&user=u&by=sex&region=DE", "region"},
		{"compare unknown metric", "/v1/compare?metric=mood&user=u&by=sex", "metric"},
		{"cohorts unknown dimension", "/v1/cohorts?metric=heart_rate&by=name", "by"},
		{"cohorts with user", "/v1/cohorts?metric=heart_rate&by=sex&user=u", "user"},
		{"trends bad period", "/v1/trends?metric=heart_rate&period=decade", "period"},
		{"trends period and from", "/v1/trends?metric=heart_rate&period=week&from=2016-01-01", "period"},
		{"trends unknown metric", "/v1/trends?metric=mood", "metric"},
		{"summary bad user", "/v1/users/a%20b/summary", "user"},
		{"malformed consistency", "/v1/percentiles?metric=heart_rate&consistency=%21%21", "consistency"},
		{"foreign consistency", "/v1/percentiles?metric=heart_rate&consistency=" + foreign, "consistency"},
		{"wait without token", "/v1/percentiles?metric=heart_rate&wait=5s", "wait"},
		{"wait too long", "/v1/percentiles?metric=heart_rate&wait=1h&consistency=" + consistency.Token{"vitals.readings.v1": {0: 1}}.Encode(), "wait"},
		{"summary foreign consistency", "/v1/users/u/summary?consistency=" + foreign, "consistency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, e := get(t, s, tc.path, goodToken)
			if status != http.StatusBadRequest || e.Code != "invalid_parameter" || e.Parameter != tc.param || e.Message == "" {
				t.Fatalf("got %d %+v; want 400 naming %s", status, e, tc.param)
			}
		})
	}
}

func TestParseRangeDefaultsAndDates(t *testing.T) {
	now := time.Date(2026, 11, 22, 7, 6, 0, 0, time.UTC)
	tests := []struct {
		query    string
		from, to time.Time
	}{
		{"", now.Add(-DefaultRange), now},
		{"to=2016-05-03", time.Date(2016, 4, 3, 0, 0, 0, 0, time.UTC), time.Date(2016, 5, 3, 0, 0, 0, 0, time.UTC)},
		{"from=2016-05-02&to=2016-05-03T12:00:00%2B02:00", time.Date(2016, 5, 2, 0, 0, 0, 0, time.UTC), time.Date(2016, 5, 3, 10, 0, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodGet, "/?"+tc.query, nil)
		from, to, err := parseRange(r.URL.Query(), rangeDefault30d, now)
		if err != nil || !from.Equal(tc.from) || !to.Equal(tc.to) {
			t.Errorf("%q: %v %v %v; want %v %v", tc.query, from, to, err, tc.from, tc.to)
		}
	}
}

func vcs(pairs ...float64) valueCounts {
	var out valueCounts
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, valueCount{v: pairs[i], n: uint64(pairs[i+1])})
	}
	return out
}

// Percentiles from value counts equal nearest rank over the expanded
// readings.
func TestValueCountPercentiles(t *testing.T) {
	vc := vcs(60, 1, 70, 3, 80, 5, 90, 1) // 60 70 70 70 80 80 80 80 80 90
	tests := []struct{ p, want float64 }{{0, 60}, {10, 70}, {39.9, 70}, {40, 80}, {50, 80}, {89.9, 80}, {90, 90}, {99, 90}, {100, 90}}
	for _, tc := range tests {
		if got := vc.percentile(tc.p); got != tc.want {
			t.Errorf("p%g = %g; want %g", tc.p, got, tc.want)
		}
	}
}

func TestMoments(t *testing.T) {
	m := vcs(2, 1, 4, 3, 5, 2, 7, 1, 9, 1).moments() // 2 4 4 4 5 5 7 9: mean 5, sum of squares 32
	if m.n != 8 || m.mean != 5 || m.stddev == nil || math.Abs(*m.stddev-math.Sqrt(32.0/7)) > 1e-12 {
		t.Fatalf("moments %+v", m)
	}
	if one := vcs(3, 1).moments(); one.stddev != nil {
		t.Fatal("stddev of one reading must be absent")
	}
	s := momentsFromSums(8, 40, 232)
	if s.mean != m.mean || math.Abs(*s.stddev-*m.stddev) > 1e-12 {
		t.Fatalf("from sums %+v; want %+v", s, m)
	}
}

func TestHistogram(t *testing.T) {
	tests := []struct {
		name string
		vc   valueCounts
		bins int
		want []Bin
	}{
		{"equal width, max in last bin", vcs(0, 1, 1, 2, 2.5, 1, 4, 3), 4,
			[]Bin{{0, 1, 1}, {1, 2, 2}, {2, 3, 1}, {3, 4, 3}}},
		{"value on an inner edge goes up", vcs(10, 1, 15, 1, 20, 1), 2,
			[]Bin{{10, 15, 1}, {15, 20, 2}}},
		{"one distinct value", vcs(72, 9), 20, []Bin{{72, 72, 9}}},
		{"empty bins kept", vcs(0, 1, 10, 1), 5,
			[]Bin{{0, 2, 1}, {2, 4, 0}, {4, 6, 0}, {6, 8, 0}, {8, 10, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.vc.histogram(tc.bins); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v; want %v", got, tc.want)
			}
		})
	}
	// Awkward widths: every reading lands in the bin its edges say.
	vc := vcs(0.1, 1, 0.2, 1, 0.3, 1, 0.7, 1, 1.1, 1)
	var total uint64
	for _, b := range vc.histogram(7) {
		total += b.Count
	}
	if total != 5 {
		t.Fatalf("binned %d of 5 readings", total)
	}
}

func TestAutoBins(t *testing.T) {
	tests := []struct {
		name string
		vc   valueCounts
		want int
	}{
		// n=8, q1=40 (index 2), q3=90 (index 6): IQR 50, width 2*50/cbrt(8) = 50, range 100: 2 bins.
		{"freedman-diaconis", vcs(0, 1, 20, 1, 40, 1, 60, 1, 70, 1, 80, 1, 90, 1, 100, 1), 2},
		// n=8, q1=40, q3=60: IQR 20, width 20, range 100: 5 bins.
		{"freedman-diaconis, narrower IQR", vcs(0, 1, 20, 1, 40, 1, 50, 1, 55, 1, 58, 1, 60, 1, 100, 1), 5},
		// IQR 0: Sturges, ceil(log2 10) + 1 = 5.
		{"sturges when IQR is zero", vcs(1, 1, 5, 8, 9, 1), 5},
		{"one value", vcs(5, 100), 1},
	}
	for _, tc := range tests {
		if got := tc.vc.autoBins(); got != tc.want {
			t.Errorf("%s: %d bins; want %d", tc.name, got, tc.want)
		}
	}
}

func TestPercentileRank(t *testing.T) {
	tests := []struct {
		x      float64
		values []float64
		want   float64
	}{
		{70, []float64{60, 65, 70, 80, 90}, 50},   // 2 below, itself: (2+0.5)/5
		{60, []float64{60, 65, 70, 80, 90}, 10},   // lowest
		{90, []float64{60, 65, 70, 80, 90}, 90},   // highest
		{70, []float64{70, 70, 70, 70}, 50},       // all tied
		{75, []float64{60, 75, 75, 90}, 50},       // tie of two: (1 + 1)/4
		{100, []float64{100}, 50},                 // alone
		{66.5, []float64{10, 20, 30, 66.5}, 87.5}, // (3 + 0.5)/4
	}
	for _, tc := range tests {
		if got := percentileRank(tc.x, tc.values); got != tc.want {
			t.Errorf("percentileRank(%g, %v) = %g; want %g", tc.x, tc.values, got, tc.want)
		}
	}
}

func TestSnapshotHeldIn(t *testing.T) {
	before := snapshot{clean: map[uint32]string{201604: "201604_1_9_2", 201605: "201605_1_3_1"}, dirty: map[uint32]bool{201606: true}}
	tests := []struct {
		name  string
		later snapshot
		want  bool
	}{
		{"unchanged", snapshot{clean: map[uint32]string{201604: "201604_1_9_2", 201605: "201605_1_3_1"}, dirty: map[uint32]bool{201606: true}}, true},
		{"a grouped partition was merged", snapshot{clean: map[uint32]string{201604: "201604_1_9_2", 201605: "201605_1_3_1", 201606: "201606_1_7_1"}}, true},
		{"a new partition", snapshot{clean: map[uint32]string{201604: "201604_1_9_2", 201605: "201605_1_3_1"}, dirty: map[uint32]bool{201606: true, 201607: true}}, false},
		{"merged again", snapshot{clean: map[uint32]string{201604: "201604_1_10_3", 201605: "201605_1_3_1"}, dirty: map[uint32]bool{201606: true}}, false},
		{"a new part arrived", snapshot{clean: map[uint32]string{201605: "201605_1_3_1"}, dirty: map[uint32]bool{201604: true, 201606: true}}, false},
		{"a first erasure", snapshot{clean: map[uint32]string{201604: "201604_1_9_2", 201605: "201605_1_3_1"}, dirty: map[uint32]bool{201606: true}, erasures: true}, false},
	}
	for _, tc := range tests {
		if got := before.heldIn(tc.later); got != tc.want {
			t.Errorf("%s: %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestPartsSnapshot(t *testing.T) {
	tests := []struct {
		name         string
		parts, names []string
		levels       []uint32
		clean        map[uint32]string
		dirty        map[uint32]bool
		noShortcut   bool
	}{
		{"one merged part is clean", []string{"201604"}, []string{"201604_1_9_2"}, []uint32{2}, map[uint32]string{201604: "201604_1_9_2"}, map[uint32]bool{}, false},
		{"one unmerged part may hold copies", []string{"201604"}, []string{"201604_5_5_0"}, []uint32{0}, map[uint32]string{}, map[uint32]bool{201604: true}, false},
		{"two parts", []string{"201604", "201604", "201605"}, []string{"201604_1_9_2", "201604_10_10_0", "201605_1_3_1"}, []uint32{2, 0, 1},
			map[uint32]string{201605: "201605_1_3_1"}, map[uint32]bool{201604: true}, false},
		{"no parts", nil, nil, nil, map[uint32]string{}, map[uint32]bool{}, false},
		{"not a month", []string{"tuple()"}, []string{"all_1_1_0"}, []uint32{0}, nil, nil, true},
		{"lists of different lengths", []string{"201604"}, nil, nil, nil, nil, true},
	}
	for _, tc := range tests {
		sn := partsSnapshot(tc.parts, tc.names, tc.levels)
		if tc.noShortcut {
			if sn.clean != nil || sn.dirty != nil {
				t.Errorf("%s: %+v; want the zero snapshot (everything grouped)", tc.name, sn)
			}
			continue
		}
		if !maps.Equal(sn.clean, tc.clean) || !maps.Equal(sn.dirty, tc.dirty) {
			t.Errorf("%s: clean %v dirty %v; want %v and %v", tc.name, sn.clean, sn.dirty, tc.clean, tc.dirty)
		}
	}
}

func TestWholeDays(t *testing.T) {
	d := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name, from, to, first, last string
		ok                          bool
	}{
		{"whole days", "2016-03-01T00:00:00Z", "2016-03-04T00:00:00Z", "2016-03-01T00:00:00Z", "2016-03-04T00:00:00Z", true},
		{"partial ends", "2016-03-01T00:00:00.001Z", "2016-03-04T23:59:59Z", "2016-03-02T00:00:00Z", "2016-03-04T00:00:00Z", true},
		{"one whole day", "2016-03-01T06:00:00Z", "2016-03-03T06:00:00Z", "2016-03-02T00:00:00Z", "2016-03-03T00:00:00Z", true},
		{"within a day", "2016-03-01T06:00:00Z", "2016-03-01T18:00:00Z", "2016-03-02T00:00:00Z", "2016-03-01T00:00:00Z", false},
		{"across midnight, no whole day", "2016-03-01T06:00:00Z", "2016-03-02T18:00:00Z", "2016-03-02T00:00:00Z", "2016-03-02T00:00:00Z", false},
		{"other zone, same instants", "2016-03-01T01:00:00+01:00", "2016-03-02T01:00:00+01:00", "2016-03-01T00:00:00Z", "2016-03-02T00:00:00Z", true},
	}
	for _, tc := range tests {
		first, last, ok := wholeDays(d(tc.from), d(tc.to))
		if ok != tc.ok || !first.Equal(d(tc.first)) || !last.Equal(d(tc.last)) {
			t.Errorf("%s: %s, %s, %v; want %s, %s, %v", tc.name, first, last, ok, tc.first, tc.last, tc.ok)
		}
	}
}

// TestWeightedSource checks which tables a request reads: the value
// rollup only for the whole days of a cohort- or tenant-wide range, the
// readings for a single user, partial days, with the rollup disabled or
// when it does not condense the readings; and that the arguments match
// the placeholders.
func TestWeightedSource(t *testing.T) {
	day := func(s string) time.Time {
		v, _ := time.Parse(time.DateTime, s)
		return v
	}
	hr, _ := metric.Lookup("heart_rate")
	base := request{tenant: "t1", metric: hr, from: day("2016-03-01 00:00:00"), to: day("2016-03-08 00:00:00")}
	withUser, cohort, partial := base, base, base
	withUser.user = "u1"
	cohort.filters = []filter{{"sex", "female"}}
	partial.from, partial.to = day("2016-03-01 12:00:00"), day("2016-03-08 06:00:00")
	within := base
	within.to = day("2016-03-01 12:00:00")
	tests := []struct {
		name                        string
		q                           request
		rollupOff, erasures, sparse bool
		rollupReads, rawRead        int
	}{
		{"tenant, whole days", base, false, false, false, 1, 0},
		{"cohort, whole days, erasures", cohort, false, true, false, 1, 0},
		{"tenant, partial days at both ends", partial, false, false, false, 1, 2},
		{"a single user", withUser, false, false, false, 0, 1},
		{"less than a day", within, false, false, false, 0, 1},
		{"rollup disabled", cohort, true, false, false, 0, 1},
		{"rollup no smaller than the readings", cohort, false, false, true, 0, 1},
	}
	for _, tc := range tests {
		cfg := DefaultConfig()
		cfg.Warehouse.Database = "vdb"
		cfg.ValuesFromRollup = !tc.rollupOff
		s := &Service{cfg: cfg}
		sql, args := s.weighted(snapshot{erasures: tc.erasures, rollupPays: !tc.sparse}, tc.q)
		if n := strings.Count(sql, "FROM vdb.readings_daily_values"); n != tc.rollupReads {
			t.Errorf("%s: reads the rollup %d times; want %d\n%s", tc.name, n, tc.rollupReads, sql)
		}
		if n := strings.Count(sql, "FROM vdb.readings WHERE"); n != tc.rawRead {
			t.Errorf("%s: reads the readings %d times; want %d\n%s", tc.name, n, tc.rawRead, sql)
		}
		if n := strings.Count(sql, "?"); n != len(args) {
			t.Errorf("%s: %d placeholders, %d arguments", tc.name, n, len(args))
		}
		if tc.erasures && !strings.Contains(sql, "vdb.erased_users") {
			t.Errorf("%s: erased users not left out", tc.name)
		}
	}
}

// TestLimits: a token that floods gets 429 with Retry-After while another
// token of the same tenant is still answered; at the service's concurrency
// limit a request gets 503 overloaded. (The answers here are 400s: the
// requests are admitted, then refused for their parameters, without any
// store.)
func TestLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PerToken = quota.Limits{Rate: 1, Burst: 3}
	cfg.MaxConcurrent = 1
	s := newTestServiceWith(cfg, fakeTokens{goodToken: {ID: "good", Tenant: "t1"}, otherToken: {ID: "other", Tenant: "t1"}})
	ask := func(token string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/v1/percentiles?metric=mood", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		s.Handler().ServeHTTP(rec, req)
		return rec
	}
	for i := range 3 {
		if rec := ask(goodToken); rec.Code != http.StatusBadRequest {
			t.Fatalf("request %d within the burst: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec := ask(goodToken)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "rate_limited") {
		t.Fatalf("past the burst: %d, Retry-After %q, %s; want 429 rate_limited, Retry-After 1", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if rec := ask(otherToken); rec.Code != http.StatusBadRequest {
		t.Fatalf("another token while the first floods: %d %s", rec.Code, rec.Body)
	}
	s.busy <- struct{}{} // the one slot is taken
	rec = ask(otherToken)
	<-s.busy
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "overloaded") {
		t.Fatalf("at the concurrency limit: %d %s; want 503 overloaded with Retry-After", rec.Code, rec.Body)
	}
	if rec := ask(otherToken); rec.Code != http.StatusBadRequest {
		t.Fatalf("after the slot is free: %d %s", rec.Code, rec.Body)
	}
}
