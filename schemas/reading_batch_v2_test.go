package schemas

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// avroBatches are valid batches covering every optional field.
func avroBatches() []ReadingBatch {
	full := GatewayReading{EventID: "e", UserID: "u", DeviceID: "d", Metric: "sleep_stage", Value: f64(-1.5), Unit: "min",
		MeasuredAt: -5, ReceivedAt: i64(math.MaxInt64), PeriodEnd: i64(math.MinInt64), Diastolic: f64(80), Stage: str("rem"), Sequence: i64(0),
		Revision: i64(3), Withdrawn: boolp(true)}
	many := make([]GatewayReading, 300)
	for i := range many {
		many[i] = full
		many[i].EventID = strings.Repeat("x", i)
	}
	return []ReadingBatch{
		{GatewayID: "g"},
		{GatewayID: "", TenantID: str("t"), Readings: []GatewayReading{{}}},
		{GatewayID: "g", Readings: []GatewayReading{full, {EventID: "é", Metric: "heart_rate", Value: f64(math.NaN())},
			{EventID: "r", Revision: i64(-1), Withdrawn: boolp(false)}}},
		{GatewayID: "g", Readings: many},
	}
}

func boolp(b bool) *bool { return &b }

// batchCodec is the reference: the general codec.
var batchCodec = MustCodec(NameReadingBatch)

// decodeCodec reads body with the general codec.
func decodeCodec(body []byte) (ReadingBatch, error) {
	var b ReadingBatch
	err := batchCodec.Decode(body, &b)
	return b, err
}

// sameBatch compares two decoded batches by value (NaN equal to NaN).
func sameBatch(a, b ReadingBatch) bool {
	ja, _ := json.Marshal(showBatch(a))
	jb, _ := json.Marshal(showBatch(b))
	return bytes.Equal(ja, jb)
}

func showBatch(b ReadingBatch) any {
	type shown struct {
		G, E, U, D, M, Un, St string
		HasT, HasV, HasR      bool
		HasP, HasDi, HasS     bool
		HasQ, HasRev, HasW    bool
		W                     bool
		T                     string
		V, Di                 uint64
		At, R, P, Q, Rev      int64
	}
	out := []shown{{G: b.GatewayID, HasT: b.TenantID != nil}}
	if b.TenantID != nil {
		out[0].T = *b.TenantID
	}
	for _, g := range b.Readings {
		s := shown{E: g.EventID, U: g.UserID, D: g.DeviceID, M: g.Metric, Un: g.Unit, At: g.MeasuredAt,
			HasV: g.Value != nil, HasR: g.ReceivedAt != nil, HasP: g.PeriodEnd != nil, HasDi: g.Diastolic != nil, HasS: g.Stage != nil, HasQ: g.Sequence != nil}
		if g.Value != nil {
			s.V = math.Float64bits(*g.Value)
		}
		if g.Diastolic != nil {
			s.Di = math.Float64bits(*g.Diastolic)
		}
		if g.ReceivedAt != nil {
			s.R = *g.ReceivedAt
		}
		if g.PeriodEnd != nil {
			s.P = *g.PeriodEnd
		}
		if g.Stage != nil {
			s.St = *g.Stage
		}
		if g.Sequence != nil {
			s.Q = *g.Sequence
		}
		if s.HasRev = g.Revision != nil; s.HasRev {
			s.Rev = *g.Revision
		}
		if s.HasW = g.Withdrawn != nil; s.HasW {
			s.W = *g.Withdrawn
		}
		out = append(out, s)
	}
	return out
}

func TestReadReadingBatchMatchesCodec(t *testing.T) {
	for i, b := range avroBatches() {
		msg, err := batchCodec.Encode(&b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadReadingBatch(batchCodec, msg)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		want, _ := decodeCodec(msg)
		if !sameBatch(got, want) || !reflect.DeepEqual(len(got.Readings), len(b.Readings)) {
			t.Fatalf("batch %d: fast %+v, codec %+v", i, showBatch(got), showBatch(want))
		}
		// Every cut of the message: the fast decoder never takes a part
		// for the whole.
		for cut := 10; cut < len(msg); cut += max(1, len(msg)/2000) {
			if _, err := ReadReadingBatch(batchCodec, msg[:cut]); err == nil {
				t.Fatalf("batch %d cut at %d of %d bytes: decoded", i, cut, len(msg))
			}
		}
		if _, err := ReadReadingBatch(batchCodec, append(msg[:len(msg):len(msg)], 0)); err == nil {
			t.Fatalf("batch %d with a byte after it: decoded", i)
		}
	}
}

// AppendReadingBatch writes reading_batch v2 byte for byte as the codec
// does, after what dst holds, in blocks of 100 readings with their sizes.
func TestAppendReadingBatchMatchesCodec(t *testing.T) {
	for i, b := range avroBatches() {
		want, err := batchCodec.Encode(&b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendReadingBatch(batchCodec, []byte("x"), &b)
		if err != nil || string(got[:1]) != "x" || !bytes.Equal(got[1:], want) {
			t.Fatalf("batch %d: %v\n got %x\nwant %x", i, err, got[1:], want)
		}
	}
}

// A negated block count with a byte size is valid Avro, which the fast
// decoder reads like the codec.
func TestReadReadingBatchNegativeBlockCount(t *testing.T) {
	h := readingBatchV2.header
	item := []byte{2, 'e', 2, 'u', 2, 'd', 2, 'm', 0, 2, 'x', 4, 0, 0, 0, 0, 0, 0, 0}
	msg := append(h[:], 2, 'g', 0)
	msg = append(msg, 3, byte(len(item)*2)) // count -2 (zigzag 3), size
	msg = append(append(append(msg, item...), item...), 0)
	got, err := ReadReadingBatch(batchCodec, msg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := decodeCodec(msg)
	if err != nil || !sameBatch(got, want) || len(got.Readings) != 2 {
		t.Fatalf("fast %+v, codec %+v (%v)", showBatch(got), showBatch(want), err)
	}
}

// FuzzAvroFastDecode checks the fast decoder against the codec: whatever
// it decodes, the codec decodes to the same batch (and the batch written
// again by hand is what the codec writes). The fuzzer writes the
// payload; the header is the current one.
func FuzzAvroFastDecode(f *testing.F) {
	for _, b := range avroBatches()[:3] {
		msg, _ := batchCodec.Encode(&b)
		f.Add(msg[10:])
	}
	h := readingBatchV2.header
	f.Fuzz(func(t *testing.T, payload []byte) {
		body := append(h[:], payload...)
		got, err := ReadReadingBatch(batchCodec, body)
		if err != nil {
			return
		}
		want, cerr := decodeCodec(body)
		if cerr != nil {
			t.Fatalf("fast decoded what the codec refuses (%v): %x", cerr, body)
		}
		if !sameBatch(got, want) {
			t.Fatalf("fast %+v, codec %+v", showBatch(got), showBatch(want))
		}
		// What was read, written again by hand, is what the codec writes.
		again, err := AppendReadingBatch(batchCodec, nil, &got)
		if wantAgain, cerr := batchCodec.Encode(&got); err != nil || cerr != nil || !bytes.Equal(again, wantAgain) {
			t.Fatalf("re-encoded: %v %v\n got %x\nwant %x", err, cerr, again, wantAgain)
		}
	})
}
