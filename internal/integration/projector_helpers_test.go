package integration

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/sample/sampletest"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// totals is a count and a sum of readings.
type totals struct {
	n   uint64
	sum float64
}

func (a totals) String() string { return fmt.Sprintf("n=%d sum=%g", a.n, a.sum) }

// equal compares sums with a relative tolerance: ClickHouse adds in
// another order than Go.
func (a totals) equal(b totals) bool {
	return a.n == b.n && math.Abs(a.sum-b.sum) <= 1e-9*math.Max(1, math.Abs(a.sum))
}

// inputTotals is what the readings sum to, per user.
func inputTotals(rows []sample.HeartRate) map[string]totals {
	out := map[string]totals{}
	for _, r := range rows {
		t := out[r.UserID()]
		t.n++
		t.sum += r.Value
		out[r.UserID()] = t
	}
	return out
}

// warehouseTotals reads the tenant's per-user totals three ways: raw rows
// as stored (every physical row, so a double insert shows), raw rows
// collapsed by event id, and the daily rollup.
func warehouseTotals(t *testing.T, ctx context.Context, ch driver.Conn, db, tenant string) (raw, distinct, rollup map[string]totals) {
	t.Helper()
	read := func(q string) map[string]totals {
		rows, err := ch.Query(ctx, q, tenant)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		out := map[string]totals{}
		for rows.Next() {
			var u string
			var x totals
			if err := rows.Scan(&u, &x.n, &x.sum); err != nil {
				t.Fatal(err)
			}
			out[u] = x
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	raw = read(fmt.Sprintf("SELECT user_id, count(), sum(value) FROM %s.%s WHERE tenant_id = ? GROUP BY user_id", db, warehouse.ReadingsTable))
	distinct = read(fmt.Sprintf(`SELECT user_id, count(), sum(v) FROM (SELECT user_id, event_id, any(value) AS v FROM %s.%s
		WHERE tenant_id = ? GROUP BY user_id, event_id) GROUP BY user_id`, db, warehouse.ReadingsTable))
	rollup = read(fmt.Sprintf("SELECT user_id, countMerge(readings), sumMerge(sum_value) FROM %s.%s WHERE tenant_id = ? GROUP BY user_id", db, warehouse.DailyRollupTable))
	return raw, distinct, rollup
}

// diffTotals describes how got differs from want, or "" if it does not.
func diffTotals(want, got map[string]totals) string {
	var out []string
	for u, w := range want {
		if g := got[u]; !w.equal(g) {
			out = append(out, fmt.Sprintf("%s: want %v got %v", u, w, g))
		}
	}
	for u, g := range got {
		if _, ok := want[u]; !ok {
			out = append(out, fmt.Sprintf("%s: unexpected %v", u, g))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// expectWarehouseTotals waits until raw, distinct and rollup totals all
// equal want, failing at once if any count exceeds it (counted twice).
func expectWarehouseTotals(t *testing.T, ctx context.Context, ch driver.Conn, db, tenant string, want map[string]totals, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "ClickHouse totals (raw, distinct, rollup) to equal the input", func() (bool, string) {
		raw, distinct, rollup := warehouseTotals(t, ctx, ch, db, tenant)
		for name, got := range map[string]map[string]totals{"raw": raw, "rollup": rollup} {
			for u, g := range got {
				if g.n > want[u].n {
					t.Fatalf("%s: user %s has %d readings, %d sent: inserted twice; %s", name, u, g.n, want[u].n, duplicates(ctx, ch, db))
				}
			}
		}
		d := diffTotals(want, raw) + diffTotals(want, distinct) + diffTotals(want, rollup)
		return d == "", "raw " + diffTotals(want, raw) + " | rollup " + diffTotals(want, rollup)
	})
}

// postEvents posts device or profile events through ingest and fails
// unless every one is accepted.
func (s *stack) postEvents(ingestURL, path string, events []any) {
	s.t.Helper()
	var resp ingest.BatchResponse
	if code := s.postJSON(ingestURL+path, map[string]any{"gateway_id": "gw-events", "events": events}, &resp); code != http.StatusOK || resp.Accepted != len(events) {
		s.t.Fatalf("post %s: status %d, %d of %d accepted: %+v", path, code, resp.Accepted, len(events), resp.Items)
	}
}

// valuesOf is the readings' values in order, what the query service's
// figures are computed over.
func valuesOf(rows []sample.HeartRate) []float64 {
	out := make([]float64, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.Value)
	}
	return out
}

// firstReadings returns the first n readings of each of the first users
// users of the sample.
func firstReadings(t *testing.T, users, n int) ([]string, map[string][]sample.HeartRate) {
	t.Helper()
	all := sampletest.HeartRates(t)
	per := map[string][]sample.HeartRate{}
	var order []string
	for _, r := range all {
		u := r.UserID()
		if _, ok := per[u]; !ok {
			if len(order) == users {
				continue
			}
			order = append(order, u)
		}
		if len(per[u]) < n {
			per[u] = append(per[u], r)
		}
	}
	return order, per
}

// pairUsers posts a pairing of each user's tracker (the device of the
// user's first reading in per).
func (s *stack) pairUsers(ingestURL string, users []string, per map[string][]sample.HeartRate) {
	s.t.Helper()
	firsts := make([]sample.HeartRate, 0, len(users))
	for _, u := range users {
		firsts = append(firsts, per[u][0])
	}
	s.pairDevices(ingestURL, firsts...)
}

// mutationsDone waits until every mutation of db has finished (on a
// cluster, on every server: the mutations are the local tables').
func mutationsDone(t *testing.T, ctx context.Context, ch driver.Conn, db string, timeout time.Duration) {
	t.Helper()
	conns := []driver.Conn{ch}
	if c := warehouse.ClusterOf(ch); c != nil {
		conns = nil
		for _, addr := range c.Servers() {
			sc, err := c.Server(addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, sc)
		}
	}
	eventually(t, timeout, "ClickHouse mutations to finish", func() (bool, string) {
		var pending, all uint64
		for _, c := range conns {
			var p, a uint64
			if err := c.QueryRow(ctx, "SELECT countIf(is_done = 0), count() FROM system.mutations WHERE database = ?", db).Scan(&p, &a); err != nil {
				return false, err.Error()
			}
			pending, all = pending+p, all+a
		}
		return pending == 0 && all > 0, fmt.Sprintf("%d of %d mutations pending", pending, all)
	})
}

// optimizeFinal merges each partition of a table into one part: OPTIMIZE
// ... FINAL, on a cluster on one replica of each shard's local table, and
// then until every replica has done the merge.
func optimizeFinal(ctx context.Context, ch driver.Conn, db, table string) error {
	if warehouse.ClusterOf(ch) == nil {
		return ch.Exec(ctx, "OPTIMIZE TABLE "+db+"."+table+" FINAL")
	}
	if err := warehouse.ExecPerShard(ctx, ch, "OPTIMIZE TABLE "+db+"."+warehouse.Local(table)+" FINAL"); err != nil {
		return err
	}
	return warehouse.SyncReplicas(ctx, ch, db, table)
}

// duplicates describes copies in the readings table: the same record
// inserted twice (one position, the projector's fault) or the same reading
// emitted twice (one event id at several positions, the processor's).
func duplicates(ctx context.Context, ch driver.Conn, db string) string {
	q := fmt.Sprintf(`SELECT event_id, count() AS copies, groupArray(log_partition) AS parts, groupArray(log_offset) AS offs
		FROM %s.%s GROUP BY event_id HAVING copies > 1 LIMIT 5`, db, warehouse.ReadingsTable)
	rows, err := ch.Query(ctx, q)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		var n uint64
		var parts []int32
		var offs []int64
		if err := rows.Scan(&id, &n, &parts, &offs); err != nil {
			return err.Error()
		}
		out = append(out, fmt.Sprintf("%s x%d at partitions %v offsets %v", id, n, parts, offs))
	}
	return "copies in readings: " + strings.Join(out, "; ")
}
