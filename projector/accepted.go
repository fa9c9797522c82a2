package projector

import (
	"encoding/binary"
	"unsafe"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// acceptedFastFingerprint is the fingerprint of accepted_reading v2, the
// layout readAccepted reads. If the current schema is ever another one, the
// fast path turns itself off and every record goes through the general
// codec (correct, only slower); TestAcceptedFastPath fails to say so.
const acceptedFastFingerprint = 0x847eff73b7f90623

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
		if readAccepted(msg[10:], f) {
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

// readAccepted reads an accepted_reading v2 payload, field by field in
// schema order, its strings sharing payload's bytes. It reports false if
// the payload is not read cleanly. Bytes after the record are ignored, as
// the general codec ignores them.
func readAccepted(payload []byte, f *acceptedFields) bool {
	r := schemas.NewReader(unsafe.String(unsafe.SliceData(payload), len(payload)))
	f.tenant = r.Str()
	f.event = r.Str()
	f.user = r.Str()
	f.device = r.Str()
	f.gateway = r.Str()
	f.metric = r.Str()
	f.loinc = r.Str()
	f.value = r.Double()
	f.unit = r.Str()
	f.measuredAt = r.Long()
	f.receivedAt = r.Long()
	f.ingestedAt = r.Long()
	f.sourcePartition = r.Int()
	f.sourceOffset = r.Long()
	// Unions ["null", T]: branch 0 is null.
	f.periodEnd, f.secondValue, f.stage, f.sequence = 0, 0, "", 0
	if f.hasPeriodEnd = r.Present(); f.hasPeriodEnd {
		f.periodEnd = r.Long()
	}
	if f.hasSecondValue = r.Present(); f.hasSecondValue {
		f.secondValue = r.Double()
	}
	if f.hasStage = r.Present(); f.hasStage {
		if f.stage = sleepStage(r.Int()); f.stage == "" {
			r.Fail(schemas.ErrUnsupported)
		}
	}
	if f.hasSequence = r.Present(); f.hasSequence {
		f.sequence = r.Long()
	}
	return r.Err() == nil
}

// sleepStage is symbol i of the SleepStage enum in v2, "" if there is
// none.
func sleepStage(i int32) string {
	if i < 0 || int(i) >= len(metric.SleepStages) {
		return ""
	}
	return metric.SleepStages[i]
}
