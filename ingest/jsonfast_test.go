package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// slowReadings is the reference: the envelope and every item through
// encoding/json, as ingest did before the fast path.
func slowReadings(body []byte) (jsonEnvelope, []Input, []*Rejection, *apiError) {
	env, aerr := decodeEnvelope(body, "readings")
	if aerr != nil {
		return env, nil, nil, aerr
	}
	ins := make([]Input, len(env.Readings))
	rejs := make([]*Rejection, len(env.Readings))
	for i, raw := range env.Readings {
		ins[i], rejs[i] = readingFromJSON(raw)
	}
	return env, ins, rejs, nil
}

// showInput prints an Input's values, not its pointers.
func showInput(in Input) string {
	var b strings.Builder
	v := reflect.ValueOf(in)
	for i := range v.NumField() {
		f := v.Field(i)
		fmt.Fprintf(&b, "%s=", v.Type().Field(i).Name)
		if f.Kind() != reflect.Pointer {
			fmt.Fprintf(&b, "%#v ", f.Interface())
			continue
		}
		if f.IsNil() {
			b.WriteString("nil ")
			continue
		}
		fmt.Fprintf(&b, "%#v ", f.Elem().Interface())
	}
	return b.String()
}

// checkFastMatchesSlow fails if the fast scanner, where it answers, says
// anything encoding/json would not have: the same gateway, tenant, items,
// raw bytes, inputs and rejections. It returns whether the fast path
// answered and how many items it read itself.
func checkFastMatchesSlow(t *testing.T, body []byte) (bool, int) {
	t.Helper()
	fb, ok := scanReadingsJSON(body)
	env, ins, rejs, aerr := slowReadings(body)
	if !ok {
		return false, 0
	}
	if aerr != nil {
		t.Fatalf("fast path read a body encoding/json refuses (%s): %q", aerr.message, body)
	}
	if fb.gateway != env.GatewayID || (fb.tenant == nil) != (env.TenantID == nil) || fb.tenant != nil && *fb.tenant != *env.TenantID {
		t.Fatalf("envelope: fast %q %v, slow %q %v: %q", fb.gateway, fb.tenant, env.GatewayID, env.TenantID, body)
	}
	if len(fb.items) != len(env.Readings) {
		t.Fatalf("fast %d items, slow %d: %q", len(fb.items), len(env.Readings), body)
	}
	fast := 0
	for i := range fb.items {
		it := &fb.items[i]
		if !bytes.Equal(it.raw, env.Readings[i]) {
			t.Fatalf("item %d raw: fast %q, slow %q", i, it.raw, env.Readings[i])
		}
		if !it.fast {
			continue
		}
		fast++
		in, rej := it.input()
		if !reflect.DeepEqual(rej, rejs[i]) {
			t.Fatalf("item %d rejection: fast %+v, slow %+v: %q", i, rej, rejs[i], it.raw)
		}
		// A rejected item's Input matters only for its ids.
		if rej == nil && showInput(in) != showInput(ins[i]) || rej != nil && (showInput(Input{EventID: in.EventID, UserID: in.UserID}) != showInput(Input{EventID: ins[i].EventID, UserID: ins[i].UserID})) {
			t.Fatalf("item %d input:\nfast %s\nslow %s\n%q", i, showInput(in), showInput(ins[i]), it.raw)
		}
	}
	return true, fast
}

// jsonFastCorpus are bodies meant to hit every branch of the fast path
// and each of its ways back to encoding/json.
var jsonFastCorpus = []struct {
	name     string
	body     string
	fastBody bool // the fast path must answer
	fastN    int  // and read this many items itself
}{
	{"typical", batchBody(item(nil), item(map[string]any{"event_id": "ev-2", "sequence": 3})), true, 2},
	{"every field", batchBody(item(map[string]any{"metric": "sleep_stage", "unit": "min", "stage": "rem", "period_end": "2026-11-22T11:59:30Z", "received_at": "2026-11-22T11:59:40+01:00", "diastolic": 3.5, "value": nil})), true, 1},
	{"whitespace everywhere", " \n{ \"gateway_id\" : \"g\" ,\t\"readings\" : [ { \"event_id\" : \"e\" , \"value\" : -0.5e+3 } , {} ] } \r\n", true, 2},
	{"empty readings", `{"gateway_id":"g","readings":[]}`, true, 0},
	{"null readings", `{"gateway_id":"g","readings":null}`, true, 0},
	{"no readings", `{"gateway_id":"g"}`, true, 0},
	{"empty object", `{}`, true, 0},
	{"null gateway, tenant", `{"gateway_id":null,"tenant_id":"t1","readings":[{}]}`, true, 1},
	{"null tenant", `{"gateway_id":"g","tenant_id":null,"readings":[{}]}`, true, 1},
	{"events ignored", `{"gateway_id":"g","events":[1,"x",{"a":[true,false,null]}],"readings":[{}]}`, true, 1},
	{"events null", `{"gateway_id":"g","events":null,"readings":[{}]}`, true, 1},
	{"unknown envelope key", `{"gateway_id":"g","extra":{"x":[1,2,{"y":"\u00e9\n"}]},"readings":[{}]}`, true, 1},
	{"unknown item key", `{"gateway_id":"g","readings":[{"note":"x","event_id":"e"}]}`, true, 1},
	{"null fields", `{"gateway_id":"g","readings":[{"event_id":null,"value":null,"sequence":null}]}`, true, 1},
	{"utf8 value", `{"gateway_id":"g","readings":[{"unit":"µmol/L","metric":"日本"}]}`, true, 1},
	{"items that are not objects", `{"gateway_id":"g","readings":[7,"x",null,[1],true,{"event_id":"e"}]}`, true, 1},
	{"escaped string", `{"gateway_id":"g","readings":[{"event_id":"e\u0041"},{"event_id":"e\"q"}]}`, true, 0},
	{"invalid utf8 value", "{\"gateway_id\":\"g\",\"readings\":[{\"unit\":\"\xff\"}]}", true, 0},
	{"type mismatch", `{"gateway_id":"g","readings":[{"value":"70"},{"event_id":5},{"sequence":1.5},{"value":true},{"stage":{}}]}`, true, 0},
	{"number out of range", `{"gateway_id":"g","readings":[{"value":1e999},{"sequence":99999999999999999999}]}`, true, 0},
	{"repeated item key", `{"gateway_id":"g","readings":[{"value":1,"value":null}]}`, true, 0},
	{"repeated user id", `{"gateway_id":"g","readings":[{"user_id":"A","event_id":"e","user_id":"B"},{"event_id":"f"}]}`, true, 1},
	{"repeated unknown item key", `{"gateway_id":"g","readings":[{"note":1,"note":2,"event_id":"e"}]}`, true, 1},
	{"repeated unknown envelope key", `{"gateway_id":"g","x":1,"x":2,"readings":[{}]}`, true, 1},
	{"case variant item key", `{"gateway_id":"g","readings":[{"Event_ID":"e"}]}`, true, 0},
	{"non-ASCII item key", `{"gateway_id":"g","readings":[{"ſtage":"rem"}]}`, true, 0},
	{"bad time", `{"gateway_id":"g","readings":[{"event_id":"e","measured_at":"yesterday"}]}`, true, 1},
	{"case variant envelope key", `{"Gateway_ID":"g","readings":[{}]}`, false, 0},
	{"repeated envelope key", `{"gateway_id":"g","readings":[{}],"readings":[]}`, false, 0},
	{"escaped gateway", `{"gateway_id":"g\u0041","readings":[{}]}`, false, 0},
	{"gateway not a string", `{"gateway_id":7,"readings":[{}]}`, false, 0},
	{"readings not an array", `{"gateway_id":"g","readings":{}}`, false, 0},
	{"events not an array", `{"gateway_id":"g","events":"x","readings":[{}]}`, false, 0},
	{"revision and withdrawal", `{"gateway_id":"g","readings":[{"event_id":"e","revision":2,"withdrawn":true},{"revision":0,"withdrawn":false},{"withdrawn":null,"revision":null}]}`, true, 3},
	{"withdrawn not a boolean", `{"gateway_id":"g","readings":[{"withdrawn":1},{"withdrawn":"true"}]}`, true, 0},
	{"revision not an integer", `{"gateway_id":"g","readings":[{"revision":1.5},{"revision":"2"},{"revision":1e3}]}`, true, 0},
	{"top level array", `[{}]`, false, 0},
	{"top level null", `null`, false, 0},
	{"empty body", ``, false, 0},
	{"trailing garbage", `{"gateway_id":"g","readings":[{}]} x`, false, 0},
	{"truncated", `{"gateway_id":"g","readings":[{"event_id":"e"`, false, 0},
	{"trailing comma", `{"gateway_id":"g","readings":[{},]}`, false, 0},
	{"leading zero", `{"gateway_id":"g","readings":[{"value":01}]}`, false, 0},
	{"control character", "{\"gateway_id\":\"g\",\"readings\":[{\"unit\":\"a\tb\"}]}", false, 0},
	{"bad escape", `{"gateway_id":"g","readings":[{"unit":"\x"}]}`, false, 0},
	{"deep nesting", `{"gateway_id":"g","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"readings":[{}]}`, false, 0},
}

func TestJSONFastPathMatchesEncodingJSON(t *testing.T) {
	for _, tt := range jsonFastCorpus {
		t.Run(tt.name, func(t *testing.T) {
			ok, fast := checkFastMatchesSlow(t, []byte(tt.body))
			if ok != tt.fastBody || fast != tt.fastN {
				t.Errorf("fast path answered %v with %d items read itself, want %v with %d", ok, fast, tt.fastBody, tt.fastN)
			}
		})
	}
}

// FuzzJSONFastPath checks the fast path against encoding/json on any
// body: wherever it answers, it answers the same.
func FuzzJSONFastPath(f *testing.F) {
	for _, tt := range jsonFastCorpus {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastMatchesSlow(t, body)
	})
}

// TestJSONFastPathSharesNoMemoryAcrossItems guards the slab: every item's
// pointers point into that item.
func TestJSONFastPathSharesNoMemoryAcrossItems(t *testing.T) {
	body := batchBody(item(map[string]any{"event_id": "a", "value": 1}), item(map[string]any{"event_id": "b", "value": 2}))
	fb, ok := scanReadingsJSON([]byte(body))
	if !ok || len(fb.items) != 2 {
		t.Fatalf("fast path: %v, %d items", ok, len(fb.items))
	}
	a, _ := fb.items[0].input()
	b, _ := fb.items[1].input()
	if *a.EventID != "a" || *b.EventID != "b" || *a.Value != 1 || *b.Value != 2 || a.MeasuredAt == b.MeasuredAt {
		t.Fatalf("items share memory: %s / %s", showInput(a), showInput(b))
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatal(err)
	}
}
