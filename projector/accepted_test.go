package projector

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/schemas"
)

// TestAcceptedFastPath fails when accepted_reading's current schema is no
// longer the one the allocation-free decoder reads: readAccepted must
// then be updated for the new version (until then every record takes the
// general codec).
func TestAcceptedFastPath(t *testing.T) {
	if d := newAcceptedDecoder(); !d.fast {
		t.Fatalf("current accepted_reading schema %016x is not the one readAccepted reads (%016x)",
			d.codec.Current().Fingerprint, uint64(acceptedFastFingerprint))
	}
}

// sameFields compares decoded readings, doubles by their bits.
func sameFields(a, b acceptedFields) bool {
	fa, fb := a, b
	fa.value, fb.value, fa.secondValue, fb.secondValue = 0, 0, 0, 0
	return fa == fb && math.Float64bits(a.value) == math.Float64bits(b.value) &&
		math.Float64bits(a.secondValue) == math.Float64bits(b.secondValue)
}

// checkAgainstCodec requires the decoder to agree with the general codec
// on msg: both fail, or both succeed with identical fields.
func checkAgainstCodec(t testing.TB, d *acceptedDecoder, msg []byte) {
	var got acceptedFields
	gotErr := d.decode(msg, &got)
	slow := &acceptedDecoder{codec: d.codec} // fast path off: codec only
	var want acceptedFields
	wantErr := slow.decode(msg, &want)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("message %x: decoder error %v, codec error %v", msg, gotErr, wantErr)
	}
	if gotErr == nil && !sameFields(got, want) {
		t.Fatalf("message %x:\ndecoder %+v\ncodec   %+v", msg, got, want)
	}
}

// TestAcceptedDecoderMatchesCodec checks the fast path against the
// general codec on random readings, on every truncation of some of them
// and on random corruptions, and on v1 messages (which it leaves to the
// codec).
func TestAcceptedDecoderMatchesCodec(t *testing.T) {
	d := newAcceptedDecoder()
	topics := eventlog.TopicsWithPrefix("t")
	g := eventGen{rand.New(rand.NewPCG(5, 6))}
	recs := g.records(t, topics, topics.AcceptedReadings, 400)
	fast := 0
	for i, rec := range recs {
		msg := rec.Value
		checkAgainstCodec(t, d, msg)
		var f acceptedFields
		if readAccepted(msg[10:], &f) {
			fast++
		}
		if i < 40 {
			for n := range len(msg) {
				checkAgainstCodec(t, d, msg[:n])
			}
		}
		for range 20 {
			bad := append([]byte(nil), msg...)
			for range 1 + g.rng.IntN(3) {
				bad[10+g.rng.IntN(len(bad)-10)] = byte(g.rng.IntN(256))
			}
			checkAgainstCodec(t, d, bad)
		}
		checkAgainstCodec(t, d, append(append([]byte(nil), msg...), 0x02, 0x41)) // trailing bytes
	}
	if fast != len(recs) {
		t.Fatalf("fast path read %d of %d well-formed messages", fast, len(recs))
	}
	// Old writers: v1 has no optional fields; the codec resolves them.
	vs, err := schemas.Versions(schemas.NameAcceptedReading)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		a := g.accepted()
		payload, err := avro.Marshal(vs[0].Schema, a)
		if err != nil {
			t.Fatal(err)
		}
		msg := binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, vs[0].Fingerprint)
		msg = append(msg, payload...)
		checkAgainstCodec(t, d, msg)
		var f acceptedFields
		if err := d.decode(msg, &f); err != nil || f.hasPeriodEnd || f.hasSecondValue || f.hasStage || f.hasSequence || f.user != a.UserID {
			t.Fatalf("v1 message of %+v decoded as %+v, %v", a, f, err)
		}
	}
}

// FuzzAcceptedDecoder holds the fast path to the general codec on any
// input: go test -run '^$' -fuzz FuzzAcceptedDecoder ./projector/
func FuzzAcceptedDecoder(f *testing.F) {
	topics := eventlog.TopicsWithPrefix("t")
	g := eventGen{rand.New(rand.NewPCG(7, 8))}
	for _, rec := range g.records(f, topics, topics.AcceptedReadings, 20) {
		f.Add(rec.Value)
	}
	d := newAcceptedDecoder()
	f.Fuzz(func(t *testing.T, msg []byte) { checkAgainstCodec(t, d, msg) })
}

// zigzag appends v as an Avro long.
func zigzag(b []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		b = append(b, byte(u)|0x80)
		u >>= 7
	}
	return append(b, byte(u))
}

// v2Message builds an accepted_reading v2 message field by field; raw
// replaces the encoding of the fields it names (by schema position).
func v2Message(raw map[int][]byte) []byte {
	msg := binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, acceptedFastFingerprint)
	str := func(s string) []byte { return append(zigzag(nil, int64(len(s))), s...) }
	dbl := func(f float64) []byte { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(f)) }
	fields := [][]byte{
		str("ten"), str("e"), str("u"), str("d"), str("g"), str("heart_rate"), str("8867-4"), dbl(61), str("/min"),
		zigzag(nil, 1700000000123), zigzag(nil, 1700000000124), zigzag(nil, 1700000000125), zigzag(nil, 3), zigzag(nil, 77),
		zigzag(zigzag(nil, 1), 1700000060000), nil, zigzag(zigzag(nil, 1), 2), zigzag(zigzag(nil, 1), 9),
	}
	fields[15] = append(zigzag(nil, 1), dbl(80.5)...)
	for i, f := range fields {
		if r, ok := raw[i]; ok {
			f = r
		}
		msg = append(msg, f...)
	}
	return msg
}

// TestAcceptedDecoderEdges checks the fast path where it could part ways
// with the general codec: varints of the greatest length it accepts and
// one byte longer, string lengths at the bound, out-of-range union
// branches and enum symbols.
func TestAcceptedDecoderEdges(t *testing.T) {
	d := newAcceptedDecoder()
	rep := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	big := func(n int) []byte { return append(zigzag(nil, int64(n)), rep('x', n)...) }
	tests := []struct {
		name string
		raw  map[int][]byte
		ok   bool // the fast path reads it, and the codec reads it without error
		// quirk: the codec reports no error all the same. It takes a varint
		// longer than it reads for the end of the message (io.EOF) and
		// returns zero values; the fast path leaves such messages to it.
		quirk bool
	}{
		{"plain", nil, true, false},
		{"10-byte long", map[int][]byte{9: append(rep(0x80, 9), 0x00)}, true, false},
		{"10-byte long, high bits set", map[int][]byte{9: append(rep(0xff, 9), 0x7f)}, true, false},
		{"11-byte long", map[int][]byte{9: append(rep(0x80, 10), 0x00)}, false, true},
		{"5-byte int", map[int][]byte{12: append(rep(0x80, 4), 0x0f)}, true, false},
		{"5-byte int, high bits set", map[int][]byte{12: append(rep(0xff, 4), 0x7f)}, true, false},
		{"6-byte int", map[int][]byte{12: append(rep(0x80, 5), 0x00)}, false, true},
		{"10-byte string length", map[int][]byte{0: append(rep(0x80, 9), 0x00)}, true, false},
		{"negative string length", map[int][]byte{0: zigzag(nil, -1)}, false, false},
		{"string of 1 MiB", map[int][]byte{1: big(1 << 20)}, true, false},
		{"string over 1 MiB", map[int][]byte{1: big(1<<20 + 1)}, false, false},
		{"string longer than the message", map[int][]byte{8: zigzag(nil, 1000)}, false, false},
		{"null optional fields", map[int][]byte{14: {0}, 15: {0}, 16: {0}, 17: {0}}, true, false},
		{"union branch 2", map[int][]byte{14: zigzag(nil, 2)}, false, false},
		{"union branch -1", map[int][]byte{15: zigzag(nil, -1)}, false, false},
		{"enum symbol 3", map[int][]byte{16: zigzag(zigzag(nil, 1), 3)}, true, false},
		{"enum symbol 4", map[int][]byte{16: zigzag(zigzag(nil, 1), 4)}, false, false},
		{"enum symbol -1", map[int][]byte{16: zigzag(zigzag(nil, 1), -1)}, false, false},
		{"double cut short", map[int][]byte{7: {1, 2, 3}, 8: {}, 9: {}, 10: {}, 11: {}, 12: {}, 13: {}, 14: {}, 15: {}, 16: {}, 17: {}}, false, false},
		{"trailing bytes", map[int][]byte{17: append(zigzag(zigzag(nil, 1), 9), 1, 2, 3)}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := v2Message(tc.raw)
			checkAgainstCodec(t, d, msg)
			var a schemas.AcceptedReading
			if err := d.codec.Decode(msg, &a); (err == nil) != (tc.ok || tc.quirk) {
				t.Errorf("codec error %v, want an error: %v", err, !tc.ok && !tc.quirk)
			}
			var f acceptedFields
			if fast := readAccepted(msg[10:], &f); fast != tc.ok {
				t.Errorf("fast path read it: %v, want %v", fast, tc.ok)
			}
		})
	}
}

// benchAccepted is n accepted heart-rate readings as the processor writes
// them (ids of realistic length, no optional fields), and every fourth one
// a sleep-stage interval with every optional field.
func benchAccepted(b *testing.B, n int) [][]byte {
	codec := schemas.MustCodec(schemas.NameAcceptedReading)
	out := make([][]byte, n)
	for i := range out {
		at := int64(1_740_787_200_000 + i*1000)
		a := schemas.AcceptedReading{TenantID: "default", EventID: fmt.Sprintf("7f3c9a2e-5b1d-4e8a-9c0f-%012x", i),
			UserID: fmt.Sprintf("user-%06d", i%10000), DeviceID: fmt.Sprintf("tracker-%06d", i%10000), GatewayID: "bench-gateway",
			Metric: "heart_rate", LOINC: "8867-4", Value: float64(60 + i%40), Unit: "/min",
			MeasuredAt: at, ReceivedAt: at + 500, IngestedAt: at + 1000, SourcePartition: int32(i % 12), SourceOffset: int64(i)}
		if i%4 == 3 {
			end, second, stage, seq := at+60_000, 1.5, "rem", int64(i)
			a.Metric, a.LOINC, a.Unit, a.PeriodEnd, a.SecondValue, a.Stage, a.Sequence = "sleep_stage", "93832-4", "min", &end, &second, &stage, &seq
		}
		msg, err := codec.Encode(&a)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = msg
	}
	return out
}

// BenchmarkAcceptedDecoder is the projector's per-record decoding of
// accepted readings: "fast" as it runs (the allocation-free decoder),
// "codec" the general codec alone, for comparison.
//
//	go test -run '^$' -bench AcceptedDecoder -benchtime 2s -count 3 ./projector/
func BenchmarkAcceptedDecoder(b *testing.B) {
	msgs := benchAccepted(b, 1024)
	b.Run("fast", func(b *testing.B) {
		d := newAcceptedDecoder()
		var f acceptedFields
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := d.decode(msgs[i%len(msgs)], &f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		codec := schemas.MustCodec(schemas.NameAcceptedReading)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var a schemas.AcceptedReading
			if err := codec.Decode(msgs[i%len(msgs)], &a); err != nil {
				b.Fatal(err)
			}
		}
	})
}
