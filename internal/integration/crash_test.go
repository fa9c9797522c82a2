package integration

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/ingest"
)

// childBinary is a command the tests run as a child process, built once per
// test run: building takes longer than most tests.
type childBinary struct {
	once sync.Once
	path string
	err  error
}

var vitalsBuild, labBuild childBinary

// TestMain removes the binaries the tests built (labBuild builds into
// vitalsBuild's directory): they would otherwise stay behind in the system's
// temporary directory, about 120 MB a run.
func TestMain(m *testing.M) {
	code := m.Run()
	if vitalsBuild.path != "" {
		os.RemoveAll(filepath.Dir(vitalsBuild.path))
	}
	os.Exit(code)
}

// build builds pkg once into a file named after it in the directory dir
// returns, and returns the file's path.
func (b *childBinary) build(t *testing.T, pkg string, dir func() (string, error)) string {
	t.Helper()
	b.once.Do(func() {
		d, err := dir()
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(d, path.Base(pkg))
		out, err := exec.Command("go", goBuild(b.path, pkg)...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// vitalsBinary builds cmd/vitals once per test run.
func vitalsBinary(t *testing.T) string {
	t.Helper()
	return vitalsBuild.build(t, "github.com/vitalshq/vitals/cmd/vitals", func() (string, error) {
		return os.MkdirTemp("", "vitals-it-bin")
	})
}

// roleEnv is the environment of a vitals role's process on the test's
// topics, logging JSON, with vars added (a later value of a name wins).
func (s *stack) roleEnv(vars ...string) []string {
	env := append(os.Environ(),
		"VITALS_KAFKA_BROKERS="+strings.Join(s.kafka.Brokers, ","),
		"VITALS_KAFKA_TOPIC_PREFIX="+s.id,
		fmt.Sprintf("VITALS_KAFKA_PARTITIONS=%d", s.kafka.Partitions),
		"VITALS_LOG_FORMAT=json")
	return append(env, vars...)
}

// kill9 kills a role's process with SIGKILL and reaps it.
func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// killSoon is kill9 at a random moment in the next 600 ms, so that kills
// land anywhere in a role's cycle of work.
func killSoon(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	time.Sleep(time.Duration(rand.IntN(600)) * time.Millisecond)
	kill9(t, cmd)
}

// TestProcessorKill9AndGracefulStop streams real readings while the
// processor, a separate process, is killed with SIGKILL at random moments
// and restarted. Afterwards every reading is in ClickHouse exactly once
// (percentiles equal an independent computation) and PostgreSQL's stored
// offsets are at the end of the log. The last instance is stopped with
// SIGTERM and must exit cleanly.
func TestProcessorKill9AndGracefulStop(t *testing.T) {
	s, ctx := newStackFor(t, 5*time.Minute)
	bin := vitalsBinary(t)

	ingestURL, _ := s.startIngest(ctx)
	s.startProjector(ctx, s.id+"-projector")
	queryURL := s.startQuery(ctx)

	// Four users' first 3,000 readings (one user has only 1,351).
	users, perUser := firstReadings(t, 4, 3000)
	s.pairUsers(ingestURL, users, perUser)

	proc := func() *exec.Cmd {
		cmd := exec.Command(bin, "processor")
		cmd.Env = s.roleEnv(
			"VITALS_PG_URL="+s.pgURL,
			"VITALS_PROCESSOR_GROUP="+s.id+"-processor",
			// Static membership: a restarted instance takes its partitions
			// back without waiting out the dead one's session.
			"VITALS_PROCESSOR_INSTANCE_ID="+s.id+"-p1",
			"VITALS_PROCESSOR_BATCH=200",
			// Long enough that most kills land between a produce and the
			// checkpoint covering it: the restart re-processes that stretch.
			"VITALS_PROCESSOR_CHECKPOINT_INTERVAL=700ms",
			"VITALS_PROCESSOR_METRICS_ADDR=",
			"VITALS_LOG_LEVEL=warn",
		)
		cmd.Stderr = raceWatch(t, testWriter{t})
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// Post in the background, each user in order, while the processor is
	// being killed.
	postDone := s.streamReadings(ingestURL, "gw-crash", perUser, 100, 400*time.Millisecond) // about 12 s of stream
	var postErr error
	streamEnded := make(chan struct{})
	go func() { postErr = <-postDone; close(streamEnded) }()

	conn, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	stored := func() int64 {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM processor_offsets WHERE group_id = $1`, s.id+"-processor").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Kill each instance at a random moment after it has checkpointed
	// progress of its own, so that every kill lands on a running processor
	// (a loaded machine can take longer to start one than a fixed sleep)
	// and usually between a produce and the checkpoint covering it. Count
	// the kills that landed mid-stream, with progress made since the
	// previous one.
	midStream, prev := 0, int64(0)
	var progress []int64
	for range 6 {
		cmd := proc()
		deadline := time.Now().Add(30 * time.Second)
	wait:
		for stored() <= prev && time.Now().Before(deadline) {
			select {
			case <-streamEnded:
				break wait
			case <-time.After(50 * time.Millisecond):
			}
		}
		killSoon(t, cmd)
		n := stored()
		progress = append(progress, n)
		if n > prev {
			midStream++
		}
		prev = n
	}
	<-streamEnded
	if postErr != nil {
		t.Fatal(postErr)
	}
	t.Logf("killed the processor 6 times with SIGKILL; records committed at each kill: %v", progress)
	if midStream < 3 {
		t.Fatalf("only %d kills landed after progress; the test did not exercise recovery", midStream)
	}

	last := proc()
	// One more reading after the last start, so the graceful stop below
	// finds the processor running, not starting.
	extra := perUser[users[0]][len(perUser[users[0]])-1]
	extra.Time = extra.Time.Add(time.Second)
	perUser[users[0]] = append(perUser[users[0]], extra)
	var resp ingest.BatchResponse
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-crash", "readings": []any{wire(extra)}}, &resp); code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("post after restart: %d %+v", code, resp)
	}
	for _, u := range users {
		expectDayPercentiles(t, queryURL, perUser[u], []float64{1, 50, 90, 99}, 90*time.Second)
	}

	// State and position agree with the log: the stored offsets are the
	// raw topic's end offsets.
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, s.kafka.Topics.Readings)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "stored offsets to reach the end of the log", func() (bool, string) {
		state := ""
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			var stored int64
			err := conn.QueryRow(ctx, `SELECT next_offset FROM processor_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3`,
				s.id+"-processor", o.Topic, o.Partition).Scan(&stored)
			if err != nil || stored != o.Offset {
				done = false
			}
			state += fmt.Sprintf(" p%d stored %d end %d", o.Partition, stored, o.Offset)
		})
		return done, state
	})

	sent := 0
	for _, u := range users {
		sent += len(perUser[u])
	}
	// Re-processing after each kill must not have emitted any output a
	// second time (outputs are numbered per partition; see processor's
	// seqHeader): the accepted topic holds each reading once.
	if accRecords := s.topicRecords(ctx, s.kafka.Topics.AcceptedReadings); accRecords != int64(sent) {
		t.Errorf("the accepted topic holds %d records for %d readings: outputs were emitted twice after a kill", accRecords, sent)
	}

	// The projector was not killed, so ClickHouse holds each reading once.
	ch := s.openWarehouse(t, ctx)
	var rows, distinct uint64
	if err := ch.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM "+s.wh.Database+".readings").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse holds %d rows for %d distinct readings", rows, distinct)
	if distinct != uint64(sent) || rows != distinct {
		t.Fatalf("%d rows for %d distinct readings stored, want %d once each", rows, distinct, sent)
	}

	stopGracefully(t, last, "processor")
}
