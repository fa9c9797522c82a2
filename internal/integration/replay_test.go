package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/projector"
	"github.com/vitalshq/vitals/replay"
)

// replayConfig is a rebuild of the test's database, the live projectors
// being those of group s.id+"-projector".
// It also drops the shadow and old databases and the v2 topics when the
// test ends.
func (s *stack) replayConfig() replay.Config {
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if ch, err := warehouse.Open(ctx, s.wh); err == nil {
			for _, db := range []string{s.wh.Database + "_shadow", s.wh.Database + "_old"} {
				if err := warehouse.ExecEverywhere(ctx, ch, "DROP DATABASE IF EXISTS "+db); err != nil {
					s.t.Logf("cleanup: %v", err)
				}
			}
			ch.Close()
		}
		if v2, err := s.kafka.Topics.WithOutputVersion("v2"); err == nil {
			if cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...)); err == nil {
				adm := kadm.NewClient(cl)
				_, _ = adm.DeleteTopics(ctx, v2.AcceptedReadings, v2.RejectedReadings, v2.Alerts, v2.Erasures)
				_, _ = adm.DeleteGroups(ctx, s.id+"-processor-v2", s.id+"-projector-replay-"+s.wh.Database)
				cl.Close()
			}
		}
	})
	cfg := replay.DefaultConfig()
	cfg.Kafka, cfg.Warehouse, cfg.LiveGroup = s.kafka, s.wh, s.id+"-projector"
	cfg.Projector = projector.DefaultConfig()
	cfg.Projector.PostgresURL = s.pgURL
	cfg.Projector.FlushInterval = 200 * time.Millisecond
	cfg.ProgressEvery = 500 * time.Millisecond
	cfg.Progress = func(p replay.Progress) { s.t.Logf("progress: %s %d/%d", p.Phase, p.Done, p.Total) }
	cfg.PauseTimeout = 20 * time.Second
	return cfg
}

// userDays is the two UTC days from a user's first reading.
func userDays(rows []sample.HeartRate) (time.Time, time.Time) {
	day := rows[0].Time.UTC().Truncate(24 * time.Hour)
	return day, day.AddDate(0, 0, 2)
}

// percentileAnswers reads each user's p50/p90/p99 and count from the query API.
func percentileAnswers(t *testing.T, queryURL string, users []string, per map[string][]sample.HeartRate) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, u := range users {
		from, to := userDays(per[u])
		res, code := getPercentiles(t, queryURL, u, from, to, "50,90,99")
		if code != 200 {
			t.Fatalf("percentiles of %s: status %d", u, code)
		}
		out[u] = fmt.Sprintf("n=%d %+v", res.Count, res.Percentiles)
	}
	return out
}

// flatten returns the readings of users in order.
func flatten(users []string, per map[string][]sample.HeartRate) []sample.HeartRate {
	var out []sample.HeartRate
	for _, u := range users {
		out = append(out, per[u]...)
	}
	return out
}

// TestReplayRebuildAfterDrop drops every ClickHouse table, rebuilds them
// from the topics and checks that the query API and direct sums answer
// exactly as before.
func TestReplayRebuildAfterDrop(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	p := s.startPipelineWith(ctx, nil)
	ingestURL, live := p.ingestURL, p.projRun
	queryURL := s.startQuery(ctx)

	users, per := firstReadings(t, 3, 1000)
	rows := flatten(users, per)
	s.pairDevices(ingestURL, rows...)
	s.postReadings(ingestURL, "gw-replay", rows, 500)
	ch := s.openWarehouse(t, ctx)
	want := inputTotals(rows)
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, want, time.Minute)
	before := percentileAnswers(t, queryURL, users, per)

	// Lose the tables (the projector stopped, as it would be without them).
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range replay.Rebuildable {
		if err := ch.Exec(ctx, fmt.Sprintf("DROP TABLE %s.%s", s.wh.Database, tbl)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := replay.Rebuild(ctx, s.replayConfig(), s.log)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Swapped || len(res.Verified) == 0 {
		t.Fatalf("rebuild did not verify and swap: %+v", res)
	}
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, want, 10*time.Second)
	after := percentileAnswers(t, queryURL, users, per)
	for _, u := range users {
		if before[u] != after[u] {
			t.Errorf("%s: before the drop %s, after the rebuild %s", u, before[u], after[u])
		}
	}
}

// reading is what a concurrent reader saw at one moment.
type reading struct {
	raw, rollup uint64
	sent        int64
}

// TestReplayRebuildWhileIngesting rebuilds every table while readings
// keep arriving and the live projector keeps writing, then swaps, and
// checks that a reader polling the live tables throughout never saw a
// count go down (a gap) or exceed what was sent (a duplicate), and that
// the final answer equals the input.
func TestReplayRebuildWhileIngesting(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	ingestURL := s.startPipeline(ctx)
	queryURL := s.startQuery(ctx)

	users, per := firstReadings(t, 4, 3000)
	rows := flatten(users, per)
	s.pairDevices(ingestURL, rows...)
	head := len(rows) / 3
	s.postReadings(ingestURL, "gw-replay", rows[:head], 500)
	ch := s.openWarehouse(t, ctx)
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, inputTotals(rows[:head]), time.Minute)

	// The stream: the rest, in small batches, counted before each post so
	// that "sent" bounds what may be visible.
	var sent atomic.Int64
	sent.Store(int64(head))
	// The last batch waits for the rebuild to return, so that the swap
	// always happens mid-stream, however slowly a loaded machine rebuilds.
	streamDone, rebuilt := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(streamDone)
		for i := head; i < len(rows); i += 100 {
			batch := rows[i:min(i+100, len(rows))]
			if i+100 >= len(rows) {
				select {
				case <-rebuilt:
				case <-ctx.Done():
					return
				}
			}
			sent.Add(int64(len(batch)))
			s.postReadings(ingestURL, "gw-replay", batch, 100)
			time.Sleep(40 * time.Millisecond)
		}
	}()

	// The reader: raw rows and rollup count of the tenant, as fast as it can.
	readerCtx, stopReader := context.WithCancel(ctx)
	var seen []reading
	var missing atomic.Int64 // "table doesn't exist" answers (see docs/replay.md)
	var readerErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rc, err := warehouse.Open(readerCtx, s.wh)
		if err != nil {
			readerErr = err
			return
		}
		defer rc.Close()
		q := fmt.Sprintf(`SELECT (SELECT count() FROM %[1]s.readings WHERE tenant_id = ?),
			(SELECT countMerge(readings) FROM %[1]s.readings_daily WHERE tenant_id = ?)`, s.wh.Database)
		for readerCtx.Err() == nil {
			var r reading
			r.sent = sent.Load()
			if err := rc.QueryRow(readerCtx, q, s.tenant, s.tenant).Scan(&r.raw, &r.rollup); err != nil {
				var ex *clickhouse.Exception
				if errors.As(err, &ex) && ex.Code == 60 {
					missing.Add(1)
					continue
				}
				if readerCtx.Err() == nil {
					readerErr = err
				}
				return
			}
			seen = append(seen, r)
		}
	}()

	res, err := replay.Rebuild(ctx, s.replayConfig(), s.log)
	atSwap := sent.Load()
	close(rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swapped with %d of %d readings sent", atSwap, len(rows))
	<-streamDone
	want := inputTotals(rows)
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, want, time.Minute)
	stopReader()
	wg.Wait()
	if readerErr != nil {
		t.Fatalf("reader: %v", readerErr)
	}
	if !res.Swapped {
		t.Fatal("not swapped")
	}
	t.Logf("rebuild: %d records, caught up in %s, paused %s; reader: %d reads, %d 'table does not exist' answers", res.Records, res.CaughtUp, res.Paused, len(seen), missing.Load())
	for i, r := range seen {
		if r.raw > uint64(len(rows)) || int64(r.raw) > sentBound(r, seen, i) {
			t.Fatalf("read %d: %d raw rows with at most %d sent: a duplicate", i, r.raw, sentBound(r, seen, i))
		}
		if i > 0 && (r.raw < seen[i-1].raw || r.rollup < seen[i-1].rollup) {
			t.Fatalf("read %d: count went down from raw %d rollup %d to raw %d rollup %d: a gap", i, seen[i-1].raw, seen[i-1].rollup, r.raw, r.rollup)
		}
	}
	for _, u := range users {
		from, to := userDays(per[u])
		expectPercentiles(t, queryURL, u, from, to, valuesOf(per[u]), []float64{50, 90, 99}, 10*time.Second)
	}
}

// sentBound is how many readings could have been sent by the end of read
// i: the counter read at its start of the next read (the post counted
// before it is sent may be processed while the read runs).
func sentBound(r reading, seen []reading, i int) int64 {
	if i+1 < len(seen) {
		return seen[i+1].sent
	}
	return r.sent + 100
}

// rejectedByReason counts the tenant's rejected readings by reason.
func rejectedByReason(t *testing.T, ctx context.Context, ch driver.Conn, db, tenant string) map[string]uint64 {
	t.Helper()
	out, err := warehouse.ScanMap[string, uint64](ch.Query(ctx, fmt.Sprintf("SELECT reason, count() FROM %s.%s WHERE tenant_id = ? GROUP BY reason", db, warehouse.RejectedTable), tenant))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReplayReprocessChangedInvariant reprocesses the raw log with a
// smaller allowed lateness into v2 outputs, cuts the projection over to
// them, and checks that exactly the late readings moved from accepted to
// rejected too_late.
func TestReplayReprocessChangedInvariant(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	ingestURL, _ := s.startIngest(ctx)
	pcfg := s.processorConfig()
	pcfg.CheckpointInterval = 500 * time.Millisecond
	s.startProcessor(ctx, pcfg)
	live := s.startProjector(ctx, s.id+"-projector")

	users, per := firstReadings(t, 2, 600)
	rows := flatten(users, per)
	s.pairDevices(ingestURL, rows...)
	s.postReadings(ingestURL, "gw-replay", rows, 300)
	// Then 40 readings of the first user 3 minutes behind its newest: late,
	// but inside v1's 10-minute lateness.
	const lateN = 40
	u := per[users[0]]
	newest := u[len(u)-1]
	var late []sample.HeartRate
	for i := range lateN {
		r := newest
		r.Time = newest.Time.Add(-3*time.Minute + time.Duration(i)*time.Second)
		late = append(late, r)
	}
	var items []wireReading
	for i, r := range late {
		w := wire(r)
		w.EventID = fmt.Sprintf("late-%d", i)
		items = append(items, w)
	}
	var resp struct{ Accepted int }
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-replay", "readings": items}, &resp); code != 200 || resp.Accepted != lateN {
		t.Fatalf("late readings: status %d, %d accepted", code, resp.Accepted)
	}
	ch := s.openWarehouse(t, ctx)
	v1 := inputTotals(rows)
	lt := v1[users[0]]
	for _, r := range late {
		lt.n++
		lt.sum += r.Value
	}
	v1[users[0]] = lt
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, v1, time.Minute)
	rejectedV1 := rejectedByReason(t, ctx, ch, s.wh.Database, s.tenant)

	// Reprocess with 1 minute of lateness into v2.
	rcfg := s.processorConfig()
	rcfg.CheckpointInterval = 500 * time.Millisecond
	rcfg.Rules.AllowedLateness = time.Minute
	res, err := replay.Reprocess(ctx, replay.ReprocessConfig{Processor: rcfg, Version: "v2", ProgressEvery: time.Second}, s.log)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != int64(len(rows)) {
		t.Errorf("reprocess accepted %d readings, want %d (all but the late ones)", res.Accepted, len(rows))
	}
	// Cut over: stop the live projector, rebuild from the v2 outputs, swap.
	if err := live.stop(); err != nil {
		t.Fatal(err)
	}
	cfg := s.replayConfig()
	if cfg.Kafka.Topics, err = s.kafka.Topics.WithOutputVersion("v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := replay.Rebuild(ctx, cfg, s.log); err != nil {
		t.Fatal(err)
	}
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, inputTotals(rows), 10*time.Second)
	rejectedV2 := rejectedByReason(t, ctx, ch, s.wh.Database, s.tenant)
	if rejectedV2["too_late"] != rejectedV1["too_late"]+lateN {
		t.Errorf("too_late: v1 %d, v2 %d; want %d more", rejectedV1["too_late"], rejectedV2["too_late"], lateN)
	}
	t.Logf("rejected by reason: v1 %v, v2 %v", rejectedV1, rejectedV2)
	if !strings.HasSuffix(res.Topics.AcceptedReadings, ".v2") {
		t.Errorf("reprocess wrote %s", res.Topics.AcceptedReadings)
	}
}
