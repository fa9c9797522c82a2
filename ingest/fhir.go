package ingest

// HL7 FHIR R4 Observation input.
//
// Health integrators post what they already produce: one Observation
// resource, or a Bundle whose entry[].resource are Observations. Each
// Observation becomes one Input, exactly as a JSON reading would, and then
// goes through CheckReading with source_format "fhir". The mapping:
//
//   - status must be final, amended, corrected, preliminary or
//     entered-in-error: measurements that happened, their corrections and
//     their withdrawal. registered, cancelled, unknown or any other code is
//     invalid_value, a missing status missing_field.
//   - revisions: amended and corrected re-send an Observation (same
//     identifier or id, so the same event id) with a corrected value, and
//     entered-in-error withdraws it. The revision orders an Observation's
//     versions: meta.versionId - 1 when the versionId is a whole number of
//     2 or more; else the epoch milliseconds of meta.lastUpdated, else of
//     issued; else the time ingest received it (arrival order). A sender
//     should use one of these consistently for an Observation. final and
//     preliminary are revisions only when meta.versionId is a whole number
//     of 2 or more (preliminary version 1, then final version 2 with an
//     updated value); otherwise they are the Observation as first sent. An
//     entered-in-error Observation names the reading it withdraws (subject,
//     device, code, effective[x]); its value is not read.
//   - event_id is the first identifier[].value (of the first identifier that
//     has one), else the resource id.
//   - user_id is the <id> of subject.reference "Patient/<id>", device_id the
//     <id> of device.reference "Device/<id>". Only those relative
//     references are understood (no bare ids, absolute URLs, versioned or
//     contained references); the ids themselves are judged by CheckReading.
//   - metric is the registry name of the first code.coding[] whose system
//     is http://loinc.org and whose code the registry knows (the panel
//     85354-9 or the systolic 8480-6 both mean blood_pressure).
//   - value and unit come from valueQuantity: value must be a JSON number
//     (no comparator such as "<" is accepted: it is not an exact reading);
//     the unit is valueQuantity.code when valueQuantity.system is UCUM
//     (http://unitsofmeasure.org), else valueQuantity.unit, and must be one
//     the metric accepts.
//   - blood pressure reads component[]: the component coded 8480-6 gives
//     value and unit, the one coded 8462-4 gives diastolic, in the same
//     unit. A top-level valueQuantity is ignored.
//   - a sleep stage (93832-4) takes its stage from
//     valueCodeableConcept.coding[0].code, else valueCodeableConcept.text,
//     lower-cased; its value from valueQuantity when present, else the value
//     is left to CheckReading (the period's length in minutes) and the unit
//     is the metric's canonical one.
//   - effectiveDateTime or effectiveInstant is measured_at; effectivePeriod
//     gives measured_at (start) and period_end (end), and is required, with
//     an end after its start, by interval metrics (steps, energy) and sleep
//     stages. Exactly one effective[x] must be given; effectiveTiming is not
//     understood. issued is received_at. Every time must be a full instant
//     with a zone: FHIR's partial dates ("2016", "2016-05-02") and
//     zone-less date-times are invalid_timestamp.
//
// An Observation that breaks a rule is rejected with the first problem found,
// in the order above; its field is the FHIR path of the offending element
// (status, identifier, subject.reference, code.coding, valueQuantity.value,
// component.valueQuantity.code, effective[x], effectivePeriod.end, ...). JSON
// null counts as absent. A Bundle's type is not interpreted: every entry is
// judged on its own, so a "transaction" Bundle is accepted entry by entry,
// not all or nothing.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vitalshq/vitals/internal/metric"
)

// FHIR code systems Vitals understands.
const (
	fhirLOINC = "http://loinc.org"
	fhirUCUM  = "http://unitsofmeasure.org"
)

// fhirStatuses are the Observation statuses Vitals takes: measurements
// that happened, their corrections and their withdrawal (true: always a
// revision).
var fhirStatuses = map[string]bool{"final": false, "preliminary": false, "amended": true, "corrected": true, "entered-in-error": true}

// fhirStatusList is fhirStatuses for messages.
const fhirStatusList = "final, amended, corrected, preliminary or entered-in-error"

// fhirItem is one Observation of a posted body: its raw JSON (kept for the
// dead-letter topic), and either the reading it describes or why it cannot
// be one. Either rej is nil and in is complete enough for CheckReading, or
// rej is set and in holds at most the ids that could be read (for keying
// the dead letter). raw is always valid JSON and never aliases the posted
// body.
type fhirItem struct {
	raw json.RawMessage
	in  Input
	rej *Rejection
}

// decodeFHIR reads one Observation resource or a Bundle whose
// entry[].resource are Observations, in order.
//
// It returns an error only when the body as a whole is unusable (not JSON,
// not an object, resourceType neither Observation nor Bundle, a Bundle
// without an entry array); problems with one Observation become that item's
// Rejection, and never affect its neighbours. A Bundle entry that is not an
// object or has no resource is malformed_item on entry.resource (its raw is
// the entry); a resource that is not an Observation is malformed_item on
// resourceType. An empty entry array yields no items and no error. Nothing
// is bounded here: the caller limits body size and item count.
func decodeFHIR(body []byte) ([]fhirItem, error) {
	var top fhirObject
	if err := json.Unmarshal(body, &top); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) || !json.Valid(body) {
			return nil, fmt.Errorf("body is not JSON: %v", err)
		}
		return nil, errors.New("body is not a JSON object: post an Observation or a Bundle resource")
	}
	if top == nil { // the literal null
		return nil, errors.New("body is not a JSON object: post an Observation or a Bundle resource")
	}
	rt, _, r := top.str("resourceType", "resourceType")
	if r != nil {
		return nil, errors.New("resourceType must be a string: Observation or Bundle")
	}
	switch rt {
	case "Observation":
		return []fhirItem{decodeObservation(bytes.Clone(bytes.TrimSpace(body)), top)}, nil
	case "Bundle":
		if k := duplicatePath(body, 1); k != "" {
			return nil, fmt.Errorf("the Bundle names %q twice; send each member once", fhirTrunc(k))
		}
		entries, ok, r := top.arr("entry", "entry")
		if r != nil || !ok {
			return nil, errors.New("a Bundle must have an entry array whose resources are Observations")
		}
		items := make([]fhirItem, 0, len(entries))
		for _, e := range entries {
			items = append(items, decodeEntry(e))
		}
		return items, nil
	case "":
		return nil, errors.New("resourceType is required: Observation or Bundle")
	default:
		return nil, fmt.Errorf("resourceType %q is not accepted: post an Observation or a Bundle of Observations", fhirTrunc(rt))
	}
}

// decodeEntry turns one Bundle entry into an item.
func decodeEntry(entry json.RawMessage) fhirItem {
	e, r := asObject(entry, "entry")
	if r == nil {
		if k := duplicatePath(entry, 1); k != "" { // the resource itself: decodeObservation
			return fhirItem{raw: entry, rej: duplicateMember("entry." + k)}
		}
	}
	if r != nil {
		return fhirItem{raw: entry, rej: reject(ReasonMalformedItem, "entry.resource", "each Bundle entry must be an object with a resource")}
	}
	res, ok := e.get("resource")
	if !ok {
		return fhirItem{raw: entry, rej: reject(ReasonMalformedItem, "entry.resource", "each Bundle entry must have a resource")}
	}
	obj, r := asObject(res, "entry.resource")
	if r != nil {
		return fhirItem{raw: res, rej: reject(ReasonMalformedItem, "entry.resource", "entry.resource must be an Observation resource (a JSON object)")}
	}
	return decodeObservation(res, obj)
}

// decodeObservation maps one resource, already split into its members.
func decodeObservation(raw json.RawMessage, obj fhirObject) fhirItem {
	if k := duplicatePath(raw, 0); k != "" {
		return fhirItem{raw: raw, rej: duplicateMember(k)}
	}
	in, r := observationInput(obj)
	return fhirItem{raw: raw, in: in, rej: r}
}

// duplicateMember rejects a resource in which one object names a member
// twice: read into a map, the last would silently win.
func duplicateMember(path string) *Rejection {
	return reject(ReasonDuplicateKey, fhirTrunc(path), "%s appears twice in one object; send each member once", fhirTrunc(path))
}

// observationInput applies the mapping documented at the top of this file.
// On a rejection it still returns the ids it could read (event, user,
// device), so that the caller can key the dead letter and name the event in
// its verdict; such an Input never has a metric, so it is never complete.
func observationInput(obj fhirObject) (Input, *Rejection) {
	rt, ok, r := obj.str("resourceType", "resourceType")
	if r != nil {
		return Input{}, reject(ReasonMalformedItem, "resourceType", "resourceType must be the string Observation")
	}
	if !ok || rt != "Observation" {
		return Input{}, reject(ReasonMalformedItem, "resourceType", "only Observation resources are accepted, got resourceType %q", fhirTrunc(rt))
	}

	var ids Input
	eventID, rEvent := fhirEventID(obj)
	if rEvent == nil {
		ids.EventID = &eventID
	}
	userID, rUser := fhirReference(obj, "subject", "Patient")
	if rUser == nil {
		ids.UserID = &userID
	}
	deviceID, rDevice := fhirReference(obj, "device", "Device")
	if rDevice == nil {
		ids.DeviceID = &deviceID
	}

	status, ok, r := obj.str("status", "status")
	if r != nil {
		return ids, r
	}
	if !ok {
		return ids, reject(ReasonMissingField, "status", "status is required: "+fhirStatusList)
	}
	revises, known := fhirStatuses[status]
	if !known {
		return ids, reject(ReasonInvalidValue, "status", "status %q is not accepted: only %s observations are measurements, corrections or withdrawals", fhirTrunc(status), fhirStatusList)
	}
	for _, r := range []*Rejection{rEvent, rUser, rDevice} {
		if r != nil {
			return ids, r
		}
	}

	in := ids
	revision, r := fhirRevision(obj, revises)
	if r != nil {
		return ids, r
	}
	switch {
	case revision > 0:
		in.Revision = &revision
	case revision < 0:
		in.RevisionOnArrival = true
	}
	m, r := fhirMetric(obj)
	if r != nil {
		return ids, r
	}
	in.Metric = &m.Name
	if status == "entered-in-error" {
		withdrawn := true
		in.Withdrawn = &withdrawn
	} else if r := fhirValue(obj, m, &in); r != nil {
		return ids, r
	}
	if r := fhirTimes(obj, m, &in); r != nil {
		return ids, r
	}
	return in, nil
}

// fhirRevision is the revision of an Observation (see the top of the
// file): 0 for the Observation as first sent, -1 for a correction or
// withdrawal ordered by its arrival. always says the status is a
// correction or withdrawal.
func fhirRevision(obj fhirObject, always bool) (int64, *Rejection) {
	meta, hasMeta, r := obj.obj("meta", "meta")
	if r != nil {
		return 0, r
	}
	var version, updated string
	var hasUpdated bool
	if hasMeta {
		if version, _, r = meta.str("versionId", "meta.versionId"); r != nil {
			return 0, r
		}
		if updated, hasUpdated, r = meta.str("lastUpdated", "meta.lastUpdated"); r != nil {
			return 0, r
		}
	}
	if n, err := strconv.ParseInt(version, 10, 64); err == nil && n >= 2 {
		return n - 1, nil
	}
	if !always {
		return 0, nil
	}
	if hasUpdated {
		return parseTime("meta.lastUpdated", updated)
	}
	issued, r := obj.time("issued", "issued")
	switch {
	case r != nil:
		return 0, r
	case issued != nil:
		return *issued, nil
	}
	return -1, nil
}

// fhirEventID is the first identifier[].value, else the resource id.
func fhirEventID(obj fhirObject) (string, *Rejection) {
	ids, _, r := obj.arr("identifier", "identifier")
	if r != nil {
		return "", r
	}
	for _, raw := range ids {
		id, r := asObject(raw, "identifier")
		if r != nil {
			return "", r
		}
		v, ok, r := id.str("value", "identifier.value")
		if r != nil {
			return "", r
		}
		if ok {
			return v, nil
		}
	}
	v, ok, r := obj.str("id", "id")
	if r != nil {
		return "", r
	}
	if !ok {
		return "", reject(ReasonMissingField, "identifier", "identifier[].value (or else the resource id) is required: it is the event id that makes retries idempotent")
	}
	return v, nil
}

// fhirReference extracts <id> from element.reference "<typ>/<id>".
func fhirReference(obj fhirObject, element, typ string) (string, *Rejection) {
	path := element + ".reference"
	ref, ok, r := obj.obj(element, element)
	if r != nil {
		return "", r
	}
	var s string
	if ok {
		if s, ok, r = ref.str("reference", path); r != nil {
			return "", r
		}
	}
	if !ok {
		return "", reject(ReasonMissingField, path, "%s is required, as %s/<id>", path, typ)
	}
	id, found := strings.CutPrefix(s, typ+"/")
	if !found || id == "" || strings.Contains(id, "/") {
		return "", reject(ReasonInvalidIdentifier, path, "%s must be a relative reference %s/<id>, got %q", path, typ, fhirTrunc(s))
	}
	return id, nil
}

// fhirKnownLOINC lists the codes the registry knows, for error messages.
var fhirKnownLOINC = func() string {
	var b strings.Builder
	for i, n := range metric.Names() {
		m := metric.MustLookup(n)
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", m.LOINC, m.Name)
	}
	return b.String()
}()

// fhirMetric finds the first registered LOINC code of code.coding[].
func fhirMetric(obj fhirObject) (metric.Metric, *Rejection) {
	codes, r := loincCodes(obj, "code")
	if r != nil {
		return metric.Metric{}, r
	}
	for _, c := range codes {
		if m, ok := metric.ByLOINC(c); ok {
			return m, nil
		}
	}
	return metric.Metric{}, reject(ReasonUnknownMetric, "code.coding", "no code.coding has system %s and a LOINC code Vitals knows; expected one of %s", fhirLOINC, fhirKnownLOINC)
}

// loincCodes lists the LOINC codes of parent.code.coding[], in order.
func loincCodes(parent fhirObject, path string) ([]string, *Rejection) {
	cc, ok, r := parent.obj("code", path)
	if r != nil {
		return nil, r
	}
	if !ok {
		return nil, reject(ReasonMissingField, path+".coding", "%s.coding is required: a LOINC code (system %s)", path, fhirLOINC)
	}
	codings, _, r := cc.arr("coding", path+".coding")
	if r != nil {
		return nil, r
	}
	var out []string
	for _, raw := range codings {
		c, r := asObject(raw, path+".coding")
		if r != nil {
			return nil, r
		}
		sys, _, r := c.str("system", path+".coding.system")
		if r != nil {
			return nil, r
		}
		code, _, r := c.str("code", path+".coding.code")
		if r != nil {
			return nil, r
		}
		if sys == fhirLOINC && code != "" {
			out = append(out, code)
		}
	}
	return out, nil
}

// fhirValue fills Value, Unit, Diastolic and Stage as the metric's shape
// requires.
func fhirValue(obj fhirObject, m metric.Metric, in *Input) *Rejection {
	switch m.Shape {
	case metric.Pair:
		return fhirPair(obj, m, in)
	case metric.Stage:
		if r := fhirStage(obj, m, in); r != nil {
			return r
		}
		if _, ok := obj.get("valueQuantity"); !ok {
			in.Unit = &m.Unit // the value is the period's length, in the canonical unit
			return nil
		}
	}
	v, unit, r := fhirQuantity(obj, "valueQuantity", m)
	if r != nil {
		return r
	}
	in.Value, in.Unit = &v, &unit
	return nil
}

// fhirPair reads blood pressure's two components.
func fhirPair(obj fhirObject, m metric.Metric, in *Input) *Rejection {
	comps, _, r := obj.arr("component", "component")
	if r != nil {
		return r
	}
	var first, second fhirObject
	for _, raw := range comps {
		c, r := asObject(raw, "component")
		if r != nil {
			return r
		}
		codes, r := loincCodes(c, "component.code")
		if r != nil {
			return r
		}
		for _, code := range codes {
			switch {
			case code == m.FirstLOINC && first == nil:
				first = c
			case m.Second != nil && code == m.Second.LOINC && second == nil:
				second = c
			}
		}
	}
	if first == nil {
		return reject(ReasonMissingField, "component", "%s needs a component coded LOINC %s (the first value)", m.Name, m.FirstLOINC)
	}
	if m.Second == nil || second == nil {
		name, code := "second", "?"
		if m.Second != nil {
			name, code = m.Second.Name, m.Second.LOINC
		}
		return reject(ReasonMissingField, "component", "%s needs a component coded LOINC %s (%s)", m.Name, code, name)
	}
	v, unit, r := fhirQuantity(first, "component.valueQuantity", m)
	if r != nil {
		return r
	}
	d, dunit, r := fhirQuantity(second, "component.valueQuantity", m)
	if r != nil {
		return r
	}
	if dunit != unit {
		return reject(ReasonUnknownUnit, "component.valueQuantity.code", "the %s component's unit %q must equal the %s component's unit %q", m.Second.Name, fhirTrunc(dunit), m.FirstLOINC, fhirTrunc(unit))
	}
	in.Value, in.Unit, in.Diastolic = &v, &unit, &d
	return nil
}

// fhirStage reads a sleep stage's label from valueCodeableConcept.
func fhirStage(obj fhirObject, m metric.Metric, in *Input) *Rejection {
	const path = "valueCodeableConcept"
	cc, ok, r := obj.obj(path, path)
	if r != nil {
		return r
	}
	if !ok {
		return reject(ReasonMissingField, path, "%s is required for %s: one of %q", path, m.Name, m.Stages)
	}
	codings, _, r := cc.arr("coding", path+".coding")
	if r != nil {
		return r
	}
	var stage, field string
	found := false
	if len(codings) > 0 {
		c, r := asObject(codings[0], path+".coding")
		if r != nil {
			return r
		}
		if stage, found, r = c.str("code", path+".coding.code"); r != nil {
			return r
		}
		field = path + ".coding.code"
	}
	if !found {
		if stage, found, r = cc.str("text", path+".text"); r != nil {
			return r
		}
		field = path + ".text"
	}
	if !found {
		return reject(ReasonMissingField, path, "%s.coding[0].code or %s.text is required for %s: one of %q", path, path, m.Name, m.Stages)
	}
	stage = strings.ToLower(stage)
	if !m.HasStage(stage) {
		return reject(ReasonInvalidValue, field, "stage %q is not one of %q", fhirTrunc(stage), m.Stages)
	}
	in.Stage = &stage
	return nil
}

// fhirQuantity reads parent.valueQuantity's value and unit; path names the
// quantity in rejections.
func fhirQuantity(parent fhirObject, path string, m metric.Metric) (float64, string, *Rejection) {
	q, ok, r := parent.obj("valueQuantity", path)
	if r != nil {
		return 0, "", r
	}
	if !ok {
		return 0, "", reject(ReasonMissingField, path+".value", "%s.value is required for %s", path, m.Name)
	}
	if _, ok := q.get("comparator"); ok {
		return 0, "", reject(ReasonInvalidValue, path+".comparator", "%s.comparator is not accepted: a reading must be an exact value", path)
	}
	v, ok, r := q.num("value", path+".value")
	if r != nil {
		return 0, "", r
	}
	if !ok {
		return 0, "", reject(ReasonMissingField, path+".value", "%s.value is required for %s", path, m.Name)
	}
	sys, _, r := q.str("system", path+".system")
	if r != nil {
		return 0, "", r
	}
	code, hasCode, r := q.str("code", path+".code")
	if r != nil {
		return 0, "", r
	}
	unit, hasUnit, r := q.str("unit", path+".unit")
	if r != nil {
		return 0, "", r
	}
	unitPath := path + ".unit"
	switch {
	case sys == fhirUCUM && hasCode:
		unit, unitPath = code, path+".code"
	case !hasUnit:
		return 0, "", reject(ReasonMissingField, path+".code", "%s.code (with system %s) is required: one of %q", path, fhirUCUM, m.Units())
	}
	if _, ok := m.Canonical(0, unit); !ok {
		return 0, "", reject(ReasonUnknownUnit, unitPath, "unit %q is not accepted for %s; use one of the UCUM codes %q", fhirTrunc(unit), m.Name, m.Units())
	}
	return v, unit, nil
}

// fhirTimes fills MeasuredAt, PeriodEnd and ReceivedAt.
func fhirTimes(obj fhirObject, m metric.Metric, in *Input) *Rejection {
	dt, hasDT, r := obj.str("effectiveDateTime", "effectiveDateTime")
	if r != nil {
		return r
	}
	inst, hasInst, r := obj.str("effectiveInstant", "effectiveInstant")
	if r != nil {
		return r
	}
	per, hasPer, r := obj.obj("effectivePeriod", "effectivePeriod")
	if r != nil {
		return r
	}
	_, hasTiming := obj.get("effectiveTiming")
	n := 0
	for _, b := range []bool{hasDT, hasInst, hasPer, hasTiming} {
		if b {
			n++
		}
	}
	switch {
	case n == 0:
		return reject(ReasonMissingField, "effective[x]", "effective[x] is required: effectiveDateTime, effectiveInstant or effectivePeriod")
	case n > 1:
		return reject(ReasonInvalidValue, "effective[x]", "give only one of effectiveDateTime, effectiveInstant and effectivePeriod")
	case hasTiming:
		return reject(ReasonInvalidType, "effectiveTiming", "effectiveTiming is not accepted: use effectiveDateTime, effectiveInstant or effectivePeriod")
	}
	var at int64
	switch {
	case hasDT:
		if at, r = parseTime("effectiveDateTime", dt); r != nil {
			return r
		}
	case hasInst:
		if at, r = parseTime("effectiveInstant", inst); r != nil {
			return r
		}
	default:
		start, r := per.time("start", "effectivePeriod.start")
		if r != nil {
			return r
		}
		if start == nil {
			return reject(ReasonMissingField, "effectivePeriod.start", "effectivePeriod.start is required")
		}
		at = *start
		if in.PeriodEnd, r = per.time("end", "effectivePeriod.end"); r != nil {
			return r
		}
	}
	in.MeasuredAt = &at
	if m.Shape == metric.Interval || m.Shape == metric.Stage {
		if in.PeriodEnd == nil {
			return reject(ReasonInvalidInterval, "effectivePeriod.end", "%s is an interval: give effectivePeriod with a start and an end", m.Name)
		}
		if *in.PeriodEnd <= at {
			return reject(ReasonInvalidInterval, "effectivePeriod.end", "effectivePeriod.end must be after effectivePeriod.start")
		}
	}
	in.ReceivedAt, r = obj.time("issued", "issued")
	return r
}

// fhirObject is a JSON object split into its members, matched by exact
// (case-sensitive) name as FHIR requires.
type fhirObject map[string]json.RawMessage

// get returns the member named key; null counts as absent.
func (o fhirObject) get(key string) (json.RawMessage, bool) {
	v, ok := o[key]
	if !ok || jsonKind(v) == 'n' {
		return nil, false
	}
	return v, true
}

// str returns a string member.
func (o fhirObject) str(key, path string) (string, bool, *Rejection) {
	v, ok := o.get(key)
	if !ok {
		return "", false, nil
	}
	var s string
	if jsonKind(v) != '"' || json.Unmarshal(v, &s) != nil {
		return "", false, reject(ReasonInvalidType, path, "%s must be a string", path)
	}
	return s, true, nil
}

// num returns a number member; one beyond float64's range is non_finite_value.
func (o fhirObject) num(key, path string) (float64, bool, *Rejection) {
	v, ok := o.get(key)
	if !ok {
		return 0, false, nil
	}
	if k := jsonKind(v); k != '-' && (k < '0' || k > '9') {
		return 0, false, reject(ReasonInvalidType, path, "%s must be a JSON number", path)
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, false, reject(ReasonNonFiniteValue, path, "%s is beyond the range of a 64-bit float", path)
		}
		return 0, false, reject(ReasonInvalidType, path, "%s must be a JSON number", path)
	}
	return f, true, nil
}

// time returns a timestamp member in epoch ms; nil if it is absent.
func (o fhirObject) time(key, path string) (*int64, *Rejection) {
	s, ok, r := o.str(key, path)
	if r != nil || !ok {
		return nil, r
	}
	at, r := parseTime(path, s)
	if r != nil {
		return nil, r
	}
	return &at, nil
}

// obj returns an object member.
func (o fhirObject) obj(key, path string) (fhirObject, bool, *Rejection) {
	v, ok := o.get(key)
	if !ok {
		return nil, false, nil
	}
	m, r := asObject(v, path)
	if r != nil {
		return nil, false, r
	}
	return m, true, nil
}

// arr returns an array member.
func (o fhirObject) arr(key, path string) ([]json.RawMessage, bool, *Rejection) {
	v, ok := o.get(key)
	if !ok {
		return nil, false, nil
	}
	var a []json.RawMessage
	if jsonKind(v) != '[' || json.Unmarshal(v, &a) != nil {
		return nil, false, reject(ReasonInvalidType, path, "%s must be an array", path)
	}
	return a, true, nil
}

// asObject splits a JSON object into its members.
func asObject(v json.RawMessage, path string) (fhirObject, *Rejection) {
	var m fhirObject
	if jsonKind(v) != '{' || json.Unmarshal(v, &m) != nil || m == nil {
		return nil, reject(ReasonInvalidType, path, "%s must be an object", path)
	}
	return m, nil
}

// jsonKind is the first byte of a JSON value: '{', '[', '"', 'n', 't', 'f',
// '-' or a digit; 0 for nothing.
func jsonKind(v json.RawMessage) byte {
	for _, c := range v {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// fhirTrunc keeps echoed input short in messages.
func fhirTrunc(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
