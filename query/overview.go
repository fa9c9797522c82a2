package query

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/vitalshq/vitals/internal/audit"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// MaxOverviewUsers bounds the users an overview lists, so that a tenant
// with a hundred thousand users gets a picker, not a megabyte.
const MaxOverviewUsers = 1000

// OverviewUser is one user who has readings of the overview's metric.
type OverviewUser struct {
	ID       string `json:"id"`
	Readings uint64 `json:"readings"`
	// LastDay is the UTC day of the user's newest reading.
	LastDay string `json:"last_day"`
}

// CohortValue is one value of a cohort dimension and how many current
// users have it.
type CohortValue struct {
	Value string `json:"value"`
	Users uint64 `json:"users"`
}

// OverviewResult answers GET /v1/overview: where a tenant's data of one
// metric is, so that a client (the dashboard) can open on the latest data
// instead of an empty range, and offer the users and cohorts that exist.
type OverviewResult struct {
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	// FirstDay and LastDay are the UTC days of the oldest and newest
	// readings (empty when there are none); Readings counts them all.
	FirstDay string `json:"first_day"`
	LastDay  string `json:"last_day"`
	Readings uint64 `json:"readings"`
	// Users lists up to MaxOverviewUsers users by id, those with the most
	// recent data first when there are more (UsersTruncated).
	Users          []OverviewUser `json:"users"`
	UsersTruncated bool           `json:"users_truncated"`
	// Cohorts gives, per dimension (age_band, sex, region, device_model),
	// the values current users have, by value.
	Cohorts map[string][]CohortValue `json:"cohorts"`
	AsOf    time.Time                `json:"as_of"`
}

// overview answers GET /v1/overview?metric=[&as_of=]. It reads the daily
// rollup and what revisions changed in it, which have a row per user and
// day, not the readings; as of a past moment it reads the readings.
func (s *Service) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.timeout(r)
	defer cancel()
	m, err := parseMetric(r.URL.Query())
	q := request{tenant: tenantOf(r), metric: m}
	if err == nil {
		q.asOf, q.travel, err = parseAsOf(r.URL.Query(), time.Now())
	}
	if err != nil {
		s.fail(w, "overview", err)
		return
	}
	res := OverviewResult{Metric: m.Name, Unit: m.Unit, Users: []OverviewUser{}, Cohorts: map[string][]CohortValue{}, AsOf: q.asOf}
	if err := s.fillOverviewUsers(ctx, q, &res); err != nil {
		s.fail(w, "overview", err)
		return
	}
	if err := s.fillCohortValues(ctx, q, &res); err != nil {
		s.fail(w, "overview", err)
		return
	}
	audit.SetRows(ctx, int64(res.Readings))
	writeJSON(w, http.StatusOK, res)
}

// fillOverviewUsers lists the users with readings of the metric: per user
// and day, the readings and revision rows add up to more than none.
func (s *Service) fillOverviewUsers(ctx context.Context, q request, res *OverviewResult) error {
	db := s.cfg.Warehouse.Database
	var perDay string
	var args []any
	if q.travel {
		sn, err := s.snapshot(ctx, q.tenant)
		if err != nil {
			return fmt.Errorf("overview users: %w", err)
		}
		src, a := s.readings(sn, "tenant_id = ? AND metric = ?", []any{q.tenant, q.metric.Name}, q.asOfMs())
		perDay, args = fmt.Sprintf(`SELECT uid AS u, toDate(intDiv(at_ms, 86400000)) AS dd, sum(n) AS c FROM %s GROUP BY u, dd HAVING c > 0`, src), a
	} else {
		perDay = fmt.Sprintf(`SELECT user_id AS u, day AS dd, sum(k) AS c FROM (
				SELECT user_id, day, toInt64(countMerge(readings)) AS k FROM %[1]s.%[2]s WHERE tenant_id = ? AND metric = ? AND %[4]s GROUP BY user_id, day
				UNION ALL
				SELECT user_id, day, sum(readings) AS k FROM %[1]s.%[3]s WHERE tenant_id = ? AND metric = ? AND %[4]s GROUP BY user_id, day)
			GROUP BY u, dd HAVING c > 0`, db, warehouse.DailyRollupTable, warehouse.DailyRevisionsTable, warehouse.NotErased(db))
		args = []any{q.tenant, q.metric.Name, q.tenant, q.metric.Name}
	}
	sql := fmt.Sprintf(`SELECT u, toUInt64(sum(c)) AS n, min(dd) AS first_day, max(dd) AS last_day
		FROM (%s) GROUP BY u ORDER BY last_day DESC, u LIMIT %d`, perDay, MaxOverviewUsers+1)
	var first, last time.Time
	err := s.scanRows(ctx, sql, args, func(sc scanner) error {
		var u OverviewUser
		var f, l time.Time
		if err := sc.Scan(&u.ID, &u.Readings, &f, &l); err != nil {
			return err
		}
		if len(res.Users) == MaxOverviewUsers {
			res.UsersTruncated = true
			return nil
		}
		u.LastDay = dayOf(l)
		res.Users = append(res.Users, u)
		res.Readings += u.Readings
		if first.IsZero() || f.Before(first) {
			first = f
		}
		if l.After(last) {
			last = l
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("overview users: %w", err)
	}
	if !first.IsZero() {
		res.FirstDay, res.LastDay = dayOf(first), dayOf(last)
	}
	sort.Slice(res.Users, func(i, j int) bool { return res.Users[i].ID < res.Users[j].ID })
	return nil
}

func (s *Service) fillCohortValues(ctx context.Context, q request, res *OverviewResult) error {
	sql := fmt.Sprintf(`SELECT age_band, sex, region, device_model, count() FROM (%s)
		GROUP BY age_band, sex, region, device_model`, s.dimension(q.asOfMs()))
	dims := [4]string{"age_band", "sex", "region", "device_model"}
	counts := map[string]map[string]uint64{}
	for _, d := range dims {
		counts[d] = map[string]uint64{}
	}
	err := s.scanRows(ctx, sql, []any{q.tenant}, func(sc scanner) error {
		var vals [4]string
		var n uint64
		if err := sc.Scan(&vals[0], &vals[1], &vals[2], &vals[3], &n); err != nil {
			return err
		}
		for i, d := range dims {
			counts[d][vals[i]] += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("overview cohorts: %w", err)
	}
	for _, d := range dims {
		list := []CohortValue{}
		for v, n := range counts[d] {
			list = append(list, CohortValue{Value: v, Users: n})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Value < list[j].Value })
		res.Cohorts[d] = list
	}
	return nil
}
