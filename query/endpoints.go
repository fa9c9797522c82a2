package query

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/audit"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// Percentile is one requested percentile and its value.
type Percentile struct {
	P     float64 `json:"p"`
	Value float64 `json:"value"`
}

// DayPercentiles are one UTC day's percentiles.
type DayPercentiles struct {
	Day         string       `json:"day"`
	Count       uint64       `json:"count"`
	Percentiles []Percentile `json:"percentiles"`
}

// Span is the metric and the range of time an answer covers; answers
// embed it so that its fields keep their place in the JSON.
type Span struct {
	Metric string    `json:"metric"`
	Unit   string    `json:"unit"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
}

// common are the fields every scoped answer carries.
type common struct {
	Span
	Scope Scope `json:"scope"`
	// Stale is true when a consistency token was given and the pipeline
	// had not stored its write when the wait ran out.
	Stale bool `json:"stale"`
	// Suppressed is true when a cohort scope has fewer users than the
	// minimum; the figures are then left out and Reason says why.
	Suppressed bool   `json:"suppressed"`
	Reason     string `json:"reason,omitempty"`
	// AsOf is the moment the answer is as of: the as_of asked for, else
	// the time of the request. Asking again with it as as_of answers as
	// this answer did, revisions recorded since left out.
	AsOf time.Time `json:"as_of"`
}

// PercentilesResult answers GET /v1/percentiles.
type PercentilesResult struct {
	common
	Count       uint64           `json:"count"`
	Method      string           `json:"method"`
	Percentiles []Percentile     `json:"percentiles"`
	Days        []DayPercentiles `json:"days,omitempty"`
}

// DistributionResult answers GET /v1/distribution. Figures are null when
// there are no readings (stddev also with one).
type DistributionResult struct {
	common
	Count     uint64   `json:"count"`
	Min       *float64 `json:"min"`
	Q1        *float64 `json:"q1"`
	Median    *float64 `json:"median"`
	Q3        *float64 `json:"q3"`
	Max       *float64 `json:"max"`
	Mean      *float64 `json:"mean"`
	Stddev    *float64 `json:"stddev"`
	Bins      int      `json:"bins"`
	BinMethod string   `json:"bin_method"`
	Histogram []Bin    `json:"histogram"`
}

// Bin methods of DistributionResult.
const (
	BinsFixed = "fixed: equal width over [min, max]"
	BinsAuto  = "Freedman-Diaconis: width 2*IQR*n^(-1/3) over [min, max] (Sturges if IQR is 0), at most 1000 bins"
)

// begin parses the shared parameters, applies the read-your-writes wait
// and the cohort minimum, and returns the request and the answer's common
// fields. ok is false when the answer is already written; when suppressed
// the caller writes c alone.
func (s *Service) begin(ctx context.Context, w http.ResponseWriter, r *http.Request, what string, mode rangeMode) (request, common, bool) {
	q, err := s.parseRequest(r, mode, time.Now())
	if err == nil && q.token != nil {
		err = s.checkToken(q.token)
	}
	if err != nil {
		s.fail(w, what, err)
		return q, common{}, false
	}
	c, ok := s.prepare(ctx, w, q, what)
	return q, c, ok
}

// prepare waits for the token and checks the cohort minimum.
func (s *Service) prepare(ctx context.Context, w http.ResponseWriter, q request, what string) (common, bool) {
	audit.SetScope(ctx, q.auditScope())
	c := common{Span: Span{Metric: q.metric.Name, Unit: q.metric.Unit, From: q.from, To: q.to}, Scope: q.scope(), AsOf: q.asOf}
	c.Stale = s.caughtUp(ctx, q.token, q.wait)
	if len(q.filters) > 0 {
		users, err := s.scopeUsers(ctx, q)
		if err != nil {
			s.fail(w, what, err)
			return c, false
		}
		c.Suppressed, c.Reason = s.suppress(users)
	}
	return c, true
}

// suppress says whether a cohort of users is too small to show, and why.
func (s *Service) suppress(users uint64) (bool, string) {
	if users < uint64(s.cfg.MinCohortUsers) {
		return true, fmt.Sprintf("the cohort has %d users with readings, fewer than the minimum of %d: figures of so few people could identify them", users, s.cfg.MinCohortUsers)
	}
	return false, ""
}

func (s *Service) timeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.QueryTimeout+s.cfg.MaxWait)
}

// scoped answers an endpoint over a scope of readings, the steps every
// such endpoint takes in order: the request's deadline, the endpoint's own
// parameters (own, nil when it has none), the shared ones with the
// read-your-writes wait and the cohort minimum (begin), the answer with the
// rows it read for the audit trail, and the JSON. Any error goes to fail.
func scoped[T any](s *Service, w http.ResponseWriter, r *http.Request, what string, mode rangeMode,
	own func(url.Values) error, answer func(context.Context, request, common) (T, uint64, error)) {
	ctx, cancel := s.timeout(r)
	defer cancel()
	if own != nil {
		if err := own(r.URL.Query()); err != nil {
			s.fail(w, what, err)
			return
		}
	}
	q, c, ok := s.begin(ctx, w, r, what, mode)
	if !ok {
		return
	}
	res, rows, err := answer(ctx, q, c)
	if err != nil {
		s.fail(w, what, err)
		return
	}
	audit.SetRows(ctx, int64(rows))
	writeJSON(w, http.StatusOK, res)
}

// percentiles answers GET /v1/percentiles?metric&p[&per=day] plus scope.
func (s *Service) percentiles(w http.ResponseWriter, r *http.Request) {
	var ps []float64
	var perDay bool
	own := func(v url.Values) (err error) {
		ps, err = ParsePercentiles(v.Get("p"), s.cfg.MaxPercentiles)
		if err == nil && v.Has("per") && v.Get("per") != "day" {
			err = badParam("per", "per must be day")
		}
		perDay = v.Get("per") == "day"
		return err
	}
	scoped(s, w, r, "percentiles", rangeDefault30d, own, func(ctx context.Context, q request, c common) (PercentilesResult, uint64, error) {
		res := PercentilesResult{common: c, Method: Method, Percentiles: []Percentile{}}
		if c.Suppressed {
			return res, 0, nil
		}
		err := s.fillPercentiles(ctx, q, ps, perDay, &res)
		return res, res.Count, err
	})
}

// fillPercentiles computes the count and percentiles, overall and per day.
func (s *Service) fillPercentiles(ctx context.Context, q request, ps []float64, perDay bool, res *PercentilesResult) error {
	return s.consistently(ctx, q.tenant, q.user == "", func(sn snapshot) error {
		src, a := s.weighted(sn, q)
		group := "''"
		if perDay {
			group = dayGroup
		}
		gc, err := s.valueCounts(ctx, src, a, group)
		if err != nil {
			return err
		}
		var all valueCounts
		res.Days = nil
		for _, k := range gc.keys {
			vc := gc.counts[k]
			all = append(all, vc...)
			if perDay {
				res.Days = append(res.Days, DayPercentiles{Day: k, Count: vc.total(), Percentiles: percentilesOf(vc, ps)})
			}
		}
		if perDay { // the days' values interleave: merge them in order
			all = mergeCounts(all)
		}
		res.Count = all.total()
		res.Percentiles = percentilesOf(all, ps)
		return nil
	})
}

// percentilesOf evaluates ps; none when there are no readings.
func percentilesOf(vc valueCounts, ps []float64) []Percentile {
	out := []Percentile{}
	if len(vc) == 0 {
		return out
	}
	for _, p := range ps {
		out = append(out, Percentile{P: p, Value: vc.percentile(p)})
	}
	return out
}

// mergeCounts sorts value counts and adds up equal values.
func mergeCounts(vc valueCounts) valueCounts {
	sort.Slice(vc, func(i, j int) bool { return vc[i].v < vc[j].v })
	out := vc[:0]
	for _, c := range vc {
		if n := len(out); n > 0 && out[n-1].v == c.v {
			out[n-1].n += c.n
			continue
		}
		out = append(out, c)
	}
	return out
}

// distribution answers GET /v1/distribution?metric[&bins=20|auto] plus scope.
func (s *Service) distribution(w http.ResponseWriter, r *http.Request) {
	var bins int
	own := func(v url.Values) (err error) {
		bins, err = parseBins(v)
		return err
	}
	scoped(s, w, r, "distribution", rangeDefault30d, own, func(ctx context.Context, q request, c common) (DistributionResult, uint64, error) {
		res := DistributionResult{common: c, Histogram: []Bin{}, BinMethod: BinsFixed}
		if bins == 0 {
			res.BinMethod = BinsAuto
		}
		if c.Suppressed {
			return res, 0, nil
		}
		var vc valueCounts
		err := s.consistently(ctx, q.tenant, q.user == "", func(sn snapshot) error {
			src, a := s.weighted(sn, q)
			gc, err := s.valueCounts(ctx, src, a, "''")
			vc = gc.counts[""]
			return err
		})
		if err != nil {
			return res, 0, err
		}
		describe(vc, bins, &res)
		return res, res.Count, nil
	})
}

// describe fills a distribution's figures from its value counts; bins 0
// chooses the count automatically.
func describe(vc valueCounts, bins int, res *DistributionResult) {
	res.Count = vc.total()
	if res.Count == 0 {
		return
	}
	f := func(v float64) *float64 { return &v }
	m := vc.moments()
	res.Min, res.Max = f(vc[0].v), f(vc[len(vc)-1].v)
	res.Q1, res.Median, res.Q3 = f(vc.percentile(25)), f(vc.percentile(50)), f(vc.percentile(75))
	res.Mean, res.Stddev = f(m.mean), m.stddev
	if bins == 0 {
		bins = vc.autoBins()
	}
	res.Histogram = vc.histogram(bins)
	res.Bins = len(res.Histogram)
}

// TrendDay is one UTC day of a trend.
type TrendDay struct {
	Day    string   `json:"day"`
	Count  uint64   `json:"count"`
	Avg    float64  `json:"avg"`
	Min    float64  `json:"min"`
	Max    float64  `json:"max"`
	Stddev *float64 `json:"stddev"`
}

// TrendsResult answers GET /v1/trends.
type TrendsResult struct {
	common
	// Source is the table the figures came from: "rollup" (the daily
	// rollup) or "readings".
	Source string     `json:"source"`
	Days   []TrendDay `json:"days"`
}

// trends answers GET /v1/trends?metric[&period=week|month|quarter|year]
// plus scope. Trends cover whole UTC days: from is rounded down and to up
// to midnight.
func (s *Service) trends(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.timeout(r)
	defer cancel()
	v := r.URL.Query()
	q, err := s.parseRequest(r, rangeDefault30d, time.Now())
	if err == nil && v.Has("period") {
		var from time.Time
		if v.Has("from") {
			err = badParam("period", "give period or from, not both")
		} else if from, _, err = parsePeriod(v, q.to); err == nil {
			q.from = from
		}
	}
	if err == nil && q.token != nil {
		err = s.checkToken(q.token)
	}
	if err != nil {
		s.fail(w, "trends", err)
		return
	}
	q.from = q.from.Truncate(24 * time.Hour)
	if t := q.to.Truncate(24 * time.Hour); !t.Equal(q.to) {
		q.to = t.Add(24 * time.Hour)
	}
	c, ok := s.prepare(ctx, w, q, "trends")
	if !ok {
		return
	}
	res := TrendsResult{common: c, Days: []TrendDay{}, Source: "readings"}
	if s.cfg.TrendsFromRollup && !q.travel {
		res.Source = "rollup"
	}
	if !c.Suppressed {
		days, err := s.trendDays(ctx, q)
		if err != nil {
			s.fail(w, "trends", err)
			return
		}
		res.Days = days
	}
	var n uint64
	for _, d := range res.Days {
		n += d.Count
	}
	audit.SetRows(ctx, int64(n))
	writeJSON(w, http.StatusOK, res)
}

// trendDays reads count, min, max, sum and sum of squares per day, from
// the rollup or the raw readings, and derives avg and stddev the same way
// for both. A request with as_of reads the readings (the rollups cannot
// tell when their rows were recorded).
func (s *Service) trendDays(ctx context.Context, q request) ([]TrendDay, error) {
	if !s.cfg.TrendsFromRollup || q.travel {
		var days []TrendDay
		where, args := s.where(q)
		err := s.consistently(ctx, q.tenant, false, func(sn snapshot) error {
			src, a := s.readings(sn, where, args, q.asOfMs())
			var err error
			days, err = s.collectDays(ctx, fmt.Sprintf(`SELECT d, toUInt64(sum(c)), min(val), max(val), sum(val * c), sum(val * val * c)
				FROM (SELECT %s AS d, val, sum(n) AS c FROM %s GROUP BY d, val HAVING c > 0)
				GROUP BY d ORDER BY d`, dayExpr, src), a)
			return err
		})
		return days, err
	}
	return s.rollupTrendDays(ctx, q)
}

// collectDays runs a query answering day, count, min, max, sum and sum of
// squares, and derives each day's figures.
func (s *Service) collectDays(ctx context.Context, sql string, args []any) ([]TrendDay, error) {
	var days []TrendDay
	err := s.scanRows(ctx, sql, args, func(sc scanner) error {
		var d TrendDay
		var sum, sumSq float64
		if err := sc.Scan(&d.Day, &d.Count, &d.Min, &d.Max, &sum, &sumSq); err != nil {
			return err
		}
		m := momentsFromSums(d.Count, sum, sumSq)
		d.Avg, d.Stddev = m.mean, m.stddev
		days = append(days, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("trends: %w", err)
	}
	return days, nil
}

// trendDay accumulates one day of the rollups.
type trendDay struct {
	n             int64
	min, max      float64
	sum, sumSq    float64
	revised, have bool
}

// rollupTrendDays reads the daily rollup and what revisions changed in it
// (warehouse.DailyRevisionsTable). A day with revisions takes min and max
// from the value rollup, whose signed counts forget retracted values: the
// daily rollup's states cannot.
func (s *Service) rollupTrendDays(ctx context.Context, q request) ([]TrendDay, error) {
	db := s.cfg.Warehouse.Database
	conds := "tenant_id = ? AND metric = ? AND day >= toDate(?) AND day < toDate(?)"
	args := []any{q.tenant, q.metric.Name, dayOf(q.from), dayOf(q.to)}
	if q.user != "" {
		conds += " AND user_id = ?"
		args = append(args, q.user)
	}
	if len(q.filters) > 0 {
		c, a := s.cohortCondition(q.tenant, q.filters, 0)
		conds += " AND " + c
		args = append(args, a...)
	}
	conds += " AND " + warehouse.NotErased(db)
	byDay := map[string]*trendDay{}
	var order []string
	day := func(d string) *trendDay {
		t := byDay[d]
		if t == nil {
			t = &trendDay{}
			byDay[d] = t
			order = append(order, d)
		}
		return t
	}
	err := s.scanRows(ctx, fmt.Sprintf(`SELECT toString(day) AS d, countMerge(readings), minMerge(min_value), maxMerge(max_value),
			sumMerge(sum_value), sumMerge(sum_squares)
		FROM %s.%s WHERE %s GROUP BY d`, db, warehouse.DailyRollupTable, conds), args, func(sc scanner) error {
		var d string
		var n uint64
		var mn, mx, sum, sq float64
		if err := sc.Scan(&d, &n, &mn, &mx, &sum, &sq); err != nil {
			return err
		}
		t := day(d)
		t.n, t.min, t.max, t.sum, t.sumSq, t.have = int64(n), mn, mx, sum, sq, true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("trends: %w", err)
	}
	var revised []any
	err = s.scanRows(ctx, fmt.Sprintf(`SELECT toString(day) AS d, sum(readings), sum(sum_value), sum(sum_squares)
		FROM %s.%s WHERE %s GROUP BY d`, db, warehouse.DailyRevisionsTable, conds), args, func(sc scanner) error {
		var d string
		var n int64
		var sum, sq float64
		if err := sc.Scan(&d, &n, &sum, &sq); err != nil {
			return err
		}
		t := day(d)
		t.n, t.sum, t.sumSq, t.revised = t.n+n, t.sum+sum, t.sumSq+sq, true
		revised = append(revised, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("trends: %w", err)
	}
	if len(revised) > 0 {
		in := strings.TrimSuffix(strings.Repeat("?, ", len(revised)), ", ")
		err = s.scanRows(ctx, fmt.Sprintf(`SELECT toString(day) AS d, min(value), max(value)
			FROM (SELECT day, user_id, value, sum(readings) AS c FROM %s.%s WHERE %s AND toString(day) IN (%s)
				GROUP BY day, user_id, value HAVING c > 0)
			GROUP BY d`, db, warehouse.ValuesRollupTable, conds, in), append(append([]any{}, args...), revised...), func(sc scanner) error {
			var d string
			var mn, mx float64
			if err := sc.Scan(&d, &mn, &mx); err != nil {
				return err
			}
			t := day(d)
			t.min, t.max = mn, mx
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("trends: %w", err)
		}
	}
	sort.Strings(order)
	days := []TrendDay{}
	for _, d := range order {
		t := byDay[d]
		if t.n <= 0 {
			continue // every reading of the day withdrawn
		}
		m := momentsFromSums(uint64(t.n), t.sum, t.sumSq)
		days = append(days, TrendDay{Day: d, Count: uint64(t.n), Min: t.min, Max: t.max, Avg: m.mean, Stddev: m.stddev})
	}
	return days, nil
}

// scanner is what scanRows hands each row to.
type scanner interface{ Scan(dest ...any) error }

// scanRows runs a query and calls fn for every row.
func (s *Service) scanRows(ctx context.Context, sql string, args []any, fn func(scanner) error) error {
	rows, err := s.conn.Query(ctx, sql, args...)
	return warehouse.EachRow(rows, err, func(r warehouse.Rows) error { return fn(r) })
}
