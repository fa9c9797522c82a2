package ingest

import (
	"bytes"
	"encoding/json"
)

// The JSON wire forms. Pointers tell a missing field from a zero value;
// times are RFC 3339 strings with a zone.

type jsonReading struct {
	EventID    *string  `json:"event_id"`
	UserID     *string  `json:"user_id"`
	DeviceID   *string  `json:"device_id"`
	Metric     *string  `json:"metric"`
	Value      *float64 `json:"value"`
	Unit       *string  `json:"unit"`
	MeasuredAt *string  `json:"measured_at"`
	ReceivedAt *string  `json:"received_at"`
	PeriodEnd  *string  `json:"period_end"`
	Diastolic  *float64 `json:"diastolic"`
	Stage      *string  `json:"stage"`
	Sequence   *int64   `json:"sequence"`
	Revision   *int64   `json:"revision"`
	Withdrawn  *bool    `json:"withdrawn"`
}

type jsonDevice struct {
	EventID    *string  `json:"event_id"`
	UserID     *string  `json:"user_id"`
	DeviceID   *string  `json:"device_id"`
	Kind       *string  `json:"kind"`
	Model      *string  `json:"model"`
	Firmware   *string  `json:"firmware"`
	BatteryPct *float64 `json:"battery_pct"`
	OccurredAt *string  `json:"occurred_at"`
	ReceivedAt *string  `json:"received_at"`
}

type jsonProfile struct {
	EventID    *string `json:"event_id"`
	UserID     *string `json:"user_id"`
	Kind       *string `json:"kind"`
	BirthYear  *int32  `json:"birth_year"`
	Sex        *string `json:"sex"`
	Region     *string `json:"region"`
	OccurredAt *string `json:"occurred_at"`
	ReceivedAt *string `json:"received_at"`
}

// decodeItem unmarshals one batch item into v, turning a JSON error into a
// rejection that names the field. keys are v's JSON keys: an item that
// names one of them twice is refused (see duplicateKey).
func decodeItem(raw json.RawMessage, v any, keys []string) *Rejection {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return reject(ReasonMalformedItem, "", "item must be a JSON object")
	}
	if k := duplicateKey(raw, keys); k != "" {
		return reject(ReasonDuplicateKey, k, "%q names a field the item already has (keys match ignoring case); send each field once", truncate(k))
	}
	if err := json.Unmarshal(raw, v); err != nil {
		if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
			return reject(ReasonInvalidType, te.Field, "%s must be a JSON %s, got %s", te.Field, jsonTypeName(te.Type.Kind().String()), te.Value)
		}
		return reject(ReasonMalformedItem, "", "item is not a valid JSON object: %v", err)
	}
	return nil
}

func jsonTypeName(goKind string) string {
	switch goKind {
	case "float64":
		return "number"
	case "int32", "int64":
		return "integer"
	case "string":
		return "string"
	case "bool":
		return "boolean"
	default:
		return goKind
	}
}

// times parses the optional RFC 3339 fields of an item into epoch ms.
func times(fields ...timeField) *Rejection {
	for _, f := range fields {
		if f.in == nil {
			continue
		}
		ms, r := parseTime(f.name, *f.in)
		if r != nil {
			return r
		}
		*f.out = &ms
	}
	return nil
}

type timeField = struct {
	name string
	in   *string
	out  **int64
}

// readingFromJSON turns one JSON item into an Input.
func readingFromJSON(raw json.RawMessage) (Input, *Rejection) {
	var j jsonReading
	if r := decodeItem(raw, &j, readingKeys); r != nil {
		return Input{}, r
	}
	return j.input(new([3]int64))
}

// input is the Input of a decoded JSON reading; its times are parsed into
// ms, which the Input points into. On a bad time the Input keeps the
// times before it, as times does.
func (j *jsonReading) input(ms *[3]int64) (Input, *Rejection) {
	in := Input{EventID: j.EventID, UserID: j.UserID, DeviceID: j.DeviceID, Metric: j.Metric, Unit: j.Unit,
		Value: j.Value, Diastolic: j.Diastolic, Stage: j.Stage, Sequence: j.Sequence, Revision: j.Revision, Withdrawn: j.Withdrawn}
	var out [3]*int64
	var r *Rejection
	for k, f := range [3]struct {
		name string
		in   *string
	}{{"measured_at", j.MeasuredAt}, {"received_at", j.ReceivedAt}, {"period_end", j.PeriodEnd}} {
		if f.in == nil {
			continue
		}
		if ms[k], r = parseTime(f.name, *f.in); r != nil {
			break
		}
		out[k] = &ms[k]
	}
	in.MeasuredAt, in.ReceivedAt, in.PeriodEnd = out[0], out[1], out[2]
	return in, r
}

func deviceFromJSON(raw json.RawMessage) (DeviceInput, *Rejection) {
	var j jsonDevice
	if r := decodeItem(raw, &j, deviceKeys); r != nil {
		return DeviceInput{}, r
	}
	in := DeviceInput{EventID: j.EventID, UserID: j.UserID, DeviceID: j.DeviceID, Kind: j.Kind, Model: j.Model,
		Firmware: j.Firmware, BatteryPct: j.BatteryPct}
	r := times(timeField{"occurred_at", j.OccurredAt, &in.OccurredAt}, timeField{"received_at", j.ReceivedAt, &in.ReceivedAt})
	return in, r
}

func profileFromJSON(raw json.RawMessage) (ProfileInput, *Rejection) {
	var j jsonProfile
	if r := decodeItem(raw, &j, profileKeys); r != nil {
		return ProfileInput{}, r
	}
	in := ProfileInput{EventID: j.EventID, UserID: j.UserID, Kind: j.Kind, BirthYear: j.BirthYear, Sex: j.Sex, Region: j.Region}
	r := times(timeField{"occurred_at", j.OccurredAt, &in.OccurredAt}, timeField{"received_at", j.ReceivedAt, &in.ReceivedAt})
	return in, r
}
