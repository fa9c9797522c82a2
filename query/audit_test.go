package query

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vitalshq/vitals/internal/audit"
)

// memTrail is an audit trail in memory (the integration tests use the
// PostgreSQL one).
type memTrail struct {
	mu      sync.Mutex
	records []audit.Record
	fail    bool
}

func (m *memTrail) Append(_ context.Context, r audit.Record) (audit.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return r, errors.New("trail unavailable")
	}
	m.records = append(m.records, r)
	return r, nil
}

// apiPaths are a request to every /v1/ endpoint.
var apiPaths = []string{"/v1/percentiles?metric=heart_rate&user=u-1", "/v1/distribution?metric=heart_rate&sex=female",
	"/v1/compare?metric=heart_rate&user=u-1&by=sex", "/v1/cohorts?metric=heart_rate&by=sex", "/v1/trends?metric=heart_rate",
	"/v1/overview?metric=heart_rate", "/v1/users/u-1/summary", "/v1/users/u-1/percentiles?metric=heart_rate&from=2016-05-02&to=2016-05-03"}

// Every request to the API is recorded, refused ones too, with the
// token's tenant and id when the token is known; the dashboard's page,
// /healthz and /metrics are not (they hold no health data).
func TestEveryAPIRequestIsAudited(t *testing.T) {
	s := newTestService()
	trail := s.trail.(*memTrail)
	for _, p := range apiPaths {
		for _, token := range []string{"", "va_0123456789abcdef_" + strings.Repeat("0", 64), revokedToken} {
			before := len(trail.records)
			status, _ := get(t, s, p, token)
			if len(trail.records) != before+1 {
				t.Fatalf("%s with token %q: %d records written, want 1", p, token, len(trail.records)-before)
			}
			r := trail.records[before]
			if r.Status != status || r.Outcome != audit.OutcomeDenied || !strings.HasPrefix(r.Action, "GET /v1/") {
				t.Errorf("%s: record %+v for status %d", p, r, status)
			}
			if strings.Contains(p, "u-1") && r.User != "u-1" {
				t.Errorf("%s: record's user %q, want u-1", p, r.User)
			}
			switch token {
			case revokedToken:
				if r.Tenant != "t1" || r.Actor != "revoked" || r.Code != "token_revoked" {
					t.Errorf("%s with a revoked token: record %+v", p, r)
				}
			case "":
				if r.Tenant != "" || r.Actor != "" {
					t.Errorf("%s without a token: record %+v", p, r)
				}
			default:
				if r.Tenant != "" || r.Actor != "unverified:0123456789abcdef" {
					t.Errorf("%s with an unknown token: record %+v", p, r)
				}
			}
		}
	}
	before := len(trail.records)
	for _, p := range []string{"/dashboard/", "/healthz", "/metrics"} {
		s.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	if len(trail.records) != before {
		t.Errorf("pages without health data were audited: %+v", trail.records[before:])
	}
	// A bad request of a valid token: the scope as asked, the outcome.
	get(t, s, "/v1/percentiles?metric=heart_rate&region=DE&sex=female&from=2016-05-02&p=500", goodToken)
	r := trail.records[len(trail.records)-1]
	if r.Tenant != "t1" || r.Actor != "good" || r.Cohort != "sex=female&region=DE" || r.From == nil ||
		r.Outcome != audit.OutcomeRejected || r.Code != "invalid_parameter" {
		t.Errorf("bad request's record = %+v", r)
	}
}

// Without a trail, nothing is answered but 503.
func TestNoAnswerWithoutAuditRecord(t *testing.T) {
	s := newTestService()
	s.trail.(*memTrail).fail = true
	status, e := get(t, s, "/v1/users/u-1/summary", revokedToken)
	if status != http.StatusServiceUnavailable || e.Code != "audit_unavailable" {
		t.Fatalf("with the trail down: %d %+v", status, e)
	}
}
