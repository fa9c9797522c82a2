package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/consistency"
	"github.com/vitalshq/vitals/schemas"
)

// recordingProducer stands in for the broker in handler unit tests (the
// integration test uses the real one): it records what was produced and
// fails the records whose index is in fail.
type recordingProducer struct {
	got  []*kgo.Record
	n    int
	fail map[int]bool
	hang map[int]bool
}

func (p *recordingProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	i := p.n
	p.n++
	if p.fail[i] {
		promise(r, errors.New("broker unavailable"))
		return
	}
	if p.hang[i] {
		return // never answers, like a broker that went away mid-request
	}
	// Like the broker: two partitions, offsets counting up.
	r.Partition, r.Offset = int32(i%2), int64(100+i)
	p.got = append(p.got, r)
	promise(r, nil)
}

// fakeKeys stands in for the PostgreSQL key store in handler unit tests
// (the integration test uses the real one).
type fakeKeys map[string]Key

const goodKey, revokedKey = "vk_good", "vk_revoked"

func (f fakeKeys) Verify(_ context.Context, presented string) (Key, error) {
	k, ok := f[presented]
	switch {
	case !ok:
		return Key{}, ErrBadKey
	case k.RevokedAt != nil:
		return k, ErrRevokedKey
	}
	return k, nil
}

// mustServer is newServer with a logger that discards, for tests: its
// only error (metrics already registered) cannot happen on the fresh
// registry of DefaultConfig.
func mustServer(cfg Config, p producer, keys keyVerifier) *Server {
	s, err := newServer(cfg, zerolog.Nop(), p, keys)
	if err != nil {
		panic(err)
	}
	return s
}

func newTestServer(p producer) *Server {
	cfg := DefaultConfig()
	cfg.MaxBatchItems = 4
	cfg.MaxBodyBytes = 4096
	revoked := testNow
	s := mustServer(cfg, p, fakeKeys{
		goodKey:    {ID: "good", Tenant: "default"},
		revokedKey: {ID: "revoked", Tenant: "default", RevokedAt: &revoked},
	})
	s.now = func() time.Time { return testNow }
	return s
}

func post(t *testing.T, s *Server, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	return postTo(t, s, "/v1/readings", goodKey, "application/json", body)
}

func postTo(t *testing.T, s *Server, path, key, contentType, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	s.Handler().ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not JSON: %q", rec.Body.String())
	}
	return rec, out
}

func batchBody(items ...json.RawMessage) string {
	b, _ := json.Marshal(map[string]any{"gateway_id": "gw-1", "readings": items})
	return string(b)
}

func TestBatchVerdictPerItem(t *testing.T) {
	p := &recordingProducer{}
	s := newTestServer(p)
	rec, _ := post(t, s, batchBody(
		item(map[string]any{"event_id": "a"}),
		item(map[string]any{"event_id": "b", "unit": "bpm"}),
		item(map[string]any{"event_id": "c", "user_id": "user-2"}),
	))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var resp BatchResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 2 || resp.Rejected != 1 {
		t.Fatalf("accepted %d rejected %d", resp.Accepted, resp.Rejected)
	}
	want := []struct{ status, reason string }{{StatusAccepted, ""}, {StatusRejected, ReasonUnknownUnit}, {StatusAccepted, ""}}
	for i, w := range want {
		it := resp.Items[i]
		if it.Index != i || it.Status != w.status || (w.reason != "" && it.Reason != w.reason) {
			t.Fatalf("item %d: %+v; want %v", i, it, w)
		}
	}
	// The valid neighbours were produced, keyed by user, as single-object
	// Avro; the bad item went to the dead-letter topic with its bytes.
	if len(p.got) != 3 {
		t.Fatalf("produced %d records", len(p.got))
	}
	codec := schemas.MustCodec(schemas.NameReading)
	for i, want := range []struct {
		rec  int
		user string
	}{{0, "user-1"}, {2, "user-2"}} {
		got := p.got[want.rec]
		if string(got.Key) != want.user || got.Topic != s.cfg.Kafka.Topics.Readings {
			t.Fatalf("record %d: topic %s key %q", i, got.Topic, got.Key)
		}
		var r schemas.Reading
		if err := codec.Decode(got.Value, &r); err != nil {
			t.Fatal(err)
		}
		if r.UserID != want.user || r.TenantID != "default" || r.GatewayID != "gw-1" {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	dl := p.got[1]
	if dl.Topic != s.cfg.Kafka.Topics.DeadLetters || string(dl.Key) != "user-1" {
		t.Fatalf("dead letter: topic %s key %q", dl.Topic, dl.Key)
	}
	var d schemas.DeadLetter
	if err := schemas.MustCodec(schemas.NameDeadLetter).Decode(dl.Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Reason != ReasonUnknownUnit || d.Field != "unit" || d.ItemIndex != 1 || d.GatewayID != "gw-1" || d.TenantID != "default" ||
		d.EventID != "b" || d.Endpoint != "readings" || !bytes.Equal(d.Original, item(map[string]any{"event_id": "b", "unit": "bpm"})) {
		t.Fatalf("dead letter %+v", d)
	}
}

func TestMetricsCountOutcomes(t *testing.T) {
	s := newTestServer(&recordingProducer{})
	post(t, s, batchBody(item(map[string]any{"event_id": "a"}), item(map[string]any{"event_id": "b", "unit": "bpm"}), item(map[string]any{"event_id": "c"})))
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`vitals_ingest_items_total{endpoint="readings",outcome="accepted",reason=""} 2`,
		`vitals_ingest_items_total{endpoint="readings",outcome="rejected",reason="unknown_unit"} 1`,
		`vitals_ingest_requests_total{code="200",endpoint="readings"} 1`, // client_golang sorts labels by name
		`vitals_ingest_batch_items_count{endpoint="readings"} 1`,
		`vitals_ingest_produce_seconds_count{endpoint="readings"} 1`,
		`vitals_ingest_request_seconds_count{endpoint="readings"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, rec.Body)
		}
	}
}

func TestAuthentication(t *testing.T) {
	s := newTestServer(&recordingProducer{})
	body := batchBody(item(nil))
	tests := []struct {
		name, key string
		status    int
		code      string
	}{
		{"no key", "", http.StatusUnauthorized, "unauthenticated"},
		{"unknown key", "vk_nope", http.StatusUnauthorized, "unauthenticated"},
		{"revoked key", revokedKey, http.StatusForbidden, "key_revoked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, out := postTo(t, s, "/v1/readings", tc.key, "application/json", body)
			if rec.Code != tc.status || out["code"] != tc.code {
				t.Fatalf("got %d %v", rec.Code, out)
			}
		})
	}
	b, _ := json.Marshal(map[string]any{"gateway_id": "gw", "tenant_id": "someone-else", "readings": []json.RawMessage{item(nil)}})
	if rec, out := post(t, s, string(b)); rec.Code != http.StatusForbidden || out["code"] != "tenant_mismatch" {
		t.Fatalf("tenant mismatch: %d %v", rec.Code, out)
	}
}

func TestDeviceAndProfileEndpoints(t *testing.T) {
	p := &recordingProducer{}
	s := newTestServer(p)
	dev, _ := json.Marshal(map[string]any{"gateway_id": "gw", "events": []any{
		map[string]any{"event_id": "d1", "user_id": "u1", "device_id": "w1", "kind": "paired", "occurred_at": "2026-11-22T10:00:00Z"},
		map[string]any{"event_id": "d2", "user_id": "u1", "device_id": "w1", "kind": "melted", "occurred_at": "2026-11-22T10:00:00Z"},
	}})
	rec, _ := postTo(t, s, "/v1/device-events", goodKey, "application/json", string(dev))
	if rec.Code != http.StatusOK || len(p.got) != 2 || p.got[0].Topic != s.cfg.Kafka.Topics.DeviceEvents || p.got[1].Topic != s.cfg.Kafka.Topics.DeadLetters {
		t.Fatalf("device events: %d, %d records", rec.Code, len(p.got))
	}
	prof, _ := json.Marshal(map[string]any{"gateway_id": "gw", "events": []any{
		map[string]any{"event_id": "p1", "user_id": "u1", "kind": "erasure_requested", "occurred_at": "2026-11-22T10:00:00Z"},
	}})
	rec, _ = postTo(t, s, "/v1/profile-events", goodKey, "application/json", string(prof))
	if rec.Code != http.StatusOK || len(p.got) != 3 || p.got[2].Topic != s.cfg.Kafka.Topics.ProfileEvents || string(p.got[2].Key) != "u1" {
		t.Fatalf("profile events: %d, %d records", rec.Code, len(p.got))
	}
	var ev schemas.ProfileEvent
	if err := schemas.MustCodec(schemas.NameProfileEvent).Decode(p.got[2].Value, &ev); err != nil || ev.Kind != "erasure_requested" {
		t.Fatalf("profile event %+v %v", ev, err)
	}
}

func TestAvroBatch(t *testing.T) {
	p := &recordingProducer{}
	s := newTestServer(p)
	v := 61.0
	good := schemas.GatewayReading{EventID: "a1", UserID: "u1", DeviceID: "d1", Metric: "heart_rate", Value: &v, Unit: "/min", MeasuredAt: testNow.Add(-time.Minute).UnixMilli()}
	bad := good
	bad.EventID, bad.Unit = "a2", "bpm"
	body, err := schemas.MustCodec(schemas.NameReadingBatch).Encode(&schemas.ReadingBatch{GatewayID: "gw-avro", Readings: []schemas.GatewayReading{good, bad}})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := postTo(t, s, "/v1/readings", goodKey, contentTypeAvroBatch, string(body))
	var resp BatchResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	if resp.Accepted != 1 || resp.Items[1].Reason != ReasonUnknownUnit {
		t.Fatalf("verdicts %+v", resp)
	}
	var r schemas.Reading
	if err := schemas.MustCodec(schemas.NameReading).Decode(p.got[0].Value, &r); err != nil || r.SourceFormat != "avro" || r.GatewayID != "gw-avro" {
		t.Fatalf("reading %+v %v", r, err)
	}
	if rec, out := postTo(t, s, "/v1/readings", goodKey, contentTypeAvroBatch, "not avro"); rec.Code != http.StatusBadRequest || out["code"] != "malformed_body" {
		t.Fatalf("bad avro body: %d %v", rec.Code, out)
	}
}

func TestProduceFailureAnswers503WithStoredItems(t *testing.T) {
	p := &recordingProducer{fail: map[int]bool{1: true}}
	s := newTestServer(p)
	rec, out := post(t, s, batchBody(item(map[string]any{"event_id": "a"}), item(map[string]any{"event_id": "b"})))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", rec.Code)
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	if out["code"] != "log_unavailable" {
		t.Fatalf("code %v", out["code"])
	}
	items := out["items"].([]any)
	if items[0].(map[string]any)["status"] != StatusAccepted || items[1].(map[string]any)["status"] != StatusNotSaved {
		t.Fatalf("items %v", items)
	}
}

func TestUnansweredProduceAnswers503Unconfirmed(t *testing.T) {
	p := &recordingProducer{hang: map[int]bool{0: true}}
	s := newTestServer(p)
	s.cfg.ProduceTimeout = 50 * time.Millisecond
	rec, out := post(t, s, batchBody(item(map[string]any{"event_id": "a"}), item(map[string]any{"event_id": "b"})))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d", rec.Code)
	}
	items := out["items"].([]any)
	if items[0].(map[string]any)["status"] != StatusUnconfirmed || items[1].(map[string]any)["status"] != StatusAccepted || out["accepted"] != 1.0 {
		t.Fatalf("body %v", out)
	}
}

func TestRequestLevelErrors(t *testing.T) {
	s := newTestServer(&recordingProducer{})
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"not json", "{", http.StatusBadRequest, "malformed_body"},
		{"missing gateway", `{"readings":[{}]}`, http.StatusBadRequest, ReasonInvalidIdentifier},
		{"readings not an array", `{"gateway_id":"g","readings":{}}`, http.StatusBadRequest, "malformed_body"},
		{"empty batch", `{"gateway_id":"g","readings":[]}`, http.StatusBadRequest, "empty_batch"},
		{"too many items", batchBody(item(nil), item(nil), item(nil), item(nil), item(nil)), http.StatusRequestEntityTooLarge, "batch_too_large"},
		{"body too large", `{"gateway_id":"g","readings":["` + strings.Repeat("x", 5000) + `"]}`, http.StatusRequestEntityTooLarge, "body_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, out := post(t, s, tc.body)
			if rec.Code != tc.status || out["code"] != tc.code {
				t.Fatalf("got %d %v; want %d %s", rec.Code, out["code"], tc.status, tc.code)
			}
		})
	}
}

func TestOverloadAnswers503(t *testing.T) {
	s := newTestServer(&recordingProducer{})
	for range cap(s.inflight) {
		s.inflight <- struct{}{}
	}
	rec, _ := post(t, s, batchBody(item(nil)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d", rec.Code)
	}
}

// Nothing a gateway sends as a health value, and no key, reaches the logs,
// even at trace level and on the failure path.
func TestLogsCarryNoHealthValuesOrKeys(t *testing.T) {
	var buf bytes.Buffer
	p := &recordingProducer{fail: map[int]bool{1: true}}
	s := newTestServer(p)
	s.log = zerolog.New(&buf).Level(zerolog.TraceLevel)
	post(t, s, batchBody(item(map[string]any{"event_id": "a", "value": 187.25}), item(map[string]any{"event_id": "b", "value": 93.75}),
		item(map[string]any{"event_id": "c", "unit": "bpm", "value": 41.125})))
	postTo(t, s, "/v1/readings", "vk_secret_not_for_logs", "application/json", batchBody(item(nil)))
	logs := buf.String()
	if logs == "" {
		t.Fatal("nothing was logged; the test would prove nothing")
	}
	for _, secret := range []string{"187.25", "93.75", "41.125", "vk_secret_not_for_logs", goodKey} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain %q:\n%s", secret, logs)
		}
	}
}

// The consistency token names the highest acknowledged offset per
// partition of the accepted items, and never a dead letter's.
func TestConsistencyTokenNamesAcceptedPositions(t *testing.T) {
	tests := []struct {
		name  string
		items []json.RawMessage
		fail  map[int]bool
		want  consistency.Token // nil: no token
	}{
		{"all accepted", []json.RawMessage{item(map[string]any{"event_id": "a"}), item(map[string]any{"event_id": "b"}), item(map[string]any{"event_id": "c"})},
			nil, consistency.Token{"vitals.readings.v1": {0: 102, 1: 101}}},
		{"dead letter left out", []json.RawMessage{item(map[string]any{"event_id": "a"}), item(map[string]any{"event_id": "b", "unit": "bpm"})},
			nil, consistency.Token{"vitals.readings.v1": {0: 100}}},
		{"nothing accepted", []json.RawMessage{item(map[string]any{"event_id": "b", "unit": "bpm"})}, nil, nil},
		{"failed record left out", []json.RawMessage{item(map[string]any{"event_id": "a"}), item(map[string]any{"event_id": "b"})},
			map[int]bool{1: true}, consistency.Token{"vitals.readings.v1": {0: 100}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, _ := post(t, newTestServer(&recordingProducer{fail: tc.fail}), batchBody(tc.items...))
			var resp BatchResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if resp.ConsistencyToken != "" {
					t.Fatalf("token %q for a request with nothing accepted", resp.ConsistencyToken)
				}
				return
			}
			got, err := consistency.Decode(resp.ConsistencyToken)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("token %v (%v); want %v", got, err, tc.want)
			}
		})
	}
}
