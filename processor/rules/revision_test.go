package rules

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/vitalshq/vitals/schemas"
)

// rev is revision n of reading r with value v (withdrawn if v < 0),
// ingested a minute after r plus n seconds.
func rev(r *schemas.Reading, n int64, v float64) *schemas.Reading {
	return with(r, func(r *schemas.Reading) {
		r.Revision, r.IngestedAt = n, r.IngestedAt+n*1000
		if v < 0 {
			r.Withdrawn, r.Value = true, 0
		} else {
			r.Value = v
		}
	})
}

func TestRevisions(t *testing.T) {
	rules := noPairing()
	runCases(t, rules, []stepCase{
		{"a correction applies, its repeats drop", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 1, 80), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 1, 80), want: []string{"duplicate"}},
			{reading: at("a", "d1", 0, 0), want: []string{"duplicate"}}, // the original re-sent (a retried request)
			{reading: with(at("a", "d1", 0, 0), func(r *schemas.Reading) { r.Value = 99 }), want: []string{"reject:" + ReasonStaleRevision}},
		}},
		{"a stale revision does not win", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 3, 81), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 2, 82), want: []string{"reject:" + ReasonStaleRevision}},
			{reading: rev(at("a", "d1", 0, 0), 1, 83), want: []string{"reject:" + ReasonStaleRevision}},
			{reading: rev(at("a", "d1", 0, 0), 4, 84), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 3, 81), want: []string{"duplicate"}}, // an earlier revision, repeated
		}},
		{"other content under a seen id or revision", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: with(at("a", "d1", 0, 0), func(r *schemas.Reading) { r.Value = 99 }), want: []string{"reject:" + ReasonConflictingRepeat}},
			{reading: with(at("a", "d1", 0, 30), func(r *schemas.Reading) {}), want: []string{"reject:" + ReasonConflictingRepeat}},
			{reading: with(at("a", "d2", 0, 0), func(r *schemas.Reading) {}), want: []string{"reject:" + ReasonConflictingRepeat}},
			{reading: rev(at("a", "d1", 0, 0), 1, 80), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 1, 81), want: []string{"reject:" + ReasonConflictingRepeat}},
			{reading: rev(at("a", "d1", 0, 0), 2, 81), want: []string{"accept"}},
		}},
		{"the same content in another unit is a repeat", []step{
			{reading: with(at("t", "d1", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "spo2", "%", 95 }), want: []string{"accept"}},
			{reading: with(at("t", "d1", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "spo2", "1", 0.95 }), want: []string{"duplicate"}},
		}},
		{"a withdrawal, and a correction after it", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 1, -1), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 1, -1), want: []string{"duplicate"}},
			{reading: rev(at("a", "d1", 0, 0), 1, 70), want: []string{"reject:" + ReasonConflictingRepeat}},
			{reading: rev(at("a", "d1", 0, 0), 2, 70), want: []string{"accept"}},
		}},
		{"a revision of a reading no longer remembered, or never accepted", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: at("b", "d1", 30, 0), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 1, 80), want: []string{"accept"}},
			{reading: at("a", "d1", 0, 0), want: []string{"reject:" + ReasonStaleRevision}},
			{reading: rev(at("never", "d1", 31, 0), 2, 80), want: []string{"accept"}},
			{reading: at("never", "d1", 31, 0), want: []string{"reject:" + ReasonStaleRevision}},
		}},
		{"a revision checks the value it brings", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: rev(at("a", "d1", 0, 0), 1, 300), want: []string{"reject:" + ReasonImplausibleValue}},
			{reading: rev(at("a", "d1", 0, 0), 1, 71), want: []string{"accept"}},
		}},
	})
}

// A revision may reach back the correction window, measured from the
// newest ingest time of the user's readings; what is remembered of a
// revised reading lasts twice as long.
func TestCorrectionWindow(t *testing.T) {
	rules := noPairing()
	rules.CorrectionWindow = time.Hour
	a := new(Aggregate)
	apply := func(r *schemas.Reading) string {
		return fmt.Sprint(describe(a.ApplyReading(r, Held{}, rules)))
	}
	if got := apply(at("a", "d1", 0, 0)); got != "[accept]" {
		t.Fatal(got)
	}
	if got := apply(rev(at("a", "d1", 0, 0), 1, 80)); got != "[accept]" {
		t.Fatal(got)
	}
	// 59 minutes later the reading is still within the window.
	if got := apply(at("b", "d1", 58, 0)); got != "[accept]" {
		t.Fatal(got)
	}
	if got := apply(rev(at("a", "d1", 0, 0), 2, 81)); got != "[accept]" {
		t.Fatalf("within the window: %s", got)
	}
	if got := apply(at("c", "d1", 61, 0)); got != "[accept]" {
		t.Fatal(got)
	}
	if got := apply(rev(at("a", "d1", 0, 0), 3, 82)); got != "[reject:"+ReasonCorrectionWindow+"]" {
		t.Fatalf("beyond the window: %s", got)
	}
	// The stale revision 1 is refused by the window whether or not the
	// revision state is still remembered.
	a.Compact(rules)
	if a.Revised["a"] == nil {
		t.Fatal("the revised reading was forgotten within twice the window")
	}
	apply(at("d", "d1", 125, 0))
	a.Compact(rules)
	if a.Revised["a"] != nil {
		t.Fatal("the revised reading is remembered beyond twice the window")
	}
	if got := apply(rev(at("a", "d1", 0, 0), 1, 80)); got != "[reject:"+ReasonCorrectionWindow+"]" {
		t.Fatalf("stale and forgotten: %s", got)
	}
}

// Alerts: raised, resolved when the condition ends, withdrawn when a
// reading that raised it is corrected out of the condition or withdrawn.
func TestAlertLifecycle(t *testing.T) {
	rules := noPairing()
	hr := func(i int, v float64) *schemas.Reading {
		return with(at(fmt.Sprint("h", i), "w", i/4, (i%4)*15), func(r *schemas.Reading) { r.Value = v })
	}
	run := func(a *Aggregate, r *schemas.Reading) []*schemas.Alert {
		var out []*schemas.Alert
		for _, o := range a.ApplyReading(r, Held{}, rules) {
			if o.Alert != nil {
				out = append(out, o.Alert)
			}
		}
		return out
	}
	status := func(as []*schemas.Alert) []string {
		var s []string
		for _, a := range as {
			s = append(s, a.Status)
		}
		return s
	}
	// 190/min every 15 s for 6 minutes raises at 5 minutes; 80 resolves.
	a := new(Aggregate)
	var got []*schemas.Alert
	for i := range 25 {
		got = append(got, run(a, hr(i, 190))...)
	}
	got = append(got, run(a, hr(25, 80))...)
	if !reflect.DeepEqual(status(got), []string{schemas.AlertRaised, schemas.AlertResolved}) {
		t.Fatalf("alerts %v", status(got))
	}
	raised := got[0]
	// A correction that keeps the reading above the bound changes nothing;
	// one of a reading after the alert was raised neither.
	if as := run(a, rev(hr(7, 190), 1, 200)); len(as) != 0 {
		t.Fatalf("a correction within the condition: %v", status(as))
	}
	if as := run(a, rev(hr(22, 190), 1, 70)); len(as) != 0 {
		t.Fatalf("a correction after the raise: %v", status(as))
	}
	// Correcting one of the raising readings to 70 withdraws it.
	as := run(a, rev(hr(7, 190), 2, 70))
	if len(as) != 1 || as[0].Status != schemas.AlertWithdrawn || as[0].AlertID != raised.AlertID || as[0].EventID != raised.AlertID+":withdrawn" ||
		as[0].StartedAt != raised.StartedAt || as[0].StatusAt != hr(7, 0).MeasuredAt {
		t.Fatalf("withdrawal %+v (raised %+v)", as, raised)
	}
	// Only once.
	if as := run(a, rev(hr(8, 190), 1, -1)); len(as) != 0 {
		t.Fatalf("withdrawn twice: %v", status(as))
	}
	// A withdrawal of a raising reading withdraws an alert whose condition
	// still holds; the condition then starts afresh.
	b := new(Aggregate)
	for i := range 22 {
		run(b, hr(i, 190))
	}
	as = run(b, rev(hr(3, 190), 1, -1))
	if len(as) != 1 || as[0].Status != schemas.AlertWithdrawn {
		t.Fatalf("withdrawal of an open alert: %v", status(as))
	}
	var again []*schemas.Alert
	for i := 22; i < 22+21; i++ {
		again = append(again, run(b, hr(i, 190))...)
	}
	if len(again) != 1 || again[0].Status != schemas.AlertRaised || again[0].StartedAt != hr(22, 0).MeasuredAt {
		t.Fatalf("raised again: %+v", again)
	}
}

// The snapshot keeps what revisions need, and binary v1 snapshots (before
// revisions) still read.
func TestSnapshotKeepsRevisions(t *testing.T) {
	rules := noPairing()
	a := new(Aggregate)
	a.ApplyDevice(paired("w", 0), rules) // (an aggregate without devices decodes with a nil map)
	for i := range 25 {
		a.ApplyReading(with(at(fmt.Sprint("h", i), "w", i/4, (i%4)*15), func(r *schemas.Reading) { r.Value = 190 }), Held{}, rules)
	}
	a.ApplyReading(rev(at("h3", "w", 0, 45), 2, 185), Held{}, rules)
	a.ApplyReading(rev(at("h4", "w", 1, 0), 1, -1), Held{}, rules)
	if len(a.Revised) != 2 || len(a.Streams["w/heart_rate"].Runs) != 0 || a.IngestHigh == 0 {
		t.Fatalf("set-up: %+v", a)
	}
	a.ApplyReading(with(at("h25", "w", 6, 15), func(r *schemas.Reading) { r.Value = 190 }), Held{}, rules)
	roundTrip(t, a)

	// v1: one stream, one remembered id, nothing else.
	v1 := []byte{snapshotV1}
	v1 = binary.AppendUvarint(v1, 3)
	v1 = binary.AppendVarint(v1, 1000)
	v1 = binary.AppendVarint(v1, 0)
	v1 = binary.AppendUvarint(v1, 1)
	v1 = appendString(v1, "w/heart_rate")
	v1 = binary.AppendVarint(v1, 1000)
	v1 = binary.LittleEndian.AppendUint64(v1, math.Float64bits(72))
	v1 = binary.AppendUvarint(v1, 0)
	v1 = binary.AppendVarint(v1, 0)
	v1 = append(v1, 0)
	v1 = binary.AppendUvarint(v1, 1)
	v1 = appendString(v1, "e-1")
	v1 = binary.AppendUvarint(v1, 1)
	v1 = binary.AppendVarint(v1, 1000)
	v1 = binary.AppendUvarint(v1, 0)
	v1 = binary.AppendUvarint(v1, 0)
	var old Aggregate
	if err := old.UnmarshalBinary(v1); err != nil {
		t.Fatal(err)
	}
	if old.Version != 3 || old.Seen["e-1"] != (SeenEvent{Stream: "w/heart_rate", At: 1000}) || old.Streams["w/heart_rate"].Current != 72 {
		t.Fatalf("v1 snapshot read as %+v", old)
	}
	// An id remembered without a fingerprint repeats whatever its content.
	r := with(at("e-1", "w", 0, 0), func(r *schemas.Reading) { r.MeasuredAt, r.Value = 1000, 99 })
	if got := describe(old.ApplyReading(r, Held{}, rules)); !reflect.DeepEqual(got, []string{"duplicate"}) {
		t.Fatalf("v1 id: %v", got)
	}
}

// The fingerprint is FNV-1a of the fields as the standard library hashes
// them, and costs no allocation.
func TestFingerprint(t *testing.T) {
	r := at("a", "d1", 0, 0)
	h := fnv.New64a()
	h.Write([]byte("d1\x00heart_rate\x00"))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], math.Float64bits(r.Value))
	h.Write(b[:])
	binary.LittleEndian.PutUint64(b[:], uint64(r.MeasuredAt))
	h.Write(b[:])
	if got := Fingerprint(r); got != h.Sum64() {
		t.Fatalf("fingerprint %x, FNV-1a %x", got, h.Sum64())
	}
	if n := testing.AllocsPerRun(100, func() { Fingerprint(r) }); n != 0 {
		t.Fatalf("%g allocations per fingerprint", n)
	}
	other := *r
	other.Unit, other.Metric, other.Value = "1", "spo2", 0.95
	same := other
	same.Unit, same.Value = "%", 95
	if Fingerprint(&other) != Fingerprint(&same) || Fingerprint(&other) == Fingerprint(r) {
		t.Fatal("fingerprints do not follow the canonical value")
	}
}
