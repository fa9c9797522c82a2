package rules

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/vitalshq/vitals/schemas"
)

// encodeReading is what ingest wrote to the raw topic for r.
func encodeReading(tb testing.TB, r *schemas.Reading) []byte {
	tb.Helper()
	b, err := readingCodec.Encode(r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// heldAggregate has a paired device, accepted readings, a rate window, an
// alert condition and two readings held for an unpaired device.
func heldAggregate(tb testing.TB) *Aggregate {
	rules := DefaultConfig()
	a := new(Aggregate)
	a.ApplyDevice(paired("d1", 0), rules)
	for i := range 5 {
		r := with(at("e"+string(rune('a'+i)), "d1", 1, i), func(r *schemas.Reading) { r.Value = 190 })
		a.ApplyReading(r, Held{Original: encodeReading(tb, r)}, rules)
	}
	for i := range 2 {
		r := at("h"+string(rune('a'+i)), "d2", 2, i)
		a.ApplyReading(r, Held{Partition: 3, Offset: int64(100 + i), Original: encodeReading(tb, r)}, rules)
	}
	if len(a.Held) != 2 || len(a.Seen) != 5 {
		tb.Fatalf("set-up: %d held, %d seen", len(a.Held), len(a.Seen))
	}
	return a
}

func TestSnapshotRoundTrip(t *testing.T) {
	stray := heldAggregate(t)
	// A remembered id whose stream has no state (not produced by Apply,
	// but the format must not depend on that).
	stray.Seen["orphan"] = SeenEvent{Stream: "d9/heart_rate", At: 42}
	// An id naming a known stream through a string of its own (not the
	// stream's key string, which Apply and decoding share).
	copied := heldAggregate(tb(t))
	copied.Seen["copy"] = SeenEvent{Stream: strings.Clone("d1/heart_rate"), At: 43}
	for _, tc := range []struct {
		name string
		a    *Aggregate
	}{
		{"empty", &Aggregate{}},
		{"tombstone", &Aggregate{Version: 7, ErasedAt: 1462172400000}},
		{"negative times", &Aggregate{Newest: -5, Devices: map[string][]Pairing{"d": {{From: -10, To: 0}}}}},
		{"streaming user", benchAggregate(t, "u1", "d1", 20, DefaultConfig())},
		{"held readings", heldAggregate(t)},
		{"stray seen stream", stray},
		{"seen stream by a copy of its key", copied},
		{"a few streams", manyStreams(t, 3)},
		{"more streams than the encoder scans", manyStreams(t, 12)},
	} {
		t.Run(tc.name, func(t *testing.T) { checkKeys(t, roundTrip(t, tc.a)) })
	}
}

// roundTrip encodes a, checks that it decodes to an equal aggregate, which
// it returns, and that every proper prefix of the encoding is an error,
// never a panic or a silently shorter aggregate.
func roundTrip(t *testing.T, a *Aggregate) *Aggregate {
	t.Helper()
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back := decodesTo(t, "round trip", b, a)
	for n := range len(b) {
		var cut Aggregate
		if err := cut.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("a %d-byte prefix of %d decoded without error", n, len(b))
		}
	}
	return back
}

// decodesTo checks that snapshot b, made by what, decodes to an aggregate
// equal to want, which it returns.
func decodesTo(t *testing.T, what string, b []byte, want *Aggregate) *Aggregate {
	t.Helper()
	var back Aggregate
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !reflect.DeepEqual(&back, want) {
		t.Fatalf("%s changed the aggregate:\n got %+v\nwant %+v", what, &back, want)
	}
	return &back
}

func TestSnapshotReadsJSONRows(t *testing.T) {
	a := heldAggregate(t)
	js, err := json.Marshal(a) // what rows written before the binary format hold
	if err != nil {
		t.Fatal(err)
	}
	back := decodesTo(t, "a JSON row", js, a)
	checkKeys(t, back)
	for _, bad := range [][]byte{nil, {0x7f}, {snapshotV1, 0x80}} {
		if err := back.UnmarshalBinary(bad); err == nil {
			t.Errorf("%x decoded without error", bad)
		}
	}
}

func FuzzSnapshot(f *testing.F) {
	for _, a := range []*Aggregate{{}, heldAggregate(f), benchAggregate(f, "u", "d", 3, DefaultConfig())} {
		b, _ := a.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Aggregate
		if a.UnmarshalBinary(data) != nil {
			return
		}
		b, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Aggregate
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
	})
}

func tb(t *testing.T) testing.TB { return t }

// manyStreams is an aggregate with n streams (paired devices), a few
// readings each.
func manyStreams(tb testing.TB, n int) *Aggregate {
	rules := DefaultConfig()
	a := new(Aggregate)
	for d := range n {
		a.ApplyDevice(paired(fmt.Sprintf("d%d", d), 0), rules)
		for i := range 3 {
			r := at(fmt.Sprintf("e%d-%d", d, i), fmt.Sprintf("d%d", d), 1, i)
			if outs := a.ApplyReading(r, Held{}, rules); len(outs) != 1 || outs[0].Decision != Accept {
				tb.Fatalf("set-up: %v", describe(outs))
			}
		}
	}
	return a
}

// checkKeys checks that every stream knows its key and that remembered ids
// of a known stream share that string, as Apply leaves them: the snapshot
// encoder relies on it to find streams cheaply (not for correctness).
func checkKeys(t *testing.T, a *Aggregate) {
	t.Helper()
	for k, st := range a.Streams {
		if st.key != k {
			t.Fatalf("stream %q has key %q", k, st.key)
		}
	}
	for id, s := range a.Seen {
		st := a.Streams[s.Stream]
		if st != nil && unsafe.StringData(st.key) != unsafe.StringData(s.Stream) {
			t.Fatalf("id %q names stream %q through a copy of its key", id, s.Stream)
		}
	}
}

func TestApplySharesStreamKeys(t *testing.T) {
	rules := noPairing()
	seq := int64(5)
	for _, tc := range []struct {
		name string
		a    *Aggregate
	}{
		{"streaming user", benchAggregate(t, "u1", "d1", 20, DefaultConfig())},
		{"streams", manyStreams(t, 12)},
		{"sequence keys", func() *Aggregate {
			a := new(Aggregate)
			a.ApplyReading(with(at("s1", "d1", 0, 0), func(r *schemas.Reading) { r.Sequence = &seq }), Held{}, rules)
			return a
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) { checkKeys(t, tc.a) })
	}
}
