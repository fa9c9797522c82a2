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

// DecodeFlatReading decodes c's single-object message msg, a reading, into
// f as it was sent: the value and unit as the gateway gave them, no LOINC
// code, no source position (rules.AcceptFlat makes it the accepted reading
// it becomes). Reading v3 is read by hand when that is c's current version
// and msg's, allocating nothing, its strings sharing msg's bytes; anything
// else goes through c, whose results and errors are the answer.
func DecodeFlatReading(c *Codec, msg []byte, f *FlatAcceptedReading) error {
	if readingV3.writes(c) && readingV3.isHeader(msg) && readFlatReadingV3(msg[headerLen:], f, nil) {
		return nil
	}
	var rd Reading
	if err := c.Decode(msg, &rd); err != nil {
		return err
	}
	flattenReading(&rd, f)
	return nil
}

// flattenReading sets f to rd as it was sent (see DecodeFlatReading).
func flattenReading(rd *Reading, f *FlatAcceptedReading) {
	FlattenAccepted(&AcceptedReading{TenantID: rd.TenantID, EventID: rd.EventID, UserID: rd.UserID, DeviceID: rd.DeviceID,
		GatewayID: rd.GatewayID, Metric: rd.Metric, Value: rd.Value, Unit: rd.Unit, MeasuredAt: rd.MeasuredAt,
		ReceivedAt: rd.ReceivedAt, IngestedAt: rd.IngestedAt, PeriodEnd: rd.PeriodEnd, SecondValue: rd.SecondValue,
		Stage: rd.Stage, Sequence: rd.Sequence, Revision: rd.Revision, Withdrawn: rd.Withdrawn}, f)
}

// readReadingV3 reads a reading v3 payload into rd; see readFlatReadingV3.
func readReadingV3(payload []byte, rd *Reading) bool {
	var f FlatAcceptedReading
	if !readFlatReadingV3(payload, &f, &rd.SourceFormat) {
		return false
	}
	rd.TenantID, rd.EventID, rd.UserID, rd.DeviceID, rd.GatewayID = f.TenantID, f.EventID, f.UserID, f.DeviceID, f.GatewayID
	rd.Metric, rd.Value, rd.Unit = f.Metric, f.Value, f.Unit
	rd.MeasuredAt, rd.ReceivedAt, rd.IngestedAt = f.MeasuredAt, f.ReceivedAt, f.IngestedAt
	rd.Revision, rd.Withdrawn = f.Revision, f.Withdrawn
	if f.HasPeriodEnd {
		rd.PeriodEnd = ptr(f.PeriodEnd)
	}
	if f.HasSecondValue {
		rd.SecondValue = ptr(f.SecondValue)
	}
	if f.HasStage {
		rd.Stage = ptr(f.Stage)
	}
	if f.HasSequence {
		rd.Sequence = ptr(f.Sequence)
	}
	return true
}

// readFlatReadingV3 reads a reading v3 payload, field by field in schema
// order, into f and, if format is not nil, its source format. It reports
// false if the payload is not read cleanly. Bytes after the record are
// ignored, as the general codec ignores them.
func readFlatReadingV3(payload []byte, f *FlatAcceptedReading, format *string) bool {
	r := newReader(unsafe.String(unsafe.SliceData(payload), len(payload)))
	*f = FlatAcceptedReading{}
	f.TenantID = r.Str()
	f.EventID = r.Str()
	f.UserID = r.Str()
	f.DeviceID = r.Str()
	f.GatewayID = r.Str()
	f.Metric = r.Str()
	f.Value = r.Double()
	f.Unit = r.Str()
	f.MeasuredAt = r.Long()
	f.ReceivedAt = r.Long()
	f.IngestedAt = r.Long()
	readOptionals(r, f, readingV3Stages)
	sourceFormat := r.Str()
	if format != nil {
		*format = sourceFormat
	}
	f.Revision = r.Long()
	f.Withdrawn = r.Bool()
	return r.Err() == nil
}

// ptr returns a pointer to a copy of v, for an optional field.
func ptr[T any](v T) *T { return &v }
