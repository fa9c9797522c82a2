package integration

import (
	"context"
	"fmt"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// v1Readings is the readings table of the project's first version (commit
// 8409d4b): no positions, no comments, and no rollups, views or other
// tables. Migrate must upgrade it in place.
const v1Readings = `CREATE TABLE IF NOT EXISTS %s.readings (
	tenant_id String, user_id String, device_id String, gateway_id String, metric String, loinc String,
	value Float64, unit String, measured_at DateTime, measured_at_ms Int64, received_at_ms Int64, ingested_at_ms Int64,
	event_id String, source_topic String, source_partition Int32, source_offset Int64, inserted_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(measured_at)
ORDER BY (tenant_id, user_id, metric, measured_at_ms, event_id)`

// v1Row is a reading as the first version stored it.
type v1Row struct {
	user  string
	at    time.Time
	value float64
}

// v1Fixture is the old database's readings: three users over two days and
// two months; the last row is a copy of the first (inserted separately),
// which the upgrade's backfill must count once.
func v1Fixture() []v1Row {
	base := time.Date(2016, 4, 30, 23, 58, 0, 0, time.UTC)
	var out []v1Row
	for i := range 12 {
		out = append(out, v1Row{fmt.Sprintf("u%d", i%3), base.Add(time.Duration(i) * time.Minute), 60 + float64(i%5)*2.5})
	}
	return append(out, out[0])
}

// v1Insert is an INSERT of rows into the first version's table (a SELECT
// of literals: 18.16's native protocol waits for data blocks after an
// INSERT ... VALUES).
func v1Insert(db string, rows []v1Row) string {
	sel := make([]string, len(rows))
	for i, r := range rows {
		ms := r.at.UnixMilli()
		sel[i] = fmt.Sprintf("SELECT 't1', '%s', 'd-%s', 'gw', 'heart_rate', '8867-4', toFloat64(%g), '/min', toDateTime(%d), toInt64(%d), toInt64(%d), toInt64(%d), 'e-%s-%d', 'raw', toInt32(0), toInt64(%d)",
			r.user, r.user, r.value, ms/1000, ms, ms, ms, r.user, ms, i)
	}
	return fmt.Sprintf(`INSERT INTO %s.readings (tenant_id, user_id, device_id, gateway_id, metric, loinc, value, unit, measured_at,
		measured_at_ms, received_at_ms, ingested_at_ms, event_id, source_topic, source_partition, source_offset) %s`, db, strings.Join(sel, " UNION ALL "))
}

// v1Rollups computes the dumps of both rollups of the fixture, one copy of
// each reading.
func v1Rollups(rows []v1Row) (daily, values []string) {
	type key struct{ user, day string }
	seen := map[v1Row]bool{}
	per := map[key][]float64{}
	for _, r := range rows {
		if !seen[r] {
			seen[r] = true
			k := key{r.user, r.at.Format(time.DateOnly)}
			per[k] = append(per[k], r.value)
		}
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	for k, vs := range per {
		day := k.day + "T00:00:00Z"
		lo, hi, sum, sq := math.Inf(1), math.Inf(-1), 0.0, 0.0
		counts := map[float64]int{}
		for _, v := range vs {
			lo, hi, sum, sq = math.Min(lo, v), math.Max(hi, v), sum+v, sq+v*v
			counts[v]++
		}
		daily = append(daily, fmt.Sprintf("t1|%s|heart_rate|%s|%d|%s|%s|%s|%s", k.user, day, len(vs), f(lo), f(hi), f(sum), f(sq)))
		for v, n := range counts {
			values = append(values, fmt.Sprintf("t1|%s|heart_rate|%s|%s|%d", k.user, day, f(v), n))
		}
	}
	// The dumps' order: by user, day, then value (numerically).
	sortRows := func(rs []string, numeric int) {
		sort.Slice(rs, func(i, j int) bool {
			a, b := strings.Split(rs[i], "|"), strings.Split(rs[j], "|")
			if a[1] != b[1] || a[3] != b[3] {
				return a[1]+a[3] < b[1]+b[3]
			}
			x, _ := strconv.ParseFloat(a[numeric], 64)
			y, _ := strconv.ParseFloat(b[numeric], 64)
			return x < y
		})
	}
	sortRows(daily, 4)
	sortRows(values, 4)
	return daily, values
}

// schemaOf lists a database's tables and columns as both engines must
// report them.
func schemaOf(ctx context.Context, e *engine, db string) ([]string, error) {
	tables, err := e.rows(ctx, "SELECT name, engine FROM system.tables WHERE database = ? ORDER BY name", db)
	if err != nil {
		return nil, err
	}
	cols, err := e.rows(ctx, `SELECT table, name, type, default_kind, default_expression, comment FROM system.columns
		WHERE database = ? ORDER BY table, name`, db)
	for i, c := range cols {
		// 18.16 shows a default of another type than its column's as the
		// cast it applies (CAST(-1, 'Int64')), current releases as written.
		cols[i] = castDefault.ReplaceAllString(c, "|$1|")
	}
	return append(tables, cols...), err
}

var castDefault = regexp.MustCompile(`\|CAST\((.*), '\w+'\)\|`)

// checkMigrations upgrades a first-version database and creates a fresh
// one on both engines, each migrated twice, and compares the schemas, the
// upgrade's backfill and the old rows' positions.
func checkMigrations(t *testing.T, ctx context.Context, engines []*engine, db string) {
	old := db + "_v1"
	fixture := v1Fixture()
	wantDaily, wantValues := v1Rollups(fixture)
	var schemas [][]string
	for _, e := range engines {
		for _, stmt := range []string{"CREATE DATABASE IF NOT EXISTS " + old, fmt.Sprintf(v1Readings, old),
			v1Insert(old, fixture[:len(fixture)-1]), v1Insert(old, fixture[len(fixture)-1:])} {
			if err := e.exec(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{old, old, db, db} { // upgrade, repeat; fresh, repeat
			if err := warehouse.Migrate(ctx, e.conn, d); err != nil {
				t.Fatalf("%s: migrate %s: %v", e.name, d, err)
			}
		}
		upgraded, err := schemaOf(ctx, e, old)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := schemaOf(ctx, e, db)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(upgraded, fresh) {
			t.Errorf("%s: the upgraded schema differs from a fresh one:\n  upgraded %v\n  fresh    %v", e.name, upgraded, fresh)
		}
		for _, line := range fresh {
			f := strings.Split(line, "|")
			if len(f) != 6 || strings.HasSuffix(f[0], "_mv") { // views' columns are their queries'
				continue
			}
			if warehouse.TableColumnTypes(f[0])[f[1]] != f[2] {
				t.Errorf("%s: column %s.%s is %s, defined as %q", e.name, f[0], f[1], f[2], warehouse.TableColumnTypes(f[0])[f[1]])
			}
		}
		schemas = append(schemas, fresh)
		d, err := e.dump(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(d[warehouse.DailyRollupTable], wantDaily) || !reflect.DeepEqual(d[warehouse.ValuesRollupTable], wantValues) {
			t.Errorf("%s: backfilled rollups\n  %v\n  %v\ncomputed independently\n  %v\n  %v", e.name,
				d[warehouse.DailyRollupTable], d[warehouse.ValuesRollupTable], wantDaily, wantValues)
		}
		if pos, err := e.rows(ctx, "SELECT DISTINCT log_partition, log_offset FROM "+old+".readings"); err != nil || !reflect.DeepEqual(pos, []string{"-1|-1"}) {
			t.Errorf("%s: positions of the old rows %v (%v); want -1|-1", e.name, pos, err)
		}
	}
	if !reflect.DeepEqual(schemas[0], schemas[1]) {
		for i := 0; i < max(len(schemas[0]), len(schemas[1])); i++ {
			var a, b string
			if i < len(schemas[0]) {
				a = schemas[0][i]
			}
			if i < len(schemas[1]) {
				b = schemas[1][i]
			}
			if a != b {
				t.Errorf("schema line %d:\n  %s: %s\n  %s: %s", i, engines[0].name, a, engines[1].name, b)
			}
		}
	}
}

// docExamples are the SQL examples of docs/warehouse.md (analysts copy
// them), for the database db and tenant (TestProjectorErasure runs them on
// 18.16 alone).
func docExamples(t *testing.T, db, tenant string) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/warehouse.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, block := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		sql := strings.ReplaceAll(block[1], "vitals.", db+".")
		sql = strings.ReplaceAll(sql, "'default'", "'"+tenant+"'")
		sql = strings.ReplaceAll(sql, "database = 'vitals'", "database = '"+db+"'")
		out = append(out, sql)
	}
	if len(out) < 5 {
		t.Fatalf("%d SQL examples in docs/warehouse.md", len(out))
	}
	return out
}

// compareDocExamples runs the documentation's examples on both engines and
// compares the answers: exactly, except for t-digest percentiles
// (approximate) and system tables (the engines' own), whose row counts
// must agree.
func compareDocExamples(t *testing.T, ctx context.Context, engines []*engine, db, tenant string) {
	for _, sql := range docExamples(t, db, tenant) {
		var answers [][]string
		for _, e := range engines {
			rows, err := e.rows(ctx, sql)
			if err != nil {
				t.Errorf("docs/warehouse.md example fails on %s: %v", e.name, err)
				return
			}
			if !strings.Contains(sql, "ORDER BY") {
				sort.Strings(rows) // no order asked, none compared
			}
			answers = append(answers, rows)
		}
		exact := !strings.Contains(sql, "TDigest") && !strings.Contains(sql, "system.")
		if len(answers[0]) == 0 || len(answers[0]) != len(answers[1]) || (exact && !reflect.DeepEqual(answers[0], answers[1])) {
			t.Errorf("docs/warehouse.md example answers differ:\n%s\n  %s: %v\n  %s: %v", sql, engines[0].name, answers[0], engines[1].name, answers[1])
		}
	}
}
