package integration

import (
	"testing"
	"time"

	"github.com/vitalshq/vitals/replay"
)

// TestReplayRollbackAndRebuildAgain rebuilds and swaps, rolls the swap
// back, and rebuilds again, readings arriving between the steps: after
// each step the live tables hold every reading once, the rollups
// included. On a cluster this also swaps replicated tables back and forth
// on every server and creates the shadow tables a second time (each
// creation needs a ZooKeeper path of its own).
func TestReplayRollbackAndRebuildAgain(t *testing.T) {
	s, ctx := newStackFor(t, 4*time.Minute)
	ingestURL := s.startPipeline(ctx)

	users, per := firstReadings(t, 3, 1500)
	ch := s.openWarehouse(t, ctx)
	s.pairDevices(ingestURL, flatten(users, per)...)
	// A third of each user's readings before every step.
	sent := map[string]int{}
	post := func(step string) {
		t.Helper()
		var rows = flatten(nil, nil)
		for _, u := range users {
			n := len(per[u]) / 3
			if step == "last" {
				n = len(per[u]) - sent[u]
			}
			rows = append(rows, per[u][sent[u]:sent[u]+n]...)
			sent[u] += n
		}
		s.postReadings(ingestURL, "gw-rollback", rows, 500)
		var all = flatten(nil, nil)
		for _, u := range users {
			all = append(all, per[u][:sent[u]]...)
		}
		expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, inputTotals(all), time.Minute)
		t.Logf("%s: %d readings stored exactly once", step, len(all))
	}
	cfg := s.replayConfig()

	post("first")
	if res, err := replay.Rebuild(ctx, cfg, s.log); err != nil || !res.Swapped {
		t.Fatalf("rebuild: %+v, %v", res, err)
	}
	post("after the rebuild")
	tables, err := replay.Rollback(ctx, cfg, s.log)
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	t.Logf("rolled back %v", tables)
	post("after the rollback")
	if res, err := replay.Rebuild(ctx, cfg, s.log); err != nil || !res.Swapped {
		t.Fatalf("second rebuild: %+v, %v", res, err)
	}
	post("last")
}
