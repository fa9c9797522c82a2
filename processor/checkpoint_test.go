package processor

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

// testAggregate returns a user's aggregate with devices paired devices,
// each with readings accepted heart-rate readings a second apart, and held
// readings held for a device never paired.
func testAggregate(tb testing.TB, devices, readings, held int) *rules.Aggregate {
	tb.Helper()
	cfg := rules.DefaultConfig()
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	reading := func(id, device string, at int64) *schemas.Reading {
		return &schemas.Reading{TenantID: "default", EventID: id, UserID: "u", DeviceID: device, Metric: "heart_rate",
			Value: 70, Unit: "/min", MeasuredAt: at, IngestedAt: at + 1000, SourceFormat: "json"}
	}
	a := new(rules.Aggregate)
	for d := range devices {
		dev := fmt.Sprintf("d%d", d)
		a.ApplyDevice(&schemas.DeviceEvent{TenantID: "default", EventID: "pair-" + dev, UserID: "u", DeviceID: dev,
			Kind: "paired", OccurredAt: t0 - 60_000, IngestedAt: t0 - 60_000}, cfg)
		for i := range readings {
			if outs := a.ApplyReading(reading(fmt.Sprintf("e%d-%d", d, i), dev, t0+int64(i)*1000), rules.Held{}, cfg); len(outs) != 1 || outs[0].Decision != rules.Accept {
				tb.Fatalf("set-up reading %d of %s: %+v", i, dev, outs)
			}
		}
	}
	codec := schemas.MustCodec(schemas.NameReading)
	for i := range held {
		r := reading(fmt.Sprintf("h%d", i), "unpaired", t0+int64(i)*1000)
		original, err := codec.Encode(r)
		if err != nil {
			tb.Fatal(err)
		}
		a.ApplyReading(r, rules.Held{Partition: 3, Offset: int64(100 + i), Original: original}, cfg)
	}
	if len(a.Held) != held {
		tb.Fatalf("set-up: %d readings held, want %d", len(a.Held), held)
	}
	a.Compact(cfg)
	return a
}

func TestSnapshotArena(t *testing.T) {
	aggs := []*rules.Aggregate{{}, testAggregate(t, 1, 5, 2), testAggregate(t, 1, 600, 0), testAggregate(t, 12, 3, 0)}
	// An aggregate larger than a chunk gets a chunk of its own.
	big := testAggregate(t, 1, 600, 0)
	for i := range snapshotChunk / 30 {
		big.Seen[fmt.Sprintf("%040d", i)] = rules.SeenEvent{Stream: "d0/heart_rate", At: int64(i)}
	}
	aggs = append(aggs, big)
	want := make([][]byte, len(aggs))
	for i, a := range aggs {
		want[i], _ = a.MarshalBinary()
	}
	var ar snapshotArena
	for round := range 3 {
		// Several chunks' worth; the encoded states must stay intact
		// whatever is encoded after them.
		var states [][]byte
		for range 60 {
			for _, a := range aggs {
				states = append(states, ar.encode(a, nil))
			}
		}
		for i, st := range states {
			a := aggs[i%len(aggs)]
			if w := want[i%len(aggs)]; len(st) != len(w) || cap(st) != len(st) {
				t.Fatalf("round %d state %d: %d bytes (cap %d), want %d", round, i, len(st), cap(st), len(w))
			}
			if a == big && i/len(aggs)%20 != 0 {
				continue // slow to decode: now and then
			}
			var back rules.Aggregate
			if err := back.UnmarshalBinary(st); err != nil || !reflect.DeepEqual(&back, a) {
				t.Fatalf("round %d state %d does not decode to its aggregate: %v", round, i, err)
			}
		}
		chunks := ar.take()
		if len(chunks) == 0 || len(ar.chunks) != 0 {
			t.Fatalf("round %d: %d chunks taken, %d left", round, len(chunks), len(ar.chunks))
		}
		ar.recycle(chunks)
		if len(ar.free) != len(chunks) {
			t.Fatalf("round %d: %d chunks free, want %d", round, len(ar.free), len(chunks))
		}
	}
}
