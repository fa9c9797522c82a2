package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/lab/loadgen"
)

// probeWatch polls ClickHouse for probe users' rows and times each from
// its acknowledgement to the first poll that returns it.
type probeWatch struct {
	conn          driver.Conn
	db, tenant    string
	users         []string
	mu            sync.Mutex
	ackedAt, seen map[string]time.Time
}

func newProbeWatch(conn driver.Conn, db, tenant string, users []string) *probeWatch {
	return &probeWatch{conn: conn, db: db, tenant: tenant, users: users, ackedAt: map[string]time.Time{}, seen: map[string]time.Time{}}
}

func (w *probeWatch) acked(id string, at time.Time) {
	w.mu.Lock()
	w.ackedAt[id] = at
	w.mu.Unlock()
}

// run polls every 50 ms until ctx ends; the probe users are a prefix of
// the table's sorting key, so each poll reads little.
func (w *probeWatch) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.poll(ctx)
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// poll records the first time each probe row is returned. Callers poll
// once more after run ended, so the last rows to arrive, the slowest, are
// not left out.
func (w *probeWatch) poll(ctx context.Context) {
	quoted := make([]string, len(w.users))
	for i, u := range w.users {
		quoted[i] = "'" + u + "'" // the bench's own ids: [A-Za-z0-9-] only
	}
	q := fmt.Sprintf("SELECT event_id FROM %s.readings WHERE tenant_id = ? AND user_id IN (%s)", w.db, strings.Join(quoted, ", "))
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := w.conn.Query(qctx, q, w.tenant)
	if err != nil {
		return // the next poll tries again; a lost probe is reported
	}
	defer rows.Close()
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			if _, ok := w.seen[id]; !ok {
				w.seen[id] = now
			}
		}
	}
}

// latency summarizes ack-to-visible over the probes seen, and counts the
// acknowledged ones never seen.
func (w *probeWatch) latency() (freshness, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ds []time.Duration
	lost := 0
	for id, at := range w.ackedAt {
		if seen, ok := w.seen[id]; ok {
			ds = append(ds, max(0, seen.Sub(at)))
		} else {
			lost++
		}
	}
	slices.Sort(ds)
	ms := func(p float64) float64 { return float64(loadgen.Percentile(ds, p)) / 1e6 }
	return freshness{Count: len(ds), P50Ms: ms(50), P95Ms: ms(95), P99Ms: ms(99), MaxMs: ms(100)}, lost
}

// freshness is ack-to-visible latency: nearest-rank percentiles in ms.
type freshness struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// waitRows waits until count reports at least want rows.
func waitRows(ctx context.Context, count func(context.Context) (int64, error), want int64, timeout time.Duration, what string, log zerolog.Logger) error {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := count(qctx)
		cancel()
		if err == nil && n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d rows queryable after %s (last error: %v)", what, n, want, timeout, err)
		}
		if time.Since(last) > 5*time.Second {
			log.Info().Str("phase", what).Int64("rows", n).Int64("of", want).Msg("waiting for rows")
			last = time.Now()
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
