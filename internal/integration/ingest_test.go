package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/schemas"
)

// TestIngestRoutesEveryItem posts mixed batches over HTTP with real keys and
// reads the topics back: valid items land in their event-log topic keyed by
// user, invalid ones in the dead-letter topic with their bytes and reason,
// a user's readings and device/profile events share a partition, the tenant
// comes from the key, and bad or revoked keys are refused.
func TestIngestRoutesEveryItem(t *testing.T) {
	s, ctx := newStackFor(t, 2*time.Minute)
	ingestURL, _ := s.startIngest(ctx)
	otherKey := s.newKey(ctx, "other-"+s.id)
	now := time.Now().UTC().Truncate(time.Millisecond)
	at := func(d time.Duration) string { return now.Add(-d).Format(time.RFC3339Nano) }

	valid := map[string]any{"event_id": "ok-1", "user_id": "alice", "device_id": "watch-1", "metric": "heart_rate", "value": 61, "unit": "/min", "measured_at": at(time.Minute)}
	bp := map[string]any{"event_id": "ok-2", "user_id": "alice", "device_id": "cuff-1", "metric": "blood_pressure", "value": 16, "diastolic": 10.5, "unit": "kPa", "measured_at": at(time.Minute)}
	invalid := map[string]any{"event_id": "bad-1", "user_id": "alice", "device_id": "watch-1", "metric": "heart_rate", "value": 61, "unit": "bpm", "measured_at": at(time.Minute)}
	var resp ingest.BatchResponse
	code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-1", "readings": []any{valid, invalid, valid, bp}}, &resp)
	if code != http.StatusOK || resp.Accepted != 3 || resp.Rejected != 1 || resp.Items[1].Reason != ingest.ReasonUnknownUnit {
		t.Fatalf("mixed batch: %d %+v", code, resp)
	}
	// The other tenant's gateway posts a reading for a user of the same name.
	if code := postAs(t, otherKey, ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-2", "readings": []any{valid}}, &resp); code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("other tenant: %d %+v", code, resp)
	}
	// Device and profile events of the same user.
	dev := map[string]any{"event_id": "dev-1", "user_id": "alice", "device_id": "watch-1", "kind": "paired", "model": "charge-hr", "occurred_at": at(time.Hour)}
	if code := s.postJSON(ingestURL+"/v1/device-events", map[string]any{"gateway_id": "gw-1", "events": []any{dev}}, &resp); code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("device event: %d %+v", code, resp)
	}
	prof := map[string]any{"event_id": "prof-1", "user_id": "alice", "kind": "registered", "birth_year": 1984, "sex": "female", "region": "DE", "occurred_at": at(time.Hour)}
	if code := s.postJSON(ingestURL+"/v1/profile-events", map[string]any{"gateway_id": "gw-1", "events": []any{prof}}, &resp); code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("profile event: %d %+v", code, resp)
	}
	// A FHIR Observation of the same user.
	fhir := `{"resourceType":"Observation","id":"fhir-1","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
		"subject":{"reference":"Patient/alice"},"device":{"reference":"Device/watch-1"},
		"effectiveDateTime":"` + at(30*time.Second) + `",
		"valueQuantity":{"value":64,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}`
	req, _ := http.NewRequest(http.MethodPost, ingestURL+"/fhir/r4/Observation", strings.NewReader(fhir))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("X-Gateway-ID", "fhir-gw")
	hresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(hresp.Body).Decode(&resp); err != nil || hresp.StatusCode != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("fhir: %d %+v %v", hresp.StatusCode, resp, err)
	}
	hresp.Body.Close()

	// Keys: none, wrong, revoked.
	if code := postAs(t, "vk_0000000000000000_"+strings.Repeat("0", 64), ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw", "readings": []any{valid}}, &map[string]any{}); code != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", code)
	}
	revoked := s.newKey(ctx, s.tenant)
	pool := s.pgPool(ctx)
	store, err := ingest.NewKeyStore(ctx, pool, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := store.Revoke(ctx, strings.Split(revoked, "_")[1]); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	if code := postAs(t, revoked, ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw", "readings": []any{valid}}, &map[string]any{}); code != http.StatusForbidden {
		t.Fatalf("revoked key: %d", code)
	}

	// Read back what landed where.
	readings := readAll(t, ctx, s, s.kafka.Topics.Readings, 5)
	codec := schemas.MustCodec(schemas.NameReading)
	var got []schemas.Reading
	partOf := map[string]int32{}
	for _, r := range readings {
		var rd schemas.Reading
		if err := codec.Decode(r.Value, &rd); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != rd.UserID {
			t.Fatalf("record key %q for user %q", r.Key, rd.UserID)
		}
		if rd.TenantID == s.tenant {
			partOf["reading"] = r.Partition
		}
		got = append(got, rd)
	}
	count := map[string]int{}
	for _, rd := range got {
		count[rd.TenantID+"/"+rd.EventID+"/"+rd.SourceFormat]++
	}
	want := map[string]int{
		s.tenant + "/ok-1/json":        2, // the repeat is in the log; the processor drops it
		s.tenant + "/ok-2/json":        1,
		s.tenant + "/fhir-1/fhir":      1,
		"other-" + s.id + "/ok-1/json": 1,
	}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("readings topic: %s appears %d times, want %d (all: %v)", k, count[k], n, count)
		}
	}
	for _, rd := range got {
		if rd.EventID == "ok-2" && (rd.SecondValue == nil || *rd.SecondValue != 10.5 || rd.Unit != "kPa") {
			t.Errorf("blood pressure stored as %+v", rd)
		}
	}
	dls := readAll(t, ctx, s, s.kafka.Topics.DeadLetters, 1)
	var dl schemas.DeadLetter
	if err := schemas.MustCodec(schemas.NameDeadLetter).Decode(dls[0].Value, &dl); err != nil {
		t.Fatal(err)
	}
	var orig map[string]any
	if err := json.Unmarshal(dl.Original, &orig); err != nil || orig["event_id"] != "bad-1" || orig["unit"] != "bpm" {
		t.Fatalf("dead letter original %q: %v", dl.Original, err)
	}
	if dl.Reason != ingest.ReasonUnknownUnit || dl.Field != "unit" || dl.GatewayID != "gw-1" || dl.TenantID != s.tenant || dl.ItemIndex != 1 || len(dls) != 1 {
		t.Fatalf("dead letter %+v (%d records)", dl, len(dls))
	}
	// Co-partitioning: alice's device and profile events share her readings' partition.
	for _, topic := range []string{s.kafka.Topics.DeviceEvents, s.kafka.Topics.ProfileEvents} {
		recs := readAll(t, ctx, s, topic, 1)
		if recs[0].Partition != partOf["reading"] || string(recs[0].Key) != "alice" {
			t.Errorf("%s: alice in partition %d, her readings in %d", topic, recs[0].Partition, partOf["reading"])
		}
	}
}

// TestIngestAnswers503WhileKafkaIsDown stops the real broker: a batch must
// get 503 with Retry-After and no item marked accepted; after the broker is
// back, the same batch is accepted.
func TestIngestAnswers503WhileKafkaIsDown(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	cfg := s.ingestConfig()
	cfg.ProduceTimeout = 3 * time.Second
	base, _ := s.startIngestWith(ctx, cfg)
	url := base + "/v1/readings"
	batch := map[string]any{"gateway_id": "gw", "readings": []any{
		map[string]any{"event_id": "k-1", "user_id": "bob", "device_id": "w", "metric": "heart_rate", "value": 70, "unit": "/min", "measured_at": time.Now().UTC().Format(time.RFC3339)},
	}}
	var resp ingest.BatchResponse
	if code := s.postJSON(url, batch, &resp); code != http.StatusOK {
		t.Fatalf("before: %d", code)
	}

	stackCtl(t, ctx, "stop", "kafka")
	restarted := false
	defer func() {
		if !restarted {
			stackCtl(t, ctx, "start", "kafka")
		}
	}()
	var down struct {
		ingest.APIError
		ingest.BatchResponse
	}
	req := func() (int, http.Header) {
		b, _ := json.Marshal(batch)
		r, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(b)))
		r.Header.Set("Authorization", "Bearer "+s.key)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&down)
		return resp.StatusCode, resp.Header
	}
	code, hdr := req()
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || down.Code != "log_unavailable" || down.Accepted != 0 || down.Items[0].Status == ingest.StatusAccepted {
		t.Fatalf("while down: %d %+v", code, down)
	}
	stackCtl(t, ctx, "start", "kafka")
	restarted = true
	eventually(t, 60*time.Second, "ingest to accept again after the broker restart", func() (bool, string) {
		code, _ := req()
		return code == http.StatusOK && down.Accepted == 1, http.StatusText(code)
	})
	// The log holds the two acknowledged copies, plus the unconfirmed one if
	// the producer delivered it after the broker came back (which is why a
	// 503 says "unconfirmed", not "not stored"); all are the same event, so
	// the processor keeps one.
	time.Sleep(time.Second)
	n := s.topicRecords(ctx, s.kafka.Topics.Readings)
	if n < 2 || n > 3 {
		t.Fatalf("the log holds %d copies of the reading, want 2 or 3", n)
	}
	t.Logf("the log holds %d copies of the event posted three times (one during the outage)", n)
}
