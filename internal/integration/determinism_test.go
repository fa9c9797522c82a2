package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/schemas"
)

// TestProcessorDeterministic posts one known input through ingest (real
// readings of four users interleaved in each request, repeats inside the
// lateness window, readings too late to accept, one user's pairing arriving
// after some of their readings, a reading from a device never paired, and
// one user's erasure mid-stream), then processes the raw logs from the
// beginning several times, each run with fresh state (its own group) and its
// own output topics. The outputs must be byte-identical, partition by
// partition: the processor's decisions, messages and merge order depend only
// on the log, never on the clock, the run or, for the run with small
// batches, on where batch boundaries fell. That is what lets a crashed batch
// be re-emitted with the same bytes.
func TestProcessorDeterministic(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	start := time.Now()

	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	outputs := []string{"accepted", "rejected", "alerts", "erasures"}
	type run struct {
		name   string
		cfg    processor.Config
		topics []string // as outputs
	}
	newRun := func(name string, maxBatch int) *run {
		cfg := s.processorConfig()
		cfg.Group = s.id + "-" + name
		tp := &cfg.Kafka.Topics
		tp.AcceptedReadings = s.id + "." + name + ".readings.accepted.v1"
		tp.RejectedReadings = s.id + "." + name + ".readings.rejected.v1"
		tp.Alerts = s.id + "." + name + ".alerts.v1"
		tp.Erasures = s.id + "." + name + ".erasures.v1"
		if maxBatch > 0 {
			cfg.MaxBatch = maxBatch
		}
		r := &run{name: name, cfg: cfg, topics: []string{tp.AcceptedReadings, tp.RejectedReadings, tp.Alerts, tp.Erasures}}
		// Registered before the processor starts, so it runs after the
		// processor's own cleanup has stopped it.
		t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer ccancel()
			ccl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
			if err != nil {
				t.Logf("cleanup: %v", err)
				return
			}
			defer ccl.Close()
			res, err := kadm.NewClient(ccl).DeleteTopics(cctx, r.topics...)
			if err == nil {
				err = res.Error()
			}
			if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) { // a run that never started
				t.Logf("cleanup: delete topics of %s: %v", name, err)
			}
		})
		return r
	}
	// det4 keeps one user in memory at most: after every checkpoint (each
	// 20 ms) idle users are dropped and loaded from their checkpoint on
	// their next event, yet its outputs must be the same bytes.
	bounded := newRun("det4", 50)
	bounded.cfg.MaxUsers, bounded.cfg.CheckpointInterval = 1, 20*time.Millisecond
	runs := []*run{newRun("det1", 0), newRun("det2", 0), newRun("det3", 50), bounded}

	ingestURL, ingestRun := s.startIngest(ctx)

	// Four users' first 750 readings each (a reading every few seconds, so
	// about an hour per user), posted in requests that interleave the
	// users. The requests, in order, and what each reading must become.
	users, perUser := firstReadings(t, 4, 750)
	userA, userC, userD := users[0], users[2], users[3]
	type request struct {
		endpoint string
		field    string
		items    []any
	}
	var reqs []request
	var wantAcc, wantRej, wantDup, readingItems int
	readings := func(rs []wireReading) {
		items := make([]any, len(rs))
		for i := range rs {
			items[i] = rs[i]
		}
		reqs = append(reqs, request{"/v1/readings", "readings", items})
		readingItems += len(rs)
	}
	erased := false
	// A, B and C have their trackers paired before the data starts; D's
	// pairing arrives after D's first 75 readings, which wait for it.
	var pairings []any
	for _, u := range users[:3] {
		pairings = append(pairings, pairing(perUser[u][0]))
	}
	reqs = append(reqs, request{"/v1/device-events", "events", pairings})
	const chunk = 25
	for c := 0; c < 750/chunk; c++ {
		var batch []wireReading
		for _, u := range users {
			for _, r := range perUser[u][c*chunk : (c+1)*chunk] {
				batch = append(batch, wire(r))
				if erased && u == userC {
					wantRej++ // user_erased
				} else {
					wantAcc++
				}
			}
		}
		readings(batch)
		// Every fifth request the gateway repeats (as after a lost answer):
		// repeats well inside the lateness window.
		if c%5 == 4 {
			readings(batch)
			for _, it := range batch {
				if erased && it.UserID == userC {
					wantRej++
				} else {
					wantDup++
				}
			}
		}
		switch c {
		case 0:
			// A reading of A's from a device never paired to A: held, then
			// rejected device_not_paired once A's readings are more than
			// the allowed lateness past it.
			phone := wire(perUser[userA][10])
			phone.DeviceID = strings.TrimSuffix(phone.DeviceID, "-tracker") + "-phone"
			phone.EventID += "-phone"
			phone.MeasuredAt = perUser[userA][10].Time.Add(500 * time.Millisecond).Format(time.RFC3339Nano)
			readings([]wireReading{phone})
			wantRej++
		case 2:
			reqs = append(reqs, request{"/v1/device-events", "events", []any{pairing(perUser[userD][0])}})
		case 19:
			// C asks for erasure: C's later readings are refused.
			last := perUser[userC][(c+1)*chunk-1]
			reqs = append(reqs, request{"/v1/profile-events", "events", []any{map[string]any{
				"event_id": userC + "-erasure", "user_id": userC, "kind": "erasure_requested",
				"occurred_at": last.Time.Add(time.Second).Format(time.RFC3339)}}})
			erased = true
		}
	}
	var tail []wireReading
	for _, u := range users {
		rs := perUser[u]
		newest := rs[len(rs)-1]
		// Repeats of the last 5 minutes: duplicates.
		for _, r := range rs {
			if !r.Time.Before(newest.Time.Add(-5 * time.Minute)) {
				tail = append(tail, wire(r))
				if u == userC {
					wantRej++
				} else {
					wantDup++
				}
			}
		}
		// A new reading 20 minutes behind the newest: too late.
		tail = append(tail, wire(sample.HeartRate{FitbitID: newest.FitbitID, Time: newest.Time.Add(-20 * time.Minute).Add(250 * time.Millisecond), Value: 77}))
		// The user's first reading again, by now far behind: a repeat too
		// old to be remembered, rejected as too late.
		tail = append(tail, wire(rs[0]))
		wantRej += 2
	}
	readings(tail)
	for i, rq := range reqs {
		var resp ingest.BatchResponse
		if code := s.postJSON(ingestURL+rq.endpoint, map[string]any{"gateway_id": "gw-determinism", rq.field: rq.items}, &resp); code != http.StatusOK || resp.Accepted != len(rq.items) {
			t.Fatalf("request %d to %s: status %d accepted %d of %d", i, rq.endpoint, code, resp.Accepted, len(rq.items))
		}
		// Requests get distinct receive times, so the merge order of the
		// topics is the order posted here (ties would be broken by kind).
		time.Sleep(3 * time.Millisecond)
	}
	if err := ingestRun.stop(); err != nil {
		t.Fatal(err)
	}

	inputs := []string{s.kafka.Topics.Readings, s.kafka.Topics.DeviceEvents, s.kafka.Topics.ProfileEvents}
	inEnds, err := adm.ListEndOffsets(ctx, inputs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := inEnds.Error(); err != nil {
		t.Fatal(err)
	}
	perTopic := map[string]int64{}
	inEnds.Each(func(o kadm.ListedOffset) { perTopic[o.Topic] += o.Offset })
	records := perTopic[s.kafka.Topics.Readings]
	if records != int64(readingItems) || perTopic[s.kafka.Topics.DeviceEvents] != 4 || perTopic[s.kafka.Topics.ProfileEvents] != 1 {
		t.Fatalf("the raw topics hold %v records; posted %d readings, 4 device and 1 profile events", perTopic, readingItems)
	}
	t.Logf("%.1fs: posted %d readings, 4 pairings and 1 erasure of %d users in %d requests", time.Since(start).Seconds(), readingItems, len(users), len(reqs))

	conn, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	// Run each processor over the whole log from the beginning, one after
	// the other, each until it has judged every reading and stored the end
	// of every input topic as its position.
	type result struct {
		accepted, rejected, duplicates, batches int64
		out                                     []map[int32][]*kgo.Record // per output, per partition
	}
	results := make([]result, len(runs))
	for i, r := range runs {
		p, running := s.startProcessor(ctx, r.cfg)
		var res result
		eventually(t, 30*time.Second, r.name+" to judge every record of the raw topics", func() (bool, string) {
			res.accepted, res.rejected, res.duplicates, res.batches = p.Stats().Snapshot()
			n := res.accepted + res.rejected + res.duplicates
			if n > records {
				t.Fatalf("%s judged %d readings; the raw topic holds %d", r.name, n, records)
			}
			atEnd, state := storedAtEnd(ctx, conn, r.cfg.Group, inEnds)
			return n == records && atEnd, fmt.Sprintf("accepted %d rejected %d duplicates %d of %d readings; offsets:%s", res.accepted, res.rejected, res.duplicates, records, state)
		})
		if r == bounded {
			var text strings.Builder
			if _, err := p.Metrics().WriteTo(&text); err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`(?m)^vitals_processor_users_evicted_total [1-9]`).MatchString(text.String()) {
				t.Errorf("%s never dropped a user from memory: the bound was not exercised", r.name)
			}
		}
		if err := running.stop(); err != nil {
			t.Fatalf("%s stopped with: %v", r.name, err)
		}
		for _, topic := range r.topics {
			res.out = append(res.out, readTopic(t, ctx, s, topic))
		}
		results[i] = res
		t.Logf("%.1fs: %s (max batch %d): accepted %d rejected %d duplicates %d in %d batches; records out: accepted %d rejected %d %v alerts %d erasures %d",
			time.Since(start).Seconds(), r.name, r.cfg.MaxBatch, res.accepted, res.rejected, res.duplicates, res.batches,
			countRecords(res.out[0]), countRecords(res.out[1]), rejectReasons(t, res.out[1]), countRecords(res.out[2]), countRecords(res.out[3]))
	}

	ref := results[0]
	if ref.accepted == 0 || ref.rejected == 0 || ref.duplicates == 0 {
		t.Fatalf("trivial outputs: accepted %d rejected %d duplicates %d", ref.accepted, ref.rejected, ref.duplicates)
	}
	if ref.accepted != int64(wantAcc) || ref.rejected != int64(wantRej) || ref.duplicates != int64(wantDup) {
		t.Errorf("%s: accepted %d rejected %d duplicates %d; the input holds %d to accept, %d to reject and %d repeats",
			runs[0].name, ref.accepted, ref.rejected, ref.duplicates, wantAcc, wantRej, wantDup)
	}
	if n := countRecords(ref.out[0]); n != int(ref.accepted) {
		t.Errorf("%s: %d accepted records for %d accepted readings", runs[0].name, n, ref.accepted)
	}
	if n := countRecords(ref.out[1]); n != int(ref.rejected) {
		t.Errorf("%s: %d rejected records for %d rejected readings", runs[0].name, n, ref.rejected)
	}
	reasons := rejectReasons(t, ref.out[1])
	for _, want := range []string{processor.ReasonTooLate, processor.ReasonDeviceNotPaired, processor.ReasonUserErased} {
		if reasons[want] == 0 {
			t.Errorf("%s: no reading rejected %s; reasons %v", runs[0].name, want, reasons)
		}
	}
	if n := countRecords(ref.out[3]); n != 1 {
		t.Errorf("%s: %d erasure records, want 1", runs[0].name, n)
	}
	for i := 1; i < len(runs); i++ {
		res := results[i]
		if res.accepted != ref.accepted || res.rejected != ref.rejected || res.duplicates != ref.duplicates {
			t.Errorf("%s judged accepted %d rejected %d duplicates %d; %s accepted %d rejected %d duplicates %d",
				runs[i].name, res.accepted, res.rejected, res.duplicates, runs[0].name, ref.accepted, ref.rejected, ref.duplicates)
		}
		for k, kind := range outputs {
			diffOutputs(t, kind, runs[0].name, ref.out[k], runs[i].name, res.out[k])
		}
	}
	t.Logf("took %.1fs", time.Since(start).Seconds())
}

// pairing is a device event pairing r's tracker to r's user before the
// dataset starts.
func pairing(r sample.HeartRate) map[string]any {
	return map[string]any{"event_id": r.DeviceID() + "-paired", "user_id": r.UserID(), "device_id": r.DeviceID(),
		"kind": "paired", "occurred_at": "2016-01-01T00:00:00Z"}
}

// storedAtEnd reports whether group's stored offsets are the given end
// offsets (a partition with no records needs no stored offset).
func storedAtEnd(ctx context.Context, conn *pgx.Conn, group string, ends kadm.ListedOffsets) (bool, string) {
	done, state := true, ""
	ends.Each(func(o kadm.ListedOffset) {
		var stored int64
		err := conn.QueryRow(ctx, `SELECT next_offset FROM processor_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3`,
			group, o.Topic, o.Partition).Scan(&stored)
		switch {
		case errors.Is(err, pgx.ErrNoRows) && o.Offset == 0:
		case err != nil:
			done = false
			state += fmt.Sprintf(" %s/%d stored none (%v) end %d;", o.Topic, o.Partition, err, o.Offset)
			return
		case stored != o.Offset:
			done = false
		}
		state += fmt.Sprintf(" %s/%d stored %d end %d;", o.Topic, o.Partition, stored, o.Offset)
	})
	return done, state
}

// rejectReasons counts rejected records by reason.
func rejectReasons(t *testing.T, recs map[int32][]*kgo.Record) map[string]int {
	t.Helper()
	codec := schemas.MustCodec(schemas.NameRejectedReading)
	out := map[string]int{}
	for _, rs := range recs {
		for _, r := range rs {
			var rr schemas.RejectedReading
			if err := codec.Decode(r.Value, &rr); err != nil {
				t.Fatalf("decode rejected reading at %d/%d: %v", r.Partition, r.Offset, err)
			}
			out[rr.Reason]++
		}
	}
	return out
}

// readTopic reads every record of topic up to its current end offsets,
// per partition in offset order.
func readTopic(t *testing.T, ctx context.Context, s *stack, topic string) map[int32][]*kgo.Record {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out := map[int32][]*kgo.Record{}
	if err := eventlog.ReadToEnd(rctx, []kgo.Opt{kgo.SeedBrokers(s.kafka.Brokers...)}, topic, func(r *kgo.Record) error {
		out[r.Partition] = append(out[r.Partition], r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, rs := range out {
		s.openRecords(ctx, rs) // sealed with fresh nonces: the plain values are what repeats
	}
	return out
}

func countRecords(m map[int32][]*kgo.Record) int {
	n := 0
	for _, rs := range m {
		n += len(rs)
	}
	return n
}

// diffOutputs reports where two runs' records of one output differ,
// comparing keys and values partition by partition, in offset order.
func diffOutputs(t *testing.T, kind, nameA string, a map[int32][]*kgo.Record, nameB string, b map[int32][]*kgo.Record) {
	t.Helper()
	parts := map[int32]bool{}
	for p := range a {
		parts[p] = true
	}
	for p := range b {
		parts[p] = true
	}
	ids := make([]int32, 0, len(parts))
	for p := range parts {
		ids = append(ids, p)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, p := range ids {
		ra, rb := a[p], b[p]
		if len(ra) != len(rb) {
			t.Errorf("%s partition %d: %s has %d records, %s %d", kind, p, nameA, len(ra), nameB, len(rb))
		}
		for i := range min(len(ra), len(rb)) {
			if !bytes.Equal(ra[i].Key, rb[i].Key) || !bytes.Equal(ra[i].Value, rb[i].Value) {
				at := firstDiff(ra[i].Value, rb[i].Value)
				lo := max(at-40, 0)
				t.Errorf("%s partition %d: record %d differs from value byte %d on: %s (offset %d) key %q value[%d:] %q; %s (offset %d) key %q value[%d:] %q",
					kind, p, i, at, nameA, ra[i].Offset, ra[i].Key, lo, window(ra[i].Value, lo), nameB, rb[i].Offset, rb[i].Key, lo, window(rb[i].Value, lo))
				break // the first difference per partition says enough
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func window(b []byte, from int) []byte {
	if from >= len(b) {
		return nil
	}
	return b[from:min(from+120, len(b))]
}
