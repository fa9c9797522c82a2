package audit

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCanonicalIsStableAndCoversEveryField(t *testing.T) {
	from := time.Date(2016, 4, 12, 0, 0, 0, 123456789, time.UTC)
	rows := int64(7814)
	r := Record{Tenant: "acme", Seq: 3, At: time.Date(2026, 11, 22, 7, 6, 0, 5000, time.UTC), Actor: "0123456789abcdef",
		ActorName: "alice <analytics>", Remote: "10.0.0.1", Action: "GET /v1/percentiles", Target: "/v1/percentiles?user=u-1",
		User: "u-1", Metric: "heart_rate", From: &from, Rows: &rows, Status: 200, Outcome: OutcomeOK, PrevHash: genesis}
	want := `{"tenant":"acme","seq":3,"at":"2026-11-22T07:06:00.000005Z","actor":"0123456789abcdef","actor_name":"alice <analytics>",` +
		`"remote":"10.0.0.1","action":"GET /v1/percentiles","target":"/v1/percentiles?user=u-1","user":"u-1","cohort":"",` +
		`"metric":"heart_rate","from":"2016-04-12T00:00:00.123456Z","to":null,"rows":7814,"status":200,"outcome":"ok","code":""}`
	if got := string(r.Canonical()); got != want {
		t.Fatalf("canonical encoding changed (every stored hash depends on it):\ngot  %s\nwant %s", got, want)
	}
	base := r.ComputeHash()
	// Changing any described field, or the link, changes the hash.
	other := int64(7815)
	for name, edit := range map[string]func(*Record){
		"tenant": func(r *Record) { r.Tenant = "acme2" }, "seq": func(r *Record) { r.Seq = 4 },
		"at":    func(r *Record) { r.At = r.At.Add(time.Microsecond) },
		"actor": func(r *Record) { r.Actor = "x" }, "user": func(r *Record) { r.User = "u-2" },
		"rows": func(r *Record) { r.Rows = &other }, "rows nil": func(r *Record) { r.Rows = nil },
		"to": func(r *Record) { r.To = &from }, "status": func(r *Record) { r.Status = 403 },
		"prev": func(r *Record) { r.PrevHash = bytes.Repeat([]byte{1}, 32) },
	} {
		c := r
		edit(&c)
		if bytes.Equal(c.ComputeHash(), base) {
			t.Errorf("editing %s left the hash unchanged", name)
		}
	}
}

func TestNormalizeKeepsWhatPostgresStores(t *testing.T) {
	from := time.Date(2016, 4, 12, 0, 0, 0, 999, time.FixedZone("x", 3600))
	r := Record{At: time.Date(2026, 1, 1, 0, 0, 0, 1999, time.UTC), From: &from, Status: 429,
		User: "bad\x00user\xff", Target: strings.Repeat("é", maxTarget)}
	r.normalize()
	if r.At.Nanosecond() != 1000 || r.From.Nanosecond() != 0 || r.From.Location() != time.UTC {
		t.Errorf("times not truncated to UTC microseconds: %v %v", r.At, r.From)
	}
	if r.Outcome != OutcomeDenied {
		t.Errorf("outcome of 429 = %q, want denied", r.Outcome)
	}
	if strings.ContainsRune(r.User, 0) || !utf8.ValidString(r.User) {
		t.Errorf("user %q is not storable text", r.User)
	}
	if len(r.Target) > maxTarget || !utf8.ValidString(r.Target) {
		t.Errorf("target not clipped to %d valid bytes: %d", maxTarget, len(r.Target))
	}
}

func TestOutcomeOf(t *testing.T) {
	for status, want := range map[int]string{200: OutcomeOK, 401: OutcomeDenied, 403: OutcomeDenied, 429: OutcomeDenied,
		400: OutcomeRejected, 404: OutcomeRejected, 422: OutcomeRejected, 503: OutcomeFailed, 500: OutcomeFailed} {
		if got := OutcomeOf(status); got != want {
			t.Errorf("OutcomeOf(%d) = %q, want %q", status, got, want)
		}
	}
}
