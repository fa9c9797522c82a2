package schemas

import (
	"encoding/binary"
	"fmt"
)

// readingBatchV2 is the version read and written by hand here:
// reading_batch.v2.avsc.
var readingBatchV2 = mustHandWritten(NameReadingBatch, 2)

// readingBatchBlockLength is how many items the codec writes per array
// block (its default), each block with its byte size.
const readingBatchBlockLength = 100

// AppendReadingBatch appends b to dst as c's single-object message:
// reading_batch v2 written by hand when that is c's current version (the
// bytes the codec writes, blocks of 100 readings with their byte sizes
// included), else through c.
func AppendReadingBatch(c *Codec, dst []byte, b *ReadingBatch) ([]byte, error) {
	if !readingBatchV2.writes(c) {
		return c.Append(dst, b)
	}
	dst = append(dst, readingBatchV2.header[:]...)
	dst = appendString(dst, b.GatewayID)
	dst = appendOptString(dst, b.TenantID)
	const maxHeader = 2 * binary.MaxVarintLen64
	for i := 0; i < len(b.Readings); i += readingBatchBlockLength {
		block := b.Readings[i:min(i+readingBatchBlockLength, len(b.Readings))]
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
		h := appendLong(appendLong(hdr[:0], -int64(len(block))), int64(len(dst)-start-maxHeader))
		copy(dst[start:], h)
		copy(dst[start+len(h):], dst[start+maxHeader:])
		dst = dst[:len(dst)-(maxHeader-len(h))]
	}
	return append(dst, 0), nil
}

// appendGatewayReading appends one item of a reading_batch v2 array.
func appendGatewayReading(dst []byte, g *GatewayReading) []byte {
	dst = appendString(dst, g.EventID)
	dst = appendString(dst, g.UserID)
	dst = appendString(dst, g.DeviceID)
	dst = appendString(dst, g.Metric)
	dst = appendOptDouble(dst, g.Value)
	dst = appendString(dst, g.Unit)
	dst = appendLong(dst, g.MeasuredAt)
	dst = appendOptLong(dst, g.ReceivedAt)
	dst = appendOptLong(dst, g.PeriodEnd)
	dst = appendOptDouble(dst, g.Diastolic)
	dst = appendOptString(dst, g.Stage)
	dst = appendOptLong(dst, g.Sequence)
	dst = appendOptLong(dst, g.Revision)
	return appendOptBool(dst, g.Withdrawn)
}

// batchSlot holds one reading's optional values, which the decoded
// GatewayReading points into: one allocation per batch instead of one per
// field. A has flag says the value was present.
type batchSlot struct {
	value, diastolic                          float64
	receivedAt, periodEnd, sequence, revision int64
	stage                                     string
	withdrawn                                 bool

	hasValue, hasReceivedAt, hasPeriodEnd, hasDiastolic bool
	hasStage, hasSequence, hasRevision, hasWithdrawn    bool
}

// minGatewayReading is the fewest bytes one GatewayReading takes (every
// string empty, every union null), to size the slices from the body
// rather than from a count the body claims.
const minGatewayReading = 14

// ReadReadingBatch reads a ReadingBatch single-object message written
// with reading_batch v2, c's current version, by hand: the whole body and
// nothing more. Its strings are copies, not shared with body. It does not
// fall back to the codec; the caller does, on any error:
//   - ErrUnsupported: left to the codec: another schema version (of the
//     message or c) or not a single-object message, varints longer than
//     10 bytes, or invalid Avro (an unknown union branch, a negative
//     length, more items or longer strings than the codec allows), whose
//     error the codec words;
//   - ErrShort: the body ends inside the batch. The codec takes some such
//     bodies for whole ones (it treats running out of bytes at a field
//     boundary as the end of the message, leaving the remaining fields
//     empty), which would drop or blank readings;
//   - any other error: bytes follow the end of the batch, which the codec
//     ignores.
//
// The array's loop stays in this function: split out, it cost about 1%
// more instructions.
func ReadReadingBatch(c *Codec, body []byte) (ReadingBatch, error) {
	var b ReadingBatch
	if !readingBatchV2.reads(c, body) {
		return b, ErrUnsupported
	}
	r := newReader(string(body[headerLen:]))
	b.GatewayID = r.Str()
	if r.Present() {
		t := r.Str()
		b.TenantID = &t
	}
	var slots []batchSlot
	for r.Err() == nil {
		count := r.Long()
		if count == 0 || r.Err() != nil {
			break
		}
		if count < 0 {
			// A block may give its count negated, followed by its size in
			// bytes, which the general codec reads and ignores.
			if count = -count; count < 0 {
				r.Fail(ErrUnsupported)
				break
			}
			r.Long()
		}
		if int64(len(b.Readings))+count > MaxArrayItems {
			r.Fail(ErrUnsupported) // the codec's error: too many items
			break
		}
		if b.Readings == nil {
			n := min(int(count), r.Remaining()/minGatewayReading+1)
			b.Readings = make([]GatewayReading, 0, n)
			slots = make([]batchSlot, 0, n)
		}
		for range count {
			var g GatewayReading
			var sl batchSlot
			g.EventID = r.Str()
			g.UserID = r.Str()
			g.DeviceID = r.Str()
			g.Metric = r.Str()
			sl.hasValue = r.OptDouble(&sl.value)
			g.Unit = r.Str()
			g.MeasuredAt = r.Long()
			sl.hasReceivedAt = r.OptLong(&sl.receivedAt)
			sl.hasPeriodEnd = r.OptLong(&sl.periodEnd)
			sl.hasDiastolic = r.OptDouble(&sl.diastolic)
			sl.hasStage = r.OptStr(&sl.stage)
			sl.hasSequence = r.OptLong(&sl.sequence)
			sl.hasRevision = r.OptLong(&sl.revision)
			sl.hasWithdrawn = r.OptBool(&sl.withdrawn)
			if r.Err() != nil {
				break
			}
			b.Readings = append(b.Readings, g)
			slots = append(slots, sl)
		}
	}
	if err := r.Err(); err != nil {
		return b, err
	}
	if r.Remaining() != 0 {
		return b, fmt.Errorf("%d bytes follow the end of the batch", r.Remaining())
	}
	pointIntoSlots(b.Readings, slots) // the slices are final
	return b, nil
}

// pointIntoSlots points the optional fields of each reading into its slot,
// where the values read are.
func pointIntoSlots(readings []GatewayReading, slots []batchSlot) {
	for i := range readings {
		g, sl := &readings[i], &slots[i]
		g.Value = presentPtr(sl.hasValue, &sl.value)
		g.ReceivedAt = presentPtr(sl.hasReceivedAt, &sl.receivedAt)
		g.PeriodEnd = presentPtr(sl.hasPeriodEnd, &sl.periodEnd)
		g.Diastolic = presentPtr(sl.hasDiastolic, &sl.diastolic)
		g.Stage = presentPtr(sl.hasStage, &sl.stage)
		g.Sequence = presentPtr(sl.hasSequence, &sl.sequence)
		g.Revision = presentPtr(sl.hasRevision, &sl.revision)
		g.Withdrawn = presentPtr(sl.hasWithdrawn, &sl.withdrawn)
	}
}

// presentPtr is p if has, else nil: an optional field's pointer.
func presentPtr[T any](has bool, p *T) *T {
	if has {
		return p
	}
	return nil
}
