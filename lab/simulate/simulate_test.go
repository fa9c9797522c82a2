package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/schemas"
)

func TestVerdict(t *testing.T) {
	acked := func(e Entry) Entry { e.Acked, e.Attempts = true, max(e.Attempts, 1); return e }
	acc := Entry{EventID: "a", Fault: FaultNone, Expect: ExpectAccepted}
	rej := Entry{EventID: "r", Fault: FaultLate, Expect: ExpectRejected, Reason: "too_late"}
	dead := Entry{EventID: "d", Fault: FaultMalformed, Expect: ExpectDeadLetter, Reason: "unknown_unit"}
	ref := Entry{EventID: "w", Fault: FaultWrongKey, Expect: ExpectRefused, Reason: "unauthenticated"}
	cor := Entry{EventID: "c", Fault: FaultCorrection, Expect: ExpectRevised, Revision: 2, Value: 81}
	wd := Entry{EventID: "c", Fault: FaultWithdrawal, Expect: ExpectWithdrawn, Revision: 1}
	stale := Entry{EventID: "c", Fault: FaultStale, Expect: ExpectRejected, Reason: "stale_revision", Revision: 1}
	retried := acked(acc)
	retried.Attempts = 3
	tests := []struct {
		name string
		e    Entry
		o    Observed
		want string
	}{
		{"accepted once", acked(acc), Observed{Accepted: map[string]copies{"a": {1, 1}}}, VerdictOK},
		{"accepted missing", acked(acc), Observed{}, VerdictMissing},
		{"never answered, absent", acc, Observed{}, VerdictUnacked},
		{"never answered, stored once", acc, Observed{Accepted: map[string]copies{"a": {1, 1}}}, VerdictOK},
		{"inserted twice", acked(acc), Observed{Accepted: map[string]copies{"a": {2, 1}}}, VerdictDuplicated},
		{"accepted from two raw copies", acked(acc), Observed{Accepted: map[string]copies{"a": {2, 2}}}, VerdictDuplicated},
		{"accepted and rejected", acked(acc), Observed{Accepted: map[string]copies{"a": {1, 1}}, Rejected: map[string]map[string]copies{"a": {"implausible_value": {1, 1}}}}, VerdictWrongReason},
		{"late resend rejected too_late", retried, Observed{Accepted: map[string]copies{"a": {1, 1}}, Rejected: map[string]map[string]copies{"a": {"too_late": {1, 1}}}}, VerdictOK},
		{"rejected as expected", acked(rej), Observed{Rejected: map[string]map[string]copies{"r": {"too_late": {1, 1}}}}, VerdictOK},
		{"rejected for another reason", acked(rej), Observed{Rejected: map[string]map[string]copies{"r": {"device_not_paired": {1, 1}}}}, VerdictWrongReason},
		{"rejection inserted twice", acked(rej), Observed{Rejected: map[string]map[string]copies{"r": {"too_late": {2, 1}}}}, VerdictDuplicated},
		{"expected rejected but accepted", acked(rej), Observed{Accepted: map[string]copies{"r": {1, 1}}}, VerdictWrongReason},
		{"dead letter", acked(dead), Observed{Dead: map[string]map[string]int{"d": {"unknown_unit": 2}}}, VerdictOK},
		{"dead letter missing", acked(dead), Observed{}, VerdictMissing},
		{"refused, nowhere", ref, Observed{}, VerdictOK},
		{"refused but answered 200", acked(ref), Observed{}, VerdictStoredAfterRefusal},
		{"refused but stored", ref, Observed{Accepted: map[string]copies{"w": {1, 1}}}, VerdictStoredAfterRefusal},
		{"accepted, then a stale revision", acked(acc), Observed{Accepted: map[string]copies{"a": {1, 1}}, Rejected: map[string]map[string]copies{"a": {"stale_revision": {1, 1}}}}, VerdictOK},
		{"corrected", acked(cor), Observed{Accepted: map[string]copies{"c": {1, 1}}, Held: map[string][]Held{"c": {{2, 81, 1}}}}, VerdictOK},
		{"correction not yet stored", acked(cor), Observed{Accepted: map[string]copies{"c": {1, 1}}}, VerdictMissing},
		{"correction with the wrong value", acked(cor), Observed{Accepted: map[string]copies{"c": {1, 1}}, Held: map[string][]Held{"c": {{2, 80, 1}}}}, VerdictMissing},
		{"correction held twice", acked(cor), Observed{Accepted: map[string]copies{"c": {1, 1}}, Held: map[string][]Held{"c": {{2, 81, 2}}}}, VerdictDuplicated},
		{"original not retracted", acked(cor), Observed{Accepted: map[string]copies{"c": {1, 1}}, Held: map[string][]Held{"c": {{0, 80, 1}, {2, 81, 1}}}}, VerdictWrongReason},
		{"withdrawn", acked(wd), Observed{Accepted: map[string]copies{"c": {1, 1}}, Held: map[string][]Held{}}, VerdictOK},
		{"withdrawal not yet stored", wd, Observed{Accepted: map[string]copies{"c": {1, 1}}, Held: map[string][]Held{"c": {{0, 80, 1}}}}, VerdictUnacked},
		{"retracted twice", acked(wd), Observed{Accepted: map[string]copies{"c": {1, 1}}, Held: map[string][]Held{"c": {{0, 80, -1}}}}, VerdictDuplicated},
		{"stale revision rejected", acked(stale), Observed{Accepted: map[string]copies{"c": {1, 1}}, Rejected: map[string]map[string]copies{"c": {"stale_revision": {1, 1}}}}, VerdictOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.o.Verdict(tt.e); got != tt.want {
				t.Errorf("Verdict = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCompareTables(t *testing.T) {
	entries := []Entry{
		{EventID: "a", UserID: "u", Metric: "heart_rate", Day: "2026-11-22", Fault: FaultNone, Expect: ExpectAccepted, Acked: true, Attempts: 1},
		{EventID: "b", UserID: "u", Metric: "heart_rate", Day: "2026-11-22", Fault: FaultNone, Expect: ExpectAccepted, Acked: true, Attempts: 1},
	}
	key := [3]string{"u", "heart_rate", "2026-11-22"}
	tests := []struct {
		name      string
		o         Observed
		ok        bool
		extra     int
		rollup    int
		noOutcome int
	}{
		{"exact", Observed{Accepted: map[string]copies{"a": {1, 1}, "b": {1, 1}}, Rollup: map[[3]string]uint64{key: 2}}, true, 0, 0, 0},
		{"rollup counted twice", Observed{Accepted: map[string]copies{"a": {1, 1}, "b": {1, 1}}, Rollup: map[[3]string]uint64{key: 3}}, false, 0, 1, 0},
		{"rollup missing", Observed{Accepted: map[string]copies{"a": {1, 1}, "b": {1, 1}}}, false, 0, 1, 0},
		{"unknown row", Observed{Accepted: map[string]copies{"a": {1, 1}, "b": {1, 1}, "x": {1, 1}}, Rollup: map[[3]string]uint64{key: 2}}, false, 1, 0, 0},
		{"one without any outcome", Observed{Accepted: map[string]copies{"a": {1, 1}}, Rollup: map[[3]string]uint64{key: 1}}, false, 0, 0, 1},
		{"one rejected instead", Observed{Accepted: map[string]copies{"a": {1, 1}}, Rejected: map[string]map[string]copies{"b": {"too_late": {1, 1}}},
			Rollup: map[[3]string]uint64{key: 1}}, false, 0, 0, 0},
	}
	withdrawal := Entry{EventID: "b", UserID: "u", Metric: "heart_rate", Fault: FaultWithdrawal, Expect: ExpectWithdrawn, Revision: 1, Acked: true, Attempts: 1}
	r := Compare(append(entries, withdrawal), &Observed{Accepted: map[string]copies{"a": {1, 1}, "b": {1, 1}}, Rollup: map[[3]string]uint64{key: 1}})
	if !r.OK() || r.Withdrawn != 1 {
		t.Errorf("a withdrawn reading: OK %v, %d withdrawn, %d rollup mismatches", r.OK(), r.Withdrawn, r.RollupMismatches)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compare(entries, &tt.o)
			if r.OK() != tt.ok || r.Extra != tt.extra || r.RollupMismatches != tt.rollup || r.AckedWithoutOutcome != tt.noOutcome {
				t.Errorf("OK %v extra %d rollup mismatches %d without outcome %d, want %v %d %d %d",
					r.OK(), r.Extra, r.RollupMismatches, r.AckedWithoutOutcome, tt.ok, tt.extra, tt.rollup, tt.noOutcome)
			}
		})
	}
}

// fakeIngest answers like ingest: malformed items rejected, the rest
// accepted, an unknown key 401; the first readings request of each client
// fails with a 503 marking every item not_stored, so every item is sent
// twice at least once.
type fakeIngest struct {
	mu       sync.Mutex
	failed   map[string]bool
	readings []map[string]any
}

func (f *fakeIngest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer good" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var body struct {
		GatewayID string           `json:"gateway_id"`
		Readings  []map[string]any `json:"readings"`
		Events    []map[string]any `json:"events"`
	}
	if r.Header.Get("Content-Type") == loadgen.ContentType(loadgen.FormatAvro) {
		// The same readings as JSON would carry them, NaN aside.
		raw, _ := io.ReadAll(r.Body)
		var b schemas.ReadingBatch
		if err := schemas.MustCodec(schemas.NameReadingBatch).Decode(raw, &b); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		body.GatewayID, body.Readings = b.GatewayID, []map[string]any{}
		for _, g := range b.Readings {
			body.Readings = append(body.Readings, gatewayMap(g))
		}
	} else if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	items := append(body.Readings, body.Events...)
	resp := ingest.BatchResponse{Items: make([]ingest.ItemVerdict, len(items))}
	f.mu.Lock()
	fail := body.Readings != nil && !f.failed[body.GatewayID]
	f.failed[body.GatewayID] = true
	if !fail {
		f.readings = append(f.readings, body.Readings...)
	}
	f.mu.Unlock()
	for i, it := range items {
		v := ingest.ItemVerdict{Index: i, Status: ingest.StatusAccepted}
		switch {
		case fail:
			v.Status = ingest.StatusNotSaved
		case it["unit"] == "bpm":
			v.Status, v.Reason = ingest.StatusRejected, "unknown_unit"
		case it["measured_at"] == "yesterday":
			v.Status, v.Reason = ingest.StatusRejected, "invalid_timestamp"
		case it["value"] != nil && math.IsNaN(it["value"].(float64)):
			v.Status, v.Reason = ingest.StatusRejected, "non_finite_value"
		default:
			resp.Accepted++
		}
		resp.Items[i] = v
	}
	if fail {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// gatewayMap is an Avro reading as the fake keeps JSON ones.
func gatewayMap(g schemas.GatewayReading) map[string]any {
	m := map[string]any{"event_id": g.EventID, "user_id": g.UserID, "device_id": g.DeviceID, "metric": g.Metric, "unit": g.Unit,
		"measured_at": time.UnixMilli(g.MeasuredAt).UTC().Format("2006-01-02T15:04:05.000Z")}
	if g.Value != nil {
		m["value"] = *g.Value
	}
	if g.PeriodEnd != nil {
		m["period_end"] = time.UnixMilli(*g.PeriodEnd).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	if g.Revision != nil {
		m["revision"] = float64(*g.Revision)
	}
	if g.Withdrawn != nil {
		m["withdrawn"] = *g.Withdrawn
	}
	return m
}

// runFake runs the simulator against a fresh fake ingest with every fault
// frequent, and returns the manifest and what the fake stored.
func runFake(t *testing.T, format string) (Result, []Entry, *fakeIngest) {
	t.Helper()
	f := &fakeIngest{failed: map[string]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var man bytes.Buffer
	all := Faults{Duplicate: 0.05, OutOfOrder: 0.05, Late: 0.05, Unpaired: 0.05, Implausible: 0.05, Malformed: 0.05, WrongKey: 0.3,
		Correction: 0.05, Withdrawal: 0.05, Stale: 0.5, Conflicting: 0.05}
	res, err := Run(context.Background(), Options{URL: srv.URL, Key: "good", Users: 40, Rate: 100, Duration: 2 * time.Second, Batch: 10,
		Clients: 2, Format: format, RunID: "t", Seed: 3, Faults: all, Drain: 5 * time.Second, Manifest: &man, Log: zerolog.Nop()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ReadManifest(&man)
	if err != nil {
		t.Fatal(err)
	}
	return res, entries, f
}

func TestRunManifest(t *testing.T) {
	for _, format := range []string{loadgen.FormatJSON, loadgen.FormatAvro} {
		t.Run(format, func(t *testing.T) { testRunManifest(t, format) })
	}
}

func testRunManifest(t *testing.T, format string) {
	res, entries, f := runFake(t, format)
	if len(entries) != res.ManifestLines || res.Unacked != 0 {
		t.Fatalf("%d manifest lines, result says %d; %d unacked", len(entries), res.ManifestLines, res.Unacked)
	}
	stored := map[string]map[string]any{}
	for _, r := range f.readings {
		stored[r["event_id"].(string)] = r
	}
	want := map[string]struct{ expect, reason string }{
		FaultNone: {ExpectAccepted, ""}, FaultOutOfOrder: {ExpectAccepted, ""}, FaultLate: {ExpectRejected, "too_late"},
		FaultUnpaired: {ExpectRejected, "device_not_paired"}, FaultImplausible: {ExpectRejected, "implausible_value"},
		FaultDuplicate: {ExpectRepeat, ""}, FaultWrongKey: {ExpectRefused, "unauthenticated"},
		FaultCorrection: {ExpectRevised, ""}, FaultWithdrawal: {ExpectWithdrawn, ""}, FaultStale: {ExpectRejected, "stale_revision"},
		FaultConflicting: {ExpectRejected, "conflicting_repeat"},
	}
	// Every version sent of each event id, in order.
	versions := map[string][]map[string]any{}
	for _, r := range f.readings {
		id := r["event_id"].(string)
		versions[id] = append(versions[id], r)
	}
	seen := map[string]int{}
	malformed := map[string]int{}
	for _, e := range entries {
		seen[e.Fault]++
		if w, ok := want[e.Fault]; ok && (e.Expect != w.expect || e.Reason != w.reason) {
			t.Errorf("%s %s: expect %s %s, want %s %s", e.Fault, e.EventID, e.Expect, e.Reason, w.expect, w.reason)
		}
		if e.Fault == FaultMalformed && e.Expect != ExpectDeadLetter || e.Fault == FaultMalformed && !strings.HasSuffix(e.Status, e.Reason) {
			t.Errorf("malformed %s: expect %s, ingest said %s", e.EventID, e.Expect, e.Status)
		}
		if e.Fault == FaultMalformed {
			malformed[e.Reason]++
		}
		if e.Fault == FaultWrongKey {
			if e.Acked || stored[e.EventID] != nil {
				t.Errorf("wrong-key item %s acknowledged or stored", e.EventID)
			}
			continue
		}
		if !e.Acked || e.Attempts < 1 {
			t.Errorf("%s %s: acked %v after %d attempts", e.Fault, e.EventID, e.Acked, e.Attempts)
		}
		if e.Fault != FaultMalformed && stored[e.EventID] == nil {
			t.Errorf("%s %s: acknowledged but never stored", e.Fault, e.EventID)
		}
		// A revision revises a reading acknowledged before it: the event
		// id's first version is the reading as first sent.
		if e.Revision > 0 || e.Fault == FaultConflicting {
			vs := versions[e.EventID]
			if len(vs) < 2 || vs[0]["revision"] != nil {
				t.Errorf("%s %s: versions %v", e.Fault, e.EventID, vs)
			}
			found := false
			for _, v := range vs[1:] {
				rev, _ := v["revision"].(float64)
				withdrawn, _ := v["withdrawn"].(bool)
				if int64(rev) == e.Revision && withdrawn == (e.Fault == FaultWithdrawal) && (e.Fault != FaultCorrection || v["value"] == e.Value) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s %s: no version sent as the manifest says (revision %d, value %g): %v", e.Fault, e.EventID, e.Revision, e.Value, vs)
			}
		}
		r := stored[e.EventID]
		if r == nil || e.Fault == FaultMalformed {
			continue
		}
		// Late and unpaired readings lie 15 min behind an acknowledged
		// reading; out-of-order ones 3 min behind the send time.
		at, err := time.Parse(time.RFC3339, r["measured_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		age := time.UnixMilli(e.AckedAt).Sub(at)
		switch e.Fault {
		case FaultLate, FaultUnpaired:
			if age < 15*time.Minute {
				t.Errorf("%s %s only %s old", e.Fault, e.EventID, age)
			}
		case FaultOutOfOrder:
			if age < 3*time.Minute || age > 4*time.Minute {
				t.Errorf("out-of-order %s is %s old", e.EventID, age)
			}
		}
	}
	for _, k := range FaultKinds {
		if seen[k] == 0 {
			t.Errorf("no %s event in %d manifest lines", k, len(entries))
		}
	}
	// Each format's malformed items: an unknown unit, or what only that
	// format can carry.
	other := map[string]string{loadgen.FormatJSON: "invalid_timestamp", loadgen.FormatAvro: "non_finite_value"}[format]
	if malformed["unknown_unit"] == 0 || malformed[other] == 0 || len(malformed) != 2 {
		t.Errorf("malformed items by reason: %v, want unknown_unit and %s", malformed, other)
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{URL: "http://x", Key: "k", Users: 100, Rate: 100, Duration: time.Second, Batch: 10, Clients: 2}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr bool
	}{
		{"valid", func(*Options) {}, false},
		{"no key", func(o *Options) { o.Key = "" }, true},
		{"fewer users than clients", func(o *Options) { o.Users, o.Rate = 1, 1 }, true},
		{"too fast per user", func(o *Options) { o.Rate = 1000 }, true},
		{"zero duration", func(o *Options) { o.Duration = 0 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mutate(&o)
			if err := o.validate(); (err != nil) != tt.wantErr {
				t.Errorf("validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
