package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/sample/sampletest"
	"github.com/vitalshq/vitals/schemas"
)

// The per-reading CPU cost of ingest, without a network or a broker:
//
//	go test -run '^$' -bench . -benchtime 3s ./ingest/

// discardProducer acknowledges every record at once and keeps nothing.
type discardProducer struct{}

func (discardProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}

// benchKeys accepts one key, like the cached path of the key store.
type benchKeys struct{}

const benchKey = "vk_bench"

func (benchKeys) Verify(_ context.Context, presented string) (Key, error) {
	if presented != benchKey {
		return Key{}, ErrBadKey
	}
	return Key{ID: "bench", Tenant: "default"}, nil
}

// benchReadings are n real heart-rate readings from the Fitbit sample,
// moved to the day before now, spread over 10000 users, with distinct
// event ids.
func benchReadings(b *testing.B, n int) []schemas.GatewayReading {
	b.Helper()
	rows := sampletest.HeartRates(b)
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	out := make([]schemas.GatewayReading, n)
	for k := range out {
		r := rows[k%len(rows)]
		v := r.Value
		u := fmt.Sprintf("bench-user-%06d", k%10000)
		out[k] = schemas.GatewayReading{
			EventID: fmt.Sprintf("bench-%08d", k), UserID: u, DeviceID: u + "-tracker",
			Metric: "heart_rate", Value: &v, Unit: "/min",
			MeasuredAt: day.Add(r.Time.Sub(r.Time.Truncate(24 * time.Hour))).UnixMilli(),
		}
	}
	return out
}

// jsonItem is a reading as a gateway sends it in a JSON batch.
func jsonItem(g schemas.GatewayReading) map[string]any {
	return map[string]any{
		"event_id": g.EventID, "user_id": g.UserID, "device_id": g.DeviceID, "metric": g.Metric,
		"value": *g.Value, "unit": g.Unit,
		"measured_at": time.UnixMilli(g.MeasuredAt).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
	}
}

// BenchmarkDecodeValidateEncode is one JSON reading through the JSON item
// decoder, the syntax check and the Avro encoding of the logged event.
func BenchmarkDecodeValidateEncode(b *testing.B) {
	raw, err := json.Marshal(jsonItem(benchReadings(b, 1)[0]))
	if err != nil {
		b.Fatal(err)
	}
	codec := schemas.MustCodec(schemas.NameReading)
	cc := checkContext{tenant: "default", gateway: "bench-gateway", format: "json", now: time.Now(), lim: DefaultConfig().Limits}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		in, rej := readingFromJSON(raw)
		if rej != nil {
			b.Fatal(rej)
		}
		rd, rej := cc.CheckReading(&in)
		if rej != nil {
			b.Fatal(rej)
		}
		if _, err := codec.Encode(&rd); err != nil {
			b.Fatal(err)
		}
	}
}

// discardWriter is a ResponseWriter that keeps only the status, so the
// benchmark measures the handler rather than a recorder's buffer.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// benchHandler posts body to /v1/readings b.N times through the handler
// with a producer that discards, and reports readings/s.
func benchHandler(b *testing.B, n int, contentType string, body []byte) {
	// One tenant posting flat out outruns its share of 200,000 items/s by
	// design; the handler's cost is measured without the share.
	cfg := DefaultConfig()
	cfg.PerTenant.Rate, cfg.PerTenant.Burst = 0, 0
	s := mustServer(cfg, discardProducer{}, benchKeys{})
	h := s.Handler()
	rd := bytes.NewReader(body)
	req, err := http.NewRequest(http.MethodPost, "/v1/readings", rd)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+benchKey)
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		w.status = 0
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkBatchHandler500 is a whole 500-reading JSON batch through the
// HTTP handler: authentication (cached key), envelope and item decoding,
// syntax check, Avro encoding, record building and the JSON answer with a
// verdict per item; the producer discards.
func BenchmarkBatchHandler500(b *testing.B) {
	rs := benchReadings(b, 500)
	items := make([]map[string]any, len(rs))
	for i, g := range rs {
		items[i] = jsonItem(g)
	}
	body, err := json.Marshal(map[string]any{"gateway_id": "bench-gateway", "readings": items})
	if err != nil {
		b.Fatal(err)
	}
	benchHandler(b, len(rs), "application/json", body)
}

// BenchmarkBatchHandler500Avro is BenchmarkBatchHandler500 with the batch
// sent as an Avro ReadingBatch.
func BenchmarkBatchHandler500Avro(b *testing.B) {
	rs := benchReadings(b, 500)
	body, err := schemas.MustCodec(schemas.NameReadingBatch).Encode(&schemas.ReadingBatch{GatewayID: "bench-gateway", Readings: rs})
	if err != nil {
		b.Fatal(err)
	}
	benchHandler(b, len(rs), contentTypeAvroBatch, body)
}
