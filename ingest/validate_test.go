package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// item builds a valid reading JSON with overrides; a nil override deletes
// the field.
func item(over map[string]any) json.RawMessage {
	m := map[string]any{
		"event_id":    "ev-1",
		"user_id":     "user-1",
		"device_id":   "dev-1",
		"metric":      "heart_rate",
		"value":       72.5,
		"unit":        "/min",
		"measured_at": "2026-11-22T11:59:00.123Z",
	}
	for k, v := range over {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestCheckRejections(t *testing.T) {
	lim := Limits{MaxFutureSkew: 5 * time.Minute, MaxAge: 30 * 24 * time.Hour}
	tests := []struct {
		name   string
		raw    json.RawMessage
		reason string
		field  string
	}{
		{"not an object", json.RawMessage(`[1,2]`), ReasonMalformedItem, ""},
		{"a bare string", json.RawMessage(`"x"`), ReasonMalformedItem, ""},
		{"missing event_id", item(map[string]any{"event_id": nil}), ReasonMissingField, "event_id"},
		{"missing value", item(map[string]any{"value": nil}), ReasonMissingField, "value"},
		{"missing measured_at", item(map[string]any{"measured_at": nil}), ReasonMissingField, "measured_at"},
		{"value as string", item(map[string]any{"value": "72"}), ReasonInvalidType, "value"},
		{"user_id as number", item(map[string]any{"user_id": 7}), ReasonInvalidType, "user_id"},
		{"empty user_id", item(map[string]any{"user_id": ""}), ReasonInvalidIdentifier, "user_id"},
		{"user_id with space", item(map[string]any{"user_id": "a b"}), ReasonInvalidIdentifier, "user_id"},
		{"overlong device_id", item(map[string]any{"device_id": strings.Repeat("d", 129)}), ReasonInvalidIdentifier, "device_id"},
		{"unknown metric", item(map[string]any{"metric": "mood"}), ReasonUnknownMetric, "metric"},
		{"wrong unit", item(map[string]any{"unit": "bpm"}), ReasonUnknownUnit, "unit"},
		{"timestamp without zone", item(map[string]any{"measured_at": "2026-11-22T11:59:00"}), ReasonInvalidTimestamp, "measured_at"},
		{"timestamp garbage", item(map[string]any{"measured_at": "yesterday"}), ReasonInvalidTimestamp, "measured_at"},
		{"measured in the future", item(map[string]any{"measured_at": "2026-11-22T12:06:00Z"}), ReasonFutureTimestamp, "measured_at"},
		{"received in the future", item(map[string]any{"received_at": "2026-11-22T13:00:00Z"}), ReasonFutureTimestamp, "received_at"},
		{"bad received_at", item(map[string]any{"received_at": 5}), ReasonInvalidType, "received_at"},
		{"older than max age", item(map[string]any{"measured_at": "2026-10-01T00:00:00Z"}), ReasonTooOld, "measured_at"},
		{"number out of float range", json.RawMessage(`{"event_id":"e","user_id":"u","device_id":"d","metric":"heart_rate","value":1e999,"unit":"/min","measured_at":"2026-11-22T11:59:00Z"}`), ReasonInvalidType, "value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, rej := Check(tc.raw, "t1", "gw-1", testNow, lim)
			if rej == nil {
				t.Fatalf("accepted; want %s", tc.reason)
			}
			if rej.Reason != tc.reason || rej.Field != tc.field {
				t.Fatalf("got %s on %q (%s); want %s on %q", rej.Reason, rej.Field, rej.Message, tc.reason, tc.field)
			}
			if rej.Message == "" {
				t.Fatal("empty message")
			}
			if strings.Contains(rej.Message, "72.5") {
				t.Fatalf("message echoes the health value: %s", rej.Message)
			}
		})
	}
}

func TestCheckAccepts(t *testing.T) {
	lim := Limits{MaxFutureSkew: 5 * time.Minute}
	tests := []struct {
		name       string
		raw        json.RawMessage
		measuredMs int64
		receivedMs int64
	}{
		{"utc with millis", item(nil), time.Date(2026, 11, 22, 11, 59, 0, 123e6, time.UTC).UnixMilli(), testNow.UnixMilli()},
		{"zone offset", item(map[string]any{"measured_at": "2026-11-22T13:59:00+02:00"}), time.Date(2026, 11, 22, 11, 59, 0, 0, time.UTC).UnixMilli(), testNow.UnixMilli()},
		{"within future skew", item(map[string]any{"measured_at": "2026-11-22T12:04:59Z"}), time.Date(2026, 11, 22, 12, 4, 59, 0, time.UTC).UnixMilli(), testNow.UnixMilli()},
		{"ten years old, no max age", item(map[string]any{"measured_at": "2016-05-02T07:06:00Z"}), time.Date(2016, 5, 2, 7, 6, 0, 0, time.UTC).UnixMilli(), testNow.UnixMilli()},
		{"received_at given", item(map[string]any{"received_at": "2026-11-22T11:59:30Z"}), time.Date(2026, 11, 22, 11, 59, 0, 123e6, time.UTC).UnixMilli(), time.Date(2026, 11, 22, 11, 59, 30, 0, time.UTC).UnixMilli()},
		{"unknown fields ignored", item(map[string]any{"note": "x"}), time.Date(2026, 11, 22, 11, 59, 0, 123e6, time.UTC).UnixMilli(), testNow.UnixMilli()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, rej := Check(tc.raw, "t1", "gw-1", testNow, lim)
			if rej != nil {
				t.Fatalf("rejected: %v", rej)
			}
			if r.TenantID != "t1" || r.GatewayID != "gw-1" || r.UserID != "user-1" || r.Metric != "heart_rate" || r.Unit != "/min" || r.Value != 72.5 {
				t.Fatalf("unexpected reading %+v", r)
			}
			if r.MeasuredAt != tc.measuredMs || r.ReceivedAt != tc.receivedMs || r.IngestedAt != testNow.UnixMilli() {
				t.Fatalf("times: measured %d received %d ingested %d; want %d %d %d", r.MeasuredAt, r.ReceivedAt, r.IngestedAt, tc.measuredMs, tc.receivedMs, testNow.UnixMilli())
			}
		})
	}
}

func TestTenantComesFromServerNotPayload(t *testing.T) {
	r, rej := Check(item(map[string]any{"tenant_id": "other"}), "mine", "gw", testNow, Limits{MaxFutureSkew: time.Minute})
	if rej != nil {
		t.Fatal(rej)
	}
	if r.TenantID != "mine" {
		t.Fatalf("tenant %q taken from payload", r.TenantID)
	}
}
