package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"
)

// UserFigures are a user's own figures in a comparison.
type UserFigures struct {
	ID     string   `json:"id"`
	Count  uint64   `json:"count"`
	Mean   *float64 `json:"mean"`
	Median *float64 `json:"median"`
}

// CohortFigures are the cohort's figures in a comparison. The cohort
// includes the user. Mean and Median are over the users' means (each user
// weighs once, as in the seeds' comparative analytics), Count is the
// cohort's readings.
type CohortFigures struct {
	Value  string   `json:"value"`
	Users  uint64   `json:"users"`
	Count  uint64   `json:"count"`
	Mean   *float64 `json:"mean,omitempty"`
	Median *float64 `json:"median,omitempty"`
}

// CompareResult answers GET /v1/compare.
type CompareResult struct {
	Span
	By     string        `json:"by"`
	User   UserFigures   `json:"user"`
	Cohort CohortFigures `json:"cohort"`
	// PercentDifference is (user mean - cohort mean) / cohort mean * 100.
	PercentDifference *float64 `json:"percent_difference"`
	// PercentileRank is the user's mean's percentile rank among the cohort
	// users' means: 100 * (below + half of equal) / users.
	PercentileRank *float64  `json:"percentile_rank"`
	Stale          bool      `json:"stale"`
	Suppressed     bool      `json:"suppressed"`
	Reason         string    `json:"reason"`
	AsOf           time.Time `json:"as_of"`
}

// errNoUser is a compare request for a user the dimension does not know:
// fail answers it 404 unknown_user.
var errNoUser = errors.New("unknown user")

// compare answers GET /v1/compare?metric&user=U&by=dimension.
func (s *Service) compare(w http.ResponseWriter, r *http.Request) {
	var by string
	own := func(v url.Values) (err error) {
		by, err = parseDimension(v)
		if err == nil && !v.Has("user") {
			err = badParam("user", "user is required: the user to compare with their cohort")
		}
		if err == nil {
			for _, d := range Dimensions {
				if v.Has(d) {
					err = badParam(d, "compare takes user and by, not cohort filters")
				}
			}
		}
		return err
	}
	scoped(s, w, r, "compare", rangeDefault30d, own, func(ctx context.Context, q request, c common) (CompareResult, uint64, error) {
		res := CompareResult{Span: c.Span, By: by, User: UserFigures{ID: q.user}, Stale: c.Stale, AsOf: c.AsOf}
		err := s.fillCompare(ctx, q, by, &res)
		return res, max(res.User.Count, res.Cohort.Count), err
	})
}

func (s *Service) fillCompare(ctx context.Context, q request, by string, res *CompareResult) error {
	value, err := s.dimensionOf(ctx, q, by)
	if err != nil {
		return err
	}
	res.Cohort.Value = value
	cohort := q
	cohort.user, cohort.filters = "", []filter{{by, value}}
	var members groupedCounts
	var own valueCounts
	err = s.consistently(ctx, q.tenant, true, func(sn snapshot) error {
		// Each cohort user's value counts, users in order: the means are
		// computed here, in an order of our own, so that every engine (and
		// every run) adds them up alike; ClickHouse returns groups in no
		// particular order and adds floats in its own.
		src, a := s.weighted(sn, cohort)
		var err error
		if members, err = s.valueCounts(ctx, src, a, "uid"); err != nil {
			return fmt.Errorf("cohort users: %w", err)
		}
		usrc, uargs := s.weighted(sn, q)
		gc, err := s.valueCounts(ctx, usrc, uargs, "''")
		own = gc.counts[""]
		return err
	})
	if err != nil {
		return err
	}
	f := func(v float64) *float64 { return &v }
	means := make([]float64, 0, len(members.keys))
	for _, u := range members.keys {
		m := members.counts[u].moments()
		res.Cohort.Count += m.n
		means = append(means, m.mean)
	}
	res.Cohort.Users = uint64(len(means))
	if own.total() > 0 {
		m := own.moments()
		res.User.Count, res.User.Mean, res.User.Median = m.n, f(m.mean), f(own.percentile(50))
	}
	if res.Suppressed, res.Reason = s.suppress(res.Cohort.Users); res.Suppressed {
		res.Cohort.Count = 0
		return nil
	}
	var sum float64
	for _, m := range means {
		sum += m
	}
	res.Cohort.Mean, res.Cohort.Median = f(sum/float64(len(means))), f(median(means))
	if res.User.Mean != nil {
		res.PercentileRank = f(percentileRank(*res.User.Mean, means))
		if *res.Cohort.Mean != 0 {
			res.PercentDifference = f((*res.User.Mean - *res.Cohort.Mean) / *res.Cohort.Mean * 100)
		}
	}
	return nil
}

// dimensionOf is the user's value of dimension by as of the request;
// errNoUser if the user has no profile or device events.
func (s *Service) dimensionOf(ctx context.Context, q request, by string) (string, error) {
	sql := fmt.Sprintf(`SELECT %s FROM (%s) WHERE user_id = ?`, by, s.dimension(q.asOfMs()))
	rows, err := s.conn.Query(ctx, sql, q.tenant, q.user)
	if err != nil {
		return "", fmt.Errorf("user dimension: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", fmt.Errorf("user dimension: %w", err)
		}
		return "", errNoUser
	}
	var v string
	if err := rows.Scan(&v); err != nil {
		return "", fmt.Errorf("user dimension: %w", err)
	}
	return v, nil
}

// CohortRow is one cohort of a cohort table.
type CohortRow struct {
	Value      string   `json:"value"`
	Users      uint64   `json:"users"`
	Count      uint64   `json:"count,omitempty"`
	Mean       *float64 `json:"mean,omitempty"`
	Median     *float64 `json:"median,omitempty"`
	P10        *float64 `json:"p10,omitempty"`
	P90        *float64 `json:"p90,omitempty"`
	Stddev     *float64 `json:"stddev,omitempty"`
	Suppressed bool     `json:"suppressed"`
	Reason     string   `json:"reason"`
}

// CohortsResult answers GET /v1/cohorts.
type CohortsResult struct {
	Span
	By      string      `json:"by"`
	Cohorts []CohortRow `json:"cohorts"`
	Stale   bool        `json:"stale"`
	AsOf    time.Time   `json:"as_of"`
}

// cohorts answers GET /v1/cohorts?metric&by=dimension: per value of the
// dimension, the figures over the readings of its users (as the seeds'
// aggregate analytics do), smallest cohorts suppressed.
func (s *Service) cohorts(w http.ResponseWriter, r *http.Request) {
	var by string
	own := func(v url.Values) (err error) {
		by, err = parseDimension(v)
		if err == nil && v.Has("user") {
			err = badParam("user", "cohorts covers the whole tenant; use compare for a user")
		}
		return err
	}
	scoped(s, w, r, "cohorts", rangeDefault30d, own, func(ctx context.Context, q request, c common) (CohortsResult, uint64, error) {
		res := CohortsResult{Span: c.Span, By: by, Stale: c.Stale, Cohorts: []CohortRow{}, AsOf: c.AsOf}
		err := s.fillCohorts(ctx, q, by, &res)
		var n uint64
		for _, row := range res.Cohorts {
			n += row.Count
		}
		return res, n, err
	})
}

// fillCohorts reads each cohort's users and value counts in one snapshot
// and adds a row per cohort, in the order of its value.
func (s *Service) fillCohorts(ctx context.Context, q request, by string, res *CohortsResult) error {
	users := map[string]uint64{}
	var gc groupedCounts
	err := s.consistently(ctx, q.tenant, true, func(sn snapshot) error {
		src, a := s.weighted(sn, q)
		// The dimension has one row per user, so ALL keeps every row of
		// src, exactly. ANY would too on 18.16, but current releases read
		// ANY INNER JOIN as one row per key on both sides: a user's first
		// value only. Current releases also require the aliases. The
		// dimension's tenant placeholder follows src's in the text.
		joined := fmt.Sprintf(`(SELECT grp, uid, val, n FROM %s AS w ALL INNER JOIN (SELECT user_id AS uid, %s AS grp FROM (%s)) AS d USING uid)`,
			src, by, s.dimension(q.asOfMs()))
		ja := append(append([]any{}, a...), q.tenant)
		clear(users)
		err := s.scanRows(ctx, fmt.Sprintf(`SELECT grp, count() FROM (SELECT grp, uid FROM %s GROUP BY grp, uid HAVING sum(n) > 0) GROUP BY grp`, joined), ja, func(sc scanner) error {
			var g string
			var n uint64
			if err := sc.Scan(&g, &n); err != nil {
				return err
			}
			users[g] = n
			return nil
		})
		if err != nil {
			return fmt.Errorf("cohort users: %w", err)
		}
		gc, err = s.valueCounts(ctx, joined, ja, "grp")
		return err
	})
	if err != nil {
		return err
	}
	f := func(v float64) *float64 { return &v }
	for _, g := range gc.keys {
		row := CohortRow{Value: g, Users: users[g]}
		if row.Suppressed, row.Reason = s.suppress(row.Users); !row.Suppressed {
			vc := gc.counts[g]
			m := vc.moments()
			row.Count, row.Mean, row.Stddev = m.n, f(m.mean), m.stddev
			row.Median, row.P10, row.P90 = f(vc.percentile(50)), f(vc.percentile(10)), f(vc.percentile(90))
		}
		res.Cohorts = append(res.Cohorts, row)
	}
	sort.SliceStable(res.Cohorts, func(i, j int) bool { return res.Cohorts[i].Value < res.Cohorts[j].Value })
	return nil
}
