package processor

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// acceptedV2Fingerprint is the CRC-64-AVRO fingerprint of accepted_reading
// v2, the schema appendAcceptedV2 writes.
const acceptedV2Fingerprint = 0x847eff73b7f90623

// acceptedEncoder encodes accepted readings, one for nearly every input
// record. For accepted_reading v2 it writes the Avro binary form by hand,
// straight into the batch's output buffer: the reflection-driven codec
// costs several allocations and most of the encoding time per record.
// Any other current schema (a later version) goes through the codec, so a
// schema change can never be written in the old layout.
type acceptedEncoder struct {
	codec  *schemas.Codec
	header [10]byte // single-object marker and fingerprint
	byHand bool
}

func newAcceptedEncoder(c *schemas.Codec) acceptedEncoder {
	return acceptedEncoder{codec: c, header: schemas.SingleObjectHeader(c.Current().Fingerprint),
		byHand: c.Current().Fingerprint == acceptedV2Fingerprint}
}

// maxAcceptedOverhead bounds what an encoded accepted reading takes beyond
// its strings' bytes: the header, eight string lengths, six longs (four
// times and offsets, the period end and the sequence), the partition, two
// doubles, four one-byte union indexes and the stage's enum index, each
// varint at its longest.
const maxAcceptedOverhead = 10 + 8*binary.MaxVarintLen64 + 6*binary.MaxVarintLen64 + binary.MaxVarintLen32 + 2*8 + 4 + binary.MaxVarintLen32

// bound returns the most bytes append adds for a when it writes v2 by hand
// (the codec, writing some later version, may add more).
func (e *acceptedEncoder) bound(a *schemas.AcceptedReading) int {
	return maxAcceptedOverhead + len(a.TenantID) + len(a.EventID) + len(a.UserID) + len(a.DeviceID) +
		len(a.GatewayID) + len(a.Metric) + len(a.LOINC) + len(a.Unit)
}

// append appends a as a single-object message to dst.
func (e *acceptedEncoder) append(dst []byte, a *schemas.AcceptedReading) ([]byte, error) {
	if !e.byHand {
		return e.codec.Append(dst, a)
	}
	return appendAcceptedV2(dst, e.header, a)
}

// sleepStage returns the index of s among the SleepStage enum's symbols
// (in schema order), -1 if it is none of them.
func sleepStage(s string) int64 { return int64(slices.Index(metric.SleepStages, s)) }

// appendAcceptedV2 writes a in accepted_reading v2's Avro binary encoding
// (fields in schema order; strings and longs as zigzag varint lengths and
// values, doubles as 8 little-endian bytes, unions as the branch index
// followed by the value) after header. It is byte for byte what the codec
// writes; a test holds it to that.
func appendAcceptedV2(b []byte, header [10]byte, a *schemas.AcceptedReading) ([]byte, error) {
	var stage int64 = -1
	if a.Stage != nil {
		if stage = sleepStage(*a.Stage); stage < 0 {
			return b, fmt.Errorf("encode %s: unknown enum symbol %q", schemas.NameAcceptedReading, *a.Stage)
		}
	}
	b = append(b, header[:]...)
	b = schemas.AppendString(b, a.TenantID)
	b = schemas.AppendString(b, a.EventID)
	b = schemas.AppendString(b, a.UserID)
	b = schemas.AppendString(b, a.DeviceID)
	b = schemas.AppendString(b, a.GatewayID)
	b = schemas.AppendString(b, a.Metric)
	b = schemas.AppendString(b, a.LOINC)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(a.Value))
	b = schemas.AppendString(b, a.Unit)
	b = binary.AppendVarint(b, a.MeasuredAt)
	b = binary.AppendVarint(b, a.ReceivedAt)
	b = binary.AppendVarint(b, a.IngestedAt)
	b = binary.AppendVarint(b, int64(a.SourcePartition))
	b = binary.AppendVarint(b, a.SourceOffset)
	if a.PeriodEnd == nil {
		b = append(b, 0)
	} else {
		b = binary.AppendVarint(append(b, 2), *a.PeriodEnd)
	}
	if a.SecondValue == nil {
		b = append(b, 0)
	} else {
		b = binary.LittleEndian.AppendUint64(append(b, 2), math.Float64bits(*a.SecondValue))
	}
	if stage < 0 {
		b = append(b, 0)
	} else {
		b = binary.AppendVarint(append(b, 2), stage)
	}
	if a.Sequence == nil {
		b = append(b, 0)
	} else {
		b = binary.AppendVarint(append(b, 2), *a.Sequence)
	}
	return b, nil
}
