package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/internal/metric"
)

func fhirMs(t *testing.T, s string) *int64 {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	ms := v.UnixMilli()
	return &ms
}

// fhirShow prints an Input with its pointers dereferenced, for failures.
func fhirShow(in Input) string {
	var b strings.Builder
	v := reflect.ValueOf(in)
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		fmt.Fprintf(&b, "%s=", v.Type().Field(i).Name)
		if f.Kind() != reflect.Pointer {
			fmt.Fprintf(&b, "%v ", f.Interface())
		} else if f.IsNil() {
			b.WriteString("<nil> ")
		} else {
			fmt.Fprintf(&b, "%v ", f.Elem().Interface())
		}
	}
	return b.String()
}

func readFHIRFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fhir", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fhirWant is one expected item: an Input, or a rejection's reason and field.
type fhirWant struct {
	in            *Input
	reason, field string
}

func TestDecodeFHIRFixtures(t *testing.T) {
	tests := []struct {
		file string
		want []fhirWant
	}{
		{"heart-rate.json", []fhirWant{{in: &Input{
			EventID: str("acme-hr-000123"), UserID: str("u-42"), DeviceID: str("watch-7"),
			Metric: str("heart_rate"), Unit: str("/min"), Value: f64(72),
			MeasuredAt: fhirMs(t, "2024-03-10T07:21:00Z"), ReceivedAt: fhirMs(t, "2024-03-10T07:21:05.250Z"),
		}}}},
		{"bundle.json", []fhirWant{
			{in: &Input{ // no identifier: the resource id; effectiveInstant with an offset
				EventID: str("hr-2"), UserID: str("u-42"), DeviceID: str("watch-7"),
				Metric: str("heart_rate"), Unit: str("/min"), Value: f64(64.5),
				MeasuredAt: fhirMs(t, "2024-03-10T07:21:00.5Z"),
			}},
			{in: &Input{ // the panel code, components in mm[Hg]
				EventID: str("acme-bp-000124"), UserID: str("u-42"), DeviceID: str("cuff-3"),
				Metric: str("blood_pressure"), Unit: str("mm[Hg]"), Value: f64(118), Diastolic: f64(76),
				MeasuredAt: fhirMs(t, "2024-03-10T07:30:00Z"),
			}},
			{in: &Input{ // the first identifier has no value; SNOMED and an unregistered LOINC code come first; amended, ordered by issued
				EventID: str("acme-temp-000125"), UserID: str("u-42"), DeviceID: str("thermo-1"),
				Metric: str("body_temperature"), Unit: str("[degF]"), Value: f64(98.6),
				MeasuredAt: fhirMs(t, "2024-03-10T10:00:00Z"), ReceivedAt: fhirMs(t, "2024-03-10T10:00:30Z"),
				Revision: fhirMs(t, "2024-03-10T10:00:30Z"),
			}},
			{reason: ReasonMalformedItem, field: "resourceType"}, // a Patient
			{in: &Input{
				EventID: str("acme-steps-000126"), UserID: str("u-42"), DeviceID: str("watch-7"),
				Metric: str("steps"), Unit: str("{steps}"), Value: f64(1234),
				MeasuredAt: fhirMs(t, "2024-03-10T11:00:00Z"), PeriodEnd: fhirMs(t, "2024-03-10T12:00:00Z"),
			}},
			{in: &Input{ // coding[0].code, lower-cased; no value: CheckReading takes the period's length
				EventID: str("acme-sleep-000127"), UserID: str("u-42"), DeviceID: str("watch-7"),
				Metric: str("sleep_stage"), Unit: str("min"), Stage: str("rem"),
				MeasuredAt: fhirMs(t, "2024-03-10T01:00:00Z"), PeriodEnd: fhirMs(t, "2024-03-10T01:30:00Z"),
			}},
			{in: &Input{ // text, lower-cased; an explicit value
				EventID: str("acme-sleep-000128"), UserID: str("u-42"), DeviceID: str("watch-7"),
				Metric: str("sleep_stage"), Unit: str("min"), Value: f64(25), Stage: str("deep"),
				MeasuredAt: fhirMs(t, "2024-03-10T01:30:00Z"), PeriodEnd: fhirMs(t, "2024-03-10T02:00:00Z"),
			}},
		}},
		{"bundle-collection.json", []fhirWant{
			{in: &Input{ // no UCUM system: valueQuantity.unit; corrected, with neither version nor time: ordered by arrival
				EventID: str("hr-3"), UserID: str("u-43"), DeviceID: str("ring-1"),
				Metric: str("heart_rate"), Unit: str("/min"), Value: f64(51),
				MeasuredAt: fhirMs(t, "2024-03-11T05:59:59.999Z"), RevisionOnArrival: true,
			}},
			{in: &Input{ // coded as systolic 8480-6; components in either order, in kPa
				EventID: str("bp-4"), UserID: str("u-43"), DeviceID: str("cuff-3"),
				Metric: str("blood_pressure"), Unit: str("kPa"), Value: f64(16), Diastolic: f64(10.5),
				MeasuredAt: fhirMs(t, "2024-03-11T06:00:00Z"),
			}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			items, err := decodeFHIR(readFHIRFixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != len(tc.want) {
				t.Fatalf("got %d items, want %d", len(items), len(tc.want))
			}
			for i, it := range items {
				w := tc.want[i]
				if !json.Valid(it.raw) {
					t.Errorf("item %d: raw is not JSON: %s", i, it.raw)
				}
				if w.in == nil {
					if it.rej == nil || it.rej.Reason != w.reason || it.rej.Field != w.field {
						t.Errorf("item %d: rejection %+v, want %s on %s", i, it.rej, w.reason, w.field)
					}
					continue
				}
				if it.rej != nil {
					t.Errorf("item %d: rejected: %+v", i, it.rej)
					continue
				}
				if !reflect.DeepEqual(it.in, *w.in) {
					t.Errorf("item %d:\n got %s\nwant %s", i, fhirShow(it.in), fhirShow(*w.in))
				}
				if problem := fhirUsable(it.in); problem != "" {
					t.Errorf("item %d: not usable: %s", i, problem)
				}
			}
		})
	}
}

// fhirDel deletes the member at a path in fhirEdit.
var fhirDel = new(int)

// fhirEdit sets (or, with fhirDel, deletes) the member at a dotted path;
// numeric segments index arrays.
func fhirEdit(t *testing.T, doc any, path string, v any) {
	t.Helper()
	segs := strings.Split(path, ".")
	cur := doc
	for i, s := range segs {
		last := i == len(segs)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if v == fhirDel {
					delete(c, s)
				} else {
					c[s] = v
				}
				return
			}
			if c[s] == nil {
				c[s] = map[string]any{}
			}
			cur = c[s]
		case []any:
			n, err := strconv.Atoi(s)
			if err != nil || n >= len(c) {
				t.Fatalf("bad path %s", path)
			}
			if last {
				c[n] = v
				return
			}
			cur = c[n]
		default:
			t.Fatalf("bad path %s at %s", path, s)
		}
	}
}

// fhirBase returns a fixture Observation as a generic document: "hr" is the
// heart-rate file, "bp", "temp", "steps" and "sleep" entries of bundle.json.
func fhirBase(t *testing.T, name string) map[string]any {
	t.Helper()
	if name == "hr" {
		var doc map[string]any
		if err := json.Unmarshal(readFHIRFixture(t, "heart-rate.json"), &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	idx := map[string]int{"bp": 1, "temp": 2, "steps": 4, "sleep": 5}[name]
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(readFHIRFixture(t, "bundle.json"), &b); err != nil {
		t.Fatal(err)
	}
	return b.Entry[idx].Resource
}

type fhirSet struct {
	path string
	v    any
}

func TestDecodeFHIRRejections(t *testing.T) {
	tests := []struct {
		name, base    string
		edits         []fhirSet
		reason, field string
	}{
		{"status amended-ish", "hr", []fhirSet{{"status", "amended-ish"}}, ReasonInvalidValue, "status"},
		{"lastUpdated not a time", "hr", []fhirSet{{"status", "amended"}, {"meta", map[string]any{"lastUpdated": "yesterday"}}}, ReasonInvalidTimestamp, "meta.lastUpdated"},
		{"versionId a number", "hr", []fhirSet{{"status", "amended"}, {"meta", map[string]any{"versionId": 2}}}, ReasonInvalidType, "meta.versionId"},
		{"status cancelled", "hr", []fhirSet{{"status", "cancelled"}}, ReasonInvalidValue, "status"},
		{"status registered", "hr", []fhirSet{{"status", "registered"}}, ReasonInvalidValue, "status"},
		{"status unknown", "hr", []fhirSet{{"status", "unknown"}}, ReasonInvalidValue, "status"},
		{"status missing", "hr", []fhirSet{{"status", fhirDel}}, ReasonMissingField, "status"},
		{"status null", "hr", []fhirSet{{"status", nil}}, ReasonMissingField, "status"},
		{"status a number", "hr", []fhirSet{{"status", 1}}, ReasonInvalidType, "status"},
		{"no identifier nor id", "hr", []fhirSet{{"identifier", fhirDel}, {"id", fhirDel}}, ReasonMissingField, "identifier"},
		{"identifiers without value, no id", "hr", []fhirSet{{"identifier", []any{map[string]any{"system": "x"}}}, {"id", fhirDel}}, ReasonMissingField, "identifier"},
		{"identifier not an array", "hr", []fhirSet{{"identifier", map[string]any{"value": "x"}}}, ReasonInvalidType, "identifier"},
		{"identifier value a number", "hr", []fhirSet{{"identifier.0.value", 7}}, ReasonInvalidType, "identifier.value"},
		{"subject missing", "hr", []fhirSet{{"subject", fhirDel}}, ReasonMissingField, "subject.reference"},
		{"subject by identifier only", "hr", []fhirSet{{"subject", map[string]any{"identifier": map[string]any{"value": "u-42"}}}}, ReasonMissingField, "subject.reference"},
		{"subject bare id", "hr", []fhirSet{{"subject.reference", "u-42"}}, ReasonInvalidIdentifier, "subject.reference"},
		{"subject a Group", "hr", []fhirSet{{"subject.reference", "Group/g-1"}}, ReasonInvalidIdentifier, "subject.reference"},
		{"subject absolute URL", "hr", []fhirSet{{"subject.reference", "https://fhir.example/Patient/u-42"}}, ReasonInvalidIdentifier, "subject.reference"},
		{"subject versioned", "hr", []fhirSet{{"subject.reference", "Patient/u-42/_history/2"}}, ReasonInvalidIdentifier, "subject.reference"},
		{"subject empty id", "hr", []fhirSet{{"subject.reference", "Patient/"}}, ReasonInvalidIdentifier, "subject.reference"},
		{"subject not an object", "hr", []fhirSet{{"subject", "Patient/u-42"}}, ReasonInvalidType, "subject"},
		{"device missing", "hr", []fhirSet{{"device", fhirDel}}, ReasonMissingField, "device.reference"},
		{"device a Patient", "hr", []fhirSet{{"device.reference", "Patient/u-42"}}, ReasonInvalidIdentifier, "device.reference"},
		{"unknown LOINC code", "hr", []fhirSet{{"code.coding.0.code", "1234-5"}}, ReasonUnknownMetric, "code.coding"},
		{"diastolic alone is not a metric", "hr", []fhirSet{{"code.coding.0.code", "8462-4"}}, ReasonUnknownMetric, "code.coding"},
		{"known code, other system", "hr", []fhirSet{{"code.coding.0.system", "http://snomed.info/sct"}}, ReasonUnknownMetric, "code.coding"},
		{"no coding", "hr", []fhirSet{{"code.coding", []any{}}}, ReasonUnknownMetric, "code.coding"},
		{"no code", "hr", []fhirSet{{"code", fhirDel}}, ReasonMissingField, "code.coding"},
		{"value as string", "hr", []fhirSet{{"valueQuantity.value", "72"}}, ReasonInvalidType, "valueQuantity.value"},
		{"value missing", "hr", []fhirSet{{"valueQuantity.value", fhirDel}}, ReasonMissingField, "valueQuantity.value"},
		{"valueQuantity missing", "hr", []fhirSet{{"valueQuantity", fhirDel}}, ReasonMissingField, "valueQuantity.value"},
		{"valueQuantity not an object", "hr", []fhirSet{{"valueQuantity", 72}}, ReasonInvalidType, "valueQuantity"},
		{"value with comparator", "hr", []fhirSet{{"valueQuantity.comparator", ">"}}, ReasonInvalidValue, "valueQuantity.comparator"},
		{"unknown UCUM code", "hr", []fhirSet{{"valueQuantity.code", "{beats}/min"}}, ReasonUnknownUnit, "valueQuantity.code"},
		{"unit text without UCUM system", "hr", []fhirSet{{"valueQuantity.system", fhirDel}}, ReasonUnknownUnit, "valueQuantity.unit"},
		{"no unit at all", "hr", []fhirSet{{"valueQuantity.code", fhirDel}, {"valueQuantity.unit", fhirDel}}, ReasonMissingField, "valueQuantity.code"},
		{"date-only time", "hr", []fhirSet{{"effectiveDateTime", "2016-05-02"}}, ReasonInvalidTimestamp, "effectiveDateTime"},
		{"time without zone", "hr", []fhirSet{{"effectiveDateTime", "2016-05-02T10:00:00"}}, ReasonInvalidTimestamp, "effectiveDateTime"},
		{"year only", "hr", []fhirSet{{"effectiveDateTime", "2016"}}, ReasonInvalidTimestamp, "effectiveDateTime"},
		{"effective a number", "hr", []fhirSet{{"effectiveDateTime", 1462183200000}}, ReasonInvalidType, "effectiveDateTime"},
		{"missing effective", "hr", []fhirSet{{"effectiveDateTime", fhirDel}}, ReasonMissingField, "effective[x]"},
		{"two effective[x]", "hr", []fhirSet{{"effectiveInstant", "2024-03-10T07:21:00Z"}}, ReasonInvalidValue, "effective[x]"},
		{"effectiveTiming", "hr", []fhirSet{{"effectiveDateTime", fhirDel}, {"effectiveTiming", map[string]any{}}}, ReasonInvalidType, "effectiveTiming"},
		{"date-only issued", "hr", []fhirSet{{"issued", "2024-03-10"}}, ReasonInvalidTimestamp, "issued"},
		{"bad component unit", "bp", []fhirSet{{"component.1.valueQuantity.code", "kPa"}}, ReasonUnknownUnit, "component.valueQuantity.code"},
		{"component unit not for the metric", "bp", []fhirSet{{"component.0.valueQuantity.code", "mg/dL"}, {"component.1.valueQuantity.code", "mg/dL"}}, ReasonUnknownUnit, "component.valueQuantity.code"},
		{"diastolic component missing", "bp", []fhirSet{{"component.1.code.coding.0.code", "8480-6"}}, ReasonMissingField, "component"},
		{"no components", "bp", []fhirSet{{"component", fhirDel}, {"valueQuantity", map[string]any{"value": 120, "system": fhirUCUM, "code": "mm[Hg]"}}}, ReasonMissingField, "component"},
		{"component value as string", "bp", []fhirSet{{"component.0.valueQuantity.value", "118"}}, ReasonInvalidType, "component.valueQuantity.value"},
		{"degF as text", "temp", []fhirSet{{"valueQuantity.code", "degF"}}, ReasonUnknownUnit, "valueQuantity.code"},
		{"steps at an instant", "steps", []fhirSet{{"effectivePeriod", fhirDel}, {"effectiveDateTime", "2024-03-10T11:00:00Z"}}, ReasonInvalidInterval, "effectivePeriod.end"},
		{"steps period without end", "steps", []fhirSet{{"effectivePeriod.end", fhirDel}}, ReasonInvalidInterval, "effectivePeriod.end"},
		{"steps period backwards", "steps", []fhirSet{{"effectivePeriod.end", "2024-03-10T10:00:00Z"}}, ReasonInvalidInterval, "effectivePeriod.end"},
		{"period without start", "steps", []fhirSet{{"effectivePeriod.start", fhirDel}}, ReasonMissingField, "effectivePeriod.start"},
		{"date-only period end", "steps", []fhirSet{{"effectivePeriod.end", "2024-03-11"}}, ReasonInvalidTimestamp, "effectivePeriod.end"},
		{"unknown sleep stage", "sleep", []fhirSet{{"valueCodeableConcept.coding.0.code", "nap"}}, ReasonInvalidValue, "valueCodeableConcept.coding.code"},
		{"sleep stage missing", "sleep", []fhirSet{{"valueCodeableConcept", fhirDel}}, ReasonMissingField, "valueCodeableConcept"},
		{"sleep stage text unknown", "sleep", []fhirSet{{"valueCodeableConcept", map[string]any{"text": "dozing"}}}, ReasonInvalidValue, "valueCodeableConcept.text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := fhirBase(t, tc.base)
			for _, e := range tc.edits {
				fhirEdit(t, doc, e.path, e.v)
			}
			body, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			items, err := decodeFHIR(body)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != 1 {
				t.Fatalf("got %d items", len(items))
			}
			it := items[0]
			if it.rej == nil {
				t.Fatalf("accepted: %s", fhirShow(it.in))
			}
			if it.rej.Reason != tc.reason || it.rej.Field != tc.field {
				t.Errorf("got %s on %q (%s), want %s on %q", it.rej.Reason, it.rej.Field, it.rej.Message, tc.reason, tc.field)
			}
			if it.in.Metric != nil {
				t.Errorf("a rejected item carries a metric: %s", fhirShow(it.in))
			}
			if !bytes.Equal(it.raw, body) {
				t.Errorf("raw is not the posted resource")
			}
		})
	}
}

// TestDecodeFHIRRejectedKeepsIDs: a rejected Observation still names its
// event and user, for the verdict and the dead letter's key.
// FHIR revisions: amended and corrected Observations are corrections,
// entered-in-error a withdrawal, ordered by meta.versionId, else
// meta.lastUpdated, else issued, else arrival.
func TestDecodeFHIRRevisions(t *testing.T) {
	tests := []struct {
		name      string
		edits     []fhirSet
		revision  *int64
		arrival   bool
		withdrawn bool
	}{
		{"final", nil, nil, false, false},
		{"final version 1", []fhirSet{{"meta", map[string]any{"versionId": "1"}}}, nil, false, false},
		{"final version 2", []fhirSet{{"meta", map[string]any{"versionId": "2"}}}, fhirI64(1), false, false},
		{"final opaque version", []fhirSet{{"meta", map[string]any{"versionId": "W/abc", "lastUpdated": "2024-03-10T08:00:00Z"}}}, nil, false, false},
		{"preliminary", []fhirSet{{"status", "preliminary"}, {"meta", map[string]any{"lastUpdated": "2024-03-10T08:00:00Z"}}}, nil, false, false},
		{"amended version 3", []fhirSet{{"status", "amended"}, {"meta", map[string]any{"versionId": "3", "lastUpdated": "2024-03-10T08:00:00Z"}}}, fhirI64(2), false, false},
		{"corrected by lastUpdated", []fhirSet{{"status", "corrected"}, {"meta", map[string]any{"versionId": "x", "lastUpdated": "2024-03-10T08:00:00Z"}}}, fhirMs(t, "2024-03-10T08:00:00Z"), false, false},
		{"corrected by issued", []fhirSet{{"status", "corrected"}}, fhirMs(t, "2024-03-10T07:21:05.250Z"), false, false},
		{"corrected by arrival", []fhirSet{{"status", "corrected"}, {"issued", fhirDel}}, nil, true, false},
		{"entered-in-error", []fhirSet{{"status", "entered-in-error"}, {"meta", map[string]any{"versionId": "2"}}, {"valueQuantity", fhirDel}}, fhirI64(1), false, true},
		{"entered-in-error, value not read", []fhirSet{{"status", "entered-in-error"}, {"issued", fhirDel}, {"valueQuantity", "?"}}, nil, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := fhirBase(t, "hr")
			for _, e := range tc.edits {
				fhirEdit(t, doc, e.path, e.v)
			}
			body, _ := json.Marshal(doc)
			items, err := decodeFHIR(body)
			if err != nil || len(items) != 1 || items[0].rej != nil {
				t.Fatalf("items %+v, err %v", items, err)
			}
			in := items[0].in
			if !reflect.DeepEqual(in.Revision, tc.revision) || in.RevisionOnArrival != tc.arrival || in.withdrawal() != tc.withdrawn {
				t.Fatalf("got %s", fhirShow(in))
			}
			if tc.withdrawn && (in.Value != nil || in.Unit != nil) {
				t.Fatalf("a withdrawal's value was read: %s", fhirShow(in))
			}
			cc := checkContext{tenant: "t", gateway: "g", format: "fhir", now: time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)}
			rd, rej := cc.CheckReading(&in)
			if rej != nil {
				t.Fatalf("check: %+v", rej)
			}
			want := int64(0)
			switch {
			case tc.arrival:
				want = cc.now.UnixMilli()
			case tc.revision != nil:
				want = *tc.revision
			}
			if rd.Revision != want || rd.Withdrawn != tc.withdrawn {
				t.Fatalf("reading revision %d withdrawn %v, want %d %v", rd.Revision, rd.Withdrawn, want, tc.withdrawn)
			}
		})
	}
}

func fhirI64(v int64) *int64 { return &v }

func TestDecodeFHIRRejectedKeepsIDs(t *testing.T) {
	doc := fhirBase(t, "hr")
	fhirEdit(t, doc, "status", "cancelled")
	fhirEdit(t, doc, "device", fhirDel)
	body, _ := json.Marshal(doc)
	items, err := decodeFHIR(body)
	if err != nil || len(items) != 1 || items[0].rej == nil {
		t.Fatalf("items %+v, err %v", items, err)
	}
	want := Input{EventID: str("acme-hr-000123"), UserID: str("u-42")}
	if !reflect.DeepEqual(items[0].in, want) {
		t.Errorf("got %s", fhirShow(items[0].in))
	}
}

func TestDecodeFHIRBundleEntries(t *testing.T) {
	hr := string(readFHIRFixture(t, "heart-rate.json"))
	body := `{"resourceType":"Bundle","type":"batch","entry":[` + `{"resource":` + hr + `}, 7, {}, {"resource":null}, {"resource":[1]},` +
		`{"resource":{"resourceType":"Observation"}}, {"resource":{"id":"x"}}, {"resource":` + hr + `}]}`
	items, err := decodeFHIR([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ reason, field string }{
		{"", ""},
		{ReasonMalformedItem, "entry.resource"},
		{ReasonMalformedItem, "entry.resource"},
		{ReasonMalformedItem, "entry.resource"},
		{ReasonMalformedItem, "entry.resource"},
		{ReasonMissingField, "status"},
		{ReasonMalformedItem, "resourceType"},
		{"", ""},
	}
	if len(items) != len(want) {
		t.Fatalf("got %d items, want %d", len(items), len(want))
	}
	for i, w := range want {
		it := items[i]
		if !json.Valid(it.raw) {
			t.Errorf("item %d: raw %q is not JSON", i, it.raw)
		}
		if w.reason == "" {
			if it.rej != nil {
				t.Errorf("item %d: rejected %+v", i, it.rej)
			}
			continue
		}
		if it.rej == nil || it.rej.Reason != w.reason || it.rej.Field != w.field {
			t.Errorf("item %d: got %+v, want %s on %s", i, it.rej, w.reason, w.field)
		}
	}
	if string(items[1].raw) != "7" {
		t.Errorf("raw of a non-object entry is %q", items[1].raw)
	}

	items, err = decodeFHIR([]byte(`{"resourceType":"Bundle","type":"batch","entry":[]}`))
	if err != nil || len(items) != 0 {
		t.Errorf("empty Bundle: %d items, err %v", len(items), err)
	}
}

func TestDecodeFHIRBodyErrors(t *testing.T) {
	for _, body := range []string{
		``,
		`not json`,
		`{"resourceType":"Observation"`,
		`{"resourceType":"Observation"} trailing`,
		`[]`,
		`null`,
		`"Observation"`,
		`42`,
		`{}`,
		`{"resourceType":7}`,
		`{"resourceType":"Patient","id":"u-42"}`,
		`{"resourceType":"observation","status":"final"}`,
		`{"resourceType":"Bundle","type":"batch"}`,
		`{"resourceType":"Bundle","entry":null}`,
		`{"resourceType":"Bundle","entry":{"resource":{}}}`,
		`{"ResourceType":"Observation"}`,
	} {
		items, err := decodeFHIR([]byte(body))
		if err == nil {
			t.Errorf("%q: no error, %d items", body, len(items))
		}
		if items != nil {
			t.Errorf("%q: items along with the error", body)
		}
	}
}

// TestDecodeFHIRRawIsACopy: items stay intact when the caller reuses the
// body's buffer.
func TestDecodeFHIRRawIsACopy(t *testing.T) {
	for _, name := range []string{"heart-rate.json", "bundle.json"} {
		body := readFHIRFixture(t, name)
		items, err := decodeFHIR(body)
		if err != nil {
			t.Fatal(err)
		}
		saved := make([]string, len(items))
		for i, it := range items {
			saved[i] = string(it.raw)
		}
		for i := range body {
			body[i] = 'x'
		}
		for i, it := range items {
			if string(it.raw) != saved[i] {
				t.Errorf("%s item %d: raw aliases the body", name, i)
			}
		}
	}
}

// fhirUsable says what an accepted Input lacks for CheckReading ("" if
// nothing).
func fhirUsable(in Input) string {
	for _, f := range []struct {
		name string
		ok   bool
	}{{"event_id", in.EventID != nil}, {"user_id", in.UserID != nil}, {"device_id", in.DeviceID != nil},
		{"metric", in.Metric != nil}, {"unit", in.Unit != nil}, {"measured_at", in.MeasuredAt != nil}} {
		if !f.ok {
			return f.name + " is nil"
		}
	}
	m, ok := metric.Lookup(*in.Metric)
	if !ok {
		return "unknown metric " + *in.Metric
	}
	if _, ok := m.Canonical(0, *in.Unit); !ok {
		return "unit " + *in.Unit + " not accepted"
	}
	if in.Value == nil && m.Shape != metric.Stage {
		return "value is nil"
	}
	for _, v := range []*float64{in.Value, in.Diastolic} {
		if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
			return "non-finite value"
		}
	}
	switch m.Shape {
	case metric.Pair:
		if in.Diastolic == nil {
			return "diastolic is nil"
		}
	case metric.Interval, metric.Stage:
		if in.PeriodEnd == nil || *in.PeriodEnd <= *in.MeasuredAt {
			return "no period after measured_at"
		}
		if m.Shape == metric.Stage && (in.Stage == nil || !m.HasStage(*in.Stage)) {
			return "no valid stage"
		}
	}
	return ""
}

func FuzzDecodeFHIR(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "fhir", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"resourceType":"Observation","status":"final","status":"amended","code":{"coding":[{"code":"8867-4","code":"x"}]}}`))
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation"},"resource":{}}],"entry":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		body := bytes.Clone(data)
		items, err := decodeFHIR(body)
		if err != nil {
			if items != nil {
				t.Fatalf("items along with error %v", err)
			}
			return
		}
		saved := make([]string, len(items))
		for i, it := range items {
			if !json.Valid(it.raw) {
				t.Fatalf("item %d: raw %q is not JSON", i, it.raw)
			}
			saved[i] = string(it.raw)
			if it.rej != nil {
				if it.rej.Reason == "" || it.rej.Field == "" || it.rej.Message == "" {
					t.Fatalf("item %d: incomplete rejection %+v", i, it.rej)
				}
				if it.in.Metric != nil || fhirUsable(it.in) == "" {
					t.Fatalf("item %d: rejected (%+v) but carries a usable input %s", i, it.rej, fhirShow(it.in))
				}
				continue
			}
			if problem := fhirUsable(it.in); problem != "" {
				t.Fatalf("item %d: accepted but %s: %s", i, problem, fhirShow(it.in))
			}
		}
		for i := range body {
			body[i] = 0
		}
		for i, it := range items {
			if string(it.raw) != saved[i] {
				t.Fatalf("item %d: raw aliases the body", i)
			}
		}
	})
}
