package ingest

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vitalshq/vitals/schemas"
)

// fuzzBatch runs a decoded batch through the syntax check and asserts the
// invariants every decoder must keep: no panic, every item either rejected
// with a reason or encoded as a reading that decodes back to the same ids,
// and the raw bytes kept for the dead-letter topic.
func fuzzBatch(t *testing.T, d decodedBatch) {
	cc := checkContext{tenant: "t", gateway: "gw", format: d.format, now: testNow, lim: Limits{MaxFutureSkew: time.Minute, MaxAge: 365 * 24 * time.Hour}}
	codec := schemas.MustCodec(schemas.NameReading)
	for i := range d.n {
		it := d.judge(i, &cc)
		if (it.rej == nil) == (it.value == nil) {
			t.Fatalf("item %d: rejection %v and value %d bytes", i, it.rej, len(it.value))
		}
		if it.rej != nil {
			if it.rej.Reason == "" || it.rej.Message == "" {
				t.Fatalf("item %d: empty rejection %+v", i, it.rej)
			}
			continue
		}
		var r schemas.Reading
		if err := codec.Decode(it.value, &r); err != nil {
			t.Fatalf("item %d: encoded reading does not decode: %v", i, err)
		}
		if r.EventID != it.event || r.UserID != it.user || r.TenantID != "t" {
			t.Fatalf("item %d: ids changed: %+v vs %s/%s", i, r, it.event, it.user)
		}
	}
}

func FuzzReadingsJSON(f *testing.F) {
	for _, seed := range []string{
		batchBody(item(nil)),
		batchBody(item(map[string]any{"metric": "blood_pressure", "unit": "kPa", "value": 16, "diastolic": 10})),
		batchBody(item(map[string]any{"metric": "sleep_stage", "unit": "min", "stage": "rem", "period_end": "2026-11-22T11:59:30Z", "value": nil})),
		batchBody(item(map[string]any{"value": "x"}), json.RawMessage(`7`), json.RawMessage(`{}`)),
		`{"gateway_id":"g","readings":[{"event_id":"a","measured_at":"2026-13-45T99:00:00Z"}]}`,
		`{"gateway_id":"g","readings":[{"event_id":"a","user_id":"A","USER_ID":"B","measured_at":"0001-01-01T00:00:00Z"}],"Readings":[]}`,
		batchBody(item(map[string]any{"measured_at": "1999-12-31T23:59:59Z"})),
	} {
		f.Add([]byte(seed))
	}
	s := mustServer(DefaultConfig(), nil, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, aerr := s.decodeReadings(httptest.NewRequest("POST", "/v1/readings", nil), body)
		if aerr != nil {
			if aerr.code == "" || aerr.status != 400 {
				t.Fatalf("bad request error %+v", aerr)
			}
			return
		}
		fuzzBatch(t, d)
	})
}

func FuzzReadingsAvro(f *testing.F) {
	codec := schemas.MustCodec(schemas.NameReadingBatch)
	v, dia := 72.0, 80.0
	stage := "deep"
	end := testNow.Add(-time.Second).UnixMilli()
	for _, b := range []schemas.ReadingBatch{
		{GatewayID: "g", Readings: []schemas.GatewayReading{{EventID: "e", UserID: "u", DeviceID: "d", Metric: "heart_rate", Value: &v, Unit: "/min", MeasuredAt: testNow.Add(-time.Minute).UnixMilli()}}},
		{GatewayID: "g", Readings: []schemas.GatewayReading{{EventID: "e", UserID: "u", DeviceID: "d", Metric: "blood_pressure", Value: &v, Diastolic: &dia, Unit: "mm[Hg]", MeasuredAt: testNow.Add(-time.Minute).UnixMilli()}}},
		{GatewayID: "g", Readings: []schemas.GatewayReading{{EventID: "e", UserID: "u", DeviceID: "d", Metric: "sleep_stage", Stage: &stage, PeriodEnd: &end, Unit: "min", MeasuredAt: testNow.Add(-time.Minute).UnixMilli()}}},
		{GatewayID: "g", Readings: []schemas.GatewayReading{{EventID: "", UserID: "u u", DeviceID: "d", Metric: "x", Unit: "y"}}},
	} {
		msg, err := codec.Encode(&b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
	}
	s := mustServer(DefaultConfig(), nil, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, aerr := s.decodeAvroReadings(body)
		if aerr != nil {
			return
		}
		fuzzBatch(t, d)
	})
}
