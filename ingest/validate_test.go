package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/schemas"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// Check runs one JSON reading through the JSON decoder and the syntax check.
func Check(raw json.RawMessage, tenant, gateway string, now time.Time, lim Limits) (schemas.Reading, *Rejection) {
	in, rej := readingFromJSON(raw)
	if rej != nil {
		return schemas.Reading{}, rej
	}
	cc := checkContext{tenant: tenant, gateway: gateway, format: "json", now: now, lim: lim}
	return cc.CheckReading(&in)
}

// item builds a valid reading JSON with overrides; a nil override deletes
// the field.
func item(over map[string]any) json.RawMessage {
	return withFields(map[string]any{
		"event_id":    "ev-1",
		"user_id":     "user-1",
		"device_id":   "dev-1",
		"metric":      "heart_rate",
		"value":       72.5,
		"unit":        "/min",
		"measured_at": "2026-11-22T11:59:00.123Z",
	}, over)
}

// withFields is base as JSON with over's fields set, a nil one removed.
func withFields(base, over map[string]any) json.RawMessage {
	for k, v := range over {
		if v == nil {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	b, err := json.Marshal(base)
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
		{"missing unit", item(map[string]any{"unit": nil}), ReasonMissingField, "unit"},
		{"blood pressure without diastolic", item(map[string]any{"metric": "blood_pressure", "unit": "mm[Hg]", "value": 120}), ReasonMissingField, "diastolic"},
		{"blood pressure diastolic as string", item(map[string]any{"metric": "blood_pressure", "unit": "mm[Hg]", "diastolic": "80"}), ReasonInvalidType, "diastolic"},
		{"steps without period_end", item(map[string]any{"metric": "steps", "unit": "{steps}", "value": 100}), ReasonInvalidInterval, "period_end"},
		{"steps with period_end before start", item(map[string]any{"metric": "steps", "unit": "{steps}", "value": 100, "period_end": "2026-11-22T11:58:00Z"}), ReasonInvalidInterval, "period_end"},
		{"steps ending in the future", item(map[string]any{"metric": "steps", "unit": "{steps}", "value": 100, "period_end": "2026-11-22T13:00:00Z"}), ReasonFutureTimestamp, "period_end"},
		{"bad period_end", item(map[string]any{"metric": "steps", "unit": "{steps}", "value": 100, "period_end": "later"}), ReasonInvalidTimestamp, "period_end"},
		{"sleep without stage", item(map[string]any{"metric": "sleep_stage", "unit": "min", "period_end": "2026-11-22T11:59:30Z"}), ReasonMissingField, "stage"},
		{"sleep with unknown stage", item(map[string]any{"metric": "sleep_stage", "unit": "min", "period_end": "2026-11-22T11:59:30Z", "stage": "dreaming"}), ReasonInvalidValue, "stage"},
		{"glucose in a unit of another metric", item(map[string]any{"metric": "blood_glucose", "unit": "kg"}), ReasonUnknownUnit, "unit"},
		{"negative sequence", item(map[string]any{"sequence": -1}), ReasonInvalidValue, "sequence"},
		{"fractional sequence", item(map[string]any{"sequence": 1.5}), ReasonInvalidType, "sequence"},
		{"negative revision", item(map[string]any{"revision": -1}), ReasonInvalidValue, "revision"},
		{"fractional revision", item(map[string]any{"revision": 1.5}), ReasonInvalidType, "revision"},
		{"withdrawn as string", item(map[string]any{"revision": 1, "withdrawn": "yes"}), ReasonInvalidType, "withdrawn"},
		{"withdrawal without revision", item(map[string]any{"withdrawn": true}), ReasonInvalidValue, "withdrawn"},
		{"withdrawal of revision 0", item(map[string]any{"withdrawn": true, "revision": 0}), ReasonInvalidValue, "withdrawn"},
		{"withdrawal without measured_at", item(map[string]any{"withdrawn": true, "revision": 1, "measured_at": nil}), ReasonMissingField, "measured_at"},
		{"withdrawal of an unknown metric", item(map[string]any{"withdrawn": true, "revision": 1, "metric": "mood"}), ReasonUnknownMetric, "metric"},
		{"correction without value", item(map[string]any{"revision": 1, "value": nil}), ReasonMissingField, "value"},
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
		{"with a sequence", item(map[string]any{"sequence": 7}), time.Date(2026, 11, 22, 11, 59, 0, 123e6, time.UTC).UnixMilli(), testNow.UnixMilli()},
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

// Every metric shape, in canonical and alternative units, passes the check
// with its extra fields carried into the event.
// Revisions: a correction is checked like a reading and keeps its
// revision; a withdrawal needs no value or unit, and reads neither.
func TestCheckRevisions(t *testing.T) {
	lim := Limits{MaxFutureSkew: 5 * time.Minute}
	rd, rej := Check(item(map[string]any{"revision": 2, "value": 80}), "t1", "gw-1", testNow, lim)
	if rej != nil || rd.Revision != 2 || rd.Withdrawn || rd.Value != 80 {
		t.Fatalf("correction: %+v, %v", rd, rej)
	}
	rd, rej = Check(item(map[string]any{"revision": 0, "withdrawn": false}), "t1", "gw-1", testNow, lim)
	if rej != nil || rd.Revision != 0 || rd.Withdrawn {
		t.Fatalf("explicit original: %+v, %v", rd, rej)
	}
	for name, over := range map[string]map[string]any{
		"no value, no unit":           {"revision": 3, "withdrawn": true, "value": nil, "unit": nil},
		"a unit of another metric":    {"revision": 3, "withdrawn": true, "unit": "kg", "value": "not read"},
		"blood pressure, no diastole": {"revision": 3, "withdrawn": true, "metric": "blood_pressure"},
		"steps without period_end":    {"revision": 3, "withdrawn": true, "metric": "steps"},
	} {
		raw := item(over)
		if over["value"] == "not read" {
			raw = json.RawMessage(strings.Replace(string(item(map[string]any{"revision": 3, "withdrawn": true, "unit": "kg"})), `"value":72.5`, `"value":1e300`, 1))
		}
		rd, rej := Check(raw, "t1", "gw-1", testNow, lim)
		if rej != nil {
			t.Fatalf("%s: rejected %+v", name, rej)
		}
		if rd.Revision != 3 || !rd.Withdrawn || rd.Value != 0 || rd.EventID != "ev-1" || rd.DeviceID != "dev-1" || rd.MeasuredAt == 0 {
			t.Fatalf("%s: %+v", name, rd)
		}
	}
}

func TestCheckAcceptsCatalogue(t *testing.T) {
	lim := Limits{MaxFutureSkew: 5 * time.Minute}
	tests := []struct {
		name  string
		over  map[string]any
		check func(r schemas.Reading) bool
	}{
		{"blood pressure in kPa", map[string]any{"metric": "blood_pressure", "unit": "kPa", "value": 16, "diastolic": 10.5},
			func(r schemas.Reading) bool { return r.SecondValue != nil && *r.SecondValue == 10.5 && r.Unit == "kPa" }},
		{"glucose in mmol/L", map[string]any{"metric": "blood_glucose", "unit": "mmol/L", "value": 5.5},
			func(r schemas.Reading) bool { return r.Value == 5.5 && r.Unit == "mmol/L" }},
		{"temperature in degF", map[string]any{"metric": "body_temperature", "unit": "[degF]", "value": 98.6},
			func(r schemas.Reading) bool { return r.Unit == "[degF]" }},
		{"spo2 as a fraction", map[string]any{"metric": "spo2", "unit": "1", "value": 0.97},
			func(r schemas.Reading) bool { return r.Unit == "1" }},
		{"steps over a minute", map[string]any{"metric": "steps", "unit": "{steps}", "value": 80, "period_end": "2026-11-22T11:59:59.123Z"},
			func(r schemas.Reading) bool { return r.PeriodEnd != nil && *r.PeriodEnd-r.MeasuredAt == 59000 }},
		{"energy in kJ", map[string]any{"metric": "active_energy", "unit": "kJ", "value": 12, "period_end": "2026-11-22T11:59:30Z"},
			func(r schemas.Reading) bool { return r.PeriodEnd != nil }},
		{"weight in pounds", map[string]any{"metric": "body_weight", "unit": "[lb_av]", "value": 150},
			func(r schemas.Reading) bool { return r.Unit == "[lb_av]" }},
		{"sleep stage, value from the period", map[string]any{"metric": "sleep_stage", "unit": "min", "value": nil, "stage": "deep", "period_end": "2026-11-22T11:59:30.123Z"},
			func(r schemas.Reading) bool { return r.Stage != nil && *r.Stage == "deep" && r.Value == 0.5 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, rej := Check(item(tc.over), "t1", "gw", testNow, lim)
			if rej != nil {
				t.Fatalf("rejected: %v", rej)
			}
			if !tc.check(r) || r.SourceFormat != "json" {
				t.Fatalf("unexpected event %+v", r)
			}
		})
	}
}

func TestDeviceAndProfileChecks(t *testing.T) {
	cc := checkContext{tenant: "t1", gateway: "gw", format: "json", now: testNow, lim: Limits{MaxFutureSkew: time.Minute}}
	dev := func(over map[string]any) (schemas.DeviceEvent, *Rejection) {
		in, rej := deviceFromJSON(withFields(map[string]any{"event_id": "d-1", "user_id": "u", "device_id": "watch", "kind": "paired", "model": "charge-hr", "occurred_at": "2026-11-22T11:00:00Z"}, over))
		if rej != nil {
			return schemas.DeviceEvent{}, rej
		}
		return cc.CheckDevice(&in)
	}
	prof := func(over map[string]any) (schemas.ProfileEvent, *Rejection) {
		in, rej := profileFromJSON(withFields(map[string]any{"event_id": "p-1", "user_id": "u", "kind": "registered", "birth_year": 1980, "sex": "female", "region": "DE-BY", "occurred_at": "2026-11-22T11:00:00Z"}, over))
		if rej != nil {
			return schemas.ProfileEvent{}, rej
		}
		return cc.CheckProfile(&in)
	}
	if ev, rej := dev(nil); rej != nil || ev.Kind != "paired" || ev.TenantID != "t1" || *ev.Model != "charge-hr" {
		t.Fatalf("valid device event: %+v %v", ev, rej)
	}
	if ev, rej := prof(nil); rej != nil || *ev.BirthYear != 1980 || *ev.Region != "DE-BY" {
		t.Fatalf("valid profile event: %+v %v", ev, rej)
	}
	tests := []struct {
		name          string
		run           func() *Rejection
		reason, field string
	}{
		{"device kind", func() *Rejection { _, r := dev(map[string]any{"kind": "exploded"}); return r }, ReasonInvalidValue, "kind"},
		{"device battery", func() *Rejection { _, r := dev(map[string]any{"kind": "status", "battery_pct": 140}); return r }, ReasonInvalidValue, "battery_pct"},
		{"device missing occurred_at", func() *Rejection { _, r := dev(map[string]any{"occurred_at": nil}); return r }, ReasonMissingField, "occurred_at"},
		{"device bad id", func() *Rejection { _, r := dev(map[string]any{"device_id": "a/b"}); return r }, ReasonInvalidIdentifier, "device_id"},
		{"device in the future", func() *Rejection { _, r := dev(map[string]any{"occurred_at": "2026-11-22T13:00:00Z"}); return r }, ReasonFutureTimestamp, "occurred_at"},
		{"profile kind", func() *Rejection { _, r := prof(map[string]any{"kind": "deleted"}); return r }, ReasonInvalidValue, "kind"},
		{"profile birth year", func() *Rejection { _, r := prof(map[string]any{"birth_year": 1850}); return r }, ReasonInvalidValue, "birth_year"},
		{"profile birth year type", func() *Rejection { _, r := prof(map[string]any{"birth_year": "1980"}); return r }, ReasonInvalidType, "birth_year"},
		{"profile sex", func() *Rejection { _, r := prof(map[string]any{"sex": "f"}); return r }, ReasonInvalidValue, "sex"},
		{"profile region", func() *Rejection { _, r := prof(map[string]any{"region": "Bavaria"}); return r }, ReasonInvalidValue, "region"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.run()
			if r == nil || r.Reason != tc.reason || r.Field != tc.field {
				t.Fatalf("got %+v; want %s on %s", r, tc.reason, tc.field)
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
