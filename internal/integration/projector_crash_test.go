package integration

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// TestProjectorKill9 streams real readings while the projector, a separate
// `vitals projector` process with small batches, is killed with SIGKILL at
// random moments and restarted six times. Afterwards ClickHouse holds every
// accepted reading exactly once: the physical row count (not collapsed by
// event id), the distinct count and the daily rollup's count and sum per
// user equal the input's. Then the group's committed offsets are deleted,
// as if every commit had been lost after its insert, and a new instance
// must resume from the positions stored in ClickHouse and insert nothing
// again. The last instance is stopped with SIGTERM and must exit cleanly.
func TestProjectorKill9(t *testing.T) {
	s, ctx := newStackFor(t, 4*time.Minute)
	bin := vitalsBinary(t)
	ingestURL, _ := s.startIngest(ctx)
	s.startProcessor(ctx, s.processorConfig())
	ch := s.openWarehouse(t, ctx)

	users, per := firstReadings(t, 4, 2500)
	all := flatten(users, per)
	s.pairUsers(ingestURL, users, per)
	want := inputTotals(all)

	group := s.id + "-projector"
	var resumed sync.WaitGroup
	var resumeLines atomicCounter
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "projector")
		cmd.Env = s.roleEnv(
			"VITALS_CLICKHOUSE_ADDR="+s.wh.Addr,
			"VITALS_CLICKHOUSE_DATABASE="+s.wh.Database,
			"VITALS_PROJECTOR_GROUP="+group,
			// Static membership: a restarted instance takes its partitions
			// back without waiting out the dead one's session.
			"VITALS_PROJECTOR_INSTANCE_ID="+group+"-1",
			// Small, frequent batches: many insert/commit windows to land in.
			"VITALS_PROJECTOR_BATCH_ROWS=150",
			"VITALS_PROJECTOR_METRICS_ADDR=", // tests run side by side: no fixed port
			"VITALS_PROJECTOR_FLUSH_INTERVAL=50ms",
			"VITALS_LOG_LEVEL=info",
		)
		pipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := io.TeeReader(pipe, raceWatch(t, io.Discard))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		resumed.Add(1)
		go func() {
			defer resumed.Done()
			buf := make([]byte, 64<<10)
			var line strings.Builder
			for {
				n, err := stderr.Read(buf)
				for _, c := range string(buf[:n]) {
					if c != '\n' {
						line.WriteRune(c)
						continue
					}
					l := line.String()
					line.Reset()
					// On a cluster: rows of the re-read records that their shard
					// already held, left out (projector/shards.go).
					if strings.Contains(l, "resuming after the rows stored in clickhouse") || strings.Contains(l, "rows their shard already holds") {
						resumeLines.add(1)
					}
					if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) || strings.Contains(l, "resuming") {
						t.Log(l)
					}
				}
				if err != nil {
					return
				}
			}
		}()
		return cmd
	}
	stored := func() uint64 {
		var n uint64
		if err := ch.QueryRow(ctx, "SELECT count() FROM "+s.wh.Database+"."+warehouse.ReadingsTable).Scan(&n); err != nil {
			// The first instance may not have created the table yet.
			return 0
		}
		return n
	}

	// Post in the background, each user in order, while the projector is
	// being killed: about 22 s of stream, so that six kills fit in it even
	// when a loaded machine starts each instance slowly.
	postDone := s.streamReadings(ingestURL, "gw-proj-crash", per, 50, 450*time.Millisecond)

	midStream, prev := 0, uint64(0)
	var progress []uint64
	for range 6 {
		cmd := start()
		// Kill at a random moment after this instance stored something.
		deadline := time.Now().Add(20 * time.Second)
		for stored() <= prev && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		killSoon(t, cmd)
		n := stored()
		progress = append(progress, n)
		if n > prev && n < uint64(len(all)) {
			midStream++
		}
		prev = n
	}
	if err := <-postDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the projector 6 times with SIGKILL; rows stored at each kill: %v of %d", progress, len(all))
	if midStream < 5 {
		t.Fatalf("only %d kills landed mid-stream after progress; the test did not exercise recovery 5 times", midStream)
	}
	last := start()
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, want, 90*time.Second)

	// Every commit lost after its insert: a new group has no committed
	// offsets at all. Its instance must resume from ClickHouse's positions
	// and insert nothing again.
	kill9(t, last)
	group = s.id + "-projector-nocommits"
	before := resumeLines.get()
	last = start()
	eventually(t, 60*time.Second, "the new instance to resume from ClickHouse positions", func() (bool, string) {
		n := resumeLines.get() - before
		return n > 0, fmt.Sprintf("%d resume lines", n)
	})
	time.Sleep(2 * time.Second) // it would have re-inserted by now
	raw, distinct, rollup := warehouseTotals(t, ctx, ch, s.wh.Database, s.tenant)
	for name, got := range map[string]map[string]totals{"raw": raw, "distinct": distinct, "rollup": rollup} {
		if d := diffTotals(want, got); d != "" {
			t.Errorf("%s totals after a restart with no committed offsets: %s", name, d)
		}
	}
	t.Logf("resumed from ClickHouse positions past the committed offset %d times over the run", resumeLines.get())

	stopGracefully(t, last, "projector")
	resumed.Wait()
}

// atomicCounter is a mutex-guarded counter for log-scanning goroutines.
type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add(d int) { c.mu.Lock(); c.n += d; c.mu.Unlock() }
func (c *atomicCounter) get() int  { c.mu.Lock(); defer c.mu.Unlock(); return c.n }
