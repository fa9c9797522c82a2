package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/schemas"
)

// recordingProducer stands in for the broker in handler unit tests (the
// integration test uses the real one): it records what was produced and
// fails the records whose index is in fail.
type recordingProducer struct {
	got  []*kgo.Record
	fail map[int]bool
}

func (p *recordingProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	out := make(kgo.ProduceResults, len(rs))
	for i, r := range rs {
		out[i].Record = r
		if p.fail[i] {
			out[i].Err = errors.New("broker unavailable")
			continue
		}
		p.got = append(p.got, r)
	}
	return out
}

func newTestServer(p producer) *Server {
	cfg := DefaultConfig()
	cfg.MaxBatchItems = 4
	cfg.MaxBodyBytes = 4096
	s := newServer(cfg, zerolog.Nop(), p)
	s.now = func() time.Time { return testNow }
	return s
}

func post(t *testing.T, s *Server, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/readings", strings.NewReader(body)))
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
		if it.Index != i || it.Status != w.status || (w.reason != "" && (it.Rejection == nil || it.Reason != w.reason)) {
			t.Fatalf("item %d: %+v; want %v", i, it, w)
		}
	}
	// The valid neighbours were produced, keyed by user, as single-object Avro.
	if len(p.got) != 2 {
		t.Fatalf("produced %d records", len(p.got))
	}
	codec := schemas.MustCodec(schemas.NameReading)
	for i, wantUser := range []string{"user-1", "user-2"} {
		if string(p.got[i].Key) != wantUser {
			t.Fatalf("record %d key %q", i, p.got[i].Key)
		}
		var r schemas.Reading
		if err := codec.Decode(p.got[i].Value, &r); err != nil {
			t.Fatal(err)
		}
		if r.UserID != wantUser || r.TenantID != "default" || r.GatewayID != "gw-1" {
			t.Fatalf("record %d: %+v", i, r)
		}
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
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/readings", bytes.NewReader([]byte(batchBody(item(nil))))))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d", rec.Code)
	}
}
