package simulate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/jsonwire"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/schemas"
)

// testClient is a client of users whose every fault fires, in format,
// with a fixed seed: two of them make the same items.
func testClient(format string) *client {
	o := &Options{Format: format, RunID: "t", Faults: Faults{Duplicate: 1, OutOfOrder: 1, Late: 1, Unpaired: 1, Implausible: 1, Malformed: 1}}
	c := &client{o: o, rng: rand.New(rand.NewPCG(7, 0)), enc: loadgen.NewBodyEncoder(), gateway: gatewayID("t", 0), contentType: loadgen.ContentType(format)}
	for u := range 4 {
		id := userID("t", u)
		c.users = append(c.users, &user{id: id, watch: watchID(id), hr: []float64{60, 61.5, 62}, lastHR: 1,
			hasLast: true, last: reading{id: id + "-0", user: id, device: watchID(id), metric: "heart_rate", value: 59, unit: "/min", measured: 2}})
	}
	return c
}

// batch makes one batch of n normal readings and their faults, the way
// run does.
func (c *client) batch(n int, now int64) []*item {
	c.slab = c.slab[:0]
	c.o.Batch = n
	c.fill(now)
	c.ptrs = c.ptrs[:0]
	for i := range c.slab {
		c.ptrs = append(c.ptrs, &c.slab[i])
	}
	return c.ptrs
}

// decodedBody is a request body's readings as maps, whatever its format.
func decodedBody(t *testing.T, format string, body []byte) (string, []map[string]any) {
	t.Helper()
	if format == loadgen.FormatAvro {
		var b schemas.ReadingBatch
		if err := schemas.MustCodec(schemas.NameReadingBatch).Decode(body, &b); err != nil {
			t.Fatalf("avro body: %v", err)
		}
		var out []map[string]any
		for _, g := range b.Readings {
			out = append(out, gatewayMap(g))
		}
		return b.GatewayID, out
	}
	var b struct {
		GatewayID string           `json:"gateway_id"`
		Readings  []map[string]any `json:"readings"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("json body: %v: %s", err, body)
	}
	return b.GatewayID, b.Readings
}

// oldWire is how the simulator wrote a JSON reading before it could write
// Avro: its JSON bodies must not have changed.
type oldWire struct {
	jsonwire.Reading
	PeriodEnd string `json:"period_end,omitempty"`
}

func TestBodiesCarryTheSameReadingsInBothFormats(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC).UnixMilli()
	js, av := testClient(loadgen.FormatJSON), testClient(loadgen.FormatAvro)
	jItems, aItems := js.batch(30, now), av.batch(30, now)
	if len(jItems) != len(aItems) || len(jItems) < 30*6 {
		t.Fatalf("%d JSON items, %d Avro items", len(jItems), len(aItems))
	}
	jBody, err := js.body(jItems)
	if err != nil {
		t.Fatal(err)
	}
	aBody, err := av.body(aItems)
	if err != nil {
		t.Fatal(err)
	}
	jGW, jRs := decodedBody(t, loadgen.FormatJSON, jBody)
	aGW, aRs := decodedBody(t, loadgen.FormatAvro, aBody)
	if jGW != aGW || len(jRs) != len(jItems) || len(aRs) != len(aItems) {
		t.Fatalf("gateways %q %q, %d and %d readings decoded", jGW, aGW, len(jRs), len(aRs))
	}
	// What may differ between the formats, by fault and reason: only the
	// malformed items JSON and Avro carry each their own way.
	differ := map[string]struct{ json, avro map[string]any }{
		"invalid_timestamp/non_finite_value": {map[string]any{"measured_at": "yesterday"}, map[string]any{"value": math.NaN()}},
	}
	kinds := map[string]int{}
	for i := range jItems {
		je, ae := jItems[i].entry, aItems[i].entry
		kinds[je.Fault+":"+je.Reason]++
		// The manifest means the same, the malformed reason aside.
		reasons := je.Reason + "/" + ae.Reason
		if je.Reason == ae.Reason {
			reasons = ""
		}
		je.Reason, ae.Reason = "", ""
		if je != ae {
			t.Fatalf("item %d: manifest entries differ:\n%+v\n%+v", i, je, ae)
		}
		j, a := jRs[i], aRs[i]
		if d, ok := differ[reasons]; ok {
			for k, v := range d.json {
				if j[k] != v {
					t.Errorf("item %d (%s): JSON %s = %v, want %v", i, reasons, k, j[k], v)
				}
				delete(j, k)
				delete(a, k)
			}
			for k := range d.avro {
				if v, _ := a[k].(float64); !math.IsNaN(v) {
					t.Errorf("item %d (%s): Avro %s = %v, want NaN", i, reasons, k, a[k])
				}
				delete(j, k)
				delete(a, k)
			}
		} else if reasons != "" {
			t.Fatalf("item %d: reasons %s", i, reasons)
		}
		if !reflect.DeepEqual(j, a) {
			t.Errorf("item %d (%s): JSON %v, Avro %v", i, jItems[i].entry.Fault, j, a)
		}
		// The JSON is byte for byte what the simulator sent before.
		if jItems[i].badJSON == nil {
			r := jItems[i].r
			w := oldWire{Reading: jsonwire.Reading{EventID: r.id, UserID: r.user, DeviceID: r.device, Metric: r.metric, Value: r.value, Unit: r.unit, MeasuredAt: ts(r.measured)}}
			if r.hasEnd {
				w.PeriodEnd = ts(r.end)
			}
			want, _ := json.Marshal(w)
			if !bytes.Contains(jBody, want) {
				t.Errorf("item %d: the JSON body lacks %s", i, want)
			}
		}
	}
	for _, k := range []string{"none:", "duplicate:", "out_of_order:", "late:too_late", "unpaired:device_not_paired", "implausible:implausible_value", "malformed:unknown_unit", "malformed:invalid_timestamp"} {
		if kinds[k] == 0 {
			t.Errorf("no %s item in the batch (%v)", k, kinds)
		}
	}
}

// The manifests of a JSON and an Avro run with one seed say the same of
// every event both sent, the malformed items' reasons aside.
func TestManifestSameMeaningInBothFormats(t *testing.T) {
	_, jEntries, _ := runFake(t, loadgen.FormatJSON)
	_, aEntries, _ := runFake(t, loadgen.FormatAvro)
	type meaning struct{ user, metric, fault, expect, reason string }
	mean := func(e Entry) meaning {
		r := e.Reason
		if r == "invalid_timestamp" || r == "non_finite_value" {
			r = "the format's own malformed item"
		}
		return meaning{e.UserID, e.Metric, e.Fault, e.Expect, r}
	}
	// A duplicate, a revision and a re-send share their original's id.
	shared := func(e Entry) bool { return e.Fault == FaultDuplicate || e.Revision > 0 || e.Fault == FaultConflicting }
	byID := map[string]meaning{}
	for _, e := range jEntries {
		if !shared(e) {
			byID[e.EventID] = mean(e)
		}
	}
	both := 0
	for _, e := range aEntries {
		if m, ok := byID[e.EventID]; ok && !shared(e) {
			both++
			if got := mean(e); got != m {
				t.Errorf("%s: JSON run %+v, Avro run %+v", e.EventID, m, got)
			}
		}
	}
	if both < min(len(jEntries), len(aEntries))/2 {
		t.Fatalf("only %d of %d/%d events in both runs", both, len(jEntries), len(aEntries))
	}
}

func TestParseVerdicts(t *testing.T) {
	answer := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return append(b, '\n')
	}
	full := ingest.BatchResponse{Accepted: 1, Rejected: 1, ConsistencyToken: "x", Items: []ingest.ItemVerdict{
		{Index: 0, Status: ingest.StatusAccepted, EventID: "e-1"},
		{Index: 1, Status: ingest.StatusRejected, EventID: "e-2", Reason: "unknown_unit", Field: "unit", Message: `unit "bpm" is not accepted; use one of ["/min"] <&>`},
		{Index: 2, Status: ingest.StatusNotSaved},
		{Index: 3, Status: ingest.StatusUnconfirmed, EventID: "e-4"},
	}}
	want := []verdict{{ingest.StatusAccepted, ""}, {ingest.StatusRejected, "unknown_unit"}, {ingest.StatusNotSaved, ""}, {ingest.StatusUnconfirmed, ""}}
	tests := []struct {
		name    string
		body    []byte
		want    []verdict
		scanned bool // read by the scanner rather than encoding/json
	}{
		{"200", answer(full), want, true},
		{"no items", answer(ingest.BatchResponse{Items: []ingest.ItemVerdict{}}), []verdict{}, true},
		{"503 with items", answer(struct {
			ingest.APIError
			ingest.BatchResponse
		}{ingest.APIError{Code: "log_unavailable", Message: "m"}, full}), want, false},
		{"503 without items", answer(ingest.APIError{Code: "overloaded", Message: "m"}), []verdict{}, false},
		{"not JSON", []byte("<html>"), []verdict{}, false},
		{"escaped reason", []byte(`{"accepted":0,"rejected":1,"items":[{"index":0,"status":"rejected","reason":"a\u0062"}]}`), []verdict{{ingest.StatusRejected, "ab"}}, false},
		{"unknown status", []byte(`{"accepted":0,"rejected":1,"items":[{"index":0,"status":"maybe"}]}`), []verdict{{"maybe", ""}}, false},
		{"truncated", answer(full)[:60], []verdict{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseVerdicts(tt.body, nil)
			if len(got) != len(tt.want) || len(got) > 0 && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if _, ok := scanVerdicts(tt.body, nil); ok != tt.scanned {
				t.Fatalf("scanner answered %v, want %v", ok, tt.scanned)
			}
		})
	}
}

func TestAppendEntryMatchesEncodingJSON(t *testing.T) {
	for _, e := range []Entry{
		{},
		{EventID: "sim1-u3-17", UserID: "sim1-u3", Metric: "heart_rate", Day: "2026-11-22", Fault: FaultNone, Expect: ExpectAccepted, Acked: true, AckedAt: 1_764_000_000_000, Attempts: 2, Status: "accepted"},
		{EventID: "x", UserID: "y", Fault: FaultMalformed, Expect: ExpectDeadLetter, Reason: "non_finite_value", Status: "rejected:non_finite_value", Attempts: 1},
		{EventID: "<é>\"\\\n", UserID: "\u2028", Fault: FaultWrongKey, Expect: ExpectRefused, Status: "http_401", AckedAt: -5},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(&e); err != nil {
			t.Fatal(err)
		}
		if got := appendEntry(nil, &e); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("\n got %s\nwant %s", got, want.Bytes())
		}
	}
}

func TestDayCache(t *testing.T) {
	var d dayCache
	for _, ms := range []int64{0, 1, 86_399_999, 86_400_000, -1, -86_400_000, -86_400_001, 1_764_000_000_000, 1_764_000_000_000, 5} {
		if got, want := d.of(ms), day(ms); got != want {
			t.Errorf("%d: %s, want %s", ms, got, want)
		}
	}
}

func TestOptionsFormat(t *testing.T) {
	for format, ok := range map[string]bool{"": true, loadgen.FormatJSON: true, loadgen.FormatAvro: true, "xml": false} {
		o := Options{URL: "http://x", Key: "k", Users: 100, Rate: 100, Duration: time.Second, Batch: 10, Clients: 2, Format: format}
		if err := o.validate(); (err == nil) != ok {
			t.Errorf("format %q: %v", format, err)
		}
	}
}

// TestPerUserReadings: with PerUser, a request's readings come in runs of
// one user, measured spacing apart up to the request's time.
func TestPerUserReadings(t *testing.T) {
	c := testClient(loadgen.FormatJSON)
	c.o.Faults, c.o.PerUser, c.spacing = Faults{}, 3, 500
	items := c.batch(7, 10_000)
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprintf("%s@%d", it.u.id, it.r.measured))
	}
	want := []string{"t-u0@9000", "t-u0@9500", "t-u0@10000", "t-u1@9000", "t-u1@9500", "t-u1@10000", "t-u2@9000"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("readings %v, want %v", got, want)
	}
}
