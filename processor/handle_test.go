package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/schemas"
)

// A step's records are judged in order and their outputs numbered per
// partition number across all output topics, keyed by user id: what
// lets a re-processing skip the outputs the log already holds. No Kafka
// or PostgreSQL: the users start empty, as never checkpointed.
func TestStepEmitsAndNumbersOutputs(t *testing.T) {
	p := &Processor{cfg: DefaultConfig(), seq: map[int32]int64{}, users: newUsers(), timers: newTimers()}
	p.cfg.Kafka.Topics = eventlog.TopicsWithPrefix("step")
	p.setTopics()
	topics := p.cfg.Kafka.Topics
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC).UnixMilli()
	encode := func(c *schemas.Codec, v any) []byte {
		b, err := c.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	reading := func(id string, at int64) []byte {
		return encode(p.codecs.reading, &schemas.Reading{TenantID: "t", EventID: id, UserID: "alice", DeviceID: "d", Metric: "heart_rate",
			Value: 70, Unit: "/min", MeasuredAt: at, IngestedAt: at + 1000, SourceFormat: "json"})
	}
	var offsets [2][kinds]int64
	rec := func(kind int, part int32, key string, value []byte) *kgo.Record {
		r := &kgo.Record{Topic: p.topics[kind], Partition: part, Offset: offsets[part][kind], Key: []byte(key), Value: value}
		offsets[part][kind]++
		return r
	}
	records := []*kgo.Record{
		rec(kindDevice, 0, "alice", encode(p.codecs.device, &schemas.DeviceEvent{TenantID: "t", EventID: "p1", UserID: "alice", DeviceID: "d",
			Kind: "paired", OccurredAt: t0 - 60_000, IngestedAt: t0 - 60_000})),
		rec(kindReading, 0, "alice", reading("r1", t0)),
		rec(kindReading, 0, "alice", reading("r1", t0)),           // a repeat: dropped
		rec(kindReading, 0, "alice", reading("r2", t0-3_600_000)), // too late
		rec(kindReading, 1, "bob", []byte("not a reading")),       // malformed
		rec(kindProfile, 1, "bob", encode(p.codecs.profile, &schemas.ProfileEvent{TenantID: "t", EventID: "e1", UserID: "bob",
			Kind: "erasure_requested", OccurredAt: t0, IngestedAt: t0})),
	}
	p.step++ // as handle does
	in, missing := p.decode(records)
	for k := range missing {
		p.users.add(k, nil) // as loadUsers does for users never checkpointed
	}
	p.attach(in)
	b := batch{counts: map[[3]string]int64{}}
	last := p.judgeAll(&b, in)

	want := []string{
		topics.AcceptedReadings + " 0 alice 1",
		topics.RejectedReadings + " 0 alice 2",
		topics.RejectedReadings + " 1 bob 1",
		topics.Erasures + " 1 bob 2",
	}
	if len(b.outputs) != len(want) {
		t.Fatalf("%d outputs, want %d", len(b.outputs), len(want))
	}
	for i, o := range b.outputs {
		if got := fmt.Sprintf("%s %d %s %d", o.Topic, o.Partition, o.Key, seqOf(o)); got != want[i] {
			t.Errorf("output %d is %q, want %q", i, got, want[i])
		}
	}
	var acc schemas.AcceptedReading
	if err := p.codecs.accepted.Decode(b.outputs[0].Value, &acc); err != nil || acc.EventID != "r1" || acc.SourcePartition != 0 || acc.SourceOffset != 0 || acc.LOINC != "8867-4" {
		t.Errorf("accepted output %+v (%v)", acc, err)
	}
	var rj schemas.RejectedReading
	if err := p.codecs.rejected.Decode(b.outputs[1].Value, &rj); err != nil || rj.Reason != ReasonTooLate || rj.SourceOffset != 2 || len(rj.Original) == 0 {
		t.Errorf("rejected output %+v (%v)", rj, err)
	}
	if b.accepted != 1 || b.duplicates != 1 || b.rejected != 2 || b.events != 2 {
		t.Errorf("counted %d accepted, %d duplicates, %d rejected, %d events", b.accepted, b.duplicates, b.rejected, b.events)
	}
	if p.seq[0] != 2 || p.seq[1] != 2 {
		t.Errorf("output numbers reached %v, want 2 in both partitions", p.seq)
	}
	if *last[0] != [kinds]int64{-1, 0, 2} || *last[1] != [kinds]int64{0, -1, 0} {
		t.Errorf("last offsets %v and %v", *last[0], *last[1])
	}
	if len(b.touched) != 2 {
		t.Errorf("%d users touched, want 2", len(b.touched))
	}
}

// TestPartitionClockSettlesHeldReadings: a reading from a device never
// paired is held; when its user sends nothing more, the partition's clock
// (its records' ingest timestamps) settles it once it passes the reading's
// ingest time by the allowed lateness: rejected device_not_paired, numbered
// in its partition just before the record that moved the clock. Another
// partition's clock does not.
func TestPartitionClockSettlesHeldReadings(t *testing.T) {
	p := &Processor{cfg: DefaultConfig(), seq: map[int32]int64{}, users: newUsers(), timers: newTimers()}
	p.cfg.Kafka.Topics = eventlog.TopicsWithPrefix("clock")
	p.setTopics()
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	late := p.cfg.Rules.AllowedLateness
	var offsets [2]int64
	rec := func(part int32, user, id string, ingested time.Time) *kgo.Record {
		r := &schemas.Reading{TenantID: "t", EventID: id, UserID: user, DeviceID: user + "-w", Metric: "heart_rate", Value: 70, Unit: "/min",
			MeasuredAt: ingested.Add(-time.Second).UnixMilli(), IngestedAt: ingested.UnixMilli(), SourceFormat: "json"}
		b, err := p.codecs.reading.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		kr := &kgo.Record{Topic: p.topics[kindReading], Partition: part, Offset: offsets[part], Key: []byte(user), Value: b, Timestamp: ingested}
		offsets[part]++
		return kr
	}
	step := func(records ...*kgo.Record) batch {
		p.step++
		in, missing := p.decode(records)
		p.dueInStep(in, missing)
		for k := range missing {
			p.users.add(k, nil)
		}
		p.attach(in)
		b := batch{counts: map[[3]string]int64{}}
		p.judgeAll(&b, in)
		return b
	}
	// Pairings for bob and carol only: alice's reading is held.
	for _, u := range []string{"bob", "carol"} {
		p.users.add(UserKey{"t", u}, nil)
		p.users.get(UserKey{"t", u}).agg.ApplyDevice(&schemas.DeviceEvent{TenantID: "t", EventID: "p-" + u, UserID: u, DeviceID: u + "-w",
			Kind: "paired", OccurredAt: t0.Add(-time.Hour).UnixMilli()}, p.cfg.Rules)
	}
	b := step(rec(0, "alice", "a1", t0), rec(0, "bob", "b1", t0.Add(time.Minute)))
	if len(b.outputs) != 1 || string(b.outputs[0].Key) != "bob" || b.held != 1 {
		t.Fatalf("first step: %d outputs, %d held; want bob's accepted and alice's held", len(b.outputs), b.held)
	}
	// Partition 1's clock passes the deadline: not alice's partition.
	b = step(rec(1, "carol", "c1", t0.Add(late+time.Hour)))
	if len(b.outputs) != 1 || string(b.outputs[0].Key) != "carol" {
		t.Fatalf("another partition's records settled something: %d outputs", len(b.outputs))
	}
	// Partition 0 at exactly the deadline: nothing yet; just past it: settled.
	b = step(rec(0, "bob", "b2", t0.Add(late)))
	if len(b.outputs) != 1 {
		t.Fatalf("at the deadline: %d outputs, want bob's only", len(b.outputs))
	}
	b = step(rec(0, "bob", "b3", t0.Add(late+time.Millisecond)))
	if len(b.outputs) != 2 || string(b.outputs[0].Key) != "alice" || b.outputs[0].Topic != p.cfg.Kafka.Topics.RejectedReadings || string(b.outputs[1].Key) != "bob" {
		t.Fatalf("past the deadline: %d outputs; want alice's rejection, then bob's reading", len(b.outputs))
	}
	var rj schemas.RejectedReading
	if err := p.codecs.rejected.Decode(b.outputs[0].Value, &rj); err != nil || rj.Reason != ReasonDeviceNotPaired || rj.EventID != "a1" || rj.SourceOffset != 0 {
		t.Fatalf("settled reading %+v (%v); want a1 rejected device_not_paired, from offset 0", rj, err)
	}
	if seqOf(b.outputs[0]) != 3 || seqOf(b.outputs[1]) != 4 {
		t.Fatalf("numbers %d, %d; want 3 and 4 in partition 0 (after bob's b1 and b2)", seqOf(b.outputs[0]), seqOf(b.outputs[1]))
	}
	if len(p.timers.due[0]) != 0 {
		t.Fatalf("deadlines left after settling: %v", p.timers.due[0])
	}
	touchedAlice := false
	for _, c := range b.touched {
		touchedAlice = touchedAlice || c.key.User == "alice"
	}
	if !touchedAlice {
		t.Fatal("alice's aggregate changed but is not among the step's touched users (the checkpoint would miss it)")
	}
}
