package loadgen

import (
	"encoding/binary"
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
// are the ones json.Marshal and the codec write (tests hold them to it).

// avroBatchFingerprint is the fingerprint of reading_batch.v1, the layout
// AppendAvro writes. When package schemas moves to a newer version, the
// encoder uses the codec until this is brought up to date (a test fails to
// say so).
const avroBatchFingerprint uint64 = 0x406dedaaff6cd7e6

// avroBlockLength is how many items the codec writes per array block (its
// default), each block with its byte size.
const avroBlockLength = 100

// BodyEncoder writes POST /v1/readings bodies in either format. It is
// safe for concurrent use.
type BodyEncoder struct {
	codec *schemas.Codec
	fast  bool
}

// NewBodyEncoder returns an encoder of the current ReadingBatch schema.
func NewBodyEncoder() *BodyEncoder {
	c := schemas.MustCodec(schemas.NameReadingBatch)
	return &BodyEncoder{codec: c, fast: c.Current().Fingerprint == avroBatchFingerprint}
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

// AppendAvro appends b as a ReadingBatch single-object message.
func (e *BodyEncoder) AppendAvro(dst []byte, b *schemas.ReadingBatch) ([]byte, error) {
	if !e.fast {
		msg, err := e.codec.Encode(b)
		if err != nil {
			return dst, fmt.Errorf("loadgen: encode body: %w", err)
		}
		return append(dst, msg...), nil
	}
	dst = append(dst, 0xC3, 0x01)
	dst = binary.LittleEndian.AppendUint64(dst, avroBatchFingerprint)
	dst = schemas.AppendString(dst, b.GatewayID)
	if b.TenantID == nil {
		dst = append(dst, 0)
	} else {
		dst = schemas.AppendString(append(dst, 2), *b.TenantID)
	}
	const maxHeader = 2 * binary.MaxVarintLen64
	for i := 0; i < len(b.Readings); i += avroBlockLength {
		block := b.Readings[i:min(i+avroBlockLength, len(b.Readings))]
		// The block's header (count negated, then size in bytes) goes
		// before its items but depends on their size: leave room for the
		// longest header, write the items, then move them up to the
		// header's actual end.
		start := len(dst)
		dst = append(dst, make([]byte, maxHeader)...)
		for j := range block {
			dst = appendGatewayReading(dst, &block[j])
		}
		var hdr [maxHeader]byte
		h := schemas.AppendLong(schemas.AppendLong(hdr[:0], -int64(len(block))), int64(len(dst)-start-maxHeader))
		copy(dst[start:], h)
		copy(dst[start+len(h):], dst[start+maxHeader:])
		dst = dst[:len(dst)-(maxHeader-len(h))]
	}
	return append(dst, 0), nil
}

func appendGatewayReading(dst []byte, g *schemas.GatewayReading) []byte {
	dst = schemas.AppendString(dst, g.EventID)
	dst = schemas.AppendString(dst, g.UserID)
	dst = schemas.AppendString(dst, g.DeviceID)
	dst = schemas.AppendString(dst, g.Metric)
	dst = schemas.AppendOptDouble(dst, g.Value)
	dst = schemas.AppendString(dst, g.Unit)
	dst = schemas.AppendLong(dst, g.MeasuredAt)
	dst = schemas.AppendOptLong(dst, g.ReceivedAt)
	dst = schemas.AppendOptLong(dst, g.PeriodEnd)
	dst = schemas.AppendOptDouble(dst, g.Diastolic)
	if g.Stage == nil {
		dst = append(dst, 0)
	} else {
		dst = schemas.AppendString(append(dst, 2), *g.Stage)
	}
	return schemas.AppendOptLong(dst, g.Sequence)
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
