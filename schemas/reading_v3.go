package schemas

import (
	"fmt"
	"unsafe"
)

// readingV3 is the version AppendReading writes and DecodeReading reads
// by hand: reading.v3.avsc.
var (
	readingV3       = mustHandWritten(NameReading, 3)
	readingV3Stages = readingV3.enumSymbols("stage")
)

// AppendReading appends rd to dst as c's single-object message: reading
// v3 written by hand when that is c's current version (the bytes the codec
// writes, without its reflection and allocations), else through c.
func AppendReading(c *Codec, dst []byte, rd *Reading) ([]byte, error) {
	if !readingV3.writes(c) {
		v := *rd // a copy escapes to the codec, not the caller's reading
		return c.Append(dst, &v)
	}
	stage := int64(-1)
	if rd.Stage != nil {
		if stage = symbolIndex(readingV3Stages, *rd.Stage); stage < 0 {
			return dst, fmt.Errorf("encode reading: %q is not a SleepStage symbol", *rd.Stage)
		}
	}
	dst = append(dst, readingV3.header[:]...)
	dst = appendString(dst, rd.TenantID)
	dst = appendString(dst, rd.EventID)
	dst = appendString(dst, rd.UserID)
	dst = appendString(dst, rd.DeviceID)
	dst = appendString(dst, rd.GatewayID)
	dst = appendString(dst, rd.Metric)
	dst = appendDouble(dst, rd.Value)
	dst = appendString(dst, rd.Unit)
	dst = appendLong(dst, rd.MeasuredAt)
	dst = appendLong(dst, rd.ReceivedAt)
	dst = appendLong(dst, rd.IngestedAt)
	dst = appendOptLong(dst, rd.PeriodEnd)
	dst = appendOptDouble(dst, rd.SecondValue)
	dst = appendOptEnum(dst, stage)
	dst = appendOptLong(dst, rd.Sequence)
	dst = appendString(dst, rd.SourceFormat)
	dst = appendLong(dst, rd.Revision)
	return appendBool(dst, rd.Withdrawn), nil
}

// DecodeReading decodes c's single-object message msg into rd, which it
// resets first: reading v3 read by hand when that is c's current version
// and msg's, else through c, whose errors (and resolution of older
// versions) are the answer. Its strings share msg's bytes, as the codec's
// do, so msg must not change while rd is in use. It is the processor's
// decoding of every logged reading.
func DecodeReading(c *Codec, msg []byte, rd *Reading) error {
	*rd = Reading{}
	if readingV3.writes(c) && readingV3.isHeader(msg) && readReadingV3(msg[headerLen:], rd) {
		return nil
	}
	*rd = Reading{} // a fast path that stopped may have set some fields
	return c.Decode(msg, rd)
}

// readReadingV3 reads a reading v3 payload, field by field in schema
// order. It reports false if the payload is not read cleanly. Bytes after
// the record are ignored, as the general codec ignores them.
func readReadingV3(payload []byte, rd *Reading) bool {
	r := newReader(unsafe.String(unsafe.SliceData(payload), len(payload)))
	rd.TenantID = r.Str()
	rd.EventID = r.Str()
	rd.UserID = r.Str()
	rd.DeviceID = r.Str()
	rd.GatewayID = r.Str()
	rd.Metric = r.Str()
	rd.Value = r.Double()
	rd.Unit = r.Str()
	rd.MeasuredAt = r.Long()
	rd.ReceivedAt = r.Long()
	rd.IngestedAt = r.Long()
	// Unions ["null", T]: branch 0 is null.
	if r.Present() {
		rd.PeriodEnd = ptr(r.Long())
	}
	if r.Present() {
		rd.SecondValue = ptr(r.Double())
	}
	if r.Present() {
		if i := r.Int(); i >= 0 && int(i) < len(readingV3Stages) {
			rd.Stage = ptr(readingV3Stages[i])
		} else {
			r.Fail(ErrUnsupported)
		}
	}
	if r.Present() {
		rd.Sequence = ptr(r.Long())
	}
	rd.SourceFormat = r.Str()
	rd.Revision = r.Long()
	rd.Withdrawn = r.Bool()
	return r.Err() == nil
}

// ptr returns a pointer to a copy of v, for an optional field.
func ptr[T any](v T) *T { return &v }
