package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

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
	// varints longer than 9 bytes, or invalid Avro (an unknown union
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

// avroReader reads Avro binary from b; s is the same bytes as a string,
// so strings are substrings of one copy. The first problem sticks.
type avroReader struct {
	b   []byte
	s   string
	i   int
	err error
}

func (r *avroReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// long reads a zigzag varint. Up to 10 bytes are read as the general
// codec reads them; anything longer, or a 10th byte it would truncate, is
// left to it.
func (r *avroReader) long() int64 {
	var v uint64
	for n := uint(0); n < 10; n++ {
		if r.i >= len(r.b) {
			r.fail(errAvroShort)
			return 0
		}
		c := r.b[r.i]
		r.i++
		if n == 9 && c > 1 {
			r.fail(errAvroUnsupported)
			return 0
		}
		v |= uint64(c&0x7f) << (7 * n)
		if c&0x80 == 0 {
			return int64(v>>1) ^ -int64(v&1)
		}
	}
	r.fail(errAvroUnsupported)
	return 0
}

// maxAvroString is the general codec's bound on a string's length (its
// default MaxByteSliceSize); longer ones are its error to report.
const maxAvroString = 1 << 20

func (r *avroReader) str() string {
	n := r.long()
	switch {
	case r.err != nil:
		return ""
	case n < 0 || n > maxAvroString:
		r.fail(errAvroUnsupported)
		return ""
	case int64(len(r.b)-r.i) < n:
		r.fail(errAvroShort)
		return ""
	}
	s := r.s[r.i : r.i+int(n)]
	r.i += int(n)
	return s
}

func (r *avroReader) double() float64 {
	if len(r.b)-r.i < 8 {
		r.fail(errAvroShort)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.i:]))
	r.i += 8
	return v
}

// present reads the branch of a ["null", T] union: true for T.
func (r *avroReader) present() bool {
	switch r.long() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail(errAvroUnsupported)
	return false
}

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
	r := avroReader{b: body[10:], s: string(body[10:])}
	b.GatewayID = r.str()
	if r.present() {
		t := r.str()
		b.TenantID = &t
	}
	var slots []avroSlot
	for r.err == nil {
		count := r.long()
		if count == 0 || r.err != nil {
			break
		}
		if count < 0 {
			// A block may give its count negated, followed by its size in
			// bytes, which the general codec reads and ignores.
			if count = -count; count < 0 {
				r.fail(errAvroUnsupported)
				break
			}
			r.long()
		}
		if int64(len(b.Readings))+count > schemas.MaxArrayItems {
			r.fail(errAvroUnsupported) // the codec's error: too many items
			break
		}
		if b.Readings == nil {
			n := min(int(count), (len(r.b)-r.i)/minAvroReading+1)
			b.Readings = make([]schemas.GatewayReading, 0, n)
			slots = make([]avroSlot, 0, n)
		}
		for range count {
			var g schemas.GatewayReading
			var sl avroSlot
			g.EventID = r.str()
			g.UserID = r.str()
			g.DeviceID = r.str()
			g.Metric = r.str()
			if r.present() {
				sl.value, sl.has = r.double(), sl.has|hasValue
			}
			g.Unit = r.str()
			g.MeasuredAt = r.long()
			if r.present() {
				sl.receivedAt, sl.has = r.long(), sl.has|hasReceivedAt
			}
			if r.present() {
				sl.periodEnd, sl.has = r.long(), sl.has|hasPeriodEnd
			}
			if r.present() {
				sl.diastolic, sl.has = r.double(), sl.has|hasDiastolic
			}
			if r.present() {
				sl.stage, sl.has = r.str(), sl.has|hasStage
			}
			if r.present() {
				sl.sequence, sl.has = r.long(), sl.has|hasSequence
			}
			if r.err != nil {
				break
			}
			b.Readings = append(b.Readings, g)
			slots = append(slots, sl)
		}
	}
	if r.err != nil {
		return b, r.err
	}
	if r.i != len(r.b) {
		return b, fmt.Errorf("%d bytes follow the end of the batch", len(r.b)-r.i)
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

// sleepStages are the symbols of reading.v2's SleepStage enum, in order.
var sleepStages = [...]string{"awake", "light", "deep", "rem"}

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
		for i, s := range sleepStages {
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
