package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitalshq/vitals/ingest"

	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/sample/sampletest"
)

// stackCtl runs deploy/stack.sh (stop/start a service) for fault tests.
func stackCtl(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"../../deploy/stack.sh"}, args...)...)
	cmd.Env = os.Environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("stack.sh %v: %v\n%s", args, err, out)
	}
}

// TestProcessorSurvivesPostgresOutage stops PostgreSQL while readings
// stream: the processor must pause and retry, then resume by itself once
// the database is back, and every reading ends up in ClickHouse exactly
// once. Ingest keeps accepting meanwhile (its verified keys are cached).
func TestProcessorSurvivesPostgresOutage(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	ingestURL, _ := s.startIngest(ctx)
	proc, _ := s.startProcessor(ctx, s.processorConfig())
	s.startProjector(ctx, s.id+"-projector")
	queryURL := s.startQuery(ctx)

	all := sampletest.HeartRates(t)
	var rows []sample.HeartRate
	for _, r := range all {
		if r.FitbitID == all[0].FitbitID && len(rows) < 2000 {
			rows = append(rows, r)
		}
	}
	s.pairDevices(ingestURL, rows[0])
	post := func(part []sample.HeartRate) { s.postReadings(ingestURL, "gw-outage", part, 250) }
	post(rows[:1000])
	eventually(t, 60*time.Second, "the first half to be processed", func() (bool, string) {
		acc, _, _, _ := proc.Stats().Snapshot()
		return acc == 1000, fmt.Sprint(acc)
	})

	stackCtl(t, ctx, "stop", "postgres")
	restarted := false
	defer func() {
		if !restarted {
			stackCtl(t, context.Background(), "start", "postgres")
		}
	}()
	post(rows[1000:])
	time.Sleep(5 * time.Second) // the processor is retrying its checkpoint now
	stackCtl(t, ctx, "start", "postgres")
	restarted = true

	eventually(t, 90*time.Second, "every reading to be processed after the outage", func() (bool, string) {
		acc, rej, dup, _ := proc.Stats().Snapshot()
		return acc == int64(len(rows)), fmt.Sprintf("accepted %d rejected %d duplicates %d", acc, rej, dup)
	})
	expectDayPercentiles(t, queryURL, rows, []float64{10, 50, 90}, 60*time.Second)
}

// TestProcessorSurvivesBrokerRestart restarts Kafka while readings stream
// in and the processor keeps up with them: outputs it sends while the
// broker is away are not acknowledged and must be sent again, once, after
// it is back. Gateways retry what ingest refused meanwhile, as they would.
// In the end every reading is accepted and emitted exactly once, and in
// ClickHouse once.
func TestProcessorSurvivesBrokerRestart(t *testing.T) {
	s, ctx := newStackFor(t, 4*time.Minute)
	ingestURL, _ := s.startIngest(ctx)
	all := sampletest.HeartRates(t)
	var rows []sample.HeartRate
	for _, r := range all {
		if r.FitbitID == "4020332650" && len(rows) < 20000 { // the densest user of the sample
			rows = append(rows, r)
		}
	}
	s.pairDevices(ingestURL, rows[0])
	cfg := s.processorConfig()
	cfg.CheckpointInterval = 300 * time.Millisecond
	// Shorter than the restart, so outputs in flight then time out.
	cfg.OpTimeout = 2 * time.Second
	proc, _ := s.startProcessor(ctx, cfg)
	s.startProjector(ctx, s.id+"-projector")
	queryURL := s.startQuery(ctx)

	// Stream 100 readings every 20 ms; a refused batch is posted again
	// (re-posting what was stored is harmless: the processor drops repeats).
	var posted atomic.Int64
	streamed := make(chan error, 1)
	go func() {
		for i := 0; i < len(rows); {
			batch := make([]wireReading, 0, 100)
			for _, r := range rows[i:min(i+100, len(rows))] {
				batch = append(batch, wire(r))
			}
			var resp ingest.BatchResponse
			code := postAs(t, s.key, ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-restart", "readings": batch}, &resp)
			if ctx.Err() != nil {
				streamed <- ctx.Err()
				return
			}
			if code == http.StatusOK && resp.Accepted == len(batch) {
				i += len(batch)
				posted.Store(int64(i))
				time.Sleep(20 * time.Millisecond)
				continue
			}
			time.Sleep(200 * time.Millisecond)
		}
		streamed <- nil
	}()
	eventually(t, 60*time.Second, "a third of the stream to be processed", func() (bool, string) {
		acc, _, _, _ := proc.Stats().Snapshot()
		return acc >= int64(len(rows)/3), fmt.Sprint(acc)
	})
	acc, _, _, _ := proc.Stats().Snapshot()
	stackCtl(t, ctx, "restart", "kafka")
	t.Logf("broker restarted after %d readings accepted, %d posted, of %d", acc, posted.Load(), len(rows))
	if err := <-streamed; err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, "every reading to be processed after the restart", func() (bool, string) {
		acc, rej, dup, _ := proc.Stats().Snapshot()
		return acc >= int64(len(rows)), fmt.Sprintf("accepted %d rejected %d duplicates %d", acc, rej, dup)
	})
	if acc, rej, _, _ := proc.Stats().Snapshot(); acc != int64(len(rows)) || rej != 0 {
		t.Fatalf("accepted %d and rejected %d of %d distinct readings", acc, rej, len(rows))
	}
	var m strings.Builder
	if _, err := proc.Metrics().WriteTo(&m); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(m.String(), "\n") {
		if strings.HasPrefix(line, "vitals_processor_outputs_resent_total") {
			t.Logf("outputs sent again after the restart: %s", line)
		}
	}
	// Sent again or not, the accepted topic holds each reading once.
	if accRecords := s.topicRecords(ctx, s.kafka.Topics.AcceptedReadings); accRecords != int64(len(rows)) {
		t.Errorf("the accepted topic holds %d records for %d readings", accRecords, len(rows))
	}
	expectDayPercentiles(t, queryURL, rows, []float64{50}, 90*time.Second)
}
