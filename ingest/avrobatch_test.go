package ingest

import (
	"errors"
	"net/http"
	"testing"

	"github.com/vitalshq/vitals/schemas"
)

// Pointers to values, for the optional fields of the package's test inputs.
func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }
func str(v string) *string   { return &v }

// decodeCodec is the reference: the general codec.
func decodeCodec(body []byte) (schemas.ReadingBatch, error) {
	var b schemas.ReadingBatch
	err := batchCodec.Decode(body, &b)
	return b, err
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
