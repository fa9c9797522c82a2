package ingest

import (
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/vitalshq/vitals/internal/ident"
	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// Reason codes for rejected items. They are part of the API: gateways and
// dashboards match on them, so they never change meaning.
const (
	ReasonMalformedItem     = "malformed_item"     // not a JSON object / not decodable
	ReasonMissingField      = "missing_field"      // a required field is absent or null
	ReasonInvalidType       = "invalid_type"       // a field has the wrong JSON type
	ReasonInvalidIdentifier = "invalid_identifier" // an id is empty, too long or has characters outside [A-Za-z0-9._:@-]
	ReasonUnknownMetric     = "unknown_metric"     // metric is not in the registry
	ReasonUnknownUnit       = "unknown_unit"       // unit is not accepted for that metric
	ReasonNonFiniteValue    = "non_finite_value"   // NaN or ±Inf
	ReasonInvalidValue      = "invalid_value"      // a value outside what the field can mean (negative sequence, battery above 100 %, unknown enum symbol)
	ReasonInvalidInterval   = "invalid_interval"   // period_end missing or not after measured_at
	ReasonInvalidTimestamp  = "invalid_timestamp"  // not RFC 3339 with a zone
	ReasonFutureTimestamp   = "future_timestamp"   // further ahead than the allowed clock skew
	ReasonTooOld            = "too_old"            // older than the maximum age
	ReasonBeforeTimeFloor   = "before_time_floor"  // before the earliest time accepted (Limits.MinTime)
	ReasonDuplicateKey      = "duplicate_key"      // a JSON object names a field twice (keys match ignoring case)
	ReasonInternal          = "internal"           // a defect in ingest: the item could not be encoded (never expected)
	ReasonUserErased        = "user_erased"        // the user's data key was shredded (erasure): nothing of the item is stored
)

// Rejection says why one item was refused and which field caused it.
type Rejection struct {
	Reason  string `json:"reason"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Error makes a Rejection an error: reason code, then the message.
func (r *Rejection) Error() string { return r.Reason + ": " + r.Message }

func reject(reason, field, format string, args ...any) *Rejection {
	return &Rejection{Reason: reason, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Limits bound what the syntax check accepts.
type Limits struct {
	// MaxFutureSkew is how far past the server's clock a timestamp may lie,
	// for devices whose clocks run fast.
	MaxFutureSkew time.Duration
	// MaxAge rejects events measured longer ago than this; zero accepts
	// any age, since backfilling old exports is legitimate.
	MaxAge time.Duration
	// MinTime is the earliest time an event's timestamps may name
	// (DefaultMinTime unless set): a clock reset to year 1 is a broken
	// device, not a reading, and ClickHouse cannot store a time before
	// 1970. The zero Time means DefaultMinTime.
	MinTime time.Time
}

// DefaultMinTime is Limits.MinTime's default, 2000-01-01 UTC: before any
// wearable in use, well after 1970.
var DefaultMinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// minTimeMs is the floor of l in epoch milliseconds.
func (l Limits) minTimeMs() int64 {
	if l.MinTime.IsZero() {
		return DefaultMinTime.UnixMilli()
	}
	return l.MinTime.UnixMilli()
}

// Input is one reading as a gateway described it, whatever the wire format
// (JSON, Avro, FHIR). Nil means absent. Times are epoch milliseconds.
type Input struct {
	EventID, UserID, DeviceID, Metric, Unit *string
	Value                                   *float64
	Diastolic                               *float64 // blood_pressure's second component
	MeasuredAt, ReceivedAt, PeriodEnd       *int64
	Stage                                   *string
	Sequence                                *int64
	// Revision (absent or 0: the reading as first sent) marks a
	// correction of the reading with the same event id; Withdrawn a
	// revision that withdraws it.
	Revision  *int64
	Withdrawn *bool
	// RevisionOnArrival: a revision without an order of its own (a FHIR
	// correction without version or time): its revision is the time
	// ingest received it.
	RevisionOnArrival bool
}

// withdrawal reports whether in withdraws a reading.
func (in *Input) withdrawal() bool { return in.Withdrawn != nil && *in.Withdrawn }

// checkContext is what every item of one request shares.
type checkContext struct {
	tenant, gateway, format string
	now                     time.Time
	lim                     Limits

	// values holds the request's encoded readings back to back, one
	// allocation (sized for items readings) for all of them; see
	// encodeReading. readings is the codec of the log's Reading (nil in
	// tests: then it is made on first use).
	values   []byte
	items    int
	readings *schemas.Codec
}

// readingSizeHint is about what one encoded reading takes (ids of ~20
// characters), to size checkContext.values.
const readingSizeHint = 160

// encodeReading encodes a checked reading for the log. The message is
// appended to the request's buffer and returned as a slice of it, capped,
// so that later appends never write into it; a buffer outgrown is left to
// the slices that point into it.
func (c *checkContext) encodeReading(rd *schemas.Reading) ([]byte, error) {
	if c.readings == nil {
		c.readings = schemas.MustCodec(schemas.NameReading)
	}
	if c.values == nil {
		c.values = make([]byte, 0, max(c.items, 1)*readingSizeHint)
	}
	start := len(c.values)
	v, err := schemas.AppendReading(c.readings, c.values, rd)
	if err != nil {
		return nil, err
	}
	c.values = v
	return v[start:len(v):len(v)], nil
}

// checkID accepts 1..128 characters from [A-Za-z0-9._:@-]: enough for UUIDs,
// ULIDs and vendor ids, and nothing that needs escaping in a log line, a
// Kafka key or a file name.
func checkID(field, v string) *Rejection {
	if err := ident.Check(field, v); err != nil {
		return reject(ReasonInvalidIdentifier, field, "%s", err)
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

// checkTimes applies the skew and age bounds to an event's times.
func (c *checkContext) checkTimes(measuredField string, measured int64, received *int64, extra ...struct {
	field string
	at    int64
}) (int64, *Rejection) {
	nowMs := c.now.UnixMilli()
	skew := c.lim.MaxFutureSkew.Milliseconds()
	if r := c.checkFloor(measuredField, measured, received, extra...); r != nil {
		return 0, r
	}
	rec := nowMs
	if received != nil {
		if *received > nowMs+skew {
			return 0, reject(ReasonFutureTimestamp, "received_at", "received_at is more than %s ahead of the server clock", c.lim.MaxFutureSkew)
		}
		rec = *received
	}
	if measured > nowMs+skew {
		return 0, reject(ReasonFutureTimestamp, measuredField, "%s is more than %s ahead of the server clock", measuredField, c.lim.MaxFutureSkew)
	}
	for _, e := range extra {
		if e.at > nowMs+skew {
			return 0, reject(ReasonFutureTimestamp, e.field, "%s is more than %s ahead of the server clock", e.field, c.lim.MaxFutureSkew)
		}
	}
	if c.lim.MaxAge > 0 && measured < nowMs-c.lim.MaxAge.Milliseconds() {
		return 0, reject(ReasonTooOld, measuredField, "%s is older than the maximum age of %s", measuredField, c.lim.MaxAge)
	}
	return rec, nil
}

// checkFloor rejects the first of an event's times that lies before
// Limits.MinTime.
func (c *checkContext) checkFloor(measuredField string, measured int64, received *int64, extra ...struct {
	field string
	at    int64
}) *Rejection {
	floor := c.lim.minTimeMs()
	bad := func(field string, at int64) *Rejection {
		return reject(ReasonBeforeTimeFloor, field, "%s %s is before %s, the earliest time accepted",
			field, time.UnixMilli(at).UTC().Format(time.RFC3339), time.UnixMilli(floor).UTC().Format(time.RFC3339))
	}
	if measured < floor {
		return bad(measuredField, measured)
	}
	if received != nil && *received < floor {
		return bad("received_at", *received)
	}
	for _, e := range extra {
		if e.at < floor {
			return bad(e.field, e.at)
		}
	}
	return nil
}

type field struct {
	name    string
	present bool
}

func requireAll(fs ...field) *Rejection {
	for _, f := range fs {
		if !f.present {
			return reject(ReasonMissingField, f.name, "%s is required", f.name)
		}
	}
	return nil
}

func finite(name string, v *float64) *Rejection {
	if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
		return reject(ReasonNonFiniteValue, name, "%s must be a finite number", name)
	}
	return nil
}

// CheckReading syntax-checks one reading and returns the event to log. It
// judges syntax only: whether the reading is plausible, late or a duplicate
// is the processor's call. A revision (Revision >= 1) is checked like a
// reading; a withdrawal names the reading it withdraws (event, user,
// device, metric, measurement time) and its value, unit and the metric's
// other fields are not read.
func (c *checkContext) CheckReading(in *Input) (schemas.Reading, *Rejection) {
	var zero schemas.Reading
	withdrawal := in.withdrawal()
	if r := requireAll(
		field{"event_id", in.EventID != nil}, field{"user_id", in.UserID != nil}, field{"device_id", in.DeviceID != nil},
		field{"metric", in.Metric != nil}, field{"unit", in.Unit != nil || withdrawal}, field{"measured_at", in.MeasuredAt != nil},
	); r != nil {
		return zero, r
	}
	for _, id := range []struct{ name, v string }{{"event_id", *in.EventID}, {"user_id", *in.UserID}, {"device_id", *in.DeviceID}} {
		if r := checkID(id.name, id.v); r != nil {
			return zero, r
		}
	}
	m, ok := metric.Lookup(*in.Metric)
	if !ok {
		return zero, reject(ReasonUnknownMetric, "metric", "metric %q is not known; GET /v1/catalogue lists them", truncate(*in.Metric))
	}
	if in.RevisionOnArrival {
		now := c.now.UnixMilli()
		in.Revision = &now
	}
	revision, r := checkRevision(in)
	if r != nil {
		return zero, r
	}
	if withdrawal {
		return c.checkWithdrawal(in, m, revision)
	}
	if _, ok := m.Canonical(0, *in.Unit); !ok {
		return zero, reject(ReasonUnknownUnit, "unit", "unit %q is not accepted for %s; use one of %q", truncate(*in.Unit), m.Name, m.Units())
	}
	if in.Value == nil && m.Shape != metric.Stage {
		return zero, reject(ReasonMissingField, "value", "value is required")
	}
	if r := finite("value", in.Value); r != nil {
		return zero, r
	}
	if r := finite("diastolic", in.Diastolic); r != nil {
		return zero, r
	}
	if in.Sequence != nil && *in.Sequence < 0 {
		return zero, reject(ReasonInvalidValue, "sequence", "sequence must not be negative")
	}
	out := schemas.Reading{
		TenantID: c.tenant, EventID: *in.EventID, UserID: *in.UserID, DeviceID: *in.DeviceID, GatewayID: c.gateway,
		Metric: m.Name, Unit: *in.Unit, MeasuredAt: *in.MeasuredAt, IngestedAt: c.now.UnixMilli(),
		Sequence: in.Sequence, SourceFormat: c.format, Revision: revision,
	}
	if in.Value != nil {
		out.Value = *in.Value
	}
	var extra []struct {
		field string
		at    int64
	}
	switch m.Shape {
	case metric.Pair:
		if in.Diastolic == nil {
			return zero, reject(ReasonMissingField, "diastolic", "diastolic is required for %s", m.Name)
		}
		out.SecondValue = in.Diastolic
	case metric.Interval, metric.Stage:
		if in.PeriodEnd == nil {
			return zero, reject(ReasonInvalidInterval, "period_end", "period_end is required for %s: the end of the interval that starts at measured_at", m.Name)
		}
		if *in.PeriodEnd <= *in.MeasuredAt {
			return zero, reject(ReasonInvalidInterval, "period_end", "period_end must be after measured_at")
		}
		out.PeriodEnd = in.PeriodEnd
		extra = append(extra, struct {
			field string
			at    int64
		}{"period_end", *in.PeriodEnd})
		if m.Shape == metric.Stage {
			if in.Stage == nil {
				return zero, reject(ReasonMissingField, "stage", "stage is required for %s", m.Name)
			}
			if !m.HasStage(*in.Stage) {
				return zero, reject(ReasonInvalidValue, "stage", "stage %q is not one of %q", truncate(*in.Stage), m.Stages)
			}
			out.Stage = in.Stage
			if in.Value == nil { // the value of a stage is its length
				out.Value = float64(*in.PeriodEnd-*in.MeasuredAt) / 60000
			}
		}
	}
	rec, r := c.checkTimes("measured_at", *in.MeasuredAt, in.ReceivedAt, extra...)
	if r != nil {
		return zero, r
	}
	out.ReceivedAt = rec
	return out, nil
}

// checkRevision reads the revision fields: a revision is a whole number,
// 0 (or absent) for the reading as first sent, and a withdrawal is always
// a revision of an earlier reading.
func checkRevision(in *Input) (int64, *Rejection) {
	var revision int64
	if in.Revision != nil {
		revision = *in.Revision
	}
	switch {
	case revision < 0:
		return 0, reject(ReasonInvalidValue, "revision", "revision must not be negative: 0 for a reading as first sent, 1 or more for a correction or withdrawal of it")
	case in.withdrawal() && revision < 1:
		return 0, reject(ReasonInvalidValue, "withdrawn", "a withdrawal is a revision of an earlier reading: give revision 1 or more, above the revision it withdraws")
	}
	return revision, nil
}

// checkWithdrawal returns the withdrawal of a reading: its identity and
// times are checked, its value is not read (0, in the metric's canonical
// unit).
func (c *checkContext) checkWithdrawal(in *Input, m metric.Metric, revision int64) (schemas.Reading, *Rejection) {
	rec, r := c.checkTimes("measured_at", *in.MeasuredAt, in.ReceivedAt)
	if r != nil {
		return schemas.Reading{}, r
	}
	return schemas.Reading{
		TenantID: c.tenant, EventID: *in.EventID, UserID: *in.UserID, DeviceID: *in.DeviceID, GatewayID: c.gateway,
		Metric: m.Name, Unit: m.Unit, MeasuredAt: *in.MeasuredAt, ReceivedAt: rec, IngestedAt: c.now.UnixMilli(),
		SourceFormat: c.format, Revision: revision, Withdrawn: true,
	}, nil
}

// DeviceInput is one device event as a gateway described it.
type DeviceInput struct {
	EventID, UserID, DeviceID, Kind *string
	Model, Firmware                 *string
	BatteryPct                      *float64
	OccurredAt, ReceivedAt          *int64
}

var deviceKinds = map[string]bool{"paired": true, "unpaired": true, "status": true}

// CheckDevice syntax-checks one device event.
func (c *checkContext) CheckDevice(in *DeviceInput) (schemas.DeviceEvent, *Rejection) {
	var zero schemas.DeviceEvent
	if r := requireAll(field{"event_id", in.EventID != nil}, field{"user_id", in.UserID != nil}, field{"device_id", in.DeviceID != nil},
		field{"kind", in.Kind != nil}, field{"occurred_at", in.OccurredAt != nil}); r != nil {
		return zero, r
	}
	for _, id := range []struct{ name, v string }{{"event_id", *in.EventID}, {"user_id", *in.UserID}, {"device_id", *in.DeviceID}} {
		if r := checkID(id.name, id.v); r != nil {
			return zero, r
		}
	}
	if !deviceKinds[*in.Kind] {
		return zero, reject(ReasonInvalidValue, "kind", "kind must be paired, unpaired or status")
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"model", in.Model}, {"firmware", in.Firmware}} {
		if f.v != nil && (len(*f.v) == 0 || len(*f.v) > 64) {
			return zero, reject(ReasonInvalidValue, f.name, "%s must be 1 to 64 characters", f.name)
		}
	}
	if r := finite("battery_pct", in.BatteryPct); r != nil {
		return zero, r
	}
	if in.BatteryPct != nil && (*in.BatteryPct < 0 || *in.BatteryPct > 100) {
		return zero, reject(ReasonInvalidValue, "battery_pct", "battery_pct must be between 0 and 100")
	}
	rec, r := c.checkTimes("occurred_at", *in.OccurredAt, in.ReceivedAt)
	if r != nil {
		return zero, r
	}
	return schemas.DeviceEvent{
		TenantID: c.tenant, EventID: *in.EventID, UserID: *in.UserID, DeviceID: *in.DeviceID, GatewayID: c.gateway,
		Kind: *in.Kind, Model: in.Model, Firmware: in.Firmware, BatteryPct: in.BatteryPct,
		OccurredAt: *in.OccurredAt, ReceivedAt: rec, IngestedAt: c.now.UnixMilli(),
	}, nil
}

// ProfileInput is one profile event as a gateway described it.
type ProfileInput struct {
	EventID, UserID, Kind  *string
	BirthYear              *int32
	Sex, Region            *string
	OccurredAt, ReceivedAt *int64
}

var (
	profileKinds = map[string]bool{"registered": true, "updated": true, "erasure_requested": true}
	sexes        = map[string]bool{"female": true, "male": true, "other": true, "unknown": true}
	regionRE     = regexp.MustCompile(`^[A-Z]{2}(-[A-Z0-9]{1,3})?$`)
)

// CheckProfile syntax-checks one profile event. Profiles carry only coarse
// attributes (birth year, sex, region): data minimisation.
func (c *checkContext) CheckProfile(in *ProfileInput) (schemas.ProfileEvent, *Rejection) {
	var zero schemas.ProfileEvent
	if r := requireAll(field{"event_id", in.EventID != nil}, field{"user_id", in.UserID != nil},
		field{"kind", in.Kind != nil}, field{"occurred_at", in.OccurredAt != nil}); r != nil {
		return zero, r
	}
	for _, id := range []struct{ name, v string }{{"event_id", *in.EventID}, {"user_id", *in.UserID}} {
		if r := checkID(id.name, id.v); r != nil {
			return zero, r
		}
	}
	if !profileKinds[*in.Kind] {
		return zero, reject(ReasonInvalidValue, "kind", "kind must be registered, updated or erasure_requested")
	}
	if in.BirthYear != nil && (*in.BirthYear < 1900 || int(*in.BirthYear) > c.now.Year()) {
		return zero, reject(ReasonInvalidValue, "birth_year", "birth_year must be between 1900 and %d", c.now.Year())
	}
	if in.Sex != nil && !sexes[*in.Sex] {
		return zero, reject(ReasonInvalidValue, "sex", "sex must be female, male, other or unknown")
	}
	if in.Region != nil && !regionRE.MatchString(*in.Region) {
		return zero, reject(ReasonInvalidValue, "region", "region must be an ISO 3166-1 alpha-2 code or ISO 3166-2 subdivision, e.g. DE or US-CA")
	}
	rec, r := c.checkTimes("occurred_at", *in.OccurredAt, in.ReceivedAt)
	if r != nil {
		return zero, r
	}
	return schemas.ProfileEvent{
		TenantID: c.tenant, EventID: *in.EventID, UserID: *in.UserID, GatewayID: c.gateway, Kind: *in.Kind,
		BirthYear: in.BirthYear, Sex: in.Sex, Region: in.Region,
		OccurredAt: *in.OccurredAt, ReceivedAt: rec, IngestedAt: c.now.UnixMilli(),
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
