package ingest

import (
	"errors"
	"fmt"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// Hand-written Avro for the two messages on ingest's hot path: the
// ReadingBatch a gateway posts and the Reading ingest logs. The general
// codec (hamba/avro through package schemas) finds its way through the
// schema by reflection and allocates every optional field and string on
// its own; these read and write the one layout directly. Each is bound to
// the schema version it was written for by that version's fingerprint:
// when package schemas moves on to a new version, ingest uses the codec
// again until these are brought up to date (TestAvroFastLayoutsAreCurrent
// fails to say so), so a hand-written layout can never be sent under
// another version's fingerprint.

// Fingerprints of the versions written for: reading_batch.v1, reading.v2.
const (
	fastBatchFingerprint   uint64 = 0x406dedaaff6cd7e6
	fastReadingFingerprint uint64 = 0xc700176977c11822
)

// Why the fast batch decoder did not answer.
var (
	// errAvroShort: the body ends inside the batch. The general codec
	// takes some such bodies for whole ones (it treats running out of
	// bytes at a field boundary as the end of the message, leaving the
	// remaining fields empty), which would drop or blank readings.
	errAvroShort = errors.New("the body ends before the batch does (truncated)")
	// errAvroUnsupported: what the fast decoder leaves to the general
	// codec: another schema version or not a single-object message,
	// varints longer than 10 bytes, or invalid Avro (an unknown union
	// branch, a negative length, more items or longer strings than the
	// codec allows), whose error the codec words.
	errAvroUnsupported = errors.New("left to the general codec")
)

// avroSlot holds one reading's optional values, which the decoded
// GatewayReading points into: one allocation per batch instead of one per
// field.
type avroSlot struct {
	has                             uint8
	value, diastolic                float64
	receivedAt, periodEnd, sequence int64
	stage                           string
}

// Bits of avroSlot.has.
const (
	hasValue = 1 << iota
	hasReceivedAt
	hasPeriodEnd
	hasDiastolic
	hasStage
	hasSequence
)

// minAvroReading is the fewest bytes one GatewayReading takes (every
// string empty, every union null), to size the slices from the body
// rather than from a count the body claims.
const minAvroReading = 12

// decodeAvroBatchFast reads a ReadingBatch single-object message written
// with reading_batch.v1, the whole body and nothing more. On an error the
// caller asks the general codec (see errAvroShort and errAvroUnsupported).
func decodeAvroBatchFast(body []byte) (schemas.ReadingBatch, error) {
	var b schemas.ReadingBatch
	h := schemas.SingleObjectHeader(fastBatchFingerprint)
	if len(body) < len(h) || [10]byte(body[:10]) != h {
		return b, errAvroUnsupported
	}
	r := schemas.NewReader(string(body[10:]))
	b.GatewayID = r.Str()
	if r.Present() {
		t := r.Str()
		b.TenantID = &t
	}
	var slots []avroSlot
	for r.Err() == nil {
		count := r.Long()
		if count == 0 || r.Err() != nil {
			break
		}
		if count < 0 {
			// A block may give its count negated, followed by its size in
			// bytes, which the general codec reads and ignores.
			if count = -count; count < 0 {
				r.Fail(errAvroUnsupported)
				break
			}
			r.Long()
		}
		if int64(len(b.Readings))+count > schemas.MaxArrayItems {
			r.Fail(errAvroUnsupported) // the codec's error: too many items
			break
		}
		if b.Readings == nil {
			n := min(int(count), r.Remaining()/minAvroReading+1)
			b.Readings = make([]schemas.GatewayReading, 0, n)
			slots = make([]avroSlot, 0, n)
		}
		for range count {
			var g schemas.GatewayReading
			var sl avroSlot
			g.EventID = r.Str()
			g.UserID = r.Str()
			g.DeviceID = r.Str()
			g.Metric = r.Str()
			if r.Present() {
				sl.value, sl.has = r.Double(), sl.has|hasValue
			}
			g.Unit = r.Str()
			g.MeasuredAt = r.Long()
			if r.Present() {
				sl.receivedAt, sl.has = r.Long(), sl.has|hasReceivedAt
			}
			if r.Present() {
				sl.periodEnd, sl.has = r.Long(), sl.has|hasPeriodEnd
			}
			if r.Present() {
				sl.diastolic, sl.has = r.Double(), sl.has|hasDiastolic
			}
			if r.Present() {
				sl.stage, sl.has = r.Str(), sl.has|hasStage
			}
			if r.Present() {
				sl.sequence, sl.has = r.Long(), sl.has|hasSequence
			}
			if r.Err() != nil {
				break
			}
			b.Readings = append(b.Readings, g)
			slots = append(slots, sl)
		}
	}
	switch err := r.Err(); {
	case errors.Is(err, schemas.ErrShort):
		return b, errAvroShort
	case err != nil:
		return b, errAvroUnsupported
	case r.Remaining() != 0:
		return b, fmt.Errorf("%d bytes follow the end of the batch", r.Remaining())
	}
	// The slices are final: point the optional fields into the slots.
	for i := range b.Readings {
		g, sl := &b.Readings[i], &slots[i]
		if sl.has&hasValue != 0 {
			g.Value = &sl.value
		}
		if sl.has&hasReceivedAt != 0 {
			g.ReceivedAt = &sl.receivedAt
		}
		if sl.has&hasPeriodEnd != 0 {
			g.PeriodEnd = &sl.periodEnd
		}
		if sl.has&hasDiastolic != 0 {
			g.Diastolic = &sl.diastolic
		}
		if sl.has&hasStage != 0 {
			g.Stage = &sl.stage
		}
		if sl.has&hasSequence != 0 {
			g.Sequence = &sl.sequence
		}
	}
	return b, nil
}

// appendReading appends rd as a reading.v2 single-object message, the
// bytes the general codec writes for it.
func appendReading(dst []byte, rd *schemas.Reading) ([]byte, error) {
	h := schemas.SingleObjectHeader(fastReadingFingerprint)
	dst = append(dst, h[:]...)
	for _, s := range [...]string{rd.TenantID, rd.EventID, rd.UserID, rd.DeviceID, rd.GatewayID, rd.Metric} {
		dst = schemas.AppendString(dst, s)
	}
	dst = schemas.AppendDouble(dst, rd.Value)
	dst = schemas.AppendString(dst, rd.Unit)
	dst = schemas.AppendLong(dst, rd.MeasuredAt)
	dst = schemas.AppendLong(dst, rd.ReceivedAt)
	dst = schemas.AppendLong(dst, rd.IngestedAt)
	if rd.PeriodEnd == nil {
		dst = append(dst, 0)
	} else {
		dst = schemas.AppendLong(append(dst, 2), *rd.PeriodEnd)
	}
	if rd.SecondValue == nil {
		dst = append(dst, 0)
	} else {
		dst = schemas.AppendDouble(append(dst, 2), *rd.SecondValue)
	}
	if rd.Stage == nil {
		dst = append(dst, 0)
	} else {
		sym := -1
		for i, s := range metric.SleepStages {
			if s == *rd.Stage {
				sym = i
			}
		}
		if sym < 0 {
			return dst, fmt.Errorf("encode reading: %q is not a SleepStage symbol", *rd.Stage)
		}
		dst = schemas.AppendLong(append(dst, 2), int64(sym))
	}
	if rd.Sequence == nil {
		dst = append(dst, 0)
	} else {
		dst = schemas.AppendLong(append(dst, 2), *rd.Sequence)
	}
	return schemas.AppendString(dst, rd.SourceFormat), nil
}
