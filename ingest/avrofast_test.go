package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// The hand-written layouts must be the schemas' current versions; when
// this fails, a new version was added: bring decodeAvroBatchFast or
// appendReading up to date with it and change the fingerprint. (Until
// then ingest uses the general codec, so nothing is written wrong.)
func TestAvroFastLayoutsAreCurrent(t *testing.T) {
	for _, tt := range []struct {
		name string
		fp   uint64
	}{{schemas.NameReadingBatch, fastBatchFingerprint}, {schemas.NameReading, fastReadingFingerprint}} {
		if got := schemas.MustCodec(tt.name).Current().Fingerprint; got != tt.fp {
			t.Errorf("%s: current fingerprint %#016x, the hand-written layout is for %#016x", tt.name, got, tt.fp)
		}
	}
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }
func str(v string) *string   { return &v }

func TestAppendReadingMatchesCodec(t *testing.T) {
	codec := schemas.MustCodec(schemas.NameReading)
	full := schemas.Reading{TenantID: "t", EventID: "e-1", UserID: "u:1@x", DeviceID: "d.1", GatewayID: "g_1", Metric: "sleep_stage",
		Value: 12.5, Unit: "min", MeasuredAt: 1_700_000_000_000, ReceivedAt: -1, IngestedAt: math.MaxInt64,
		PeriodEnd: i64(math.MinInt64), SecondValue: f64(-0.0), Stage: str("rem"), Sequence: i64(0), SourceFormat: "avro"}
	tests := []struct {
		name string
		rd   schemas.Reading
	}{
		{"empty", schemas.Reading{}},
		{"every field", full},
		{"long strings", schemas.Reading{TenantID: strings.Repeat("t", 200), EventID: strings.Repeat("é", 100), Value: math.Inf(-1), SourceFormat: "json"}},
		{"NaN", schemas.Reading{Value: math.NaN(), SecondValue: f64(math.NaN())}},
	}
	for _, stage := range metric.SleepStages {
		rd := full
		rd.Stage = str(stage)
		tests = append(tests, struct {
			name string
			rd   schemas.Reading
		}{"stage " + stage, rd})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := codec.Encode(&tt.rd)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendReading([]byte("prefix"), &tt.rd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
				t.Fatalf("appendReading:\n got %x\nwant %x", got[6:], want)
			}
		})
	}
	bad := full
	bad.Stage = str("dozing")
	if _, err := codec.Encode(&bad); err == nil {
		t.Fatal("the codec encodes an unknown stage; appendReading refuses it")
	}
	if _, err := appendReading(nil, &bad); err == nil {
		t.Fatal("appendReading encoded an unknown stage")
	}
}

// FuzzAppendReading checks the hand-written encoder against the codec.
func FuzzAppendReading(f *testing.F) {
	f.Add("t", "e", "u", "d", "g", "heart_rate", 72.0, "/min", int64(1), int64(2), int64(3), true, int64(4), true, 5.0, uint8(2), true, int64(-7), "json")
	codec := schemas.MustCodec(schemas.NameReading)
	f.Fuzz(func(t *testing.T, tenant, event, user, device, gateway, metricName string, value float64, unit string, measured, received, ingested int64,
		hasEnd bool, end int64, hasSecond bool, second float64, stage uint8, hasSeq bool, seq int64, format string) {
		rd := schemas.Reading{TenantID: tenant, EventID: event, UserID: user, DeviceID: device, GatewayID: gateway, Metric: metricName, Value: value,
			Unit: unit, MeasuredAt: measured, ReceivedAt: received, IngestedAt: ingested, SourceFormat: format}
		if hasEnd {
			rd.PeriodEnd = &end
		}
		if hasSecond {
			rd.SecondValue = &second
		}
		if int(stage) < len(metric.SleepStages) {
			rd.Stage = str(metric.SleepStages[stage])
		}
		if hasSeq {
			rd.Sequence = &seq
		}
		want, err := codec.Encode(&rd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendReading(nil, &rd)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("appendReading: %v\n got %x\nwant %x", err, got, want)
		}
	})
}

// avroBatches are valid batches covering every optional field.
func avroBatches() []schemas.ReadingBatch {
	full := schemas.GatewayReading{EventID: "e", UserID: "u", DeviceID: "d", Metric: "sleep_stage", Value: f64(-1.5), Unit: "min",
		MeasuredAt: -5, ReceivedAt: i64(math.MaxInt64), PeriodEnd: i64(math.MinInt64), Diastolic: f64(80), Stage: str("rem"), Sequence: i64(0)}
	many := make([]schemas.GatewayReading, 300)
	for i := range many {
		many[i] = full
		many[i].EventID = strings.Repeat("x", i)
	}
	return []schemas.ReadingBatch{
		{GatewayID: "g"},
		{GatewayID: "", TenantID: str("t"), Readings: []schemas.GatewayReading{{}}},
		{GatewayID: "g", Readings: []schemas.GatewayReading{full, {EventID: "é", Metric: "heart_rate", Value: f64(math.NaN())}}},
		{GatewayID: "g", Readings: many},
	}
}

// decodeCodec is the reference: the general codec.
func decodeCodec(body []byte) (schemas.ReadingBatch, error) {
	var b schemas.ReadingBatch
	err := batchCodec.Decode(body, &b)
	return b, err
}

// sameBatch compares two decoded batches by value (NaN equal to NaN).
func sameBatch(a, b schemas.ReadingBatch) bool {
	ja, _ := json.Marshal(showBatch(a))
	jb, _ := json.Marshal(showBatch(b))
	return bytes.Equal(ja, jb)
}

func showBatch(b schemas.ReadingBatch) any {
	type shown struct {
		G, E, U, D, M, Un, St string
		HasT, HasV, HasR      bool
		HasP, HasDi, HasS     bool
		HasQ                  bool
		T                     string
		V, Di                 uint64
		At, R, P, Q           int64
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
		out = append(out, s)
	}
	return out
}

func TestAvroFastDecodeMatchesCodec(t *testing.T) {
	for i, b := range avroBatches() {
		msg, err := batchCodec.Encode(&b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeAvroBatchFast(msg)
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
			if _, err := decodeAvroBatchFast(msg[:cut]); err == nil {
				t.Fatalf("batch %d cut at %d of %d bytes: decoded", i, cut, len(msg))
			}
		}
		if _, err := decodeAvroBatchFast(append(msg[:len(msg):len(msg)], 0)); err == nil {
			t.Fatalf("batch %d with a byte after it: decoded", i)
		}
	}
}

// A negated block count with a byte size is valid Avro, which the fast
// decoder reads like the codec.
func TestAvroFastDecodeNegativeBlockCount(t *testing.T) {
	h := schemas.SingleObjectHeader(fastBatchFingerprint)
	item := []byte{2, 'e', 2, 'u', 2, 'd', 2, 'm', 0, 2, 'x', 4, 0, 0, 0, 0, 0}
	msg := append(h[:], 2, 'g', 0)
	msg = append(msg, 3, byte(len(item)*2)) // count -2 (zigzag 3), size
	msg = append(append(append(msg, item...), item...), 0)
	got, err := decodeAvroBatchFast(msg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := decodeCodec(msg)
	if err != nil || !sameBatch(got, want) || len(got.Readings) != 2 {
		t.Fatalf("fast %+v, codec %+v (%v)", showBatch(got), showBatch(want), err)
	}
}

// FuzzAvroFastDecode checks the fast decoder against the codec: whatever
// it decodes, the codec decodes to the same batch. The fuzzer writes the
// payload; the header is the current one.
func FuzzAvroFastDecode(f *testing.F) {
	for _, b := range avroBatches()[:3] {
		msg, _ := batchCodec.Encode(&b)
		f.Add(msg[10:])
	}
	h := schemas.SingleObjectHeader(fastBatchFingerprint)
	f.Fuzz(func(t *testing.T, payload []byte) {
		body := append(h[:], payload...)
		got, err := decodeAvroBatchFast(body)
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
	})
}

// A truncated batch, or one with bytes after it, is refused as a whole,
// also where the general codec alone would have taken it.
func TestAvroBodyTruncatedOrExtendedIsRefused(t *testing.T) {
	b := schemas.ReadingBatch{GatewayID: "gw-1", Readings: []schemas.GatewayReading{
		{EventID: "a", UserID: "user-1", DeviceID: "dev-1", Metric: "heart_rate", Value: f64(70), Unit: "/min", MeasuredAt: testNow.Add(-60e9).UnixMilli(), Sequence: i64(9)},
	}}
	msg, err := batchCodec.Encode(&b)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(&recordingProducer{})
	for _, tt := range []struct {
		name string
		body []byte
	}{
		{"end-of-array marker missing", msg[:len(msg)-1]},
		{"sequence and marker missing", msg[:len(msg)-3]},
		{"a byte more", append(msg[:len(msg):len(msg)], 0)},
		{"two batches", append(msg[:len(msg):len(msg)], msg...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec, out := postTo(t, s, "/v1/readings", goodKey, contentTypeAvroBatch, string(tt.body))
			if rec.Code != http.StatusBadRequest || out["code"] != "malformed_body" {
				t.Fatalf("status %d, %v", rec.Code, out)
			}
		})
	}
	rec, out := postTo(t, s, "/v1/readings", goodKey, contentTypeAvroBatch, string(msg))
	if rec.Code != http.StatusOK || out["accepted"] != 1.0 {
		t.Fatalf("the whole batch: status %d, %v", rec.Code, out)
	}
}

func TestDecodeReadingBatchKeepsCodecErrors(t *testing.T) {
	for _, body := range [][]byte{nil, []byte("{}"), {0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}} {
		_, want := decodeCodec(body)
		_, got := decodeReadingBatch(body)
		if want == nil || got == nil || got.Error() != want.Error() {
			t.Errorf("%x: got %v, want the codec's %v", body, got, want)
		}
		if errors.Is(got, errAvroShort) {
			t.Errorf("%x: %v", body, got)
		}
	}
}
