package query

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// Alerts have a lifecycle (schemas.Alert): raised, resolved when the
// condition ended, withdrawn when a reading that raised it was corrected
// away. The alerts table holds one row per event of an alert, all under
// its alert_id; an alert's state is what its events recorded by as_of
// say.

// alertScope selects alerts: a tenant, a user or cohort filters (or
// neither), the start of the condition in [from, to) (epoch ms), and the
// events recorded by asOf (epoch ms, 0 for all).
type alertScope struct {
	tenant, user string
	filters      []filter
	from, to     int64
	asOf         int64
}

// alertStates is a subquery with one row per alert raised in scope:
// aid (alert id), sev (severity), st (start of the condition, epoch ms),
// closed (1: resolved or withdrawn) and wd (1: withdrawn).
func (s *Service) alertStates(sc alertScope) (string, []any) {
	db := s.cfg.Warehouse.Database
	conds := []string{"tenant_id = ?", "started_at_ms >= ?", "started_at_ms < ?", warehouse.NotErased(db)}
	args := []any{sc.tenant, sc.from, sc.to}
	if sc.user != "" {
		conds = append(conds, "user_id = ?")
		args = append(args, sc.user)
	}
	if len(sc.filters) > 0 {
		c, a := s.cohortCondition(sc.tenant, sc.filters, sc.asOf)
		conds = append(conds, c)
		args = append(args, a...)
	}
	if sc.asOf != 0 {
		conds = append(conds, "recorded_at_ms <= ?")
		args = append(args, sc.asOf)
	}
	return fmt.Sprintf(`SELECT alert_id AS aid, any(severity) AS sev, any(started_at_ms) AS st,
			max(status != 'raised') AS closed, max(status = 'withdrawn') AS wd
		FROM %s.%s WHERE %s
		GROUP BY user_id, alert_id HAVING max(status = 'raised') = 1`,
		db, warehouse.AlertsTable, strings.Join(conds, " AND ")), args
}

// AlertDay is one UTC day of the alert summary: the alerts whose condition
// started that day, by severity, that were not withdrawn (open or
// resolved), and how many were withdrawn.
type AlertDay struct {
	Day       string `json:"day"`
	Critical  uint64 `json:"critical"`
	Warning   uint64 `json:"warning"`
	Info      uint64 `json:"info"`
	Withdrawn uint64 `json:"withdrawn"`
}

// AlertSummaryResult answers GET /v1/alerts/summary.
type AlertSummaryResult struct {
	From       time.Time  `json:"from"`
	To         time.Time  `json:"to"`
	Scope      Scope      `json:"scope"`
	AsOf       time.Time  `json:"as_of"`
	Stale      bool       `json:"stale"`
	Suppressed bool       `json:"suppressed"`
	Reason     string     `json:"reason,omitempty"`
	Days       []AlertDay `json:"days"`
	Total      AlertDay   `json:"total"`
}

// alertSummary answers GET /v1/alerts/summary?from&to[&user|cohort
// filters][&as_of]: the seeds' alert summary, critical / warning / info
// per day. It takes the scope parameters of the other endpoints, except
// metric (alerts of every rule are counted).
func (s *Service) alertSummary(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.timeout(r)
	defer cancel()
	q, err := s.parseScope(r, rangeDefault30d, time.Now()) // every parameter but metric
	if err == nil && q.token != nil {
		err = s.checkToken(q.token)
	}
	if err != nil {
		s.fail(w, "alert summary", err)
		return
	}
	res := AlertSummaryResult{From: q.from, To: q.to, Scope: q.scope(), AsOf: q.asOf, Days: []AlertDay{}, Total: AlertDay{Day: "total"}}
	res.Stale = s.caughtUp(ctx, q.token, q.wait)
	if len(q.filters) > 0 {
		users, err := s.cohortMembers(ctx, q)
		if err != nil {
			s.fail(w, "alert summary", err)
			return
		}
		if res.Suppressed, res.Reason = s.suppress(users); res.Suppressed {
			writeJSON(w, http.StatusOK, res)
			return
		}
	}
	if err := s.fillAlertDays(ctx, q, &res); err != nil {
		s.fail(w, "alert summary", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// cohortMembers counts the users of the request's cohort, up to
// MinCohortUsers.
func (s *Service) cohortMembers(ctx context.Context, q request) (uint64, error) {
	c, a := s.cohortCondition(q.tenant, q.filters, q.asOfMs())
	var n uint64
	sql := fmt.Sprintf(`SELECT count() FROM (SELECT user_id FROM (%s) WHERE %s LIMIT %d)`,
		s.dimension(q.asOfMs()), c, s.cfg.MinCohortUsers)
	if err := s.conn.QueryRow(ctx, sql, append([]any{q.tenant}, a...)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("cohort members: %w", err)
	}
	return n, nil
}

// fillAlertDays counts the scope's alerts per UTC day of their start.
func (s *Service) fillAlertDays(ctx context.Context, q request, res *AlertSummaryResult) error {
	sql, args := s.alertStates(alertScope{tenant: q.tenant, user: q.user, filters: q.filters,
		from: q.from.UnixMilli(), to: q.to.UnixMilli(), asOf: q.asOfMs()})
	byDay := map[string]int{}
	err := s.scanRows(ctx, fmt.Sprintf(`SELECT toString(toDate(intDiv(st, 86400000))) AS d, sev, wd AS w, count()
		FROM (%s) GROUP BY d, sev, w ORDER BY d, sev, w`, sql), args, func(sc scanner) error {
		var d, sev string
		var withdrawn uint8
		var n uint64
		if err := sc.Scan(&d, &sev, &withdrawn, &n); err != nil {
			return err
		}
		i, ok := byDay[d]
		if !ok {
			i = len(res.Days)
			res.Days = append(res.Days, AlertDay{Day: d})
			byDay[d] = i
		}
		day := &res.Days[i]
		for _, a := range []*AlertDay{day, &res.Total} {
			switch {
			case withdrawn == 1:
				a.Withdrawn += n
			case sev == "critical":
				a.Critical += n
			case sev == "warning":
				a.Warning += n
			case sev == "info":
				a.Info += n
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("alert summary: %w", err)
	}
	return nil
}
