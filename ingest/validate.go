package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// Reason codes for rejected items. They are part of the API: gateways and
// dashboards match on them, so they never change meaning.
const (
	ReasonMalformedItem     = "malformed_item"     // not a JSON object
	ReasonMissingField      = "missing_field"      // a required field is absent or null
	ReasonInvalidType       = "invalid_type"       // a field has the wrong JSON type
	ReasonInvalidIdentifier = "invalid_identifier" // an id is empty, too long or has characters outside [A-Za-z0-9._:@-]
	ReasonUnknownMetric     = "unknown_metric"     // metric is not in the registry
	ReasonUnknownUnit       = "unknown_unit"       // unit is not accepted for that metric
	ReasonNonFiniteValue    = "non_finite_value"   // NaN or ±Inf
	ReasonInvalidTimestamp  = "invalid_timestamp"  // not RFC 3339 with a zone
	ReasonFutureTimestamp   = "future_timestamp"   // further ahead than the allowed clock skew
	ReasonTooOld            = "too_old"            // older than the maximum age
)

// Rejection says why one item was refused and which field caused it.
type Rejection struct {
	Reason  string `json:"reason"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (r *Rejection) Error() string { return r.Reason + ": " + r.Message }

func reject(reason, field, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Limits bound what the syntax check accepts.
type Limits struct {
	// MaxFutureSkew is how far past the server's clock a timestamp may lie,
	// for devices whose clocks run fast.
	MaxFutureSkew time.Duration
	// MaxAge rejects readings measured longer ago than this; zero accepts
	// any age, since backfilling old exports is legitimate.
	MaxAge time.Duration
}

// jsonReading is the wire form of one reading. Pointers tell a missing field
// from a zero value.
type jsonReading struct {
	EventID    *string  `json:"event_id"`
	UserID     *string  `json:"user_id"`
	DeviceID   *string  `json:"device_id"`
	Metric     *string  `json:"metric"`
	Value      *float64 `json:"value"`
	Unit       *string  `json:"unit"`
	MeasuredAt *string  `json:"measured_at"`
	ReceivedAt *string  `json:"received_at"`
}

const maxIDLen = 128

// checkID accepts 1..128 characters from [A-Za-z0-9._:@-]: enough for UUIDs,
// ULIDs and vendor ids, and nothing that needs escaping in a log line or a
// file name.
func checkID(field, v string) *Rejection {
	if v == "" || len(v) > maxIDLen {
		return reject(ReasonInvalidIdentifier, field, "%s must be 1 to %d characters long, got %d", field, maxIDLen, len(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '@', c == '-':
		default:
			return reject(ReasonInvalidIdentifier, field, "%s has a character outside [A-Za-z0-9._:@-] at byte %d", field, i)
		}
	}
	return nil
}

// parseTime reads an RFC 3339 timestamp with a zone and returns epoch ms.
func parseTime(field, v string) (int64, *Rejection) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, reject(ReasonInvalidTimestamp, field, "%s must be an RFC 3339 timestamp with a zone, e.g. 2016-04-12T07:21:00.000Z", field)
	}
	return t.UnixMilli(), nil
}

// typeError turns a JSON unmarshal error into a rejection naming the field.
func typeError(err error) *Rejection {
	if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
		return reject(ReasonInvalidType, te.Field, "%s must be a JSON %s, got %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	return reject(ReasonMalformedItem, "", "item is not a valid JSON object: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "float64":
		return "number"
	case "string":
		return "string"
	default:
		return goKind
	}
}

// Check syntax-checks one JSON item and returns the reading it describes.
// now is the server's clock; tenant and gateway come from the request, not
// the item.
func Check(raw json.RawMessage, tenant, gateway string, now time.Time, lim Limits) (schemas.Reading, *Rejection) {
	var in jsonReading
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return schemas.Reading{}, reject(ReasonMalformedItem, "", "item must be a JSON object")
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return schemas.Reading{}, typeError(err)
	}
	// Required fields, in the order a person reads them.
	required := []struct {
		name    string
		present bool
	}{
		{"event_id", in.EventID != nil},
		{"user_id", in.UserID != nil},
		{"device_id", in.DeviceID != nil},
		{"metric", in.Metric != nil},
		{"value", in.Value != nil},
		{"unit", in.Unit != nil},
		{"measured_at", in.MeasuredAt != nil},
	}
	for _, f := range required {
		if !f.present {
			return schemas.Reading{}, reject(ReasonMissingField, f.name, "%s is required", f.name)
		}
	}
	for _, id := range []struct{ name, v string }{
		{"event_id", *in.EventID}, {"user_id", *in.UserID}, {"device_id", *in.DeviceID},
	} {
		if r := checkID(id.name, id.v); r != nil {
			return schemas.Reading{}, r
		}
	}
	m, ok := metric.Lookup(*in.Metric)
	if !ok {
		return schemas.Reading{}, reject(ReasonUnknownMetric, "metric", "metric %q is not known; see GET /v1/metrics", truncate(*in.Metric))
	}
	if *in.Unit != m.Unit {
		return schemas.Reading{}, reject(ReasonUnknownUnit, "unit", "unit %q is not accepted for %s; use %q", truncate(*in.Unit), m.Name, m.Unit)
	}
	if math.IsNaN(*in.Value) || math.IsInf(*in.Value, 0) {
		return schemas.Reading{}, reject(ReasonNonFiniteValue, "value", "value must be a finite number")
	}
	measured, r := parseTime("measured_at", *in.MeasuredAt)
	if r != nil {
		return schemas.Reading{}, r
	}
	nowMs := now.UnixMilli()
	received := nowMs
	if in.ReceivedAt != nil {
		if received, r = parseTime("received_at", *in.ReceivedAt); r != nil {
			return schemas.Reading{}, r
		}
		if received > nowMs+lim.MaxFutureSkew.Milliseconds() {
			return schemas.Reading{}, reject(ReasonFutureTimestamp, "received_at", "received_at is more than %s ahead of the server clock", lim.MaxFutureSkew)
		}
	}
	if measured > nowMs+lim.MaxFutureSkew.Milliseconds() {
		return schemas.Reading{}, reject(ReasonFutureTimestamp, "measured_at", "measured_at is more than %s ahead of the server clock", lim.MaxFutureSkew)
	}
	if lim.MaxAge > 0 && measured < nowMs-lim.MaxAge.Milliseconds() {
		return schemas.Reading{}, reject(ReasonTooOld, "measured_at", "measured_at is older than the maximum age of %s", lim.MaxAge)
	}
	return schemas.Reading{
		TenantID:   tenant,
		EventID:    *in.EventID,
		UserID:     *in.UserID,
		DeviceID:   *in.DeviceID,
		GatewayID:  gateway,
		Metric:     m.Name,
		Value:      *in.Value,
		Unit:       m.Unit,
		MeasuredAt: measured,
		ReceivedAt: received,
		IngestedAt: nowMs,
	}, nil
}

// truncate keeps echoed user input short in error messages.
func truncate(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
