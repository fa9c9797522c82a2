package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/projector"
)

// TestProjectorSurvivesClickHouseOutage stops ClickHouse (the shared
// stack's server, for about five seconds) while readings stream: the
// projector must not commit any offset while it cannot insert, must retry
// by itself, and once ClickHouse is back every reading is stored exactly
// once, raw and in the rollup.
func TestProjectorSurvivesClickHouseOutage(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	p := s.startPipelineWith(ctx, func(cfg *projector.Config) {
		cfg.MaxBackoff, cfg.InsertTimeout = time.Second, 5*time.Second
	})
	ingestURL, proc, pj := p.ingestURL, p.proc, p.proj
	ch := s.openWarehouse(t, ctx)

	users, per := firstReadings(t, 2, 2000)
	var firstHalf, secondHalf []sample.HeartRate
	for _, u := range users {
		firstHalf = append(firstHalf, per[u][:1000]...)
		secondHalf = append(secondHalf, per[u][1000:]...)
	}
	s.pairUsers(ingestURL, users, per)
	s.postReadings(ingestURL, "gw-ch-outage", firstHalf, 500)
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, inputTotals(firstHalf), 60*time.Second)
	// The pairings and the first half are committed by now.
	eventually(t, 10*time.Second, "the first half's offsets to be committed", func() (bool, string) {
		n := pj.Stats().Committed.Load()
		return n >= int64(len(firstHalf)+len(users)), fmt.Sprint(n)
	})

	stackCtl(t, ctx, "stop", "clickhouse")
	restarted := false
	defer func() {
		if !restarted {
			stackCtl(t, context.Background(), "start", "clickhouse")
		}
	}()
	committed := pj.Stats().Committed.Load()
	s.postReadings(ingestURL, "gw-ch-outage", secondHalf, 500)
	eventually(t, 60*time.Second, "the processor to accept the second half", func() (bool, string) {
		acc, _, _, _ := proc.Stats().Snapshot()
		return acc == int64(len(firstHalf)+len(secondHalf)), fmt.Sprint(acc)
	})
	time.Sleep(3 * time.Second) // the projector holds the batch and retries
	if n := pj.Stats().Committed.Load(); n != committed {
		t.Fatalf("offsets of %d records were committed while ClickHouse was down", n-committed)
	}
	if pj.Stats().Failures.Load() == 0 {
		t.Fatal("no failed insert attempt during the outage: the test did not exercise it")
	}
	stackCtl(t, ctx, "start", "clickhouse")
	restarted = true

	all := append(append([]sample.HeartRate(nil), firstHalf...), secondHalf...)
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, inputTotals(all), 90*time.Second)
	t.Logf("%d failed store attempts during the outage, then recovered", pj.Stats().Failures.Load())
}
