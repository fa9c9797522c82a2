package projector

import (
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/vitalshq/vitals/schemas"
)

// acceptedFastFingerprint is the fingerprint of accepted_reading v2, the
// layout readAccepted reads. If the current schema is ever another one, the
// fast path turns itself off and every record goes through the general
// codec (correct, only slower); TestAcceptedFastPath fails to say so.
const acceptedFastFingerprint = 0x847eff73b7f90623

// Limits of the general codec (hamba/avro) that readAccepted must not
// exceed: varints of at most 5 (int) and 10 (long) bytes, strings of at
// most 1 MiB (its default MaxByteSliceSize).
const (
	maxIntBytes  = 5
	maxLongBytes = 10
	maxStringLen = 1 << 20
)

// acceptedFields is one accepted reading, flat: no pointers to allocate.
// The strings of a fast-path decode point into the record's value (see
// acceptedDecoder).
type acceptedFields struct {
	tenant, event, user, device, gateway, metric, loinc, unit string

	value                              float64
	measuredAt, receivedAt, ingestedAt int64
	sourcePartition                    int32
	sourceOffset                       int64

	periodEnd, sequence          int64
	secondValue                  float64
	stage                        string
	hasPeriodEnd, hasSecondValue bool
	hasStage, hasSequence        bool
}

// acceptedDecoder decodes accepted readings, the bulk of the projector's
// input. Records written with the current schema are read by a decoder
// written for it, which allocates nothing: its strings share the
// record's bytes. That is safe because nothing modifies or reuses a
// record's value (the Kafka client is made without kgo.WithPools, which
// would recycle them), and the columns drop the strings when they are
// reset, so they pin the fetch buffers only while the batch is held.
// Anything that decoder does not read cleanly (another writer version, a
// truncated or corrupt message) goes through the general codec, so
// results and errors are the codec's.
type acceptedDecoder struct {
	codec *schemas.Codec
	fast  bool // the current schema is the one readAccepted reads
}

func newAcceptedDecoder() *acceptedDecoder {
	c := schemas.MustCodec(schemas.NameAcceptedReading)
	return &acceptedDecoder{codec: c, fast: c.Current().Fingerprint == acceptedFastFingerprint}
}

// decode reads a single-object message into f.
func (d *acceptedDecoder) decode(msg []byte, f *acceptedFields) error {
	if d.fast && len(msg) >= 10 && msg[0] == 0xC3 && msg[1] == 0x01 &&
		binary.LittleEndian.Uint64(msg[2:10]) == acceptedFastFingerprint {
		r := avroReader{b: msg[10:]}
		if r.readAccepted(f) {
			return nil
		}
	}
	var a schemas.AcceptedReading
	if err := d.codec.Decode(msg, &a); err != nil {
		return err
	}
	*f = acceptedFields{
		tenant: a.TenantID, event: a.EventID, user: a.UserID, device: a.DeviceID, gateway: a.GatewayID,
		metric: a.Metric, loinc: a.LOINC, unit: a.Unit, value: a.Value,
		measuredAt: a.MeasuredAt, receivedAt: a.ReceivedAt, ingestedAt: a.IngestedAt,
		sourcePartition: a.SourcePartition, sourceOffset: a.SourceOffset,
	}
	if a.PeriodEnd != nil {
		f.periodEnd, f.hasPeriodEnd = *a.PeriodEnd, true
	}
	if a.SecondValue != nil {
		f.secondValue, f.hasSecondValue = *a.SecondValue, true
	}
	if a.Stage != nil {
		f.stage, f.hasStage = *a.Stage, true
	}
	if a.Sequence != nil {
		f.sequence, f.hasSequence = *a.Sequence, true
	}
	return nil
}

// avroReader reads Avro binary from a byte slice. Its first failure
// sticks (bad is set, later reads return zero values), so a record is
// checked once at the end.
type avroReader struct {
	b   []byte
	i   int
	bad bool
}

// readAccepted reads an accepted_reading v2 payload, field by field in
// schema order. It reports false if the payload is not read cleanly.
// Bytes after the record are ignored, as the general codec ignores them.
func (r *avroReader) readAccepted(f *acceptedFields) bool {
	f.tenant = r.str()
	f.event = r.str()
	f.user = r.str()
	f.device = r.str()
	f.gateway = r.str()
	f.metric = r.str()
	f.loinc = r.str()
	f.value = r.double()
	f.unit = r.str()
	f.measuredAt = r.long()
	f.receivedAt = r.long()
	f.ingestedAt = r.long()
	f.sourcePartition = r.int()
	f.sourceOffset = r.long()
	// Unions ["null", T]: branch 0 is null.
	if f.hasPeriodEnd = r.branch(); f.hasPeriodEnd {
		f.periodEnd = r.long()
	} else {
		f.periodEnd = 0
	}
	if f.hasSecondValue = r.branch(); f.hasSecondValue {
		f.secondValue = r.double()
	} else {
		f.secondValue = 0
	}
	f.stage = ""
	if f.hasStage = r.branch(); f.hasStage {
		f.stage = sleepStage(r.int())
		r.bad = r.bad || f.stage == ""
	}
	if f.hasSequence = r.branch(); f.hasSequence {
		f.sequence = r.long()
	} else {
		f.sequence = 0
	}
	return !r.bad
}

// sleepStage is symbol i of the SleepStage enum in v2, "" if there is
// none.
func sleepStage(i int32) string {
	switch i {
	case 0:
		return "awake"
	case 1:
		return "light"
	case 2:
		return "deep"
	case 3:
		return "rem"
	}
	return ""
}

// long reads a zigzag varint of at most 10 bytes, with the general
// codec's arithmetic (bits beyond 64 are dropped, as there).
func (r *avroReader) long() int64 {
	var v uint64
	var s uint
	for n := 0; n < maxLongBytes && r.i < len(r.b); n++ {
		b := r.b[r.i]
		r.i++
		v |= uint64(b&0x7f) << s
		if b&0x80 == 0 {
			return int64((v >> 1) ^ -(v & 1))
		}
		s += 7
	}
	r.bad = true
	return 0
}

// int reads a zigzag varint of at most 5 bytes into 32 bits, as the
// general codec does.
func (r *avroReader) int() int32 {
	var v uint32
	var s uint
	for n := 0; n < maxIntBytes && r.i < len(r.b); n++ {
		b := r.b[r.i]
		r.i++
		v |= uint32(b&0x7f) << s
		if b&0x80 == 0 {
			return int32((v >> 1) ^ -(v & 1))
		}
		s += 7
	}
	r.bad = true
	return 0
}

func (r *avroReader) double() float64 {
	if len(r.b)-r.i < 8 {
		r.bad = true
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.i:]))
	r.i += 8
	return v
}

// str returns the string without copying: it shares the record's bytes.
func (r *avroReader) str() string {
	n := r.long()
	if r.bad || n < 0 || n > maxStringLen || n > int64(len(r.b)-r.i) {
		r.bad = true
		return ""
	}
	if n == 0 {
		return ""
	}
	s := unsafe.String(&r.b[r.i], int(n))
	r.i += int(n)
	return s
}

// branch reads the index of a ["null", T] union: false for null, true for
// T; any other index is a failure.
func (r *avroReader) branch() bool {
	switch r.long() {
	case 0:
		return false
	case 1:
		return !r.bad
	default:
		r.bad = true
		return false
	}
}
