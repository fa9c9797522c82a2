package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Scope is the data a request covers.
type Scope struct {
	// User is the person asked about; "" for a cohort or the tenant.
	User string
	// Cohort is the cohort's filters, e.g. "region=DE&sex=female".
	Cohort string
	Metric string
	// From and To are the range answered (nil: none or unknown).
	From, To *time.Time
}

// entry is the record of a request being served: the middleware creates
// it, the layers below fill it in through the context.
type entry struct {
	mu       sync.Mutex
	rec      Record
	scope    Scope
	scopeSet bool
}

type entryKey struct{}

func entryOf(ctx context.Context) *entry {
	e, _ := ctx.Value(entryKey{}).(*entry)
	return e
}

// SetCaller records who is asking: the tenant whose chain the record goes
// to, and the credential's id and name. The authentication layer calls it
// as soon as it knows, before it refuses or serves the request. Outside an
// audited request it does nothing.
func SetCaller(ctx context.Context, tenant, actor, actorName string) {
	if e := entryOf(ctx); e != nil {
		e.mu.Lock()
		e.rec.Tenant, e.rec.Actor, e.rec.ActorName = tenant, actor, actorName
		e.mu.Unlock()
	}
}

// SetScope records the data the request covers as the handler resolved
// it (defaults applied); without it the record holds what the middleware's
// Describe read from the request.
func SetScope(ctx context.Context, sc Scope) {
	if e := entryOf(ctx); e != nil {
		e.mu.Lock()
		e.scope, e.scopeSet = sc, true
		e.mu.Unlock()
	}
}

// SetRows records how many readings the answer was computed from.
func SetRows(ctx context.Context, n int64) {
	if e := entryOf(ctx); e != nil {
		e.mu.Lock()
		e.rec.Rows = &n
		e.mu.Unlock()
	}
}

// Appender stores records; *Store is one.
type Appender interface {
	Append(ctx context.Context, r Record) (Record, error)
}

// Middleware records every request it is asked to audit before the
// answer leaves: it buffers the answer, appends the record, and then sends
// the answer, or 503 audit_unavailable without it when the record could
// not be written.
type Middleware struct {
	Store Appender
	// Audited selects the requests to record (nil: all).
	Audited func(*http.Request) bool
	// Describe reads the scope from a routed request (path values set),
	// for handlers that did not call SetScope (nil: none).
	Describe func(*http.Request) Scope
	// Timeout bounds writing a record (default 5 s).
	Timeout time.Duration
	// OnFailure, if set, is called when a record could not be written.
	OnFailure func()
	Log       zerolog.Logger
}

// Wrap audits h's requests. h is typically the whole mux, so that every
// route it holds, present and future, is audited: the mux sets the
// request's Pattern and path values in place, which Wrap reads after h.
func (m *Middleware) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.Audited != nil && !m.Audited(r) {
			h.ServeHTTP(w, r)
			return
		}
		e := &entry{}
		r = r.WithContext(context.WithValue(r.Context(), entryKey{}, e))
		buf := &buffered{header: http.Header{}}
		h.ServeHTTP(buf, r)
		rec := m.record(r, e, buf)
		timeout := m.Timeout
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		// Written even if the caller has gone: the data may be computed.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
		defer cancel()
		if _, err := m.Store.Append(ctx, rec); err != nil {
			if m.OnFailure != nil {
				m.OnFailure()
			}
			m.Log.Error().Err(err).Str("action", rec.Action).Int("status", rec.Status).
				Msg("access audit record not written: answered 503 without the data")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"code":"audit_unavailable","message":"the access could not be recorded in the audit trail, so nothing is served; retry shortly"}` + "\n"))
			return
		}
		buf.sendTo(w)
	})
}

// record builds the request's record from what the layers below set.
func (m *Middleware) record(r *http.Request, e *entry, buf *buffered) Record {
	e.mu.Lock()
	rec, sc, set := e.rec, e.scope, e.scopeSet
	e.mu.Unlock()
	if !set && m.Describe != nil {
		sc = m.Describe(r)
	}
	rec.User, rec.Cohort, rec.Metric, rec.From, rec.To = sc.User, sc.Cohort, sc.Metric, sc.From, sc.To
	rec.Action = r.Pattern
	if rec.Action == "" { // no route matched
		rec.Action = r.Method + " (no route)"
	}
	rec.Target = redactedTarget(r.URL)
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		rec.Remote = host
	}
	rec.Status = buf.code()
	rec.Outcome = OutcomeOf(rec.Status)
	if rec.Outcome != OutcomeOK && buf.body.Len() < 64<<10 {
		var body struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(buf.body.Bytes(), &body) == nil {
			rec.Code = body.Code
		}
	}
	return rec
}

// redactedTarget is the request's path and query with the value of any
// parameter that looks like a credential replaced: tokens belong in the
// Authorization header, but a client may misplace one.
func redactedTarget(u *url.URL) string {
	q := u.Query()
	redacted := false
	for k, vs := range q {
		for i, v := range vs {
			if strings.HasPrefix(v, "va_") || strings.HasPrefix(v, "vk_") || strings.Contains(strings.ToLower(k), "token") {
				vs[i], redacted = "REDACTED", true
			}
		}
	}
	if !redacted {
		return u.RequestURI()
	}
	return u.EscapedPath() + "?" + q.Encode()
}

// buffered holds an answer until its record is written.
type buffered struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *buffered) Header() http.Header { return b.header }

func (b *buffered) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *buffered) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *buffered) code() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

// sendTo sends the held answer.
func (b *buffered) sendTo(w http.ResponseWriter) {
	for k, vs := range b.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(b.code())
	_, _ = w.Write(b.body.Bytes())
}
