package rules

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/schemas"
)

var t0 = time.Date(2016, 5, 2, 7, 0, 0, 0, time.UTC)

// at builds a heart-rate reading of device d measured at minute m plus s
// seconds, ingested a minute later.
func at(id, d string, m, s int) *schemas.Reading {
	t := t0.Add(time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
	return &schemas.Reading{TenantID: "t", EventID: id, UserID: "u", DeviceID: d, Metric: "heart_rate", Value: float64(60 + m%100), Unit: "/min",
		MeasuredAt: t.UnixMilli(), IngestedAt: t.Add(time.Minute).UnixMilli(), SourceFormat: "json"}
}

func with(r *schemas.Reading, f func(*schemas.Reading)) *schemas.Reading { f(r); return r }

func paired(d string, m int) *schemas.DeviceEvent {
	t := t0.Add(time.Duration(m) * time.Minute)
	return &schemas.DeviceEvent{TenantID: "t", EventID: "p-" + d + fmt.Sprint(m), UserID: "u", DeviceID: d, Kind: "paired", OccurredAt: t.UnixMilli(), IngestedAt: t.UnixMilli()}
}

func unpaired(d string, m int) *schemas.DeviceEvent {
	ev := paired(d, m)
	ev.Kind, ev.EventID = "unpaired", "u-"+d+fmt.Sprint(m)
	return ev
}

// step is one event fed to an aggregate and the outcomes expected from it
// (decision and reason per outcome, in order).
type step struct {
	reading *schemas.Reading
	device  *schemas.DeviceEvent
	profile *schemas.ProfileEvent
	want    []string // "accept", "duplicate", "reject:reason"; held readings produce nothing
}

func (s step) run(a *Aggregate, rules Config) []Outcome {
	switch {
	case s.reading != nil:
		return a.ApplyReading(s.reading, Held{}, rules)
	case s.device != nil:
		return a.ApplyDevice(s.device, rules)
	default:
		out, _ := a.ApplyProfile(s.profile)
		return out
	}
}

func describe(outs []Outcome) []string {
	var got []string
	for _, o := range outs {
		switch o.Decision {
		case Accept:
			got = append(got, "accept")
		case Duplicate:
			got = append(got, "duplicate")
		case Reject:
			got = append(got, "reject:"+o.Reason)
		}
	}
	return got
}

func runSteps(t *testing.T, rules Config, steps []step) *Aggregate {
	t.Helper()
	a := new(Aggregate)
	for i, s := range steps {
		outs := s.run(a, rules)
		got := describe(outs)
		if !reflect.DeepEqual(got, s.want) && !(len(got) == 0 && len(s.want) == 0) {
			t.Fatalf("step %d: got %v; want %v", i, got, s.want)
		}
		for _, o := range outs {
			if o.Decision == Reject && (o.Message == "" || strings.Contains(o.Message, fmt.Sprint(o.Reading.Value))) {
				t.Fatalf("step %d: reject message %q empty or naming the value", i, o.Message)
			}
		}
	}
	return a
}

// stepCase is a named sequence of steps, run on a fresh aggregate.
type stepCase struct {
	name  string
	steps []step
}

// runCases runs every case as a subtest of its own.
func runCases(t *testing.T, rules Config, cases []stepCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, rules, tc.steps) })
	}
}

func noPairing() Config {
	r := DefaultConfig()
	r.RequirePairing = false
	return r
}

func TestDuplicatesAndLateness(t *testing.T) {
	rules := noPairing()
	seq := func(r *schemas.Reading, n int64) *schemas.Reading {
		return with(r, func(r *schemas.Reading) { r.Sequence = &n })
	}
	runCases(t, rules, []stepCase{
		{"exact duplicate dropped", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: at("a", "d1", 0, 0), want: []string{"duplicate"}},
		}},
		{"same id later in the stream is still a duplicate", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: at("b", "d1", 5, 0), want: []string{"accept"}},
			{reading: at("a", "d1", 0, 0), want: []string{"duplicate"}},
		}},
		{"same device and sequence under a new id is a duplicate", []step{
			{reading: seq(at("a", "d1", 0, 0), 7), want: []string{"accept"}},
			{reading: seq(at("a2", "d1", 0, 0), 7), want: []string{"duplicate"}},
			{reading: seq(at("a3", "d2", 0, 0), 7), want: []string{"accept"}},
		}},
		{"out of order within lateness accepted", []step{
			{reading: at("b", "d1", 5, 0), want: []string{"accept"}},
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
		}},
		{"older than lateness rejected too_late", []step{
			{reading: at("b", "d1", 20, 0), want: []string{"accept"}},
			{reading: at("a", "d1", 9, 59), want: []string{"reject:" + ReasonTooLate}},
		}},
		{"exactly at the lateness bound accepted", []step{
			{reading: at("b", "d1", 20, 0), want: []string{"accept"}},
			{reading: at("a", "d1", 10, 0), want: []string{"accept"}},
		}},
		{"lateness is per device", []step{
			{reading: at("b", "d1", 20, 0), want: []string{"accept"}},
			{reading: at("a", "d2", 0, 0), want: []string{"accept"}},
		}},
		{"a repeat beyond the window is too late, not a silent drop", []step{
			{reading: at("a", "d1", 0, 0), want: []string{"accept"}},
			{reading: at("b", "d1", 30, 0), want: []string{"accept"}},
			{reading: at("a", "d1", 0, 0), want: []string{"reject:" + ReasonTooLate}},
		}},
		{"measured beyond the skew after ingest", []step{
			{reading: with(at("a", "d1", 0, 0), func(r *schemas.Reading) { r.IngestedAt = r.MeasuredAt - (6 * time.Minute).Milliseconds() }), want: []string{"reject:" + ReasonFutureTimestamp}},
		}},
	})
}

func TestPlausibility(t *testing.T) {
	rules := noPairing()
	f := func(p float64) *float64 { return &p }
	end := func(r *schemas.Reading, secs int64) *schemas.Reading {
		e := r.MeasuredAt + secs*1000
		r.PeriodEnd = &e
		return r
	}
	tests := []struct {
		name string
		r    *schemas.Reading
		want string
	}{
		{"heart rate in range", at("a", "d", 0, 0), "accept"},
		{"heart rate too high", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Value = 251 }), "reject:" + ReasonImplausibleValue},
		{"heart rate too low", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Value = 20 }), "reject:" + ReasonImplausibleValue},
		{"glucose in mmol/L converted before the check", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "blood_glucose", "mmol/L", 5.5 }), "accept"},
		{"glucose in mmol/L implausible", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "blood_glucose", "mmol/L", 40 }), "reject:" + ReasonImplausibleValue},
		{"temperature in degF", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "body_temperature", "[degF]", 98.6 }), "accept"},
		{"blood pressure", with(at("a", "d", 0, 0), func(r *schemas.Reading) {
			r.Metric, r.Unit, r.Value, r.SecondValue = "blood_pressure", "mm[Hg]", 120, f(80)
		}), "accept"},
		{"systolic not above diastolic", with(at("a", "d", 0, 0), func(r *schemas.Reading) {
			r.Metric, r.Unit, r.Value, r.SecondValue = "blood_pressure", "mm[Hg]", 90, f(95)
		}), "reject:" + ReasonImplausibleValue},
		{"diastolic out of range", with(at("a", "d", 0, 0), func(r *schemas.Reading) {
			r.Metric, r.Unit, r.Value, r.SecondValue = "blood_pressure", "mm[Hg]", 200, f(170)
		}), "reject:" + ReasonImplausibleValue},
		{"steps within 5 per second", end(with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "steps", "{steps}", 300 }), 60), "accept"},
		{"steps above 5 per second", end(with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "steps", "{steps}", 301 }), 60), "reject:" + ReasonImplausibleValue},
		{"negative energy", end(with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "active_energy", "kcal", -1 }), 60), "reject:" + ReasonImplausibleValue},
		{"energy in kJ within 50 kcal per minute", end(with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "active_energy", "kJ", 200 }), 60), "accept"},
		{"spo2 as a fraction", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "spo2", "1", 0.97 }), "accept"},
		{"spo2 fraction implausible", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "spo2", "1", 0.3 }), "reject:" + ReasonImplausibleValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runSteps(t, rules, []step{{reading: tc.r, want: []string{tc.want}}})
		})
	}
}

func TestRateLimit(t *testing.T) {
	rules := noPairing()
	rules.MaxPerMinute = 3
	var steps []step
	for i := range 3 {
		steps = append(steps, step{reading: at(fmt.Sprint("a", i), "d1", 0, i), want: []string{"accept"}})
	}
	steps = append(steps,
		step{reading: at("a3", "d1", 0, 30), want: []string{"reject:" + ReasonRateExceeded}},
		step{reading: at("b0", "d2", 0, 30), want: []string{"accept"}}, // per device
		step{reading: at("c0", "d1", 1, 0), want: []string{"accept"}},  // next minute
	)
	runSteps(t, rules, steps)
}

func TestDeviceOwnership(t *testing.T) {
	rules := DefaultConfig()
	runCases(t, rules, []stepCase{
		{"paired before the reading", []step{
			{device: paired("w", 0), want: nil},
			{reading: at("a", "w", 5, 0), want: []string{"accept"}},
		}},
		{"reading before its pairing is held, then accepted", []step{
			{reading: at("a", "w", 5, 0), want: nil},
			{device: paired("w", 0), want: []string{"accept"}},
		}},
		{"pairing after the reading's time does not cover it", []step{
			{reading: at("a", "w", 5, 0), want: nil},
			{device: paired("w", 6), want: nil},
			{device: paired("x", 0), want: nil},
			{reading: at("b", "x", 30, 0), want: []string{"accept", "reject:" + ReasonDeviceNotPaired}}, // the watermark releases a
		}},
		{"unpaired device", []step{
			{device: paired("w", 0), want: nil},
			{device: unpaired("w", 10), want: nil},
			{reading: at("a", "w", 5, 0), want: []string{"accept"}},
			{reading: at("b", "w", 11, 0), want: nil}, // held: a new pairing may still come
			{device: paired("w", 12), want: nil},
			{reading: at("c", "w", 40, 0), want: []string{"accept", "reject:" + ReasonDeviceNotPaired}},
		}},
		{"held readings expire by ingest time too", []step{
			{reading: at("a", "w", 5, 0), want: nil},
			{reading: with(at("b", "v", 5, 0), func(r *schemas.Reading) { r.IngestedAt += (11 * time.Minute).Milliseconds() }), want: []string{"reject:" + ReasonDeviceNotPaired}},
		}},
	})
	rules.MaxHeld = 1
	runSteps(t, rules, []step{
		{reading: at("a", "w", 5, 0), want: nil},
		{reading: at("b", "w", 5, 1), want: []string{"reject:" + ReasonDeviceNotPaired}}, // beyond MaxHeld
	})
}

func TestErasure(t *testing.T) {
	rules := DefaultConfig()
	erase := &schemas.ProfileEvent{TenantID: "t", EventID: "e", UserID: "u", Kind: "erasure_requested", OccurredAt: t0.Add(time.Hour).UnixMilli()}
	a := runSteps(t, rules, []step{
		{device: paired("w", 0), want: nil},
		{reading: at("a", "w", 5, 0), want: []string{"accept"}},
		{reading: at("b", "x", 5, 0), want: nil}, // held
		{profile: erase, want: []string{"reject:" + ReasonUserErased}},
		{reading: at("c", "w", 6, 0), want: []string{"reject:" + ReasonUserErased}},
		{device: paired("x", 0), want: nil},
	})
	if a.ErasedAt == 0 || a.Streams != nil || a.Seen != nil || a.Devices != nil || a.Held != nil {
		t.Fatalf("the aggregate is not a tombstone: %+v", a)
	}
	if _, erased := a.ApplyProfile(erase); erased {
		t.Fatal("erased twice")
	}
}

func TestAlerts(t *testing.T) {
	rules := noPairing()
	spo2 := func(id string, s int, v float64) *schemas.Reading {
		return with(at(id, "ox", 0, s), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "spo2", "%", v })
	}
	a := new(Aggregate)
	var alerts []*schemas.Alert
	for i, v := range []float64{95, 88, 87, 86, 85, 89, 89, 92, 88, 87} {
		// one reading every 15 s: low from 15 s to 105 s (raises at 75 s), high at 105 s, low again
		for _, o := range a.ApplyReading(spo2(fmt.Sprint("s", i), i*15, v), Held{}, rules) {
			if o.Alert != nil {
				alerts = append(alerts, o.Alert)
			}
		}
	}
	// Raised at 75 s, resolved by the reading at 105 s.
	if len(alerts) != 2 || alerts[0].Status != schemas.AlertRaised || alerts[1].Status != schemas.AlertResolved {
		t.Fatalf("alerts %+v, want raised and resolved", alerts)
	}
	if res := alerts[1]; res.AlertID != alerts[0].AlertID || res.EventID != alerts[0].AlertID+":resolved" || res.StatusAt != t0.Add(105*time.Second).UnixMilli() || res.StartedAt != alerts[0].StartedAt {
		t.Fatalf("resolved %+v", res)
	}
	al := alerts[0]
	if al.Rule != "spo2_low_sustained" || al.Severity != "critical" || al.StartedAt != t0.Add(15*time.Second).UnixMilli() || al.MeasuredAt != t0.Add(75*time.Second).UnixMilli() {
		t.Fatalf("alert %+v", al)
	}
	// The id is derived from its inputs: the same condition gives the same id.
	b := new(Aggregate)
	var again *schemas.Alert
	for i, v := range []float64{95, 88, 87, 86, 85, 89} {
		for _, o := range b.ApplyReading(spo2(fmt.Sprint("s", i), i*15, v), Held{}, rules) {
			if o.Alert != nil {
				again = o.Alert
			}
		}
	}
	if again == nil || again.EventID != al.EventID || again.AlertID != al.EventID {
		t.Fatalf("alert ids differ: %v vs %s", again, al.EventID)
	}
	// Heart rate above the bound for five minutes.
	h := new(Aggregate)
	n := 0
	for i := range 22 {
		r := with(at(fmt.Sprint("h", i), "w", i/4, (i%4)*15), func(r *schemas.Reading) { r.Value = 190 })
		for _, o := range h.ApplyReading(r, Held{}, rules) {
			if o.Alert != nil {
				n++
				if o.Alert.Rule != "heart_rate_high_sustained" || o.Alert.MeasuredAt-o.Alert.StartedAt != (5*time.Minute).Milliseconds() {
					t.Fatalf("alert %+v", o.Alert)
				}
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d heart-rate alerts, want 1", n)
	}
}

func TestCurrentOnlyMovesForward(t *testing.T) {
	rules := noPairing()
	var a Aggregate
	a.ApplyReading(at("b", "d1", 5, 0), Held{}, rules)
	a.ApplyReading(at("a", "d1", 1, 0), Held{}, rules) // late but accepted
	st := a.Streams[streamKey(at("x", "d1", 0, 0))]
	if st.Current != 65 || st.Newest != at("b", "d1", 5, 0).MeasuredAt {
		t.Fatalf("current state moved backwards: %+v", st)
	}
	if a.Version != 2 {
		t.Fatalf("version %d", a.Version)
	}
}

// Decisions must not depend on when Compact runs (i.e. where batch
// boundaries fell) or on a round trip through the stored form: that is what
// makes reprocessing deterministic.
func TestDecisionsIndependentOfCompactionAndStorage(t *testing.T) {
	rules := DefaultConfig()
	rules.AllowedLateness = 2 * time.Minute
	rules.MaxPerMinute = 5
	type ev struct {
		r *schemas.Reading
		d *schemas.DeviceEvent
	}
	var inputs []ev
	var last *schemas.Reading
	inputs = append(inputs, ev{d: paired("d1", 3)})
	for i := range 200 {
		m := i/10 + (i*7)%3 - 1 // drifts forward, wandering back and forth
		if i%37 == 0 {
			m -= 4 // now and then too late
		}
		id := fmt.Sprintf("e%d", i)
		r := at(id, "d1", max(m, 0), (i*13)%60)
		switch {
		case i%11 == 0 && i > 0:
			r = with(at("", "d1", 0, 0), func(x *schemas.Reading) { *x = *last }) // a repeat
		case i%29 == 0 && i > 0:
			r.EventID = fmt.Sprintf("e%d", i-1) // the previous id with other content
		case i%17 == 0 && i > 0:
			r = with(at(fmt.Sprintf("e%d", i-3), "d1", max(m, 0), 0), func(x *schemas.Reading) { x.Revision, x.Value = 2, 99 }) // a correction
		case i%19 == 0 && i > 0:
			r = with(at(fmt.Sprintf("e%d", i-2), "d1", max(m, 0), 0), func(x *schemas.Reading) { x.Revision = 1 }) // a revision arriving after revision 2
			inputs = append(inputs, ev{r: with(at(r.EventID, "d1", max(m, 0), 0), func(x *schemas.Reading) { x.Revision, x.Withdrawn = 2, true })})
		}
		inputs = append(inputs, ev{r: r})
		last = r
		if i == 120 {
			inputs = append(inputs, ev{d: paired("d1", 0)})
		}
	}
	run := func(every int) []string {
		a := new(Aggregate)
		var out []string
		for i, e := range inputs {
			var outs []Outcome
			if e.r != nil {
				outs = a.ApplyReading(e.r, Held{Original: encodeReading(t, e.r)}, rules)
			} else {
				outs = a.ApplyDevice(e.d, rules)
			}
			for _, o := range outs {
				out = append(out, o.Reading.EventID+":"+strings.Join(describe([]Outcome{o}), ""))
			}
			if every > 0 && i%every == 0 {
				// What a checkpoint and a reload do.
				a.Compact(rules)
				b, err := a.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				a = new(Aggregate)
				if err := a.UnmarshalBinary(b); err != nil {
					t.Fatal(err)
				}
			}
		}
		return out
	}
	want := run(0)
	for _, every := range []int{1, 3, 17} {
		if got := run(every); !reflect.DeepEqual(got, want) {
			t.Fatalf("compacting every %d changed decisions", every)
		}
	}
	// And the test is not vacuous: every kind of decision occurs.
	all := strings.Join(want, " ")
	for _, d := range []string{":accept", ":duplicate", ReasonTooLate, ReasonDeviceNotPaired, ReasonRateExceeded, ReasonConflictingRepeat, ReasonStaleRevision} {
		if !strings.Contains(all, d) {
			t.Fatalf("inputs do not exercise %s: %v", d, want)
		}
	}
}

func TestCompactBoundsState(t *testing.T) {
	rules := noPairing()
	rules.AllowedLateness = time.Minute
	var a Aggregate
	for i := range 600 {
		a.ApplyReading(at(fmt.Sprintf("e%d", i), "d1", i/60, i%60), Held{}, rules)
	}
	a.Compact(rules)
	if n := len(a.Seen); n > 61 {
		t.Fatalf("%d event ids kept after compaction; the window holds at most 61", n)
	}
	if n := len(a.Streams["d1/heart_rate"].Rate); n > 3 {
		t.Fatalf("%d rate minutes kept", n)
	}
}

// The alert message is built only when an alert is raised; its text is
// what analysts see and must not change.
func TestAlertMessages(t *testing.T) {
	tests := []struct {
		name   string
		metric string
		unit   string
		value  float64
		rules  func(r *Config)
		want   string
	}{
		{"spo2", "spo2", "%", 85, func(*Config) {}, "SpO2 below 90% for at least 1m0s"},
		{"spo2 as a fraction", "spo2", "1", 0.85, func(*Config) {}, "SpO2 below 90% for at least 1m0s"},
		{"spo2 tuned", "spo2", "%", 85, func(r *Config) { r.SpO2Low, r.SpO2LowFor = 92.5, 90*time.Second }, "SpO2 below 92.5% for at least 1m30s"},
		{"heart rate", "heart_rate", "/min", 190, func(*Config) {}, "heart rate above 180/min for at least 5m0s"},
		{"heart rate tuned", "heart_rate", "/min", 190, func(r *Config) { r.HeartRateHigh, r.HeartRateHighFor = 150, time.Minute }, "heart rate above 150/min for at least 1m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules := noPairing()
			tc.rules(&rules)
			a := new(Aggregate)
			var got []string
			for i := range 40 { // 10 minutes, one reading every 15 s
				r := with(at(fmt.Sprint("r", i), "d", i/4, (i%4)*15), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = tc.metric, tc.unit, tc.value })
				for _, o := range a.ApplyReading(r, Held{}, rules) {
					if o.Alert != nil {
						got = append(got, o.Alert.Message)
					}
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("alert messages %q, want [%q]", got, tc.want)
			}
		})
	}
}

// TestExpireHeldByPartitionTime: a held reading is settled by its
// partition's clock even when its user sends nothing more: not before the
// partition's time passes its ingest time by the allowed lateness, then
// rejected device_not_paired; the deadline says when.
func TestExpireHeldByPartitionTime(t *testing.T) {
	cfg := DefaultConfig()
	var a Aggregate
	held := []*schemas.Reading{at("h1", "w", 3, 0), at("h2", "w", 5, 0)}
	for _, r := range held {
		if outs := a.ApplyReading(r, Held{Offset: 7}, cfg); len(outs) != 0 {
			t.Fatalf("a reading of a never-paired device: %v; want it held", describe(outs))
		}
	}
	deadline, ok := a.HeldDeadline(cfg)
	if want := held[0].IngestedAt + cfg.AllowedLateness.Milliseconds(); !ok || deadline != want {
		t.Fatalf("deadline %d, %v; want %d (the first held reading's ingest time plus the lateness)", deadline, ok, want)
	}
	if outs := a.ExpireHeld(deadline, cfg); len(outs) != 0 {
		t.Fatalf("at the deadline: %v; want nothing settled yet", describe(outs))
	}
	outs := a.ExpireHeld(deadline+1, cfg)
	if got := describe(outs); !reflect.DeepEqual(got, []string{"reject:" + ReasonDeviceNotPaired}) || outs[0].Held == nil || outs[0].Held.Reading.EventID != "h1" || outs[0].Held.Offset != 7 {
		t.Fatalf("past the deadline: %v; want h1 rejected device_not_paired, carrying its source", got)
	}
	if next, ok := a.HeldDeadline(cfg); !ok || next != held[1].IngestedAt+cfg.AllowedLateness.Milliseconds() {
		t.Fatalf("next deadline %d, %v; want h2's", next, ok)
	}
	if got := describe(a.ExpireHeld(held[1].IngestedAt+cfg.AllowedLateness.Milliseconds()+1, cfg)); len(got) != 1 {
		t.Fatalf("h2 past its deadline: %v", got)
	}
	if _, ok := a.HeldDeadline(cfg); ok || a.Held != nil {
		t.Fatalf("nothing held any more, yet a deadline or held readings remain: %v", a.Held)
	}
}
