package processor

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/schemas"
)

// The processor's encoder writes what the codec writes, within its bound;
// schemas' tests hold the hand-written encoder to the codec on every field.
func TestAcceptedEncoderMatchesCodec(t *testing.T) {
	codec := schemas.MustCodec(schemas.NameAcceptedReading)
	enc := newAcceptedEncoder(codec)
	stage, seq := "rem", int64(-7)
	for _, a := range []schemas.AcceptedReading{
		{TenantID: "default", EventID: "7f3c9a2e-5b1d-4e8a-9c0f-000000000001", UserID: "user-1", DeviceID: "tracker-1",
			GatewayID: "gw", Metric: "heart_rate", LOINC: "8867-4", Value: 72, Unit: "/min", MeasuredAt: 1_740_787_200_000,
			ReceivedAt: 1_740_787_200_500, IngestedAt: 1_740_787_201_000, SourcePartition: 3, SourceOffset: 123456},
		{Metric: "sleep_stage", Stage: &stage, Sequence: &seq},
	} {
		want, err := codec.Encode(&a)
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("kept")
		got, err := enc.append(bytes.Clone(prefix), &a)
		if err != nil || !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("encoder: %v\n%x\ncodec:\n%x", err, got, want)
		}
		if len(want) > enc.bound(&a) {
			t.Fatalf("%d bytes written, bound %d", len(want), enc.bound(&a))
		}
	}
}

func TestOutputMemory(t *testing.T) {
	var m outputMemory
	// Records are distinct and zero.
	seen := map[*kgo.Record]bool{}
	for i := range 3 * outputChunkRecords {
		r := m.record()
		if seen[r] || r.Topic != "" || r.Value != nil {
			t.Fatalf("record %d reused or not zero", i)
		}
		r.Topic = "x"
		seen[r] = true
	}
	// A header list has room for no more: appending to it must not write
	// over the next record's header.
	h1 := m.header(kgo.RecordHeader{Key: "a"})
	h2 := m.header(kgo.RecordHeader{Key: "b"})
	_ = append(h1, kgo.RecordHeader{Key: "c"})
	if len(h1) != 1 || cap(h1) != 1 || h2[0].Key != "b" {
		t.Fatalf("header lists share room: %v %v", h1, h2)
	}
	// Byte slices keep their contents whatever is handed out after them,
	// including appends beyond what room promised and sizes beyond a chunk.
	tests := []struct {
		name      string
		room, add int
	}{
		{"small", 10, 10},
		{"empty", 0, 0},
		{"beyond the promise", 4, outputChunkBytes},
		{"a chunk", outputChunkBytes, outputChunkBytes},
		{"more than a chunk", 3 * outputChunkBytes, 3 * outputChunkBytes},
		{"small again", 7, 7},
	}
	type kept struct {
		b    []byte
		want byte
	}
	var all []kept
	for i, tc := range tests {
		fill := byte('a' + i)
		b := m.take(append(m.room(tc.room), bytes.Repeat([]byte{fill}, tc.add)...))
		if len(b) != tc.add || cap(b) != tc.add {
			t.Fatalf("%s: len %d cap %d, want %d", tc.name, len(b), cap(b), tc.add)
		}
		all = append(all, kept{b, fill})
		all = append(all, kept{m.bytes("key"), 0})
	}
	for i, k := range all {
		if k.want == 0 {
			if string(k.b) != "key" {
				t.Fatalf("slice %d: %q, want key", i, k.b)
			}
			continue
		}
		if len(k.b) > 0 && !bytes.Equal(k.b, bytes.Repeat([]byte{k.want}, len(k.b))) {
			t.Fatalf("slice %d was overwritten", i)
		}
	}
}

// BenchmarkAcceptedEncoder is the processor's per-record encoding of an
// accepted reading into the batch's output buffer: "by-hand" as it runs
// (accepted_reading v2 written directly), "codec" the general codec, for
// comparison. Every fourth reading is a sleep-stage interval with every
// optional field.
//
//	go test -run '^$' -bench AcceptedEncoder -benchtime 2s -count 3 ./processor/
func BenchmarkAcceptedEncoder(b *testing.B) {
	rs := make([]schemas.AcceptedReading, 1024)
	for i := range rs {
		at := int64(1_740_787_200_000 + i*1000)
		rs[i] = schemas.AcceptedReading{TenantID: "default", EventID: fmt.Sprintf("7f3c9a2e-5b1d-4e8a-9c0f-%012x", i),
			UserID: fmt.Sprintf("user-%06d", i%10000), DeviceID: fmt.Sprintf("tracker-%06d", i%10000), GatewayID: "bench-gateway",
			Metric: "heart_rate", LOINC: "8867-4", Value: float64(60 + i%40), Unit: "/min",
			MeasuredAt: at, ReceivedAt: at + 500, IngestedAt: at + 1000, SourcePartition: int32(i % 12), SourceOffset: int64(i)}
		if i%4 == 3 {
			end, second, stage, seq := at+60_000, 1.5, "rem", int64(i)
			a := &rs[i]
			a.Metric, a.LOINC, a.Unit, a.PeriodEnd, a.SecondValue, a.Stage, a.Sequence = "sleep_stage", "93832-4", "min", &end, &second, &stage, &seq
		}
	}
	codec := schemas.MustCodec(schemas.NameAcceptedReading)
	enc := newAcceptedEncoder(codec)
	for _, tc := range []struct {
		name   string
		append func([]byte, *schemas.AcceptedReading) ([]byte, error)
	}{
		{"by-hand", enc.append},
		{"codec", func(dst []byte, a *schemas.AcceptedReading) ([]byte, error) { return codec.Append(dst, a) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if len(buf) > 60<<10 {
					buf = buf[:0]
				}
				var err error
				if buf, err = tc.append(buf, &rs[i%len(rs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
