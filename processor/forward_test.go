package processor

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

// A reading that ingest sealed and the processor accepts as it reads it is
// forwarded: the accepted output's value is the input's sealed value, byte
// for byte, under the same key, with its place in the readings topic in
// rules.HeaderSource, and it reads as the accepted reading the processor
// would have encoded. A reading sealed under another record key than its
// user id cannot be forwarded (the seal is bound to the record key): it
// is encoded and sealed again.
func TestStepForwardsSealedReadings(t *testing.T) {
	// With the keys given (p.recKeys), opening needs no key store.
	p := &Processor{cfg: DefaultConfig(), seq: map[int32]int64{}, users: newUsers(), timers: newTimers(), keys: &userkeys.Store{}}
	p.cfg.Kafka.Topics = eventlog.TopicsWithPrefix("fwd")
	p.setTopics()
	var id userkeys.ID
	raw := make([]byte, 32)
	_, _ = rand.Read(id[:])
	_, _ = rand.Read(raw)
	k, err := userkeys.NewKey(id, "t", "alice", raw)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC).UnixMilli()
	sealed := func(kind int, offset int64, key string, v any) *kgo.Record {
		c := map[int]*schemas.Codec{kindReading: p.codecs.reading, kindDevice: p.codecs.device}[kind]
		val, err := c.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{Topic: p.topics[kind], Partition: 0, Offset: offset, Key: []byte(key), Value: val}
		k.SealRecord(r)
		return r
	}
	reading := func(id string) *schemas.Reading {
		return &schemas.Reading{TenantID: "t", EventID: id, UserID: "alice", DeviceID: "d", Metric: "heart_rate",
			Value: 70, Unit: "/min", MeasuredAt: t0, IngestedAt: t0 + 1000, SourceFormat: "json"}
	}
	records := []*kgo.Record{
		sealed(kindDevice, 0, "alice", &schemas.DeviceEvent{TenantID: "t", EventID: "p1", UserID: "alice", DeviceID: "d",
			Kind: "paired", OccurredAt: t0 - 60_000, IngestedAt: t0 - 60_000}),
		sealed(kindReading, 0, "alice", reading("r1")),
		sealed(kindReading, 1, "not-alice", reading("r2")),
	}
	p.step++
	p.recKeys = []*userkeys.Key{k, k, k}
	p.plain = plainSlab(records)
	in, missing := p.decode(records)
	for u := range missing {
		p.users.add(u, nil)
	}
	p.attach(in)
	b := batch{counts: map[[3]string]int64{}}
	p.judgeAll(&b, in)

	if len(b.outputs) != 2 || b.accepted != 2 {
		t.Fatalf("%d outputs, %d accepted; want 2 accepted readings", len(b.outputs), b.accepted)
	}
	accepted, readingCodec := p.codecs.accepted, p.codecs.reading
	for i, o := range b.outputs {
		var src []byte
		for _, h := range o.Headers {
			if h.Key == rules.HeaderSource {
				src = h.Value
			}
		}
		forwarded := i == 0
		if forwarded != (src != nil) || forwarded != bytes.Equal(o.Value, records[1].Value) {
			t.Fatalf("output %d: source header %q, value the input's: %v; want forwarded %v", i, src, bytes.Equal(o.Value, records[1].Value), forwarded)
		}
		if id, ok, err := userkeys.RecordKeyID(o); !ok || err != nil || id != k.ID {
			t.Fatalf("output %d sealed with %v (%v, %v), want the user's key", i, id, ok, err)
		}
		plain, err := k.Open(nil, o.Value, o.Key)
		if err != nil {
			t.Fatalf("output %d does not open: %v", i, err)
		}
		var got, want schemas.FlatAcceptedReading
		if err := rules.DecodeAccepted(accepted, readingCodec, plain, src, &got); err != nil {
			t.Fatal(err)
		}
		var wantMsg schemas.AcceptedReading
		rules.Accepted(&wantMsg, reading([]string{"r1", "r2"}[i]), 0, int64(i))
		schemas.FlattenAccepted(&wantMsg, &want)
		if got != want {
			t.Fatalf("output %d reads as %+v, want %+v", i, got, want)
		}
	}
}
