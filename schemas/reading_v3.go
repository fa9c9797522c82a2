package schemas

import "fmt"

// readingV3 is the version AppendReading writes by hand: reading.v3.avsc.
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
