package query

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every API request is counted by endpoint and status and timed by
// endpoint, refused ones included; /metrics serves the counts without a
// token, and every endpoint's latency is exported before its first request.
func TestMetricsByEndpoint(t *testing.T) {
	s := newTestService()
	get(t, s, "/v1/percentiles?metric=heart_rate", "")
	get(t, s, "/v1/percentiles?metric=heart_rate", revokedToken)
	get(t, s, "/v1/users/u/summary", "")

	if got := testutil.ToFloat64(s.m.requests.WithLabelValues("percentiles", "401")); got != 1 {
		t.Errorf("percentiles 401 = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.m.requests.WithLabelValues("percentiles", "403")); got != 1 {
		t.Errorf("percentiles 403 = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.m.requests.WithLabelValues("user_summary", "401")); got != 1 {
		t.Errorf("user_summary 401 = %v, want 1", got)
	}

	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics answered %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`vitals_query_requests_total{code="401",endpoint="percentiles"} 1`,
		`vitals_query_request_seconds_count{endpoint="percentiles"} 2`,
		`vitals_query_request_seconds_count{endpoint="user_summary"} 1`,
		`vitals_query_request_seconds_count{endpoint="trends"} 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
}
