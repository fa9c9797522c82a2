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
	return appendV3(dst, a, true, "")
}

// appendV3 appends a as a single-object message in one of the two v3
// layouts written by hand, which differ in three places: accepted_reading
// v3 (accepted) has the LOINC code after the metric and the source
// position after the times; reading v3 has the source format (format)
// after the optional fields.
func appendV3(dst []byte, a *AcceptedReading, accepted bool, format string) ([]byte, error) {
	hw, stages := &readingV3, readingV3Stages
	if accepted {
		hw, stages = &acceptedReadingV3, acceptedReadingV3Stages
	}
	stage := int64(-1)
	if a.Stage != nil {
		if stage = symbolIndex(stages, *a.Stage); stage < 0 {
			return dst, fmt.Errorf("encode %s: %q is not a SleepStage symbol", hw.Name, *a.Stage)
		}
	}
	dst = append(dst, hw.header[:]...)
	// Field by field, as every hand-written encoder here: a variadic
	// helper's loop cost this one about 15 % of its time.
	dst = appendString(dst, a.TenantID)
	dst = appendString(dst, a.EventID)
	dst = appendString(dst, a.UserID)
	dst = appendString(dst, a.DeviceID)
	dst = appendString(dst, a.GatewayID)
	dst = appendString(dst, a.Metric)
	if accepted {
		dst = appendString(dst, a.LOINC)
	}
	dst = appendDouble(dst, a.Value)
	dst = appendString(dst, a.Unit)
	dst = appendLong(dst, a.MeasuredAt)
	dst = appendLong(dst, a.ReceivedAt)
	dst = appendLong(dst, a.IngestedAt)
	if accepted {
		dst = appendLong(dst, int64(a.SourcePartition))
		dst = appendLong(dst, a.SourceOffset)
	}
	dst = appendOptionals(dst, a, stage)
	if !accepted {
		dst = appendString(dst, format)
	}
	dst = appendLong(dst, a.Revision)
	return appendBool(dst, a.Withdrawn), nil
}

// appendOptionals appends the ["null", T] unions that readings and
// accepted readings share, as readOptionals reads them; stage is the
// index of a's stage symbol, negative for none.
func appendOptionals(dst []byte, a *AcceptedReading, stage int64) []byte {
	dst = appendOptLong(dst, a.PeriodEnd)
	dst = appendOptDouble(dst, a.SecondValue)
	dst = appendOptEnum(dst, stage)
	return appendOptLong(dst, a.Sequence)
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
	if acceptedReadingV3.reads(c, msg) && readFlatV3(msg[headerLen:], f, true, nil) {
		return nil
	}
	return decodeFlat(c, msg, f, FlattenAccepted)
}

// decodeFlat decodes msg into a T through c and flattens it into f: the
// flat decoders' answer when their fast path does not give one.
func decodeFlat[T any](c *Codec, msg []byte, f *FlatAcceptedReading, flatten func(*T, *FlatAcceptedReading)) error {
	var v T
	if err := c.Decode(msg, &v); err != nil {
		return err
	}
	flatten(&v, f)
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
	f.PeriodEnd, f.HasPeriodEnd = deref(a.PeriodEnd)
	f.SecondValue, f.HasSecondValue = deref(a.SecondValue)
	f.Stage, f.HasStage = deref(a.Stage)
	f.Sequence, f.HasSequence = deref(a.Sequence)
}

// readFlatV3 reads a payload in one of the v3 layouts of appendV3 (the
// accepted one if accepted), field by field, into f and, if format is not
// nil, a reading's source format; f's strings share payload's bytes. It
// reports false if the payload is not read cleanly. Bytes after the record
// are ignored, as the general codec ignores them.
func readFlatV3(payload []byte, f *FlatAcceptedReading, accepted bool, format *string) bool {
	r := newReader(unsafe.String(unsafe.SliceData(payload), len(payload)))
	*f = FlatAcceptedReading{}
	stages := readingV3Stages
	if accepted {
		stages = acceptedReadingV3Stages
	}
	f.TenantID, f.EventID, f.UserID = r.Str(), r.Str(), r.Str()
	f.DeviceID, f.GatewayID, f.Metric = r.Str(), r.Str(), r.Str()
	if accepted {
		f.LOINC = r.Str()
	}
	f.Value = r.Double()
	f.Unit = r.Str()
	f.MeasuredAt, f.ReceivedAt, f.IngestedAt = r.Long(), r.Long(), r.Long()
	if accepted {
		f.SourcePartition = r.Int()
		f.SourceOffset = r.Long()
	}
	readOptionals(r, f, stages)
	if !accepted {
		sourceFormat := r.Str()
		if format != nil {
			*format = sourceFormat
		}
	}
	f.Revision = r.Long()
	f.Withdrawn = r.Bool()
	return r.Err() == nil
}

// readOptionals reads the ["null", T] unions that readings and accepted
// readings share, in their schema order (period end, second value, stage,
// sequence; branch 0 is null) into f; stages are the layout's SleepStage
// symbols.
func readOptionals(r *reader, f *FlatAcceptedReading, stages []string) {
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
