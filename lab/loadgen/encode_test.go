package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/schemas"
)

// jsonRef is a reading as encoding/json writes it, in AppendJSONReading's
// field order: the reference for its bytes.
type jsonRef struct {
	EventID    string   `json:"event_id"`
	UserID     string   `json:"user_id"`
	DeviceID   string   `json:"device_id"`
	Metric     string   `json:"metric"`
	Value      *float64 `json:"value,omitempty"`
	Unit       string   `json:"unit"`
	MeasuredAt string   `json:"measured_at"`
	PeriodEnd  *string  `json:"period_end,omitempty"`
	ReceivedAt *string  `json:"received_at,omitempty"`
	Diastolic  *float64 `json:"diastolic,omitempty"`
	Stage      *string  `json:"stage,omitempty"`
	Sequence   *int64   `json:"sequence,omitempty"`
}

func refTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func refJSON(t *testing.T, gateway string, rs []schemas.GatewayReading) []byte {
	t.Helper()
	items := make([]jsonRef, len(rs))
	for i, g := range rs {
		items[i] = jsonRef{EventID: g.EventID, UserID: g.UserID, DeviceID: g.DeviceID, Metric: g.Metric, Value: g.Value, Unit: g.Unit,
			MeasuredAt: refTime(g.MeasuredAt), Diastolic: g.Diastolic, Stage: g.Stage, Sequence: g.Sequence}
		if g.PeriodEnd != nil {
			s := refTime(*g.PeriodEnd)
			items[i].PeriodEnd = &s
		}
		if g.ReceivedAt != nil {
			s := refTime(*g.ReceivedAt)
			items[i].ReceivedAt = &s
		}
	}
	b, err := json.Marshal(struct {
		GatewayID string    `json:"gateway_id"`
		Readings  []jsonRef `json:"readings"`
	}{gateway, items})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// testReadings cover every optional field, odd floats and times.
func testReadings(n int) []schemas.GatewayReading {
	rs := []schemas.GatewayReading{
		{EventID: "e-1", UserID: "u-1", DeviceID: "d-1", Metric: "heart_rate", Value: ptr(72.0), Unit: "/min", MeasuredAt: 1_700_000_000_123},
		{EventID: "e<2>&", UserID: "ü", DeviceID: "d\"1\\", Metric: "sleep_stage", Unit: "min", MeasuredAt: -1, PeriodEnd: ptr(int64(59_999)),
			ReceivedAt: ptr(int64(0)), Stage: ptr("rem"), Sequence: ptr(int64(-3))},
		{EventID: "e3", Metric: "blood_pressure", Value: ptr(1e-7), Diastolic: ptr(1e21), Unit: "mm[Hg]", MeasuredAt: 253402300799999},
		{EventID: "e4", Value: ptr(-0.0), MeasuredAt: 253402300800000},
		{EventID: "e5", Value: ptr(123456789.125), Diastolic: ptr(-2.5e-10), MeasuredAt: -62135596800001},
	}
	for len(rs) < n {
		g := rs[len(rs)%5]
		g.EventID = strings.Repeat("x", len(rs))
		rs = append(rs, g)
	}
	return rs
}

func TestBodyEncoderMatchesCodecAndEncodingJSON(t *testing.T) {
	enc := NewBodyEncoder()
	codec := schemas.MustCodec(schemas.NameReadingBatch)
	for _, n := range []int{0, 1, 5, 99, 100, 101, 250} {
		rs := testReadings(n)[:n]
		want, err := codec.Encode(&schemas.ReadingBatch{GatewayID: "gw", Readings: rs})
		if err != nil {
			t.Fatal(err)
		}
		got, err := enc.Append([]byte("x"), FormatAvro, "gw", rs)
		if err != nil || !bytes.Equal(got[1:], want) {
			t.Fatalf("%d readings, avro: %v\n got %x\nwant %x", n, err, got[1:], want)
		}
		want = refJSON(t, "gw", rs)
		got, err = enc.Append(nil, FormatJSON, "gw", rs)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d readings, json: %v\n got %s\nwant %s", n, err, got, want)
		}
	}
	tenant := "t-1"
	b := schemas.ReadingBatch{GatewayID: "g", TenantID: &tenant, Readings: testReadings(3)}
	want, _ := codec.Encode(&b)
	if got, err := enc.AppendAvro(nil, &b); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("with a tenant: %v\n got %x\nwant %x", err, got, want)
	}
	if _, err := enc.Append(nil, FormatJSON, "g", []schemas.GatewayReading{{Value: ptr(math.NaN())}}); !errors.Is(err, ErrNotFinite) {
		t.Fatalf("NaN in JSON: %v", err)
	}
	if _, err := enc.Append(nil, "xml", "g", nil); err == nil {
		t.Fatal("unknown format encoded")
	}
}

func FuzzAppendJSONFloatAndTime(f *testing.F) {
	f.Add(72.0, int64(0))
	f.Add(1e-7, int64(-1))
	f.Add(-1e300, int64(1<<62))
	f.Fuzz(func(t *testing.T, v float64, ms int64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		want, _ := json.Marshal(v)
		got, err := appendJSONFloat(nil, v)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%v: got %s, want %s", v, got, want)
		}
		wantT, _ := json.Marshal(refTime(ms))
		if gotT := appendJSONTime(nil, ms); !bytes.Equal(gotT, wantT) {
			t.Fatalf("%d: got %s, want %s", ms, gotT, wantT)
		}
	})
}

// BenchmarkAppendAvro writes a 500-reading ReadingBatch body as the fleet
// simulator does.
//
//	go test -run '^$' -bench AppendAvro -benchtime 2s -count 3 ./internal/loadgen/
func BenchmarkAppendAvro(b *testing.B) {
	b.ReportAllocs()
	enc := NewBodyEncoder()
	rs := testReadings(500)
	buf := make([]byte, 0, 64<<10)
	for b.Loop() {
		var err error
		if buf, err = enc.Append(buf[:0], FormatAvro, "bench-gateway", rs); err != nil {
			b.Fatal(err)
		}
	}
}
