package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitalshq/vitals/internal/sample"
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
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ingestURL, _ := s.startIngest(ctx)
	proc, _ := s.startProcessor(ctx, s.processorConfig())
	s.startProjector(ctx, s.id+"-projector")
	queryURL := s.startQuery(ctx)

	all, err := sample.HeartRates()
	if err != nil {
		t.Fatal(err)
	}
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
	values := make([]float64, len(rows))
	for i, r := range rows {
		values[i] = r.Value
	}
	day := rows[0].Time.Truncate(24 * time.Hour)
	expectPercentiles(t, queryURL, rows[0].UserID(), day, day.AddDate(0, 0, 1), values, []float64{10, 50, 90}, 60*time.Second)
}

// TestProcessorSurvivesBrokerRestart restarts Kafka while the processor
// works through a backlog: it must reconnect by itself and, in the end,
// every reading is in ClickHouse exactly once.
func TestProcessorSurvivesBrokerRestart(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ingestURL, _ := s.startIngest(ctx)
	all, err := sample.HeartRates()
	if err != nil {
		t.Fatal(err)
	}
	var rows []sample.HeartRate
	for _, r := range all {
		if r.FitbitID == "4020332650" && len(rows) < 30000 { // the densest user of the sample
			rows = append(rows, r)
		}
	}
	s.pairDevices(ingestURL, rows[0])
	s.postReadings(ingestURL, "gw-restart", rows, 500)
	cfg := s.processorConfig()
	cfg.MaxBatch = 20 // a long backlog in small steps, so the restart lands mid-way
	cfg.CheckpointInterval = 300 * time.Millisecond
	proc, _ := s.startProcessor(ctx, cfg)
	s.startProjector(ctx, s.id+"-projector")
	queryURL := s.startQuery(ctx)
	// Restart once a first checkpoint is stored. (A restart before the first
	// checkpoint has been seen to stall the processor; that case is a known
	// open bug, see the README's Reliability notes.)
	conn, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	eventually(t, 60*time.Second, "a first checkpoint", func() (bool, string) {
		var n int64
		err := conn.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM processor_offsets WHERE group_id = $1`, cfg.Group).Scan(&n)
		return err == nil && n > 0, fmt.Sprint(n, err)
	})
	stackCtl(t, ctx, "restart", "kafka")
	acc, _, _, _ := proc.Stats().Snapshot()
	t.Logf("broker restarted after %d of %d readings", acc, len(rows))
	if acc >= int64(len(rows)) {
		t.Fatal("the backlog was done before the restart; the test did not exercise recovery")
	}

	eventually(t, 120*time.Second, "every reading to be processed after the restart", func() (bool, string) {
		acc, rej, dup, _ := proc.Stats().Snapshot()
		return acc >= int64(len(rows)), fmt.Sprintf("accepted %d rejected %d duplicates %d", acc, rej, dup)
	})
	values := make([]float64, len(rows))
	for i, r := range rows {
		values[i] = r.Value
	}
	day := rows[0].Time.Truncate(24 * time.Hour)
	expectPercentiles(t, queryURL, rows[0].UserID(), day, day.AddDate(0, 0, 1), values, []float64{50}, 90*time.Second)
}
