package schemas

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// AppendAcceptedReading must write exactly what the codec writes.
func TestAppendAcceptedReadingMatchesCodec(t *testing.T) {
	codec := MustCodec(NameAcceptedReading)
	base := func() AcceptedReading {
		return AcceptedReading{TenantID: "default", EventID: "7f3c9a2e-5b1d-4e8a-9c0f-000000000001", UserID: "user-1", DeviceID: "tracker-1",
			GatewayID: "gw", Metric: "heart_rate", LOINC: "8867-4", Value: 72, Unit: "/min", MeasuredAt: 1_740_787_200_000,
			ReceivedAt: 1_740_787_200_500, IngestedAt: 1_740_787_201_000, SourcePartition: 3, SourceOffset: 123456}
	}
	tests := []struct {
		name string
		edit func(a *AcceptedReading)
	}{
		{"plain", func(*AcceptedReading) {}},
		{"zero", func(a *AcceptedReading) { *a = AcceptedReading{} }},
		{"negative numbers", func(a *AcceptedReading) {
			a.Value, a.MeasuredAt, a.ReceivedAt, a.IngestedAt, a.SourcePartition, a.SourceOffset = -1.5, -1, math.MinInt64, math.MaxInt64, math.MinInt32, -64
		}},
		{"largest partition", func(a *AcceptedReading) { a.SourcePartition = math.MaxInt32 }},
		{"special doubles", func(a *AcceptedReading) { a.Value, a.SecondValue = math.Inf(-1), f64(math.NaN()) }},
		{"long strings", func(a *AcceptedReading) {
			a.EventID, a.UserID = strings.Repeat("e", 64), strings.Repeat("ü", 5000) // multi-byte length varints
		}},
		{"interval", func(a *AcceptedReading) { a.Metric, a.PeriodEnd = "steps", i64(1_740_787_260_000) }},
		{"blood pressure", func(a *AcceptedReading) { a.Metric, a.Value, a.SecondValue = "blood_pressure", 16, f64(10.7) }},
		{"sequence", func(a *AcceptedReading) { a.Sequence = i64(0) }},
		{"negative sequence", func(a *AcceptedReading) { a.Sequence = i64(-7) }},
		{"every option", func(a *AcceptedReading) {
			a.PeriodEnd, a.SecondValue, a.Stage, a.Sequence = i64(1), f64(2), str("rem"), i64(math.MaxInt64)
		}},
		{"longest varints", func(a *AcceptedReading) {
			a.MeasuredAt, a.ReceivedAt, a.IngestedAt, a.SourceOffset, a.SourcePartition = math.MinInt64, math.MinInt64, math.MinInt64, math.MinInt64, math.MinInt32
			a.PeriodEnd, a.SecondValue, a.Stage, a.Sequence = i64(math.MinInt64), f64(-0.0), str("rem"), i64(math.MinInt64)
		}},
		{"stage awake", func(a *AcceptedReading) { a.Stage = str("awake") }},
		{"stage light", func(a *AcceptedReading) { a.Stage = str("light") }},
		{"stage deep", func(a *AcceptedReading) { a.Stage = str("deep") }},
		{"revision", func(a *AcceptedReading) { a.Revision = 2 }},
		{"withdrawal", func(a *AcceptedReading) { a.Revision, a.Withdrawn = math.MaxInt64, true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := base()
			tc.edit(&a)
			want, err := codec.Encode(&a)
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte("kept")
			got, err := AppendAcceptedReading(codec, bytes.Clone(prefix), &a)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
				t.Fatalf("by hand:\n%x\ncodec:\n%x", got[len(prefix):], want)
			}
			if n := len(want); n > AcceptedReadingBound(&a) {
				t.Fatalf("%d bytes written, bound %d", n, AcceptedReadingBound(&a))
			}
			var back AcceptedReading
			if err := codec.Decode(got[len(prefix):], &back); err != nil {
				t.Fatal(err)
			}
			// What AppendAcceptedReading does for a later schema version.
			if got, err := codec.Append(bytes.Clone(prefix), &a); err != nil || !bytes.Equal(got[len(prefix):], want) {
				t.Fatalf("through the codec: %x, %v", got, err)
			}
		})
	}
	t.Run("unknown stage", func(t *testing.T) {
		a := base()
		a.Stage = str("nap")
		if _, err := codec.Encode(&a); err == nil {
			t.Fatal("the codec accepted an unknown stage")
		}
		if _, err := AppendAcceptedReading(codec, nil, &a); err == nil {
			t.Fatal("the hand encoder accepted an unknown stage")
		}
	})
}

// randomAccepted returns an accepted reading of odd strings, times and
// doubles, each optional field present half of the time.
func randomAccepted(rng *rand.Rand) *AcceptedReading {
	strs := func() string {
		return []string{"", "a", "user-" + strconv.Itoa(rng.IntN(1000)), "ünï\x00cödé", string(make([]byte, rng.IntN(300)))}[rng.IntN(5)]
	}
	ms := func() int64 {
		return []int64{0, -1, -999, -1000, -1001, 1700000000123, rng.Int64N(4e12) - 1e12}[rng.IntN(7)]
	}
	dbl := func() float64 {
		return []float64{0, math.Copysign(0, -1), 72.5, -3.25, math.MaxFloat64, math.SmallestNonzeroFloat64, rng.NormFloat64() * 1e3}[rng.IntN(7)]
	}
	a := &AcceptedReading{TenantID: strs(), EventID: strs(), UserID: strs(), DeviceID: strs(), GatewayID: strs(),
		Metric: strs(), LOINC: strs(), Value: dbl(), Unit: strs(), MeasuredAt: ms(), ReceivedAt: ms(), IngestedAt: ms(),
		SourcePartition: rng.Int32() - math.MaxInt32/2, SourceOffset: rng.Int64() - math.MaxInt64/2}
	if rng.IntN(2) == 0 {
		a.PeriodEnd = i64(ms())
	}
	if rng.IntN(2) == 0 {
		a.SecondValue = f64(dbl())
	}
	if rng.IntN(2) == 0 {
		a.Stage = str(acceptedReadingV3Stages[rng.IntN(len(acceptedReadingV3Stages))])
	}
	if rng.IntN(2) == 0 {
		a.Sequence = i64(rng.Int64() - math.MaxInt64/2)
	}
	if rng.IntN(4) == 0 {
		a.Revision, a.Withdrawn = rng.Int64N(5), rng.IntN(2) == 0
	}
	return a
}

// randomAcceptedMessages is n random accepted readings, encoded.
func randomAcceptedMessages(t testing.TB, rng *rand.Rand, n int) [][]byte {
	c := MustCodec(NameAcceptedReading)
	out := make([][]byte, n)
	for i := range out {
		msg, err := c.Encode(randomAccepted(rng))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = msg
	}
	return out
}

// sameFields compares decoded readings, doubles by their bits.
func sameFields(a, b FlatAcceptedReading) bool {
	fa, fb := a, b
	fa.Value, fb.Value, fa.SecondValue, fb.SecondValue = 0, 0, 0, 0
	return fa == fb && math.Float64bits(a.Value) == math.Float64bits(b.Value) &&
		math.Float64bits(a.SecondValue) == math.Float64bits(b.SecondValue)
}

// checkAgainstCodec requires the decoder to agree with the general codec
// on msg: both fail, or both succeed with identical fields.
func checkAgainstCodec(t testing.TB, c *Codec, msg []byte) {
	var got FlatAcceptedReading
	gotErr := DecodeFlatAcceptedReading(c, msg, &got)
	var a AcceptedReading // the hand-written path left out: the codec only
	var want FlatAcceptedReading
	wantErr := c.Decode(msg, &a)
	FlattenAccepted(&a, &want)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("message %x: decoder error %v, codec error %v", msg, gotErr, wantErr)
	}
	if gotErr == nil && !sameFields(got, want) {
		t.Fatalf("message %x:\ndecoder %+v\ncodec   %+v", msg, got, want)
	}
}

// TestAcceptedDecoderMatchesCodec checks DecodeFlatAcceptedReading's
// fast path against the general codec on random readings, on every
// truncation of some of them and on random corruptions, and on v1
// messages (which it leaves to the codec).
func TestAcceptedDecoderMatchesCodec(t *testing.T) {
	c := MustCodec(NameAcceptedReading)
	rng := rand.New(rand.NewPCG(5, 6))
	msgs := randomAcceptedMessages(t, rng, 400)
	fast := 0
	for i, msg := range msgs {
		checkDamaged(rng, msg, i < 40, func(msg []byte) { checkAgainstCodec(t, c, msg) })
		var f FlatAcceptedReading
		if readFlatV3(msg[10:], &f, true, nil) {
			fast++
		}
	}
	if fast != len(msgs) {
		t.Fatalf("fast path read %d of %d well-formed messages", fast, len(msgs))
	}
	// Old writers: v1 has no optional fields; the codec resolves them.
	vs, err := Versions(NameAcceptedReading)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		a := randomAccepted(rng)
		msg := messageIn(t, vs[0], a)
		checkAgainstCodec(t, c, msg)
		var f FlatAcceptedReading
		if err := DecodeFlatAcceptedReading(c, msg, &f); err != nil || f.HasPeriodEnd || f.HasSecondValue || f.HasStage || f.HasSequence || f.UserID != a.UserID {
			t.Fatalf("v1 message of %+v decoded as %+v, %v", a, f, err)
		}
	}
}

// FuzzAcceptedDecoder holds the fast path to the general codec on any
// input: go test -run '^$' -fuzz FuzzAcceptedDecoder ./schemas/
func FuzzAcceptedDecoder(f *testing.F) {
	for _, msg := range randomAcceptedMessages(f, rand.New(rand.NewPCG(7, 8)), 20) {
		f.Add(msg)
	}
	c := MustCodec(NameAcceptedReading)
	f.Fuzz(func(t *testing.T, msg []byte) { checkAgainstCodec(t, c, msg) })
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

// v3Message builds an accepted_reading v3 message field by field; raw
// replaces the encoding of the fields it names (by schema position).
func v3Message(raw map[int][]byte) []byte {
	msg := binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, acceptedReadingV3.Fingerprint)
	str := func(s string) []byte { return append(zigzag(nil, int64(len(s))), s...) }
	dbl := func(f float64) []byte { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(f)) }
	fields := [][]byte{
		str("ten"), str("e"), str("u"), str("d"), str("g"), str("heart_rate"), str("8867-4"), dbl(61), str("/min"),
		zigzag(nil, 1700000000123), zigzag(nil, 1700000000124), zigzag(nil, 1700000000125), zigzag(nil, 3), zigzag(nil, 77),
		zigzag(zigzag(nil, 1), 1700000060000), nil, zigzag(zigzag(nil, 1), 2), zigzag(zigzag(nil, 1), 9),
		zigzag(nil, 2), {1},
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
	c := MustCodec(NameAcceptedReading)
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
		// The codec takes the varint's 11th byte for the end of the
		// message and then finds the withdrawn flag missing.
		{"11-byte long", map[int][]byte{9: append(rep(0x80, 10), 0x00)}, false, false},
		{"5-byte int", map[int][]byte{12: append(rep(0x80, 4), 0x0f)}, true, false},
		{"5-byte int, high bits set", map[int][]byte{12: append(rep(0xff, 4), 0x7f)}, true, false},
		{"6-byte int", map[int][]byte{12: append(rep(0x80, 5), 0x00)}, false, false},
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
		{"double cut short", map[int][]byte{7: {1, 2, 3}, 8: {}, 9: {}, 10: {}, 11: {}, 12: {}, 13: {}, 14: {}, 15: {}, 16: {}, 17: {}, 18: {}, 19: {}}, false, false},
		{"trailing bytes", map[int][]byte{19: {1, 1, 2, 3}}, true, false},
		{"withdrawn false", map[int][]byte{19: {0}}, true, false},
		{"withdrawn byte 2", map[int][]byte{19: {2}}, false, false},
		{"withdrawn missing", map[int][]byte{19: {}}, false, false},
		{"negative revision", map[int][]byte{18: zigzag(nil, -3)}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := v3Message(tc.raw)
			checkAgainstCodec(t, c, msg)
			var a AcceptedReading
			if err := c.Decode(msg, &a); (err == nil) != (tc.ok || tc.quirk) {
				t.Errorf("codec error %v, want an error: %v", err, !tc.ok && !tc.quirk)
			}
			var f FlatAcceptedReading
			if fast := readFlatV3(msg[10:], &f, true, nil); fast != tc.ok {
				t.Errorf("fast path read it: %v, want %v", fast, tc.ok)
			}
		})
	}
}

// benchAccepted is n accepted heart-rate readings as the processor writes
// them (ids of realistic length, no optional fields), and every fourth one
// a sleep-stage interval with every optional field.
func benchAccepted(b *testing.B, n int) [][]byte {
	codec := MustCodec(NameAcceptedReading)
	out := make([][]byte, n)
	for i := range out {
		at := int64(1_740_787_200_000 + i*1000)
		a := AcceptedReading{TenantID: "default", EventID: fmt.Sprintf("7f3c9a2e-5b1d-4e8a-9c0f-%012x", i),
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
// accepted readings: "fast" as it runs (DecodeFlatAcceptedReading),
// "codec" the general codec alone, for comparison.
//
//	go test -run '^$' -bench AcceptedDecoder -benchtime 2s -count 3 ./schemas/
func BenchmarkAcceptedDecoder(b *testing.B) {
	msgs := benchAccepted(b, 1024)
	b.Run("fast", func(b *testing.B) {
		c := MustCodec(NameAcceptedReading)
		var f FlatAcceptedReading
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := DecodeFlatAcceptedReading(c, msgs[i%len(msgs)], &f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		codec := MustCodec(NameAcceptedReading)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var a AcceptedReading
			if err := codec.Decode(msgs[i%len(msgs)], &a); err != nil {
				b.Fatal(err)
			}
		}
	})
}
