package projector

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// TestInsertRoundTrip inserts random rows of every table into a scratch
// database of the ClickHouse named by VITALS_CLICKHOUSE_ADDR (skipped
// without it) and reads them back: every stored value must be what the
// row-wise projector stored (legacyValues). Some of the rows are stored
// first, and the full batch is then inserted as a retry after an
// uncertain failure, which must store only the others.
func TestInsertRoundTrip(t *testing.T) {
	addr := os.Getenv("VITALS_CLICKHOUSE_ADDR")
	if addr == "" {
		t.Skip("VITALS_CLICKHOUSE_ADDR not set (eval \"$(bash deploy/stack.sh env)\")")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := warehouse.DefaultConfig()
	cfg.Addr = addr
	cfg.Database = fmt.Sprintf("vitals_projtest_%d", rand.Uint32())
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := warehouse.Migrate(ctx, conn, cfg.Database); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
	p := &Projector{cfg: Config{InsertTimeout: time.Minute}, log: zerolog.Nop(), conn: conn, db: cfg.Database}
	p.m = newProjMetrics(&p.stats)

	topics := eventlog.TopicsWithPrefix("t")
	g := eventGen{rand.New(rand.NewPCG(9, 10))}
	for _, s := range sinks(topics) {
		t.Run(s.table, func(t *testing.T) {
			recs := g.records(t, topics, s.topic, 40)
			first := newPending(s)
			for _, rec := range recs[:15] {
				if _, err := first.add(rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.insert(ctx, first); err != nil {
				t.Fatal(err)
			}
			all := newPending(s)
			for _, rec := range recs {
				if _, err := all.add(rec); err != nil {
					t.Fatal(err)
				}
			}
			all.uncertain = true
			before := p.stats.Inserted.Load()
			if err := p.insert(ctx, all); err != nil {
				t.Fatal(err)
			}
			if n := p.stats.Inserted.Load() - before; s.resume && n != 25 {
				t.Errorf("retry inserted %d rows, want the 25 not stored yet", n)
			}
			if !s.resume {
				// erased_users does not resume: the retry stores all of
				// them again (erasure handling is idempotent).
				recs = append(recs[:15:15], recs...)
			}
			checkStored(t, ctx, p, s, recs)
		})
	}
}

// checkStored reads the table back ordered by position and compares every
// column with the legacy row of each record.
func checkStored(t *testing.T, ctx context.Context, p *Projector, s *sink, recs []*kgo.Record) {
	t.Helper()
	topics := eventlog.TopicsWithPrefix("t")
	want := map[[2]int64][][]any{}
	for _, rec := range recs {
		k := [2]int64{int64(rec.Partition), rec.Offset}
		want[k] = append(want[k], legacyValues(t, topics, rec))
	}
	rows, err := p.conn.Query(ctx, fmt.Sprintf("SELECT %s FROM %s.%s", strings.Join(s.columns, ", "), p.db, s.table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	n := 0
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		got := make([]any, len(dest))
		for i := range dest {
			got[i] = reflect.ValueOf(dest[i]).Elem().Interface()
		}
		part, off := got[len(got)-2].(int32), got[len(got)-1].(int64)
		k := [2]int64{int64(part), off}
		if len(want[k]) == 0 {
			t.Fatalf("row at %v stored more often than expected", k)
		}
		w := want[k][0]
		want[k] = want[k][1:]
		for i, c := range s.columns {
			if !storedEqual(got[i], w[i]) {
				t.Errorf("%s at %v: stored %#v, row-wise %#v", c, k, got[i], w[i])
			}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(recs) {
		t.Fatalf("%d rows stored, want %d", n, len(recs))
	}
}

// storedEqual compares a value read back with the value the row-wise
// projector appended: DateTime as the 32-bit seconds the server keeps,
// Nullable through its pointer, doubles by bits.
func storedEqual(got, want any) bool {
	switch w := want.(type) {
	case time.Time:
		g, ok := got.(time.Time)
		return ok && uint32(g.Unix()) == uint32(w.Unix())
	case *float64:
		g, ok := got.(*float64)
		return ok && (g == nil) == (w == nil) && (w == nil || math.Float64bits(*g) == math.Float64bits(*w))
	case *int64:
		g, ok := got.(*int64)
		return ok && (g == nil) == (w == nil) && (w == nil || *g == *w)
	case float64:
		g, ok := got.(float64)
		return ok && math.Float64bits(g) == math.Float64bits(w)
	}
	return reflect.DeepEqual(got, want)
}
