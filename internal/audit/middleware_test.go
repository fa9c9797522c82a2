package audit

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeStore records appends and checks, at each, that nothing of the
// answer has reached the client yet.
type fakeStore struct {
	mu      sync.Mutex
	records []Record
	fail    error
	// sent reports whether the client has received anything.
	sent        func() bool
	sentAtWrite []bool
}

func (f *fakeStore) Append(_ context.Context, r Record) (Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sent != nil {
		f.sentAtWrite = append(f.sentAtWrite, f.sent())
	}
	if f.fail != nil {
		return Record{}, f.fail
	}
	r.Seq = int64(len(f.records) + 1)
	f.records = append(f.records, r)
	return r, nil
}

// testMux is a small API: a data endpoint that sets caller, scope and
// rows, one that refuses, and a page outside /v1/.
func testMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/users/{user}/summary", func(w http.ResponseWriter, r *http.Request) {
		SetCaller(r.Context(), "acme", "0123456789abcdef", "alice")
		SetRows(r.Context(), 42)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"value":"health data"}`)
	})
	mux.HandleFunc("GET /v1/cohorts", func(w http.ResponseWriter, r *http.Request) {
		SetCaller(r.Context(), "acme", "0123456789abcdef", "alice")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"code":"token_revoked","message":"revoked"}`)
	})
	mux.HandleFunc("GET /dashboard/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "page") })
	return mux
}

func newTestMiddleware(store Appender) *Middleware {
	return &Middleware{Store: store,
		Audited: func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/") },
		Describe: func(r *http.Request) Scope {
			return Scope{User: r.PathValue("user"), Metric: r.URL.Query().Get("metric")}
		}}
}

func TestMiddlewareRecordsBeforeTheAnswerLeaves(t *testing.T) {
	rec := httptest.NewRecorder()
	store := &fakeStore{sent: func() bool { return rec.Body.Len() > 0 || rec.Code != http.StatusOK || len(rec.Header()) > 0 }}
	h := newTestMiddleware(store).Wrap(testMux())
	req := httptest.NewRequest(http.MethodGet, "/v1/users/u-1/summary?metric=heart_rate&x=va_0123456789abcdef_secret", nil)
	req.RemoteAddr = "192.0.2.7:5555"
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != `{"value":"health data"}` || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("answer = %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	if len(store.records) != 1 || store.sentAtWrite[0] {
		t.Fatalf("want one record written before anything was sent: records %d, sent at write %v", len(store.records), store.sentAtWrite)
	}
	r := store.records[0]
	if r.Tenant != "acme" || r.Actor != "0123456789abcdef" || r.ActorName != "alice" || r.Action != "GET /v1/users/{user}/summary" ||
		r.User != "u-1" || r.Metric != "heart_rate" || r.Rows == nil || *r.Rows != 42 || r.Status != 200 || r.Outcome != OutcomeOK ||
		r.Remote != "192.0.2.7" {
		t.Errorf("record = %+v", r)
	}
	if strings.Contains(r.Target, "secret") || !strings.Contains(r.Target, "x=REDACTED") {
		t.Errorf("a credential in the query reached the record: %q", r.Target)
	}
}

func TestMiddlewareRecordsDenialsAndUnroutedRequests(t *testing.T) {
	store := &fakeStore{}
	h := newTestMiddleware(store).Wrap(testMux())
	for _, path := range []string{"/v1/cohorts?metric=heart_rate", "/v1/nothing-here", "/dashboard/"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	if len(store.records) != 2 {
		t.Fatalf("want 2 records (the page outside /v1/ is not audited), got %d: %+v", len(store.records), store.records)
	}
	if r := store.records[0]; r.Status != 403 || r.Outcome != OutcomeDenied || r.Code != "token_revoked" || r.Tenant != "acme" {
		t.Errorf("denied request's record = %+v", r)
	}
	if r := store.records[1]; r.Status != 404 || r.Outcome != OutcomeRejected || r.Action != "GET (no route)" || r.Tenant != "" {
		t.Errorf("unrouted request's record = %+v", r)
	}
}

func TestMiddlewareServesNothingWithoutARecord(t *testing.T) {
	failures := 0
	m := newTestMiddleware(&fakeStore{fail: errors.New("database down")})
	m.OnFailure = func() { failures++ }
	rec := httptest.NewRecorder()
	m.Wrap(testMux()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/users/u-1/summary", nil))
	if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "health data") ||
		!strings.Contains(rec.Body.String(), "audit_unavailable") || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("with the trail down: %d %q", rec.Code, rec.Body)
	}
	if failures != 1 {
		t.Errorf("OnFailure called %d times, want 1", failures)
	}
}
