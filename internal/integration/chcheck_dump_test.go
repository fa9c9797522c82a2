package integration

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// engine is one ClickHouse engine of the check: the stack's 18.16 server
// or the current one, with the check's own connection to it.
type engine struct {
	name string
	wh   warehouse.Config
	conn driver.Conn
	// group is the live projector's consumer group on this engine.
	group string
	proj  *running
	// query and raw are query services reading this engine, with and
	// without the value rollup.
	query, raw string
}

// rows runs one of the check's own statements and renders every row as
// text, each value exactly (floats in shortest round-trip form).
func (e *engine) rows(ctx context.Context, sql string, args ...any) ([]string, error) {
	rs, err := e.conn.Query(ctx, checkTag+sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", e.name, sql, err)
	}
	defer rs.Close()
	types := rs.ColumnTypes()
	var out []string
	for rs.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rs.Scan(dest...); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", e.name, sql, err)
		}
		vals := make([]string, len(dest))
		for i, d := range dest {
			vals[i] = text(reflect.ValueOf(d).Elem())
		}
		out = append(out, strings.Join(vals, "|"))
	}
	return out, rs.Err()
}

// text renders a scanned value.
func text(v reflect.Value) string {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "NULL"
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	}
	return fmt.Sprint(v.Interface())
}

// exec runs one of the check's own statements.
func (e *engine) exec(ctx context.Context, sql string, args ...any) error {
	if err := e.conn.Exec(ctx, checkTag+sql, args...); err != nil {
		return fmt.Errorf("%s: %s: %w", e.name, sql, err)
	}
	return nil
}

// dumpSQL is a query that lists a table's content in a form both engines
// must give identically: every column the projector writes (not the
// server's insert times), rollups merged per key (unmerged parts differ
// with timing), in a total order.
func dumpSQL(db, table string) string {
	switch table {
	case warehouse.DailyRollupTable:
		return fmt.Sprintf(`SELECT tenant_id, user_id, metric, day, countMerge(readings), minMerge(min_value), maxMerge(max_value),
			sumMerge(sum_value), sumMerge(sum_squares) FROM %s.%s GROUP BY tenant_id, user_id, metric, day
			ORDER BY tenant_id, user_id, metric, day`, db, table)
	case warehouse.ValuesRollupTable:
		return fmt.Sprintf(`SELECT tenant_id, user_id, metric, day, value, sum(readings) FROM %s.%s
			GROUP BY tenant_id, user_id, metric, day, value ORDER BY tenant_id, user_id, metric, day, value`, db, table)
	case warehouse.ErasedUsersTable:
		// Whom each erasure was for. The rest of the record is sealed with
		// the user's key: a rebuild after the key was shredded knows only
		// the user (docs/privacy.md), so the rest differs by design.
		return fmt.Sprintf("SELECT DISTINCT tenant_id, user_id FROM %s.%s ORDER BY tenant_id, user_id", db, table)
	}
	cols := strings.Join(warehouse.TableColumns(table), ", ")
	return fmt.Sprintf("SELECT %s FROM %s.%s ORDER BY %s", cols, db, table, cols)
}

// dumpedTables are the tables whose content both engines must hold
// identically (replay_pauses holds random pause ids).
var dumpedTables = []string{warehouse.ReadingsTable, warehouse.DailyRollupTable, warehouse.ValuesRollupTable, warehouse.RejectedTable,
	warehouse.AlertsTable, warehouse.ProfileEventsTable, warehouse.DeviceEventsTable, warehouse.ErasedUsersTable}

// dump is every dumped table's content on one engine.
func (e *engine) dump(ctx context.Context, db string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, t := range dumpedTables {
		rows, err := e.rows(ctx, dumpSQL(db, t))
		if err != nil {
			return nil, err
		}
		out[t] = rows
	}
	return out, nil
}

// sameDumps reports how two dumps differ (the first few rows of each
// table), or "" when they are identical.
func sameDumps(a, b map[string][]string, aName, bName string) string {
	var out []string
	for _, t := range dumpedTables {
		x, y := a[t], b[t]
		if reflect.DeepEqual(x, y) {
			continue
		}
		msg := fmt.Sprintf("%s: %d rows on %s, %d on %s", t, len(x), aName, len(y), bName)
		shown := 0
		for i := 0; i < max(len(x), len(y)) && shown < 3; i++ {
			var xi, yi string
			if i < len(x) {
				xi = x[i]
			}
			if i < len(y) {
				yi = y[i]
			}
			if xi != yi {
				msg += fmt.Sprintf("\n    row %d: %s\n         vs %s", i, xi, yi)
				shown++
			}
		}
		out = append(out, msg)
	}
	return strings.Join(out, "\n  ")
}

// compareEngines dumps db on both engines and fails on any difference.
func compareEngines(t *testing.T, ctx context.Context, engines []*engine, db, stage string) map[string][]string {
	t.Helper()
	var dumps []map[string][]string
	for _, e := range engines {
		d, err := e.dump(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		dumps = append(dumps, d)
	}
	if diff := sameDumps(dumps[0], dumps[1], engines[0].name, engines[1].name); diff != "" {
		t.Errorf("%s: the engines hold different rows:\n  %s", stage, diff)
	}
	return dumps[0]
}

// tdigestWithin checks the daily rollup's t-digest percentiles on an
// engine against exact nearest-rank percentiles of the stored readings:
// the t-digest is documented as approximate, so each estimate must lie
// between the exact percentiles 2 points below and above. It returns the
// largest distance, in value units, from the exact percentile.
func tdigestWithin(t *testing.T, ctx context.Context, e *engine, db string) float64 {
	t.Helper()
	est, err := e.rows(ctx, fmt.Sprintf(`SELECT user_id, day, quantilesTDigestMerge(0.1, 0.5, 0.9)(quantiles) FROM %s.%s
		GROUP BY user_id, day ORDER BY user_id, day`, db, warehouse.DailyRollupTable))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := e.rows(ctx, fmt.Sprintf(`SELECT user_id, toDate(measured_at, 'UTC') AS d, arraySort(groupArray(value)) FROM %s.%s
		GROUP BY user_id, d ORDER BY user_id, d`, db, warehouse.ReadingsTable))
	if err != nil {
		t.Fatal(err)
	}
	if len(est) != len(vals) || len(est) == 0 {
		t.Fatalf("%s: t-digests of %d user days, readings of %d", e.name, len(est), len(vals))
	}
	worst := 0.0
	for i := range est {
		q := floats(strings.Split(est[i], "|")[2])
		v := floats(strings.Split(vals[i], "|")[2])
		sort.Float64s(v)
		for j, p := range []float64{10, 50, 90} {
			lo, hi := nearestRank(v, []float64{math.Max(p-2, 0)})[0], nearestRank(v, []float64{math.Min(p+2, 100)})[0]
			if q[j] < lo || q[j] > hi {
				t.Errorf("%s: t-digest p%g of %s = %g, outside the exact p%g..p%g = %g..%g", e.name, p, est[i], q[j], p-2, p+2, lo, hi)
			}
			worst = math.Max(worst, math.Abs(q[j]-nearestRank(v, []float64{p})[0]))
		}
	}
	return worst
}

// floats parses "[1 2 3]" as text renders a slice.
func floats(s string) []float64 {
	var out []float64
	for _, f := range strings.Fields(strings.Trim(s, "[]")) {
		x, err := strconv.ParseFloat(f, 64)
		if err == nil {
			out = append(out, x)
		}
	}
	return out
}
