package loadgen

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/vitalshq/vitals/internal/jsonwire"
	"github.com/vitalshq/vitals/schemas"
)

// Request bodies of POST /v1/readings, written directly rather than through
// encoding/json and the Avro codec's reflection: the fleet simulator
// writes every reading it sends, on the same cores as the pipeline it
// measures, so a body should cost little more than its bytes. The bytes
// are the ones json.Marshal and the codec write (tests hold them to it);
// Avro bodies are written by package schemas' hand-written encoder.

// BodyEncoder writes POST /v1/readings bodies in either format. It is
// safe for concurrent use.
type BodyEncoder struct {
	codec *schemas.Codec
}

// NewBodyEncoder returns an encoder of the current ReadingBatch schema.
func NewBodyEncoder() *BodyEncoder {
	return &BodyEncoder{codec: schemas.MustCodec(schemas.NameReadingBatch)}
}

// Append appends a body of readings in format (FormatJSON or FormatAvro)
// to dst.
func (e *BodyEncoder) Append(dst []byte, format, gatewayID string, readings []schemas.GatewayReading) ([]byte, error) {
	switch format {
	case FormatJSON, "":
		dst = jsonwire.AppendString(append(dst, `{"gateway_id":`...), gatewayID)
		dst = append(dst, `,"readings":[`...)
		for i := range readings {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = AppendJSONReading(dst, &readings[i]); err != nil {
				return dst, err
			}
		}
		return append(dst, "]}"...), nil
	case FormatAvro:
		return e.AppendAvro(dst, &schemas.ReadingBatch{GatewayID: gatewayID, Readings: readings})
	}
	return dst, fmt.Errorf("loadgen: unknown format %q (json or avro)", format)
}

// AppendAvro appends b as a ReadingBatch single-object message, written
// by hand (schemas.AppendReadingBatch) while the current schema is the one
// written for.
func (e *BodyEncoder) AppendAvro(dst []byte, b *schemas.ReadingBatch) ([]byte, error) {
	dst, err := schemas.AppendReadingBatch(e.codec, dst, b)
	if err != nil {
		return dst, fmt.Errorf("loadgen: encode body: %w", err)
	}
	return dst, nil
}

// ErrNotFinite is AppendJSONReading's error for a NaN or infinite value,
// which JSON cannot carry.
var ErrNotFinite = errors.New("loadgen: JSON cannot carry a NaN or infinite value")

// AppendJSONReading appends g as one JSON item of a readings body: the
// fields in the order event_id, user_id, device_id, metric, value, unit,
// measured_at, period_end, received_at, diastolic, stage, sequence; absent
// optional fields are left out, times are RFC 3339 UTC with milliseconds.
func AppendJSONReading(dst []byte, g *schemas.GatewayReading) ([]byte, error) {
	dst = jsonwire.AppendString(append(dst, `{"event_id":`...), g.EventID)
	dst = jsonwire.AppendString(append(dst, `,"user_id":`...), g.UserID)
	dst = jsonwire.AppendString(append(dst, `,"device_id":`...), g.DeviceID)
	dst = jsonwire.AppendString(append(dst, `,"metric":`...), g.Metric)
	var err error
	if g.Value != nil {
		if dst, err = appendJSONFloat(append(dst, `,"value":`...), *g.Value); err != nil {
			return dst, err
		}
	}
	dst = jsonwire.AppendString(append(dst, `,"unit":`...), g.Unit)
	dst = appendJSONTime(append(dst, `,"measured_at":`...), g.MeasuredAt)
	if g.PeriodEnd != nil {
		dst = appendJSONTime(append(dst, `,"period_end":`...), *g.PeriodEnd)
	}
	if g.ReceivedAt != nil {
		dst = appendJSONTime(append(dst, `,"received_at":`...), *g.ReceivedAt)
	}
	if g.Diastolic != nil {
		if dst, err = appendJSONFloat(append(dst, `,"diastolic":`...), *g.Diastolic); err != nil {
			return dst, err
		}
	}
	if g.Stage != nil {
		dst = jsonwire.AppendString(append(dst, `,"stage":`...), *g.Stage)
	}
	if g.Sequence != nil {
		dst = strconv.AppendInt(append(dst, `,"sequence":`...), *g.Sequence, 10)
	}
	if g.Revision != nil {
		dst = strconv.AppendInt(append(dst, `,"revision":`...), *g.Revision, 10)
	}
	if g.Withdrawn != nil {
		dst = strconv.AppendBool(append(dst, `,"withdrawn":`...), *g.Withdrawn)
	}
	return append(dst, '}'), nil
}

// appendJSONFloat writes v as encoding/json does.
func appendJSONFloat(dst []byte, v float64) ([]byte, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return dst, ErrNotFinite
	}
	f := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		f = 'e'
	}
	dst = strconv.AppendFloat(dst, v, f, -1, 64)
	if f == 'e' { // e-09 to e-9, as encoding/json
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// appendJSONTime writes epoch ms as a quoted RFC 3339 UTC time with
// milliseconds, e.g. "2016-04-12T07:21:00.000Z".
func appendJSONTime(dst []byte, ms int64) []byte {
	t := time.UnixMilli(ms).UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		dst = append(dst, '"')
		dst = t.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		return append(dst, '"')
	}
	h, mi, s := t.Clock()
	msec := int(ms % 1000)
	if msec < 0 {
		msec += 1000
	}
	dst = append(dst, '"')
	dst = appendDigits(dst, y, 4)
	dst = appendDigits(append(dst, '-'), int(mo), 2)
	dst = appendDigits(append(dst, '-'), d, 2)
	dst = appendDigits(append(dst, 'T'), h, 2)
	dst = appendDigits(append(dst, ':'), mi, 2)
	dst = appendDigits(append(dst, ':'), s, 2)
	dst = appendDigits(append(dst, '.'), msec, 3)
	return append(dst, 'Z', '"')
}

// appendDigits writes v zero-padded to width digits.
func appendDigits(dst []byte, v, width int) []byte {
	var b [4]byte
	for i := width - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, b[:width]...)
}
