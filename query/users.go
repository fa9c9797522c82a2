package query

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/vitalshq/vitals/internal/audit"
	"github.com/vitalshq/vitals/internal/metric"
)

// PercentilesResponse answers GET /v1/users/{user}/percentiles, the first
// endpoint (the demo uses it); GET /v1/percentiles?user= is its general
// form.
type PercentilesResponse struct {
	UserID string `json:"user_id"`
	Span
	Count       uint64       `json:"count"`
	Method      string       `json:"method"`
	Percentiles []Percentile `json:"percentiles"`
	Stale       bool         `json:"stale"`
	AsOf        time.Time    `json:"as_of"`
}

// userPercentiles answers GET /v1/users/{user}/percentiles?metric=&from=&to=&p=.
func (s *Service) userPercentiles(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	asked := r.URL.Query().Has("user")
	var ps []float64
	own := func(v url.Values) (err error) {
		err = parseUser("user", user)
		if err == nil && asked {
			err = badParam("user", "the user is in the path")
		}
		if err == nil {
			ps, err = ParsePercentiles(v.Get("p"), s.cfg.MaxPercentiles)
		}
		return err
	}
	// The path's user is the scope; the shared parser sees it as user=.
	r2 := r.Clone(r.Context())
	qv := r2.URL.Query()
	qv.Set("user", user)
	r2.URL.RawQuery = qv.Encode()
	scoped(s, w, r2, "user percentiles", rangeRequired, own, func(ctx context.Context, q request, c common) (PercentilesResponse, uint64, error) {
		var res PercentilesResult
		err := s.fillPercentiles(ctx, q, ps, false, &res)
		return PercentilesResponse{UserID: user, Span: c.Span, Count: res.Count, Method: Method, Percentiles: res.Percentiles,
			Stale: c.Stale, AsOf: c.AsOf}, res.Count, err
	})
}

// Latest is a user's newest reading of a metric.
type Latest struct {
	Metric     string    `json:"metric"`
	Value      float64   `json:"value"`
	Unit       string    `json:"unit"`
	MeasuredAt time.Time `json:"measured_at"`
}

// MetricCount is how many readings of a metric a user has.
type MetricCount struct {
	Metric string `json:"metric"`
	Count  uint64 `json:"count"`
}

// SummaryResult answers GET /v1/users/{user}/summary.
type SummaryResult struct {
	User   string        `json:"user"`
	Latest []Latest      `json:"latest"`
	Counts []MetricCount `json:"counts"`
	// OpenAlerts counts by severity the alerts raised, neither resolved
	// nor withdrawn, that started within OpenAlertWindow before the user's
	// latest reading.
	OpenAlerts map[string]uint64 `json:"open_alerts"`
	Stale      bool              `json:"stale"`
	AsOf       time.Time         `json:"as_of"`
}

// OpenAlertWindow bounds how long an alert counts as open: raised, not
// resolved or withdrawn, and started within this window before the user's
// latest reading of any metric (the data's own clock, so a replayed or
// historical user is summarised as of their last reading). Alerts stored
// before they had a lifecycle are never resolved; the window closes them.
const OpenAlertWindow = 24 * time.Hour

// summary answers GET /v1/users/{user}/summary: every metric's latest
// reading and count over all time, and the open alerts.
func (s *Service) summary(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.timeout(r)
	defer cancel()
	user := r.PathValue("user")
	err := parseUser("user", user)
	var q request
	if err == nil {
		q.token, q.wait, err = s.parseConsistency(r.URL.Query())
	}
	if err == nil {
		q.asOf, q.travel, err = parseAsOf(r.URL.Query(), time.Now())
	}
	if err == nil && q.token != nil {
		err = s.checkToken(q.token)
	}
	if err != nil {
		s.fail(w, "summary", err)
		return
	}
	res := SummaryResult{User: user, Latest: []Latest{}, Counts: []MetricCount{},
		OpenAlerts: map[string]uint64{"critical": 0, "warning": 0, "info": 0}, AsOf: q.asOf}
	res.Stale = s.caughtUp(ctx, q.token, q.wait)
	q.tenant, q.user = tenantOf(r), user
	if err := s.fillSummary(ctx, q, &res); err != nil {
		s.fail(w, "summary", err)
		return
	}
	var n uint64
	for _, c := range res.Counts {
		n += c.Count
	}
	audit.SetRows(ctx, int64(n))
	writeJSON(w, http.StatusOK, res)
}

// fillSummary reads the user's latest readings and counts (a value at a
// time counts when its readings and revision rows add up to more than
// none), then the open alerts.
func (s *Service) fillSummary(ctx context.Context, q request, res *SummaryResult) error {
	tenant, user := q.tenant, q.user
	var newest int64 = -1
	err := s.consistently(ctx, tenant, false, func(sn snapshot) error {
		src, a := s.readings(sn, "tenant_id = ? AND user_id = ?", []any{tenant, user}, q.asOfMs())
		res.Latest, res.Counts, newest = res.Latest[:0], res.Counts[:0], -1
		err := s.scanRows(ctx, fmt.Sprintf(`SELECT mt, toUInt64(sum(c)), argMax(val, at_ms), max(at_ms)
			FROM (SELECT mt, at_ms, val, sum(n) AS c FROM %s GROUP BY mt, at_ms, val HAVING c > 0)
			GROUP BY mt ORDER BY mt`, src), a, func(sc scanner) error {
			var l Latest
			var n uint64
			var at int64
			if err := sc.Scan(&l.Metric, &n, &l.Value, &at); err != nil {
				return err
			}
			l.MeasuredAt = time.UnixMilli(at).UTC()
			if m, ok := metric.Lookup(l.Metric); ok {
				l.Unit = m.Unit
			}
			res.Latest = append(res.Latest, l)
			res.Counts = append(res.Counts, MetricCount{Metric: l.Metric, Count: n})
			newest = max(newest, at)
			return nil
		})
		if err != nil {
			return fmt.Errorf("summary: %w", err)
		}
		return nil
	})
	if err != nil || newest < 0 {
		return err
	}
	sql, args := s.alertStates(alertScope{tenant: tenant, user: user, from: newest - OpenAlertWindow.Milliseconds(), to: newest + 1, asOf: q.asOfMs()})
	err = s.scanRows(ctx, fmt.Sprintf(`SELECT sev, count() FROM (%s) WHERE closed = 0 GROUP BY sev`, sql), args, func(sc scanner) error {
		var sev string
		var n uint64
		if err := sc.Scan(&sev, &n); err != nil {
			return err
		}
		res.OpenAlerts[sev] = n
		return nil
	})
	if err != nil {
		return fmt.Errorf("open alerts: %w", err)
	}
	return nil
}
