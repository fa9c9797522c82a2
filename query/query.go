// Package query is the analysts' HTTP API over the ClickHouse read side:
// exact percentiles, distributions, user-versus-cohort comparisons, cohort
// tables, daily trends and per-user summaries, each scoped to the tenant of
// the caller's analyst token.
//
// Every parameter is validated before it reaches SQL, values are bound as
// parameters, and the only identifiers spliced into SQL are the configured
// database name (validated at start), validated dimension names and
// constants. Answers never count a reading twice: the readings table is a
// ReplacingMergeTree that may still hold copies, and every query over it
// collapses them (see source.go for how that stays fast).
package query

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/audit"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/httpserve"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/promreg"
	"github.com/vitalshq/vitals/internal/quota"
	"github.com/vitalshq/vitals/internal/tlsconf"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/query/dashboard"
)

// Config configures the query service.
type Config struct {
	// Addr is the HTTP listen address; it serves the API, the dashboard
	// and the Prometheus metrics at GET /metrics.
	Addr string
	// Registry is where the service registers its metrics and what its
	// /metrics serves: the process's registry, shared by the roles of
	// `vitals run`. Nil (the default): a registry of the service's own.
	Registry  *promreg.Registry
	Warehouse warehouse.Config
	// PostgresURL locates the analyst tokens and the processor's offsets.
	PostgresURL string
	// TokenCacheTTL is how long a verified token is trusted without asking
	// PostgreSQL again; it bounds how long a revoked token keeps working.
	TokenCacheTTL time.Duration
	// Kafka, ProcessorGroup and ProjectorGroup locate the pipeline's
	// positions for read-your-writes (consistency tokens).
	Kafka          eventlog.Config
	ProcessorGroup string
	ProjectorGroup string
	// DefaultWait and MaxWait bound how long a request with a consistency
	// token waits for the pipeline before answering stale.
	DefaultWait, MaxWait time.Duration
	// QueryTimeout bounds each request's ClickHouse work.
	QueryTimeout time.Duration
	// MaxPercentiles bounds the p list of one request.
	MaxPercentiles int
	// MinCohortUsers is the smallest cohort whose figures are shown; a
	// smaller one is suppressed so that no answer singles out a person.
	MinCohortUsers int
	// MaxDistinctValues bounds the distinct values one aggregation may
	// return (see source.go); beyond it the request is refused as too broad.
	MaxDistinctValues int
	// TrendsFromRollup makes trends read the daily rollup instead of the
	// raw readings (the same numbers; the rollup is much smaller).
	TrendsFromRollup bool
	// MaxConcurrent bounds the requests the service works on at once
	// (default 32); beyond it a request is answered 503 overloaded with
	// Retry-After, since ClickHouse would only queue them.
	MaxConcurrent int
	// PerToken is each analyst token's share (default 20 requests/s,
	// bursts of 40, 8 in flight: a dashboard asks 5 at once): a token past
	// it is answered 429 with Retry-After, and other tokens are not slowed.
	PerToken quota.Limits
	// ValuesFromRollup makes percentiles, distributions, comparisons and
	// cohort tables over a cohort or the whole tenant read the whole UTC
	// days of their range from the value rollup
	// (warehouse.ValuesRollupTable), when it condenses the readings, and
	// only the partial days at its ends from the readings: the same exact
	// numbers from far fewer rows, provided only the projector inserts
	// readings (see source.go).
	ValuesFromRollup bool
	// TLSCertFile and TLSKeyFile, if set, make the listener HTTPS with
	// this certificate chain and key (PEM; re-read when renewed).
	TLSCertFile, TLSKeyFile string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8081",
		Warehouse:         warehouse.DefaultConfig(),
		PostgresURL:       postgres.DefaultURL,
		TokenCacheTTL:     10 * time.Second,
		Kafka:             eventlog.DefaultConfig(),
		ProcessorGroup:    "vitals-processor",
		ProjectorGroup:    "vitals-projector",
		DefaultWait:       5 * time.Second,
		MaxWait:           10 * time.Second,
		QueryTimeout:      30 * time.Second,
		MaxPercentiles:    32,
		MinCohortUsers:    5,
		MaxDistinctValues: 2_000_000,
		TrendsFromRollup:  true,
		ValuesFromRollup:  true,
		MaxConcurrent:     32,
		PerToken:          quota.Limits{Rate: 20, Burst: 40, Concurrent: 8},
	}
}

// tokenVerifier authenticates a presented analyst token.
type tokenVerifier interface {
	Verify(ctx context.Context, presented string) (credential.Credential, error)
}

// Service is the query HTTP service.
type Service struct {
	cfg     Config
	log     zerolog.Logger
	conn    driver.Conn
	pool    *pgxpool.Pool
	kafka   *kgo.Client
	adm     *kadm.Client
	tokens  tokenVerifier
	handler http.Handler
	reg     *promreg.Registry
	m       serviceMetrics
	// registered are the metrics New registered; Close withdraws them.
	registered *promreg.Registration
	// busy holds a slot per request being worked on (MaxConcurrent);
	// perToken is each token's share.
	busy     chan struct{}
	perToken *quota.Quota
	// positions watches the pipeline for read-your-writes waits (wait.go).
	positions *watcher

	// trail is the access audit trail every /v1/ request is recorded in
	// before it is answered (audit.go).
	trail audit.Appender
	// tls is the listener's TLS, nil for plain HTTP (Config.TLSCertFile).
	tls *tls.Config
	// monthly remembers whether the readings table is partitioned by
	// month (source.go).
	monthly keyCheck
}

// New connects to ClickHouse, PostgreSQL (tokens, processor offsets) and
// Kafka (projector offsets) and returns a service ready to Run.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Service, error) {
	log = log.With().Str("role", "query").Logger()
	tc, err := tlsconf.ServerIf(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	conn, err := warehouse.Open(ctx, cfg.Warehouse)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	s := newService(cfg, log)
	s.conn, s.reg, s.tls = conn, promreg.OrNew(cfg.Registry), tc
	fail := func(err error) (*Service, error) {
		s.Close()
		return nil, fmt.Errorf("query: %w", err)
	}
	mctx, cancel := context.WithTimeout(ctx, cfg.QueryTimeout)
	defer cancel()
	if err := warehouse.Migrate(mctx, conn, cfg.Warehouse.Database); err != nil {
		return fail(err)
	}
	if s.pool, err = postgres.Open(ctx, cfg.PostgresURL); err != nil {
		return fail(err)
	}
	tokens, err := credential.NewStore(mctx, s.pool, credential.AnalystTokens, cfg.TokenCacheTTL)
	if err != nil {
		return fail(err)
	}
	s.tokens = tokens
	if s.trail, err = audit.NewStore(mctx, s.pool); err != nil {
		return fail(err)
	}
	if s.kafka, err = kgo.NewClient(cfg.Kafka.ClientOpts(log)...); err != nil {
		return fail(fmt.Errorf("kafka client: %w", err))
	}
	s.adm = kadm.NewClient(s.kafka)
	s.handler = s.routes()
	if s.registered, err = promreg.Register(s.reg, s.m.collectors()...); err != nil {
		return fail(err)
	}
	return s, nil
}

// newService is a Service without connections: what New and tests share.
func newService(cfg Config, log zerolog.Logger) *Service {
	s := &Service{cfg: cfg, log: log, m: newServiceMetrics(),
		busy: make(chan struct{}, max(cfg.MaxConcurrent, 1)), perToken: quota.New(cfg.PerToken)}
	s.positions = newWatcher(pipelinePositions{s}, pollInterval)
	return s
}

// routes is the HTTP API. Every /v1/ endpoint requires an analyst token,
// is counted and timed under its endpoint name, and is recorded in the
// access audit trail before it is answered (the auditor wraps the whole
// mux, so routes added here are audited too); the dashboard's static
// files, /metrics and /healthz hold no health data and need none.
func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	for _, e := range []struct {
		pattern, endpoint string
		h                 http.HandlerFunc
	}{
		{"GET /v1/percentiles", "percentiles", s.percentiles},
		{"GET /v1/distribution", "distribution", s.distribution},
		{"GET /v1/compare", "compare", s.compare},
		{"GET /v1/cohorts", "cohorts", s.cohorts},
		{"GET /v1/trends", "trends", s.trends},
		{"GET /v1/overview", "overview", s.overview},
		{"GET /v1/users/{user}/summary", "user_summary", s.summary},
		{"GET /v1/users/{user}/percentiles", "user_percentiles", s.userPercentiles},
		{"GET /v1/alerts/summary", "alert_summary", s.alertSummary},
	} {
		mux.Handle(e.pattern, s.m.instrument(e.endpoint, s.authenticated(e.h)))
	}
	mux.Handle("GET "+dashboard.Prefix, dashboard.Handler()) // static page, no data: no auth
	mux.Handle("GET /metrics", s.reg.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return s.auditor().Wrap(mux)
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Metrics returns the registry the service's metrics are in.
func (s *Service) Metrics() *promreg.Registry { return s.reg }

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	return httpserve.Run(ctx, "query", s.cfg.Addr, s.Serve)
}

// Serve is Run on a listener the caller opened. The grace period covers
// the longest read-your-writes wait plus a query.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	wctx, stop := context.WithCancel(context.Background())
	defer stop() // after the last request: in-flight waits keep their watcher
	go s.positions.run(wctx)
	return httpserve.ServeTLS(ctx, s.log, ln, s.handler, s.cfg.MaxWait+s.cfg.QueryTimeout, s.tls)
}

// Close releases the connections and withdraws the service's metrics
// from the registry.
func (s *Service) Close() {
	s.registered.Unregister()
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.pool != nil {
		s.pool.Close()
	}
	if s.conn != nil {
		s.conn.Close()
	}
}

// APIError is the JSON body of every error response.
type APIError struct {
	Code      string `json:"code"`
	Parameter string `json:"parameter,omitempty"`
	Message   string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // health data: never cached on the way
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// paramError is a bad request parameter: 400 naming it.
type paramError struct {
	param, msg string
}

// Error names the parameter first, as the 400 answer does.
func (e *paramError) Error() string { return e.param + ": " + e.msg }

func badParam(param, format string, args ...any) *paramError {
	return &paramError{param: param, msg: fmt.Sprintf(format, args...)}
}

// tooBroad is a request whose aggregation would return more distinct
// values than MaxDistinctValues.
var errTooBroad = errors.New("too many distinct values")

// fail answers an error: 400 for a bad parameter, 404 for a user to
// compare who has no cohort, 422 for a request too broad to answer
// exactly, 503 for a store that did not answer. The
// underlying error is logged, never sent: it may quote SQL.
func (s *Service) fail(w http.ResponseWriter, what string, err error) {
	var pe *paramError
	switch {
	case errors.As(err, &pe):
		writeJSON(w, http.StatusBadRequest, APIError{Code: "invalid_parameter", Parameter: pe.param, Message: pe.msg})
	case errors.Is(err, errNoUser):
		writeJSON(w, http.StatusNotFound, APIError{Code: "unknown_user", Parameter: "user",
			Message: "the user has no profile or device events in this tenant, so has no cohort"})
	case errors.Is(err, errTooBroad):
		writeJSON(w, http.StatusUnprocessableEntity, APIError{Code: "too_broad",
			Message: fmt.Sprintf("the selection holds more than %d distinct values; narrow the range or the scope", s.cfg.MaxDistinctValues)})
	default:
		s.log.Error().Err(err).Str("endpoint", what).Msg("query failed")
		w.Header().Set("Retry-After", "2")
		writeJSON(w, http.StatusServiceUnavailable, APIError{Code: "warehouse_unavailable", Message: "the analytics store did not answer; retry shortly"})
	}
}

type tenantKey struct{}

// authenticated checks the bearer token and puts its tenant in the
// request's context; the tenant never comes from a parameter. The audit
// record learns the caller here: the token's tenant and id when it is
// known (revoked tokens included), else the id presented, unverified.
func (s *Service) authenticated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || presented == "" {
			audit.SetCaller(r.Context(), "", "", "")
			w.Header().Set("WWW-Authenticate", `Bearer realm="vitals-query"`)
			writeJSON(w, http.StatusUnauthorized, APIError{Code: "unauthenticated", Message: "send an analyst token as Authorization: Bearer va_... (vitals tokens create)"})
			return
		}
		c, err := s.tokens.Verify(r.Context(), presented)
		if err == nil || errors.Is(err, credential.ErrRevoked) {
			audit.SetCaller(r.Context(), c.Tenant, c.ID, c.Name)
		} else {
			audit.SetCaller(r.Context(), "", unverifiedActor(presented), "")
		}
		switch {
		case err == nil:
			release, ok := s.admit(w, c.ID)
			if !ok {
				return
			}
			defer release()
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tenantKey{}, c.Tenant)))
		case errors.Is(err, credential.ErrRevoked):
			writeJSON(w, http.StatusForbidden, APIError{Code: "token_revoked", Message: "this analyst token was revoked"})
		case errors.Is(err, credential.ErrUnknown):
			w.Header().Set("WWW-Authenticate", `Bearer realm="vitals-query", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, APIError{Code: "unauthenticated", Message: "the analyst token is not valid"})
		default:
			s.log.Warn().Err(err).Msg("token verification unavailable")
			w.Header().Set("Retry-After", "2")
			writeJSON(w, http.StatusServiceUnavailable, APIError{Code: "tokens_unavailable", Message: "the token database does not answer; retry shortly"})
		}
	})
}

// admit takes a slot of the service and of the token's share, or answers
// 503 (the service is full) or 429 (the token spent its share) with
// Retry-After.
func (s *Service) admit(w http.ResponseWriter, tokenID string) (release func(), ok bool) {
	rel, refused := s.perToken.Admit(tokenID, 1)
	if refused != nil {
		w.Header().Set("Retry-After", strconv.Itoa(quota.RetryAfterSeconds(refused.RetryAfter)))
		writeJSON(w, http.StatusTooManyRequests, APIError{Code: "rate_limited",
			Message: fmt.Sprintf("this token is over its share (%s); retry after the Retry-After seconds", refused.Reason)})
		return nil, false
	}
	select {
	case s.busy <- struct{}{}:
		return func() { <-s.busy; rel() }, true
	default:
		rel()
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, APIError{Code: "overloaded", Message: "the query service is at its concurrency limit; retry shortly"})
		return nil, false
	}
}

// tenantOf is the authenticated caller's tenant.
func tenantOf(r *http.Request) string {
	t, _ := r.Context().Value(tenantKey{}).(string)
	return t
}

// Method documents how percentiles are computed, so a client can reproduce
// them: exact, nearest rank without interpolation.
const Method = "exact: the value at 0-based index floor(p/100 * n) of the n sorted readings (the last one for p=100)"

// formatLevel renders a percentile for SQL or display without exponent
// surprises.
func formatLevel(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) }
