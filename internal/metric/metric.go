// Package metric is the registry of the health metrics Vitals understands:
// each metric's LOINC code, canonical UCUM unit, the alternative units it
// accepts with their exact conversions, the shape of its events and its
// plausible range. It is the one source of truth that ingest (is this unit
// known for this metric?), the processor (convert, and is the value
// plausible?) and the query service (is this a metric?) consult.
//
// Codes and units follow HL7 FHIR Observation conventions. The ranges are
// starting points; deployments tune them.
package metric

import (
	"fmt"
	"sort"
)

// Shape is what an event of a metric carries beyond a value and a time.
type Shape int

// The shapes of the catalogue.
const (
	// Point: one value measured at one instant (heart rate, weight).
	Point Shape = iota
	// Interval: an amount over [measured_at, period_end) (steps, energy);
	// plausibility scales with the interval's length.
	Interval
	// Pair: two values measured together; value is the first component
	// (systolic), Second the other (diastolic).
	Pair
	// Stage: a labelled interval (sleep stage); the value is its length.
	Stage
)

// Conversion turns a value in an alternative unit into the canonical unit:
// canonical = value*Scale + Offset. Every conversion of the catalogue is
// affine with exact constants.
type Conversion struct {
	Scale, Offset float64
}

// Apply converts v.
func (c Conversion) Apply(v float64) float64 { return v*c.Scale + c.Offset }

// Component is the second value of a Pair metric.
type Component struct {
	Name     string // e.g. "diastolic"
	LOINC    string
	Min, Max float64 // plausible range in the canonical unit
}

// Metric describes one measurable quantity.
type Metric struct {
	Name  string // registry name used in the API and the tables, e.g. "heart_rate"
	LOINC string // LOINC code of the observation (the panel for a Pair)
	// FirstLOINC is the LOINC code of the first component of a Pair.
	FirstLOINC string
	Unit       string // canonical UCUM unit
	Shape      Shape
	// Min and Max bound a plausible value in the canonical unit (the first
	// component of a Pair). For an Interval, MaxPerSecond bounds the value
	// by the interval's length instead of Max.
	Min, Max     float64
	MaxPerSecond float64
	// Second describes a Pair's second component; the first must exceed it.
	Second *Component
	// Alternatives maps each accepted non-canonical UCUM unit to its
	// conversion into Unit.
	Alternatives map[string]Conversion
	// Stages lists a Stage metric's labels.
	Stages []string
}

// Canonical converts v measured in unit into the canonical unit. ok is
// false if the unit is not accepted for this metric.
func (m Metric) Canonical(v float64, unit string) (float64, bool) {
	if unit == m.Unit {
		return v, true
	}
	c, ok := m.Alternatives[unit]
	if !ok {
		return 0, false
	}
	return c.Apply(v), true
}

// Units lists the accepted units, canonical first.
func (m Metric) Units() []string {
	out := []string{m.Unit}
	alt := make([]string, 0, len(m.Alternatives))
	for u := range m.Alternatives {
		alt = append(alt, u)
	}
	sort.Strings(alt)
	return append(out, alt...)
}

// HasStage reports whether s is one of a Stage metric's labels.
func (m Metric) HasStage(s string) bool {
	for _, st := range m.Stages {
		if st == s {
			return true
		}
	}
	return false
}

// Exact conversion constants.
const (
	mgdlPerMmolGlucose = 18.016     // glucose molar mass 180.16 g/mol ÷ 10
	kgPerPound         = 0.45359237 // international avoirdupois pound, exact by definition
	mmHgPerKPa         = 1000 / 133.322387415
	kcalPerKJ          = 1 / 4.184 // thermochemical calorie, exact by definition
)

// SleepStages are the labels of sleep-stage intervals; the Avro schema's
// SleepStage enum has the same symbols (a test checks).
var SleepStages = []string{"awake", "light", "deep", "rem"}

var registry = map[string]Metric{
	"heart_rate":         {Name: "heart_rate", LOINC: "8867-4", Unit: "/min", Min: 25, Max: 250},
	"resting_heart_rate": {Name: "resting_heart_rate", LOINC: "40443-4", Unit: "/min", Min: 25, Max: 150},
	"hrv_sdnn":           {Name: "hrv_sdnn", LOINC: "80404-7", Unit: "ms", Min: 1, Max: 500},
	"spo2": {Name: "spo2", LOINC: "59408-5", Unit: "%", Min: 50, Max: 100,
		Alternatives: map[string]Conversion{"1": {Scale: 100}}}, // a fraction 0–1
	"respiratory_rate": {Name: "respiratory_rate", LOINC: "9279-1", Unit: "/min", Min: 4, Max: 60},
	"body_temperature": {Name: "body_temperature", LOINC: "8310-5", Unit: "Cel", Min: 30, Max: 45,
		Alternatives: map[string]Conversion{"[degF]": {Scale: 5.0 / 9.0, Offset: -32 * 5.0 / 9.0}}},
	"blood_pressure": {Name: "blood_pressure", LOINC: "85354-9", FirstLOINC: "8480-6", Unit: "mm[Hg]", Shape: Pair, Min: 50, Max: 260,
		Second:       &Component{Name: "diastolic", LOINC: "8462-4", Min: 25, Max: 160},
		Alternatives: map[string]Conversion{"kPa": {Scale: mmHgPerKPa}}},
	"blood_glucose": {Name: "blood_glucose", LOINC: "2339-0", Unit: "mg/dL", Min: 20, Max: 600,
		Alternatives: map[string]Conversion{"mmol/L": {Scale: mgdlPerMmolGlucose}}},
	"steps": {Name: "steps", LOINC: "55423-8", Unit: "{steps}", Shape: Interval, MaxPerSecond: 5},
	"active_energy": {Name: "active_energy", LOINC: "41981-2", Unit: "kcal", Shape: Interval, MaxPerSecond: 50.0 / 60.0,
		Alternatives: map[string]Conversion{"kJ": {Scale: kcalPerKJ}}},
	"body_weight": {Name: "body_weight", LOINC: "29463-7", Unit: "kg", Min: 2, Max: 500,
		Alternatives: map[string]Conversion{"[lb_av]": {Scale: kgPerPound}}},
	"sleep_stage": {Name: "sleep_stage", LOINC: "93832-4", Unit: "min", Shape: Stage, Min: 0, Max: 24 * 60, Stages: SleepStages},
}

// byLOINC indexes the registry by observation code (and a Pair's first
// component code), for FHIR input.
var byLOINC = func() map[string]Metric {
	out := make(map[string]Metric, len(registry))
	for _, m := range registry {
		out[m.LOINC] = m
		if m.FirstLOINC != "" {
			out[m.FirstLOINC] = m
		}
	}
	return out
}()

// Lookup returns the metric with the given registry name.
func Lookup(name string) (Metric, bool) {
	m, ok := registry[name]
	return m, ok
}

// ByLOINC returns the metric observed under a LOINC code.
func ByLOINC(code string) (Metric, bool) {
	m, ok := byLOINC[code]
	return m, ok
}

// MustLookup is Lookup for names fixed in code.
func MustLookup(name string) Metric {
	m, ok := registry[name]
	if !ok {
		panic(fmt.Sprintf("metric %q is not in the registry", name))
	}
	return m
}

// Names lists the registry names, sorted.
func Names() []string {
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
