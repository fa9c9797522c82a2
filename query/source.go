package query

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// Reading the raw readings exactly and fast.
//
// The readings table is a ReplacingMergeTree: until a merge runs it may
// hold copies of a reading (a redelivery, a reprocess), and a query must
// collapse them itself, by grouping on the whole sorting key. On 18.16 that
// grouping costs about twenty times the scan it protects (5 s instead of
// 0.25 s per 10 million rows on this project's 2-core machine), and it is
// wasted where no copies can exist.
//
// Copies cannot exist in a partition that is one part made by a merge:
// the merge collapsed every key it saw, and it saw every row of the
// partition. Such partitions (closed months, once merged; `OPTIMIZE TABLE
// ... FINAL` makes them so) are read plainly, the others are grouped. The
// list of clean partitions comes from system.parts before the query and is
// checked again after it: if a clean partition changed meanwhile (a new
// insert, a merge) the query is run again, and after a few tries everything
// is grouped. ClickHouse reads a fixed set of parts per query, and part
// names never come back, so an unchanged list before and after means the
// query saw the same list.
//
// Aggregations return distinct values with their counts (valueCounts), not
// the values: heart rate has a few hundred distinct values among millions
// of readings, and every statistic of the API follows exactly from them.
//
// Revisions (corrections and withdrawals) live in their own table as
// signed rows (warehouse.RevisionsTable): every reading source yields a
// count n per row, 1 for a reading as first accepted and the row's sign
// for a revision row, and every consumer adds up n, keeping what adds up
// to more than 0. A tenant without revisions reads the readings alone.
// as_of leaves out what was recorded after it: readings by their ingest
// time, revision rows by the time their revision was recorded; the
// rollups cannot tell when their rows were recorded, so a request with
// as_of reads the readings.

// partitionKey is the readings table's partition expression that the
// clean-partition shortcut relies on; with any other key it is disabled.
const partitionKey = "toYYYYMM(measured_at)"

// snapshot is the readings partitions at one moment: the clean ones,
// partition (YYYYMM) -> the one merged part it consists of, and the
// others. The zero snapshot groups everything.
type snapshot struct {
	clean map[uint32]string
	dirty map[uint32]bool
	// erasures is whether the tenant has erased users; without any, the
	// per-row erasure check is left out.
	erasures bool
	// rollupPays is whether the value rollup holds at most 1/minCondensation
	// as many rows as the readings (see weighted).
	rollupPays bool
	// revisions is whether the tenant has revision rows; without any,
	// the revisions table is left out.
	revisions bool
}

// minCondensation is how many readings a value-rollup row must stand for,
// on average, for the rollup to be read instead of the readings. Readings
// sparse per user and day (a few a day, nearly all distinct) give a rollup
// as large as the readings and slower to filter (it is read whole-day by
// whole-day, with a per-row count); dense ones (a heart rate every few
// seconds) condense about a hundredfold.
const minCondensation = 2

// snapshot lists the readings partitions, clean or not, and whether
// tenant has erasures and revisions. consistently takes one before and one
// after every answer, and on 18.16 each query costs about a millisecond
// whatever it reads, so the three questions are asked at once (on a single
// server the partition key is remembered, see keyCheck).
func (s *Service) snapshot(ctx context.Context, tenant string) (snapshot, error) {
	var (
		sn      snapshot
		erased  uint8
		revised bool
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := s.conn.QueryRow(gctx, fmt.Sprintf(`SELECT count() > 0 FROM %s.%s WHERE tenant_id = ?`,
			s.cfg.Warehouse.Database, warehouse.ErasedUsersTable), tenant).Scan(&erased)
		if err != nil {
			return fmt.Errorf("erased users: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) {
		revised, err = s.hasRevisions(gctx, tenant)
		return err
	})
	g.Go(func() (err error) {
		if c := warehouse.ClusterOf(s.conn); c != nil {
			sn, err = s.clusterPartitions(gctx, c)
		} else {
			sn, err = s.serverPartitions(gctx)
		}
		return err
	})
	if err := g.Wait(); err != nil {
		return snapshot{}, err
	}
	sn.erasures, sn.revisions = erased > 0, revised
	return sn, nil
}

// keyCheck remembers whether the readings table's partition key is
// partitionKey. Reading system.tables costs 18.16 about a millisecond, and
// the key changes only when a migration or a replay swap replaces the
// table, so it is looked up again after keyCheckFor.
type keyCheck struct {
	mu      sync.Mutex
	monthly bool
	at      time.Time
}

// keyCheckFor is how long a looked-up partition key is trusted.
const keyCheckFor = time.Minute

// monthlyPartitions reports whether the readings table is partitioned by
// partitionKey, from the cache or from system.tables.
func (s *Service) monthlyPartitions(ctx context.Context) (bool, error) {
	k := &s.monthly
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.at.IsZero() && time.Since(k.at) < keyCheckFor {
		return k.monthly, nil
	}
	var key string
	err := s.conn.QueryRow(ctx, `SELECT partition_key FROM system.tables WHERE database = ? AND name = ?`,
		s.cfg.Warehouse.Database, warehouse.ReadingsTable).Scan(&key)
	if err != nil {
		return false, fmt.Errorf("readings partition key: %w", err)
	}
	k.monthly, k.at = key == partitionKey, time.Now()
	return k.monthly, nil
}

// serverPartitions lists the readings partitions of a single server, clean
// or not.
func (s *Service) serverPartitions(ctx context.Context) (snapshot, error) {
	monthly, err := s.monthlyPartitions(ctx)
	if err != nil || !monthly {
		return snapshot{}, err
	}
	var (
		partitions, names []string
		levels            []uint32
	)
	err = s.conn.QueryRow(ctx, `SELECT groupArray(partition), groupArray(name), groupArray(level) FROM system.parts WHERE database = ? AND table = ? AND active`,
		s.cfg.Warehouse.Database, warehouse.ReadingsTable).Scan(&partitions, &names, &levels)
	if err != nil {
		return snapshot{}, fmt.Errorf("readings parts: %w", err)
	}
	return partsSnapshot(partitions, names, levels), nil
}

// hasRevisions reports whether tenant has rows in the revisions table.
func (s *Service) hasRevisions(ctx context.Context, tenant string) (bool, error) {
	var n uint8
	err := s.conn.QueryRow(ctx, fmt.Sprintf(`SELECT count() > 0 FROM (SELECT 1 FROM %s.%s WHERE tenant_id = ? LIMIT 1)`,
		s.cfg.Warehouse.Database, warehouse.RevisionsTable), tenant).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("revisions: %w", err)
	}
	return n > 0, nil
}

// rollupPays compares the active rows of the value rollup with those of
// the readings (all tenants: system.parts knows no tenant).
func (s *Service) rollupPays(ctx context.Context) (bool, error) {
	if c := warehouse.ClusterOf(s.conn); c != nil {
		return s.clusterRollupPays(ctx, c)
	}
	n, err := warehouse.ScanMap[string, uint64](s.conn.Query(ctx, `SELECT table, sum(rows) FROM system.parts WHERE database = ? AND table IN (?, ?) AND active GROUP BY table`,
		s.cfg.Warehouse.Database, warehouse.ReadingsTable, warehouse.ValuesRollupTable))
	if err != nil {
		return false, fmt.Errorf("table sizes: %w", err)
	}
	return n[warehouse.ValuesRollupTable]*minCondensation <= n[warehouse.ReadingsTable], nil
}

// partsSnapshot sorts a server's active readings parts (partition, name and
// merge level of each) into clean and dirty month partitions; a partition
// that is not a month disables the shortcut (the zero snapshot).
func partsSnapshot(partitions, names []string, levels []uint32) snapshot {
	parts := map[uint32][]string{}
	merged := map[string]bool{}
	for i, partition := range partitions {
		p, err := strconv.ParseUint(partition, 10, 32)
		if err != nil || i >= len(names) || i >= len(levels) {
			return snapshot{}
		}
		parts[uint32(p)] = append(parts[uint32(p)], names[i])
		merged[names[i]] = levels[i] > 0
	}
	sn := snapshot{clean: map[uint32]string{}, dirty: map[uint32]bool{}}
	for p, names := range parts {
		if len(names) == 1 && merged[names[0]] {
			sn.clean[p] = names[0]
		} else {
			sn.dirty[p] = true
		}
	}
	return sn
}

// heldIn reports whether later has the same partitions and every clean
// one is still the same single part. A grouped partition may have been
// merged meanwhile: it was read by partition, whatever its parts.
func (sn snapshot) heldIn(later snapshot) bool {
	if later.erasures != sn.erasures || later.revisions != sn.revisions || len(later.clean)+len(later.dirty) != len(sn.clean)+len(sn.dirty) {
		return false
	}
	for p, name := range sn.clean {
		if later.clean[p] != name {
			return false
		}
	}
	for p := range sn.dirty {
		if _, ok := later.clean[p]; !ok && !later.dirty[p] {
			return false
		}
	}
	return true
}

// list renders partitions for SQL; they are numbers parsed above.
func list[V any](ps map[uint32]V) string {
	out := make([]string, 0, len(ps))
	for p := range ps {
		out = append(out, strconv.FormatUint(uint64(p), 10))
	}
	return strings.Join(out, ", ")
}

// consistently runs fn with a snapshot and repeats it if the partitions
// changed while it ran; fn must replace, not add to, what an earlier try
// produced. rollup says whether fn may read the value rollup (a cohort or
// the whole tenant), and so whether it is worth finding out if it pays.
func (s *Service) consistently(ctx context.Context, tenant string, rollup bool, fn func(snapshot) error) error {
	pays := false
	if rollup && s.cfg.ValuesFromRollup {
		var err error
		if pays, err = s.rollupPays(ctx); err != nil {
			return err
		}
	}
	for range 3 {
		sn, err := s.snapshot(ctx, tenant)
		if err != nil {
			return err
		}
		sn.rollupPays = pays
		if err := fn(sn); err != nil {
			return err
		}
		if len(sn.clean) == 0 && sn.erasures && sn.revisions {
			return nil // everything was grouped and checked: nothing to recheck
		}
		later, err := s.snapshot(ctx, tenant)
		if err != nil {
			return err
		}
		if sn.heldIn(later) {
			return nil
		}
	}
	return fn(snapshot{erasures: true, revisions: true}) // busy partitions: group everything
}

// readings is a subquery yielding each stored reading once, and each
// revision row, with columns uid (user), mt (metric), val (value), at_ms
// (measured_at_ms) and n (Int64: 1 for a reading, the sign of a revision
// row; add them up). where is a condition on the table's columns with ?
// placeholders, built from constants, whose first placeholder is the
// tenant; the returned arguments repeat args once per branch. asOf (epoch
// ms, 0 for none) leaves out what was recorded after it.
func (s *Service) readings(sn snapshot, where string, args []any, asOf int64) (string, []any) {
	src, a := s.originals(sn, where, args, asOf)
	if !sn.revisions {
		return src, a
	}
	rsrc, ra := s.revisionRows(sn, where, args, asOf)
	return "(SELECT uid, mt, val, at_ms, n FROM " + src + " UNION ALL " + rsrc + ")", append(a, ra...)
}

// revisionRows selects the revision rows of the readings where selects,
// with readings' columns: copies collapsed by the sorting key.
func (s *Service) revisionRows(sn snapshot, where string, args []any, asOf int64) (string, []any) {
	cond, a := where, append([]any{}, args...)
	if sn.erasures {
		cond = fmt.Sprintf("(%s) AND %s", cond, s.notErased())
		a = append(a, args[0])
	}
	if asOf != 0 {
		cond += " AND recorded_at_ms <= ?"
		a = append(a, asOf)
	}
	return fmt.Sprintf(`SELECT user_id AS uid, metric AS mt, any(value) AS val, measured_at_ms AS at_ms, toInt64(sign) AS n
		FROM %s.%s WHERE %s GROUP BY user_id, metric, measured_at_ms, event_id, revision, sign`,
		s.cfg.Warehouse.Database, warehouse.RevisionsTable, cond), a
}

// originals is readings' subquery over the readings table alone.
func (s *Service) originals(sn snapshot, where string, args []any, asOf int64) (string, []any) {
	db := s.cfg.Warehouse.Database
	// The tenant is fixed by where, so the erasure check needs only the
	// user: one string per row instead of a (tenant, user) tuple, which
	// costs twice as much on 18.16. It hides erased users exactly like
	// warehouse.NotErased, and is left out for a tenant without erasures
	// (an erasure stored during the query is rechecked by consistently).
	cond := where
	if sn.erasures {
		cond = fmt.Sprintf("(%s) AND %s", where, s.notErased())
		args = append(append([]any{}, args...), args[0])
	}
	if asOf != 0 {
		cond += " AND ingested_at_ms <= ?"
		args = append(append([]any{}, args...), asOf)
	}
	grouped := func(partitions string) string {
		return fmt.Sprintf(`SELECT user_id AS uid, metric AS mt, any(value) AS val, measured_at_ms AS at_ms, toInt64(1) AS n
			FROM %s.%s WHERE %s%s GROUP BY user_id, metric, measured_at_ms, event_id`, db, warehouse.ReadingsTable, partitions, cond)
	}
	if len(sn.clean) == 0 {
		return "(" + grouped("") + ")", args
	}
	sql := fmt.Sprintf(`SELECT user_id AS uid, metric AS mt, value AS val, measured_at_ms AS at_ms, toInt64(1) AS n
		FROM %s.%s WHERE %s IN (%s) AND %s`, db, warehouse.ReadingsTable, partitionKey, list(sn.clean), cond)
	if len(sn.dirty) == 0 {
		return "(" + sql + ")", args
	}
	sql += " UNION ALL " + grouped(partitionKey+" IN ("+list(sn.dirty)+") AND ")
	return "(" + sql + ")", append(append([]any{}, args...), args...)
}

// notErased is a condition on user_id, with one placeholder for the
// tenant, that hides the tenant's erased users (see readings).
func (s *Service) notErased() string {
	return fmt.Sprintf("user_id NOT IN (SELECT user_id FROM %s.%s WHERE tenant_id = ?)", s.cfg.Warehouse.Database, warehouse.ErasedUsersTable)
}

// weighted is the request's readings as a subquery with columns uid
// (user), val (value), dd (UTC day, a Date) and n (Int64): n readings of
// user uid on day dd have value val. Consumers add up n, keeping sums
// above 0 (revision rows retract with -1); they never count rows.
//
// For a cohort or the whole tenant, with Config.ValuesFromRollup, the
// whole UTC days of the range come from the value rollup, already counted
// (about a hundred rows per user and day instead of thousands), and only
// the partial days at its ends from the readings, one row each. A single
// user's readings are contiguous in the readings table's sorting key and
// few, so they are read there; and so is everything when the rollup does
// not condense the readings (snapshot.rollupPays).
//
// The rollup, unlike the readings table, cannot collapse copies of a
// reading: the two paths agree because the projector inserts every
// accepted reading exactly once (see package warehouse). Copies made by
// hand would be counted twice by the rollup path only.
func (s *Service) weighted(sn snapshot, q request) (string, []any) {
	var parts []string
	var args []any
	raw := func(r request) {
		where, wa := s.where(r)
		src, a := s.readings(sn, where, wa, r.asOfMs())
		parts = append(parts, "SELECT uid, val, toDate(intDiv(at_ms, 86400000)) AS dd, n FROM "+src)
		args = append(args, a...)
	}
	first, last, ok := wholeDays(q.from, q.to)
	if !ok || !s.cfg.ValuesFromRollup || !sn.rollupPays || q.user != "" || q.travel {
		raw(q)
		return "(" + parts[0] + ")", args
	}
	if q.from.Before(first) {
		head := q
		head.to = first
		raw(head)
	}
	src, a := s.rollup(sn, q, first, last)
	parts = append(parts, src)
	args = append(args, a...)
	if last.Before(q.to) {
		tail := q
		tail.from = last
		raw(tail)
	}
	return "(" + strings.Join(parts, " UNION ALL ") + ")", args
}

// rollup selects the value rollup's rows of the request's scope on the
// UTC days [first, last), with weighted's columns. The rollup is a
// SummingMergeTree whose unmerged parts may hold a key more than once;
// adding up n makes that harmless.
func (s *Service) rollup(sn snapshot, q request, first, last time.Time) (string, []any) {
	conds, args := s.scope(q, []string{"tenant_id = ?", "metric = ?", "day >= toDate(?)", "day < toDate(?)"},
		[]any{q.tenant, q.metric.Name, dayOf(first), dayOf(last)})
	if sn.erasures {
		conds = append(conds, s.notErased())
		args = append(args, q.tenant)
	}
	return fmt.Sprintf("SELECT user_id AS uid, value AS val, day AS dd, toInt64(readings) AS n FROM %s.%s WHERE %s",
		s.cfg.Warehouse.Database, warehouse.ValuesRollupTable, strings.Join(conds, " AND ")), args
}

// wholeDays is the whole UTC days inside [from, to): [first, last), and
// whether there is at least one.
func wholeDays(from, to time.Time) (first, last time.Time, ok bool) {
	first = from.UTC().Truncate(24 * time.Hour) // Truncate counts from UTC midnight
	if first.Before(from) {
		first = first.Add(24 * time.Hour)
	}
	last = to.UTC().Truncate(24 * time.Hour)
	return first, last, first.Before(last)
}

// where is the request's condition on the readings table's columns. The
// whole-second measured_at bounds let ClickHouse skip partitions; the
// millisecond bounds are the exact range.
func (s *Service) where(q request) (string, []any) {
	fromMS, toMS := q.from.UnixMilli(), q.to.UnixMilli()
	conds, args := s.scope(q, []string{"tenant_id = ?", "metric = ?",
		"measured_at >= toDateTime(?)", "measured_at <= toDateTime(?)", "measured_at_ms >= ?", "measured_at_ms < ?"},
		[]any{q.tenant, q.metric.Name, floorDiv(fromMS, 1000), floorDiv(toMS-1, 1000), fromMS, toMS})
	return strings.Join(conds, " AND "), args
}

// scope appends the request's user or cohort restriction to conds and args.
func (s *Service) scope(q request, conds []string, args []any) ([]string, []any) {
	if q.user != "" {
		conds = append(conds, "user_id = ?")
		args = append(args, q.user)
	}
	if len(q.filters) > 0 {
		c, a := s.cohortCondition(q.tenant, q.filters, q.asOfMs())
		conds = append(conds, c)
		args = append(args, a...)
	}
	return conds, args
}

// cohortCondition restricts user_id to the users matching every filter
// (as of asOf, epoch ms, 0 for now).
func (s *Service) cohortCondition(tenant string, filters []filter, asOf int64) (string, []any) {
	conds := make([]string, len(filters))
	args := []any{tenant}
	for i, f := range filters {
		conds[i] = f.dim + " = ?" // f.dim is one of Dimensions
		args = append(args, f.value)
	}
	return fmt.Sprintf("user_id IN (SELECT user_id FROM (%s) WHERE %s)",
		s.dimension(asOf), strings.Join(conds, " AND ")), args
}

// dimension is the user dimension's subquery as of asOf (epoch ms, 0 for
// now), with one ? for the tenant.
func (s *Service) dimension(asOf int64) string {
	if asOf != 0 {
		return warehouse.UserDimensionAsOf(s.cfg.Warehouse.Database, asOf)
	}
	return warehouse.UserDimension(s.cfg.Warehouse.Database)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// groupedCounts is the distinct values with counts of each group, groups
// in ascending order.
type groupedCounts struct {
	keys   []string
	counts map[string]valueCounts
}

// valueCounts runs SELECT group, val, sum(n) over src (weighted's columns)
// and collects the answer, refusing (errTooBroad) more than
// MaxDistinctValues rows. group is an SQL expression over src's columns
// rendered as a String: dayGroup, or a quoted empty string for one group.
func (s *Service) valueCounts(ctx context.Context, src string, args []any, group string) (groupedCounts, error) {
	sql := fmt.Sprintf(`SELECT %s AS g, val, sum(n) AS c FROM %s GROUP BY g, val HAVING c > 0 ORDER BY g, val`, group, src)
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return groupedCounts{}, fmt.Errorf("value counts: %w", err)
	}
	defer rows.Close()
	out := groupedCounts{counts: map[string]valueCounts{}}
	n := 0
	for rows.Next() {
		var g string
		var c valueCount
		var cnt int64
		if err := rows.Scan(&g, &c.v, &cnt); err != nil {
			return groupedCounts{}, fmt.Errorf("value counts: %w", err)
		}
		c.n = uint64(cnt)
		if n++; n > s.cfg.MaxDistinctValues {
			return groupedCounts{}, errTooBroad
		}
		if _, ok := out.counts[g]; !ok {
			out.keys = append(out.keys, g)
		}
		out.counts[g] = append(out.counts[g], c)
	}
	if err := rows.Err(); err != nil {
		return groupedCounts{}, fmt.Errorf("value counts: %w", err)
	}
	return out, nil
}

// dayExpr renders a UTC day of at_ms as YYYY-MM-DD: whole days since the
// epoch, formatted by the server with no time zone involved.
const dayExpr = "toString(toDate(intDiv(at_ms, 86400000)))"

// dayGroup is the same over weighted's day column.
const dayGroup = "toString(dd)"

// scopeUsers counts the users with readings in the request's scope, up to
// MinCohortUsers: all suppression needs. DISTINCT with LIMIT stops reading
// once that many users are found, so a large cohort costs a few granules
// instead of a second full scan. Copies of a reading share its user, so no
// grouping is needed. With revisions or as_of, a user counts only when
// their readings add up to more than none.
func (s *Service) scopeUsers(ctx context.Context, q request) (uint64, error) {
	where, args := s.where(q)
	db := s.cfg.Warehouse.Database
	var n uint64
	revised, err := s.hasRevisions(ctx, q.tenant)
	if err != nil {
		return 0, err
	}
	if revised || q.travel {
		src, a := s.readings(snapshot{erasures: true, revisions: revised}, where, args, q.asOfMs())
		sql := fmt.Sprintf(`SELECT count() FROM (SELECT uid FROM %s GROUP BY uid HAVING sum(n) > 0 LIMIT %d)`, src, s.cfg.MinCohortUsers)
		if err := s.conn.QueryRow(ctx, sql, a...).Scan(&n); err != nil {
			return 0, fmt.Errorf("scope users: %w", err)
		}
		return n, nil
	}
	sql := fmt.Sprintf(`SELECT count() FROM (SELECT DISTINCT user_id FROM %s.%s WHERE (%s) AND %s LIMIT %d)`,
		db, warehouse.ReadingsTable, where, warehouse.NotErased(db), s.cfg.MinCohortUsers)
	if err := s.conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("scope users: %w", err)
	}
	return n, nil
}

// dayOf formats a time's UTC day.
func dayOf(t time.Time) string { return t.UTC().Format(time.DateOnly) }
