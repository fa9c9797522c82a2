// Package metric is the registry of the health metrics Vitals understands:
// their canonical UCUM unit, LOINC code and plausible range. It is the one
// source of truth that ingest (is the unit known?), the processor (is the
// value plausible?) and the query service (is this a metric?) consult.
//
// Codes and units follow HL7 FHIR Observation conventions. The ranges are
// starting points; deployments tune them.
package metric

import (
	"fmt"
	"sort"
)

// Metric describes one measurable quantity.
type Metric struct {
	Name  string  // registry name used in the API and the tables, e.g. "heart_rate"
	LOINC string  // LOINC code of the observation
	Unit  string  // canonical UCUM unit
	Min   float64 // plausible range in the canonical unit, inclusive
	Max   float64
}

// Plausible reports whether v, in the canonical unit, lies in the range.
func (m Metric) Plausible(v float64) bool { return v >= m.Min && v <= m.Max }

// registry lists the point-in-time quantities. Interval metrics (steps,
// energy, sleep stages) and blood pressure's two components need more than
// one value per event and join with the schema version that carries them.
var registry = map[string]Metric{
	"heart_rate":         {Name: "heart_rate", LOINC: "8867-4", Unit: "/min", Min: 25, Max: 250},
	"resting_heart_rate": {Name: "resting_heart_rate", LOINC: "40443-4", Unit: "/min", Min: 25, Max: 150},
	"hrv_sdnn":           {Name: "hrv_sdnn", LOINC: "80404-7", Unit: "ms", Min: 1, Max: 500},
	"spo2":               {Name: "spo2", LOINC: "59408-5", Unit: "%", Min: 50, Max: 100},
	"respiratory_rate":   {Name: "respiratory_rate", LOINC: "9279-1", Unit: "/min", Min: 4, Max: 60},
	"body_temperature":   {Name: "body_temperature", LOINC: "8310-5", Unit: "Cel", Min: 30, Max: 45},
	"blood_glucose":      {Name: "blood_glucose", LOINC: "2339-0", Unit: "mg/dL", Min: 20, Max: 600},
	"body_weight":        {Name: "body_weight", LOINC: "29463-7", Unit: "kg", Min: 2, Max: 500},
}

// Lookup returns the metric with the given registry name.
func Lookup(name string) (Metric, bool) {
	m, ok := registry[name]
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
