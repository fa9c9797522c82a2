package schemas

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// acceptedReadingV3 is the version written and read by hand here:
// accepted_reading.v3.avsc.
var (
	acceptedReadingV3       = mustHandWritten(NameAcceptedReading, 3)
	acceptedReadingV3Stages = acceptedReadingV3.enumSymbols("stage")
)

// maxAcceptedOverhead bounds what an encoded accepted reading takes beyond
// its strings' bytes: the header, eight string lengths, seven longs (four
// times and offsets, the period end, the sequence and the revision), the
// partition, two doubles, four one-byte union indexes, the stage's enum
// index and the withdrawn flag, each varint at its longest.
const maxAcceptedOverhead = headerLen + 8*binary.MaxVarintLen64 + 7*binary.MaxVarintLen64 + binary.MaxVarintLen32 + 2*8 + 4 + binary.MaxVarintLen32 + 1

// AcceptedReadingBound is the most bytes AppendAcceptedReading adds for a
// when it writes v3 by hand (the codec, writing some later version, may
// add more), for a caller that sizes its buffer first.
func AcceptedReadingBound(a *AcceptedReading) int {
	return maxAcceptedOverhead + len(a.TenantID) + len(a.EventID) + len(a.UserID) + len(a.DeviceID) +
		len(a.GatewayID) + len(a.Metric) + len(a.LOINC) + len(a.Unit)
}

// AppendAcceptedReading appends a to dst as c's single-object message:
// accepted_reading v3 written by hand when that is c's current version
// (fields in schema order; strings and longs as zigzag varint lengths and
// values, doubles as 8 little-endian bytes, unions as the branch index
// followed by the value; the bytes the codec writes), else through c.
func AppendAcceptedReading(c *Codec, dst []byte, a *AcceptedReading) ([]byte, error) {
	if !acceptedReadingV3.writes(c) {
		return c.Append(dst, a)
	}
	stage := int64(-1)
	if a.Stage != nil {
		if stage = symbolIndex(acceptedReadingV3Stages, *a.Stage); stage < 0 {
			return dst, fmt.Errorf("encode %s: unknown enum symbol %q", NameAcceptedReading, *a.Stage)
		}
	}
	dst = append(dst, acceptedReadingV3.header[:]...)
	dst = appendString(dst, a.TenantID)
	dst = appendString(dst, a.EventID)
	dst = appendString(dst, a.UserID)
	dst = appendString(dst, a.DeviceID)
	dst = appendString(dst, a.GatewayID)
	dst = appendString(dst, a.Metric)
	dst = appendString(dst, a.LOINC)
	dst = appendDouble(dst, a.Value)
	dst = appendString(dst, a.Unit)
	dst = appendLong(dst, a.MeasuredAt)
	dst = appendLong(dst, a.ReceivedAt)
	dst = appendLong(dst, a.IngestedAt)
	dst = appendLong(dst, int64(a.SourcePartition))
	dst = appendLong(dst, a.SourceOffset)
	dst = appendOptLong(dst, a.PeriodEnd)
	dst = appendOptDouble(dst, a.SecondValue)
	dst = appendOptEnum(dst, stage)
	dst = appendOptLong(dst, a.Sequence)
	dst = appendLong(dst, a.Revision)
	return appendBool(dst, a.Withdrawn), nil
}

// FlatAcceptedReading is an accepted reading without pointers, for a
// reader that decodes one per record and allocates nothing:
// DecodeFlatAcceptedReading fills it. An optional field absent from the
// message is its zero value with its Has flag false.
type FlatAcceptedReading struct {
	TenantID, EventID, UserID, DeviceID, GatewayID, Metric, LOINC, Unit string

	Value                              float64
	MeasuredAt, ReceivedAt, IngestedAt int64
	SourcePartition                    int32
	SourceOffset                       int64

	PeriodEnd, Sequence          int64
	SecondValue                  float64
	Stage                        string
	HasPeriodEnd, HasSecondValue bool
	HasStage, HasSequence        bool

	Revision  int64
	Withdrawn bool
}

// DecodeFlatAcceptedReading reads a single-object message into f. A
// message written with accepted_reading v3, c's current version, is read
// by hand, allocating nothing: f's strings then share msg's bytes, so msg
// must not be modified while f is in use. Anything that is not read
// cleanly that way (another writer version, a truncated or corrupt
// message) goes through c, so results and errors are the codec's.
func DecodeFlatAcceptedReading(c *Codec, msg []byte, f *FlatAcceptedReading) error {
	if acceptedReadingV3.writes(c) && acceptedReadingV3.isHeader(msg) && readAcceptedReadingV3(msg[headerLen:], f) {
		return nil
	}
	var a AcceptedReading
	if err := c.Decode(msg, &a); err != nil {
		return err
	}
	FlattenAccepted(&a, f)
	return nil
}

// FlattenAccepted sets f to a: what DecodeFlatAcceptedReading reads from
// a's message.
func FlattenAccepted(a *AcceptedReading, f *FlatAcceptedReading) {
	*f = FlatAcceptedReading{
		TenantID: a.TenantID, EventID: a.EventID, UserID: a.UserID, DeviceID: a.DeviceID, GatewayID: a.GatewayID,
		Metric: a.Metric, LOINC: a.LOINC, Unit: a.Unit, Value: a.Value,
		MeasuredAt: a.MeasuredAt, ReceivedAt: a.ReceivedAt, IngestedAt: a.IngestedAt,
		SourcePartition: a.SourcePartition, SourceOffset: a.SourceOffset,
		Revision: a.Revision, Withdrawn: a.Withdrawn,
	}
	if a.PeriodEnd != nil {
		f.PeriodEnd, f.HasPeriodEnd = *a.PeriodEnd, true
	}
	if a.SecondValue != nil {
		f.SecondValue, f.HasSecondValue = *a.SecondValue, true
	}
	if a.Stage != nil {
		f.Stage, f.HasStage = *a.Stage, true
	}
	if a.Sequence != nil {
		f.Sequence, f.HasSequence = *a.Sequence, true
	}
}

// readAcceptedReadingV3 reads an accepted_reading v3 payload, field by
// field in schema order, its strings sharing payload's bytes. It reports
// false if the payload is not read cleanly. Bytes after the record are
// ignored, as the general codec ignores them.
func readAcceptedReadingV3(payload []byte, f *FlatAcceptedReading) bool {
	r := newReader(unsafe.String(unsafe.SliceData(payload), len(payload)))
	f.TenantID = r.Str()
	f.EventID = r.Str()
	f.UserID = r.Str()
	f.DeviceID = r.Str()
	f.GatewayID = r.Str()
	f.Metric = r.Str()
	f.LOINC = r.Str()
	f.Value = r.Double()
	f.Unit = r.Str()
	f.MeasuredAt = r.Long()
	f.ReceivedAt = r.Long()
	f.IngestedAt = r.Long()
	f.SourcePartition = r.Int()
	f.SourceOffset = r.Long()
	readOptionals(r, f, acceptedReadingV3Stages)
	f.Revision = r.Long()
	f.Withdrawn = r.Bool()
	return r.Err() == nil
}

// readOptionals reads the ["null", T] unions that readings and accepted
// readings share, in their schema order (period end, second value, stage,
// sequence; branch 0 is null) into f; stages are the layout's SleepStage
// symbols.
func readOptionals(r *reader, f *FlatAcceptedReading, stages []string) {
	f.PeriodEnd, f.SecondValue, f.Stage, f.Sequence = 0, 0, "", 0
	f.HasPeriodEnd = r.OptLong(&f.PeriodEnd)
	f.HasSecondValue = r.OptDouble(&f.SecondValue)
	if f.HasStage = r.Present(); f.HasStage {
		if i := r.Int(); i >= 0 && int(i) < len(stages) {
			f.Stage = stages[i]
		} else {
			r.Fail(ErrUnsupported)
		}
	}
	f.HasSequence = r.OptLong(&f.Sequence)
}
