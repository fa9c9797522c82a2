package ingest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTimeFloor: a timestamp before Limits.MinTime (2000-01-01 by default)
// is refused with its field, in every kind of item and every time field.
func TestTimeFloor(t *testing.T) {
	steps := map[string]any{"metric": "steps", "unit": "{steps}", "value": 100, "period_end": "2026-11-22T11:59:30Z"}
	with := func(base map[string]any, k string, v any) map[string]any {
		m := map[string]any{k: v}
		for bk, bv := range base {
			if bk != k {
				m[bk] = bv
			}
		}
		return m
	}
	tests := []struct {
		name  string
		raw   json.RawMessage
		lim   Limits
		field string // "" accepted
	}{
		{"year 1", item(map[string]any{"measured_at": "0001-01-01T00:00:00Z"}), Limits{}, "measured_at"},
		{"1970", item(map[string]any{"measured_at": "1970-01-01T00:00:00Z"}), Limits{}, "measured_at"},
		{"just before the floor", item(map[string]any{"measured_at": "1999-12-31T23:59:59.999Z"}), Limits{}, "measured_at"},
		{"at the floor", item(map[string]any{"measured_at": "2000-01-01T00:00:00Z"}), Limits{}, ""},
		{"received before the floor", item(map[string]any{"received_at": "1980-01-01T00:00:00Z"}), Limits{}, "received_at"},
		{"interval starting before the floor", item(with(steps, "measured_at", "1999-12-31T23:00:00Z")), Limits{}, "measured_at"},
		{"a floor of its own", item(map[string]any{"measured_at": "2016-04-12T00:00:00Z"}), Limits{MinTime: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}, "measured_at"},
		{"after a floor of its own", item(map[string]any{"measured_at": "2016-04-12T00:00:00Z"}), Limits{MinTime: time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.lim.MaxFutureSkew = 5 * time.Minute
			_, rej := Check(tc.raw, "t1", "gw-1", testNow, tc.lim)
			switch {
			case tc.field == "" && rej != nil:
				t.Fatalf("rejected: %v", rej)
			case tc.field != "" && rej == nil:
				t.Fatal("accepted; want before_time_floor")
			case tc.field != "" && (rej.Reason != ReasonBeforeTimeFloor || rej.Field != tc.field || !strings.Contains(rej.Message, "earliest time accepted")):
				t.Fatalf("got %s on %q (%s); want %s on %q", rej.Reason, rej.Field, rej.Message, ReasonBeforeTimeFloor, tc.field)
			}
		})
	}
	// Device and profile events: occurred_at.
	cc := checkContext{now: testNow, lim: Limits{MaxFutureSkew: time.Minute}}
	dev, rej := deviceFromJSON(json.RawMessage(`{"event_id":"d1","user_id":"u","device_id":"w","kind":"paired","occurred_at":"0001-01-01T00:00:00Z"}`))
	if rej == nil {
		_, rej = cc.CheckDevice(&dev)
	}
	if rej == nil || rej.Reason != ReasonBeforeTimeFloor || rej.Field != "occurred_at" {
		t.Errorf("device event of year 1: %v; want before_time_floor on occurred_at", rej)
	}
	prof, rej := profileFromJSON(json.RawMessage(`{"event_id":"p1","user_id":"u","kind":"registered","occurred_at":"1969-12-31T23:59:59Z"}`))
	if rej == nil {
		_, rej = cc.CheckProfile(&prof)
	}
	if rej == nil || rej.Reason != ReasonBeforeTimeFloor || rej.Field != "occurred_at" {
		t.Errorf("profile event of 1969: %v; want before_time_floor on occurred_at", rej)
	}
}

// TestDuplicateKeysRefused: an item that names a field twice (keys match
// ignoring case, as encoding/json matches them) is refused with the key,
// and its neighbours are judged as usual; unknown keys may repeat.
func TestDuplicateKeysRefused(t *testing.T) {
	valid := `"event_id":"e1","device_id":"d","metric":"heart_rate","value":72,"unit":"/min","measured_at":"2026-11-22T11:59:00Z"`
	tests := []struct {
		name, raw string
		field     string // "" accepted
	}{
		{"user_id twice", `{"user_id":"A",` + valid + `,"user_id":"B"}`, "user_id"},
		{"user_id and USER_ID", `{"user_id":"A",` + valid + `,"USER_ID":"B"}`, "USER_ID"},
		{"value twice, same value", `{"user_id":"A",` + valid + `,"value":72}`, "value"},
		{"null then a value", `{"user_id":null,` + valid + `,"user_id":"B"}`, "user_id"},
		{"an unknown key twice", `{"user_id":"A",` + valid + `,"note":"x","note":"y"}`, ""},
		{"each key once", `{"user_id":"A",` + valid + `}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, rej := Check(json.RawMessage(tc.raw), "t1", "gw-1", testNow, Limits{MaxFutureSkew: time.Minute})
			switch {
			case tc.field == "" && rej != nil:
				t.Fatalf("rejected: %v", rej)
			case tc.field != "" && (rej == nil || rej.Reason != ReasonDuplicateKey || rej.Field != tc.field):
				t.Fatalf("got %v; want %s on %q", rej, ReasonDuplicateKey, tc.field)
			}
		})
	}

	// Through the handler (the fast scanner hands such items to the
	// reference decoder): the neighbours are accepted.
	p := &recordingProducer{}
	s := newTestServer(p)
	body := `{"gateway_id":"gw-1","readings":[` + string(item(map[string]any{"event_id": "a"})) + `,` +
		`{"user_id":"user-1",` + strings.Replace(valid, `"e1"`, `"b"`, 1) + `,"user_id":"user-2"},` +
		string(item(map[string]any{"event_id": "c"})) + `]}`
	rec, _ := post(t, s, body)
	var resp BatchResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if resp.Accepted != 2 || resp.Items[1].Reason != ReasonDuplicateKey || resp.Items[1].Field != "user_id" {
		t.Fatalf("answer %+v; want items 0 and 2 accepted, item 1 duplicate_key on user_id", resp)
	}

	// Device and profile events.
	if _, rej := deviceFromJSON(json.RawMessage(`{"event_id":"d1","user_id":"u","device_id":"w","device_id":"x","kind":"paired","occurred_at":"2026-11-22T11:00:00Z"}`)); rej == nil || rej.Reason != ReasonDuplicateKey || rej.Field != "device_id" {
		t.Errorf("device event with device_id twice: %v", rej)
	}
	if _, rej := profileFromJSON(json.RawMessage(`{"event_id":"p1","user_id":"u","kind":"registered","sex":"female","Sex":"male","occurred_at":"2026-11-22T11:00:00Z"}`)); rej == nil || rej.Reason != ReasonDuplicateKey || rej.Field != "Sex" {
		t.Errorf("profile event with sex twice: %v", rej)
	}

	// The body itself: readings twice would drop the first array.
	rec, _ = post(t, s, `{"gateway_id":"gw-1","readings":[`+string(item(nil))+`],"readings":[]}`)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "malformed_body") || !strings.Contains(rec.Body.String(), `readings`) {
		t.Fatalf("body with readings twice: %d %s; want 400 malformed_body naming readings", rec.Code, rec.Body)
	}
}

// TestEnvelopeKeysFollowTheWireForm holds the fast scanner's envelope keys,
// which it indexes by position, to the envelope's JSON form.
func TestEnvelopeKeysFollowTheWireForm(t *testing.T) {
	if got, want := strings.Join(envelopeKeys, ","), strings.Join(jsonKeysOf(jsonEnvelope{}), ","); got != want {
		t.Fatalf("envelopeKeys %s; jsonEnvelope has %s", got, want)
	}
}

// TestFHIRDuplicateMembers: a member repeated in one object of an
// Observation rejects that Observation (field: the member's path); the
// Bundle's own members repeated are a malformed body.
func TestFHIRDuplicateMembers(t *testing.T) {
	obs := func(extra string) string {
		return `{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/u1"},"device":{"reference":"Device/w1"},` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},` +
			`"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"` + extra + `},` +
			`"effectiveDateTime":"2026-11-22T11:59:00Z"}`
	}
	items, err := decodeFHIR([]byte(obs(`,"value":180`)))
	if err != nil || len(items) != 1 || items[0].rej == nil || items[0].rej.Reason != ReasonDuplicateKey || items[0].rej.Field != "valueQuantity.value" {
		t.Fatalf("Observation with valueQuantity.value twice: %d items, %v; want duplicate_key on valueQuantity.value", len(items), err)
	}
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[{"resource":` + obs("") + `},{"resource":` + obs(`,"value":180`) + `}]}`
	items, err = decodeFHIR([]byte(bundle))
	if err != nil || len(items) != 2 || items[0].rej != nil || items[1].rej == nil || items[1].rej.Reason != ReasonDuplicateKey {
		t.Fatalf("Bundle with one bad entry: %d items, %v; want two, the first kept, the second duplicate_key", len(items), err)
	}
	if _, err := decodeFHIR([]byte(`{"resourceType":"Bundle","entry":[{"resource":` + obs("") + `}],"entry":[]}`)); err == nil || !strings.Contains(err.Error(), "entry") {
		t.Fatalf("Bundle with entry twice: %v; want an error naming entry", err)
	}
}
