package query

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/audit"
)

// Every /v1/ request is recorded in the access audit trail (package
// audit) before its answer leaves: routes wraps the whole mux, so an
// endpoint added to it is audited without code of its own. Handlers only
// make the record more precise: prepare reports the scope as resolved
// (default range included) and each answer reports the readings it was
// computed from (audit.SetRows).

// auditor is the middleware over the mux.
func (s *Service) auditor() *audit.Middleware {
	return &audit.Middleware{
		Store:     s.trail,
		Audited:   func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/") },
		Describe:  describeScope,
		Timeout:   5 * time.Second,
		OnFailure: s.m.auditFailures.Inc,
		Log:       s.log,
	}
}

// describeScope reads a request's scope from its parameters as given:
// the record of a request refused before it was parsed still says whose
// data was asked for.
func describeScope(r *http.Request) audit.Scope {
	v := r.URL.Query()
	sc := audit.Scope{User: r.PathValue("user"), Metric: v.Get("metric"), Cohort: cohortOf(v)}
	if sc.User == "" {
		sc.User = v.Get("user")
	}
	for _, p := range []struct {
		name string
		to   **time.Time
	}{{"from", &sc.From}, {"to", &sc.To}} {
		if t, err := parseTime(p.name, v.Get(p.name)); err == nil {
			*p.to = &t
		}
	}
	return sc
}

// cohortOf is the cohort filters of v in Dimensions order, e.g.
// "sex=female&region=US-CA"; "" for none.
func cohortOf(v url.Values) string {
	var parts []string
	for _, d := range Dimensions {
		if v.Has(d) {
			parts = append(parts, d+"="+url.QueryEscape(v.Get(d)))
		}
	}
	return strings.Join(parts, "&")
}

// auditScope is the validated request's scope for its audit record.
func (q request) auditScope() audit.Scope {
	v := url.Values{}
	for _, f := range q.filters {
		v.Set(f.dim, f.value)
	}
	from, to := q.from, q.to
	return audit.Scope{User: q.user, Cohort: cohortOf(v), Metric: q.metric.Name, From: &from, To: &to}
}

// unverifiedActor names the credential a caller presented that did not
// verify: its id part, if it has the shape of one, marked unverified
// (anyone can present another's id).
func unverifiedActor(presented string) string {
	rest, ok := strings.CutPrefix(presented, "va_")
	id, _, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		return ""
	}
	return "unverified:" + id
}
