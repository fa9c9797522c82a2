package schemas

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// AppendReading writes reading v3 byte for byte as the codec does.
func TestAppendReadingMatchesCodec(t *testing.T) {
	codec := MustCodec(NameReading)
	full := Reading{TenantID: "t", EventID: "e-1", UserID: "u:1@x", DeviceID: "d.1", GatewayID: "g_1", Metric: "sleep_stage",
		Value: 12.5, Unit: "min", MeasuredAt: 1_700_000_000_000, ReceivedAt: -1, IngestedAt: math.MaxInt64,
		PeriodEnd: i64(math.MinInt64), SecondValue: f64(-0.0), Stage: str("rem"), Sequence: i64(0), SourceFormat: "avro",
		Revision: 7, Withdrawn: true}
	tests := []struct {
		name string
		rd   Reading
	}{
		{"empty", Reading{}},
		{"every field", full},
		{"long strings", Reading{TenantID: strings.Repeat("t", 200), EventID: strings.Repeat("é", 100), Value: math.Inf(-1), SourceFormat: "json"}},
		{"NaN", Reading{Value: math.NaN(), SecondValue: f64(math.NaN())}},
	}
	for _, stage := range readingV3Stages {
		rd := full
		rd.Stage = str(stage)
		tests = append(tests, struct {
			name string
			rd   Reading
		}{"stage " + stage, rd})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := codec.Encode(&tt.rd)
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendReading(codec, []byte("prefix"), &tt.rd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
				t.Fatalf("AppendReading:\n got %x\nwant %x", got[6:], want)
			}
		})
	}
	bad := full
	bad.Stage = str("dozing")
	if _, err := codec.Encode(&bad); err == nil {
		t.Fatal("the codec encodes an unknown stage; AppendReading refuses it")
	}
	if _, err := AppendReading(codec, nil, &bad); err == nil {
		t.Fatal("AppendReading encoded an unknown stage")
	}
}

// FuzzAppendReading checks the hand-written encoder against the codec.
func FuzzAppendReading(f *testing.F) {
	f.Add("t", "e", "u", "d", "g", "heart_rate", 72.0, "/min", int64(1), int64(2), int64(3), true, int64(4), true, 5.0, uint8(2), true, int64(-7), "json")
	codec := MustCodec(NameReading)
	f.Fuzz(func(t *testing.T, tenant, event, user, device, gateway, metricName string, value float64, unit string, measured, received, ingested int64,
		hasEnd bool, end int64, hasSecond bool, second float64, stage uint8, hasSeq bool, seq int64, format string) {
		rd := Reading{TenantID: tenant, EventID: event, UserID: user, DeviceID: device, GatewayID: gateway, Metric: metricName, Value: value,
			Unit: unit, MeasuredAt: measured, ReceivedAt: received, IngestedAt: ingested, SourceFormat: format}
		if hasEnd {
			rd.PeriodEnd = &end
		}
		if hasSecond {
			rd.SecondValue = &second
		}
		if int(stage) < len(readingV3Stages) {
			rd.Stage = str(readingV3Stages[stage])
		}
		if hasSeq {
			rd.Sequence = &seq
		}
		want, err := codec.Encode(&rd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendReading(codec, nil, &rd)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("AppendReading: %v\n got %x\nwant %x", err, got, want)
		}
	})
}

// randomReading is a reading with randomAccepted's field values.
func randomReading(rng *rand.Rand) *Reading {
	a := randomAccepted(rng)
	return &Reading{TenantID: a.TenantID, EventID: a.EventID, UserID: a.UserID, DeviceID: a.DeviceID, GatewayID: a.GatewayID,
		Metric: a.Metric, Value: a.Value, Unit: a.Unit, MeasuredAt: a.MeasuredAt, ReceivedAt: a.ReceivedAt, IngestedAt: a.IngestedAt,
		PeriodEnd: a.PeriodEnd, SecondValue: a.SecondValue, Stage: a.Stage, Sequence: a.Sequence,
		SourceFormat: []string{"json", "avro", "fhir", ""}[rng.IntN(4)], Revision: a.Revision, Withdrawn: a.Withdrawn}
}

// checkReadingAgainstCodec decodes msg with DecodeReading and with the
// codec alone, and fails unless both fail or both give readings that the
// codec encodes to the same bytes (which compares doubles by their bits).
func checkReadingAgainstCodec(t testing.TB, c *Codec, msg []byte) {
	got := Reading{TenantID: "left over"}
	gotErr := DecodeReading(c, msg, &got)
	var want Reading
	wantErr := c.Decode(msg, &want)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("message %x: decoder error %v, codec error %v", msg, gotErr, wantErr)
	}
	flat := FlatAcceptedReading{LOINC: "left over"}
	if flatErr := DecodeFlatReading(c, msg, &flat); (flatErr != nil) != (wantErr != nil) {
		t.Fatalf("message %x: flat decoder error %v, codec error %v", msg, flatErr, wantErr)
	}
	if gotErr != nil {
		return
	}
	var wantFlat FlatAcceptedReading
	flattenReading(&want, &wantFlat)
	if !sameFields(flat, wantFlat) {
		t.Fatalf("message %x:\nflat decoder %+v\ncodec        %+v", msg, flat, wantFlat)
	}
	g, err1 := c.Encode(&got)
	w, err2 := c.Encode(&want)
	if err1 != nil || err2 != nil || !bytes.Equal(g, w) {
		t.Fatalf("message %x:\ndecoder %+v (%v)\ncodec   %+v (%v)", msg, got, err1, want, err2)
	}
}

// TestReadingDecoderMatchesCodec checks DecodeReading's fast path against
// the general codec on random readings, every truncation of some, random
// corruptions, trailing bytes, and messages of older versions (which it
// leaves to the codec).
func TestReadingDecoderMatchesCodec(t *testing.T) {
	c := MustCodec(NameReading)
	rng := rand.New(rand.NewPCG(9, 10))
	fast := 0
	for i := range 400 {
		rd := randomReading(rng)
		msg, err := c.Encode(rd)
		if err != nil {
			t.Fatal(err)
		}
		checkDamaged(rng, msg, i < 40, func(msg []byte) { checkReadingAgainstCodec(t, c, msg) })
		var got Reading
		if readReadingV3(msg[headerLen:], &got) {
			fast++
		}
	}
	if fast != 400 {
		t.Fatalf("fast path read %d of 400 well-formed messages", fast)
	}
	vs, err := Versions(NameReading)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs[:len(vs)-1] {
		rd := randomReading(rng)
		msg := messageIn(t, v, rd)
		checkReadingAgainstCodec(t, c, msg)
		var got Reading
		if err := DecodeReading(c, msg, &got); err != nil || got.UserID != rd.UserID || got.Revision != 0 {
			t.Fatalf("v%d message of %+v decoded as %+v, %v", v.Number, rd, got, err)
		}
	}
}

// FuzzReadingDecoder holds the fast path to the general codec on any
// input: go test -run '^$' -fuzz FuzzReadingDecoder ./schemas/
func FuzzReadingDecoder(f *testing.F) {
	c := MustCodec(NameReading)
	rng := rand.New(rand.NewPCG(11, 12))
	for range 20 {
		msg, err := c.Encode(randomReading(rng))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, msg []byte) { checkReadingAgainstCodec(t, c, msg) })
}

// BenchmarkReadingDecoder is the processor's decoding of every logged
// reading: "fast" as it runs (DecodeReading), "codec" the general codec.
//
//	go test -run '^$' -bench ReadingDecoder -count 5 ./schemas/
func BenchmarkReadingDecoder(b *testing.B) {
	c := MustCodec(NameReading)
	rng := rand.New(rand.NewPCG(13, 14))
	msgs := make([][]byte, 1024)
	for i := range msgs {
		rd := Reading{TenantID: "tenant-1", EventID: "ev-" + strconv.Itoa(i), UserID: "user-" + strconv.Itoa(rng.IntN(50000)),
			DeviceID: "dev-1", GatewayID: "gw-1", Metric: "heart_rate", Value: 60 + rng.Float64()*40, Unit: "/min",
			MeasuredAt: 1700000000000 + int64(i), ReceivedAt: 1700000000100, IngestedAt: 1700000000200, Sequence: i64(int64(i)),
			SourceFormat: "json"}
		msg, err := c.Encode(&rd)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = msg
	}
	for _, fast := range []bool{true, false} {
		name := map[bool]string{true: "fast", false: "codec"}[fast]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var rd Reading
			for i := 0; b.Loop(); i++ {
				var err error
				if fast {
					err = DecodeReading(c, msgs[i%len(msgs)], &rd)
				} else {
					rd = Reading{}
					err = c.Decode(msgs[i%len(msgs)], &rd)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
