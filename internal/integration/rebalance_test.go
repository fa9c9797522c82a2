package integration

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestProcessorRebalanceMidStream streams real readings of eight users
// while the processor group changes under them: instance A starts alone,
// instance B joins mid-stream (the group rebalances and B gets some of A's
// partitions), then A stops gracefully and B takes everything.
// Afterwards every reading is in ClickHouse exactly once, the two
// instances together accepted each reading exactly once (a batch processed
// again after a partition changed hands would count twice), and the stored
// offsets are the end of the raw log.
func TestProcessorRebalanceMidStream(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	// Six partitions, so two instances have something to share.
	s.kafka.Partitions = 6
	start := time.Now()

	ingestURL, _ := s.startIngest(ctx)
	s.startProjector(ctx, s.id+"-projector")
	queryURL := s.startQuery(ctx)

	cfg := s.processorConfig()
	// Dynamic members (no InstanceID), so a stopping instance leaves the
	// group at once; a short session in case it did not.
	cfg.SessionTimeout = 6 * time.Second
	cfg.MaxBatch = 200 // many batches, so hand-overs fall between them
	procA, runA := s.startProcessor(ctx, cfg)

	// Eight users' first 1,000 readings each.
	const perUserN, chunk = 1000, 40
	users, perUser := firstReadings(t, 8, perUserN)
	distinct := map[string]struct{}{}
	for _, u := range users {
		for _, r := range perUser[u] {
			distinct[r.EventID()] = struct{}{}
		}
	}
	sent := len(distinct)
	s.pairUsers(ingestURL, users, perUser)

	// Post in the background, each user in order, spread over ~12 s. Each
	// user's poster waits at a third of its readings until B has joined
	// and at two thirds until A has stopped, so readings keep arriving
	// across both hand-overs however long the group takes to rebalance.
	bJoined, aStopped := make(chan struct{}), make(chan struct{})
	var posted atomic.Int64
	postDone := s.streamReadingsGated(ingestURL, "gw-rebalance", perUser, chunk, 400*time.Millisecond, func(i, n int) {
		switch {
		case i >= n*2/3:
			<-aStopped
		case i >= n/3:
			<-bJoined
		}
	}, &posted)

	snap := func(name string, acc, rej, dup, batches int64) string {
		return fmt.Sprintf("%s: accepted %d rejected %d duplicates %d batches %d", name, acc, rej, dup, batches)
	}

	// A works alone first.
	eventually(t, 30*time.Second, "instance A to process a batch", func() (bool, string) {
		acc, rej, dup, b := procA.Stats().Snapshot()
		return b > 0, snap("A", acc, rej, dup, b)
	})
	t.Logf("%.1fs: A processing alone; %d of %d readings posted", time.Since(start).Seconds(), posted.Load(), sent)

	// B joins the same group mid-stream.
	procB, runB := s.startProcessor(ctx, cfg)
	eventually(t, 30*time.Second, "instance B to be given partitions and process a batch", func() (bool, string) {
		acc, rej, dup, b := procB.Stats().Snapshot()
		return b > 0, snap("B", acc, rej, dup, b)
	})
	close(bJoined)
	accA, rejA, dupA, batchesA := procA.Stats().Snapshot()
	t.Logf("%.1fs: B processing beside A; %d readings posted; %s", time.Since(start).Seconds(), posted.Load(), snap("A", accA, rejA, dupA, batchesA))

	// Let both work side by side for a moment, then stop A gracefully: its
	// partitions move to B.
	time.Sleep(2 * time.Second)
	if err := runA.stop(); err != nil {
		t.Fatalf("instance A stopped with: %v", err)
	}
	close(aStopped)
	accA, rejA, dupA, batchesA = procA.Stats().Snapshot()
	accB0, _, _, batchesB0 := procB.Stats().Snapshot()
	t.Logf("%.1fs: A stopped; %d readings posted; %s; B so far accepted %d in %d batches",
		time.Since(start).Seconds(), posted.Load(), snap("A", accA, rejA, dupA, batchesA), accB0, batchesB0)

	if err := <-postDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%.1fs: all %d readings posted", time.Since(start).Seconds(), sent)

	// (b) Together the instances accepted each reading exactly once.
	eventually(t, 60*time.Second, "the two instances together to accept every reading", func() (bool, string) {
		accB, rejB, dupB, batchesB := procB.Stats().Snapshot()
		if accA+accB > int64(sent) {
			t.Fatalf("A and B accepted %d readings together, %d distinct were sent: a reading was applied twice (%s; %s)",
				accA+accB, sent, snap("A", accA, rejA, dupA, batchesA), snap("B", accB, rejB, dupB, batchesB))
		}
		return accA+accB == int64(sent), fmt.Sprintf("%s; %s; sent %d", snap("A", accA, rejA, dupA, batchesA), snap("B", accB, rejB, dupB, batchesB), sent)
	})
	accB, rejB, dupB, batchesB := procB.Stats().Snapshot()
	t.Logf("%.1fs: judged everything; %s; %s", time.Since(start).Seconds(), snap("A", accA, rejA, dupA, batchesA), snap("B", accB, rejB, dupB, batchesB))
	if rejA+rejB != 0 || dupA+dupB != 0 {
		t.Errorf("in-order, distinct readings were judged rejected %d / duplicate %d times", rejA+rejB, dupA+dupB)
	}
	// (d) Both instances owned partitions, and B kept working after A left.
	if batchesA == 0 || batchesB == 0 {
		t.Fatalf("A committed %d batches and B %d: the test did not exercise a rebalance", batchesA, batchesB)
	}
	if batchesB == batchesB0 {
		t.Fatalf("B committed no batch after A stopped: the hand-over of A's partitions was not exercised")
	}

	// (a) Every reading is queryable exactly once, with percentiles equal to
	// an independent computation.
	ps := []float64{1, 25, 50, 90, 99, 100}
	for _, u := range users {
		rs := perUser[u]
		from, to := rs[0].Time.Truncate(time.Hour), rs[len(rs)-1].Time.Truncate(time.Hour).Add(time.Hour)
		expectPercentiles(t, queryURL, u, from, to, valuesOf(rs), ps, 60*time.Second)
	}

	// (c) The stored offsets are the raw topic's end offsets, and the
	// accepted topic holds each reading once: no batch was produced twice.
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, s.kafka.Topics.Readings, s.kafka.Topics.DeviceEvents, s.kafka.Topics.ProfileEvents)
	if err != nil {
		t.Fatal(err)
	}
	if err := ends.Error(); err != nil {
		t.Fatal(err)
	}
	var rawReadings int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic == s.kafka.Topics.Readings {
			rawReadings += o.Offset
		}
	})
	if rawReadings != int64(sent) {
		t.Fatalf("the raw topic holds %d readings, %d were sent", rawReadings, sent)
	}
	conn, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var state string
	eventually(t, 30*time.Second, "stored offsets to equal the raw topics' end offsets", func() (bool, string) {
		var done bool
		done, state = storedAtEnd(ctx, conn, cfg.Group, ends)
		return done, state
	})
	t.Logf("offsets:%s", state)
	if accRecords := s.topicRecords(ctx, s.kafka.Topics.AcceptedReadings); accRecords != int64(sent) {
		t.Errorf("the accepted topic holds %d records for %d distinct readings: outputs were produced twice", accRecords, sent)
	}

	if err := runB.stop(); err != nil {
		t.Fatalf("instance B stopped with: %v", err)
	}
	t.Logf("took %.1fs", time.Since(start).Seconds())
}
