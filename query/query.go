// Package query is the analysts' HTTP API over the ClickHouse read side.
//
// Every parameter is validated before it reaches SQL, values are bound as
// parameters, and the only identifiers spliced into SQL are the configured
// database name (validated at start) and constants. Answers never count a
// reading twice: they read the readings table through
// warehouse.DedupReadings.
package query

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/httpserve"
	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// Config configures the query service.
type Config struct {
	// Addr is the HTTP listen address.
	Addr      string
	Warehouse warehouse.Config
	// Tenant is the tenant queries are scoped to until analysts
	// authenticate with per-tenant tokens.
	Tenant string
	// QueryTimeout bounds each ClickHouse query.
	QueryTimeout time.Duration
	// MaxPercentiles bounds the p list of one request.
	MaxPercentiles int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Addr:           "127.0.0.1:8081",
		Warehouse:      warehouse.DefaultConfig(),
		Tenant:         "default",
		QueryTimeout:   30 * time.Second,
		MaxPercentiles: 32,
	}
}

// Service is the query HTTP service.
type Service struct {
	cfg     Config
	log     zerolog.Logger
	conn    driver.Conn
	handler http.Handler
}

// New connects to ClickHouse and returns a service ready to Run.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Service, error) {
	log = log.With().Str("role", "query").Logger()
	conn, err := warehouse.Open(ctx, cfg.Warehouse)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	mctx, cancel := context.WithTimeout(ctx, cfg.QueryTimeout)
	defer cancel()
	if err := warehouse.Migrate(mctx, conn, cfg.Warehouse.Database); err != nil {
		conn.Close()
		return nil, fmt.Errorf("query: %w", err)
	}
	s := &Service{cfg: cfg, log: log, conn: conn}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/users/{user}/percentiles", s.userPercentiles)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.handler = mux
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	ln, err := httpserve.Listen(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	return httpserve.Serve(ctx, s.log, ln, s.handler, s.cfg.QueryTimeout)
}

// Close releases the ClickHouse connections.
func (s *Service) Close() { s.conn.Close() }

// APIError is the JSON body of every error response.
type APIError struct {
	Code      string `json:"code"`
	Parameter string `json:"parameter,omitempty"`
	Message   string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func badParam(w http.ResponseWriter, param, format string, args ...any) {
	writeJSON(w, http.StatusBadRequest, APIError{Code: "invalid_parameter", Parameter: param, Message: fmt.Sprintf(format, args...)})
}

// Percentile is one requested percentile and its value.
type Percentile struct {
	P     float64 `json:"p"`
	Value float64 `json:"value"`
}

// PercentilesResponse answers a percentile request.
type PercentilesResponse struct {
	UserID      string       `json:"user_id"`
	Metric      string       `json:"metric"`
	Unit        string       `json:"unit"`
	From        time.Time    `json:"from"`
	To          time.Time    `json:"to"`
	Count       uint64       `json:"count"`
	Method      string       `json:"method"`
	Percentiles []Percentile `json:"percentiles"`
}

// Method documents how percentiles are computed, so a client can reproduce
// them: exact, nearest rank without interpolation.
const Method = "exact: the value at 0-based index floor(p/100 * n) of the n sorted readings (the last one for p=100)"

// ParsePercentiles reads a comma-separated list of percentiles in [0, 100].
func ParsePercentiles(s string, max int) ([]float64, error) {
	if s == "" {
		return []float64{50, 90, 99}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > max {
		return nil, fmt.Errorf("at most %d percentiles per request, got %d", max, len(parts))
	}
	out := make([]float64, 0, len(parts))
	for _, part := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
			return nil, fmt.Errorf("%q is not a number between 0 and 100", part)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseRange reads from and to (RFC 3339); both are required so a query
// always states the period it covers.
func parseRange(r *http.Request) (from, to time.Time, param string, err error) {
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := r.URL.Query().Get(p.name)
		if v == "" {
			return from, to, p.name, fmt.Errorf("%s is required (RFC 3339, e.g. 2016-04-12T00:00:00Z)", p.name)
		}
		t, perr := time.Parse(time.RFC3339Nano, v)
		if perr != nil {
			return from, to, p.name, fmt.Errorf("%s must be an RFC 3339 timestamp", p.name)
		}
		*p.dst = t.UTC()
	}
	if !from.Before(to) {
		return from, to, "to", fmt.Errorf("to must be after from")
	}
	return from, to, "", nil
}

// validUser mirrors ingest's identifier rule.
func validUser(u string) bool {
	if u == "" || len(u) > 128 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:@-", c) >= 0) {
			return false
		}
	}
	return true
}

// userPercentiles answers GET /v1/users/{user}/percentiles?metric=&from=&to=&p=.
func (s *Service) userPercentiles(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	if !validUser(user) {
		badParam(w, "user", "user must be 1 to 128 characters from [A-Za-z0-9._:@-]")
		return
	}
	m, ok := metric.Lookup(r.URL.Query().Get("metric"))
	if !ok {
		badParam(w, "metric", "metric must be one of %s", strings.Join(metric.Names(), ", "))
		return
	}
	from, to, param, err := parseRange(r)
	if err != nil {
		badParam(w, param, "%v", err)
		return
	}
	ps, err := ParsePercentiles(r.URL.Query().Get("p"), s.cfg.MaxPercentiles)
	if err != nil {
		badParam(w, "p", "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	count, values, err := s.percentiles(ctx, s.cfg.Tenant, user, m.Name, from, to, ps)
	if err != nil {
		s.log.Error().Err(err).Msg("percentile query")
		writeJSON(w, http.StatusServiceUnavailable, APIError{Code: "warehouse_unavailable", Message: "the analytics store did not answer; retry shortly"})
		return
	}
	resp := PercentilesResponse{UserID: user, Metric: m.Name, Unit: m.Unit, From: from, To: to, Count: count, Method: Method, Percentiles: []Percentile{}}
	if count > 0 {
		for i, p := range ps {
			resp.Percentiles = append(resp.Percentiles, Percentile{P: p, Value: values[i]})
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// percentiles runs the exact percentile query over deduplicated readings.
// The quantile levels are formatted from validated floats: ClickHouse
// requires them as constants.
func (s *Service) percentiles(ctx context.Context, tenant, user, metricName string, from, to time.Time, ps []float64) (uint64, []float64, error) {
	levels := make([]string, len(ps))
	for i, p := range ps {
		levels[i] = strconv.FormatFloat(p/100, 'g', -1, 64)
	}
	sql := fmt.Sprintf(`SELECT count(), quantilesExact(%s)(val) FROM (%s)`,
		strings.Join(levels, ", "),
		warehouse.DedupReadings(s.cfg.Warehouse.Database,
			"tenant_id = ? AND user_id = ? AND metric = ? AND measured_at_ms >= ? AND measured_at_ms < ?"))
	var count uint64
	var values []float64
	row := s.conn.QueryRow(ctx, sql, tenant, user, metricName, from.UnixMilli(), to.UnixMilli())
	if err := row.Scan(&count, &values); err != nil {
		return 0, nil, fmt.Errorf("percentiles: %w", err)
	}
	return count, values, nil
}
