package metric

import (
	"math"
	"reflect"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/vitalshq/vitals/schemas"
)

func TestConversions(t *testing.T) {
	tests := []struct {
		metric, unit string
		in, want     float64
	}{
		{"blood_glucose", "mmol/L", 5.5, 99.088},
		{"blood_glucose", "mg/dL", 99, 99},
		{"body_temperature", "[degF]", 98.6, 37},
		{"body_temperature", "[degF]", 32, 0},
		{"body_temperature", "[degF]", 212, 100},
		{"body_weight", "[lb_av]", 150, 68.0388555},
		{"blood_pressure", "kPa", 16, 120.0099},
		{"active_energy", "kJ", 4.184, 1},
		{"active_energy", "kJ", 418.4, 100},
		{"spo2", "1", 0.97, 97},
		{"heart_rate", "/min", 61, 61},
	}
	for _, tc := range tests {
		t.Run(tc.metric+" "+tc.unit, func(t *testing.T) {
			got, ok := MustLookup(tc.metric).Canonical(tc.in, tc.unit)
			if !ok {
				t.Fatalf("unit %s not accepted", tc.unit)
			}
			if math.Abs(got-tc.want) > 1e-4 {
				t.Fatalf("%g %s = %g %s, want %g", tc.in, tc.unit, got, MustLookup(tc.metric).Unit, tc.want)
			}
		})
	}
	if _, ok := MustLookup("heart_rate").Canonical(60, "bpm"); ok {
		t.Fatal("bpm accepted for heart_rate")
	}
}

func TestRegistryIsConsistent(t *testing.T) {
	for _, n := range Names() {
		m := MustLookup(n)
		if m.Name != n || m.LOINC == "" || m.Unit == "" {
			t.Errorf("%s: incomplete %+v", n, m)
		}
		if byCode, ok := ByLOINC(m.LOINC); !ok || byCode.Name != n {
			t.Errorf("%s: LOINC %s does not map back", n, m.LOINC)
		}
		switch m.Shape {
		case Interval:
			if m.MaxPerSecond <= 0 {
				t.Errorf("%s: interval metric without a rate bound", n)
			}
		case Pair:
			if m.Second == nil || m.FirstLOINC == "" {
				t.Errorf("%s: pair metric without components", n)
			}
		default:
			if m.Max <= m.Min {
				t.Errorf("%s: empty range", n)
			}
		}
	}
}

// The registry's sleep stages are the schema's SleepStage symbols.
func TestSleepStagesMatchSchema(t *testing.T) {
	vs, err := schemas.Versions(schemas.NameReading)
	if err != nil {
		t.Fatal(err)
	}
	rec := vs[len(vs)-1].Schema.(*avro.RecordSchema)
	for _, f := range rec.Fields() {
		if f.Name() != "stage" {
			continue
		}
		for _, s := range f.Type().(*avro.UnionSchema).Types() {
			if e, ok := s.(*avro.EnumSchema); ok {
				if !reflect.DeepEqual(e.Symbols(), SleepStages) {
					t.Fatalf("schema stages %v, registry %v", e.Symbols(), SleepStages)
				}
				return
			}
		}
	}
	t.Fatal("reading schema has no stage enum")
}
