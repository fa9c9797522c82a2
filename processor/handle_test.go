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
	p := &Processor{cfg: DefaultConfig(), seq: map[int32]int64{}, users: newUsers()}
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
