package rules

import (
	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// The messages outcomes become. The processor encodes them, numbers them
// and produces them to their topics; what they say is decided here. A
// reading's place in the raw log (partition, offset) and, for a rejected
// one, its original bytes travel with it, so that a consumer can find the
// input every output came from.

// Accepted fills dst with the accepted reading r becomes: its values in the
// metric's canonical unit, with the metric's LOINC code. It fills a
// message of the caller's instead of returning one because nearly every
// input record is accepted, and the processor reuses one.
func Accepted(dst *schemas.AcceptedReading, r *schemas.Reading, partition int32, offset int64) {
	m, _ := metric.Lookup(r.Metric)
	value, _ := m.Canonical(r.Value, r.Unit) // ingest admitted only known units
	var second *float64
	if r.SecondValue != nil {
		v, _ := m.Canonical(*r.SecondValue, r.Unit)
		second = &v
	}
	*dst = schemas.AcceptedReading{
		TenantID: r.TenantID, EventID: r.EventID, UserID: r.UserID, DeviceID: r.DeviceID,
		GatewayID: r.GatewayID, Metric: r.Metric, LOINC: m.LOINC, Value: value, Unit: m.Unit,
		MeasuredAt: r.MeasuredAt, ReceivedAt: r.ReceivedAt, IngestedAt: r.IngestedAt,
		SourcePartition: partition, SourceOffset: offset,
		PeriodEnd: r.PeriodEnd, SecondValue: second, Stage: r.Stage, Sequence: r.Sequence,
		Revision: r.Revision, Withdrawn: r.Withdrawn,
	}
}

// Rejected returns the rejected reading a Reject outcome becomes.
func Rejected(o *Outcome, partition int32, offset int64, original []byte) *schemas.RejectedReading {
	r := o.Reading
	if o.Reason == ReasonUserErased {
		// Nothing of an erased user is kept, not even in a rejection:
		// only who it was and which event.
		return &schemas.RejectedReading{TenantID: r.TenantID, EventID: r.EventID, UserID: r.UserID,
			Reason: o.Reason, Message: o.Message, SourcePartition: partition, SourceOffset: offset}
	}
	return &schemas.RejectedReading{
		TenantID: r.TenantID, EventID: r.EventID, UserID: r.UserID, DeviceID: r.DeviceID,
		Metric: r.Metric, MeasuredAt: r.MeasuredAt, Reason: o.Reason, Message: o.Message,
		SourcePartition: partition, SourceOffset: offset, Original: original,
	}
}

// Malformed returns the rejected reading a log record that is not a
// readable message of its kind ("reading", "device" or "profile") becomes.
// Nothing in it is known but the record's key, which is the user id.
func Malformed(kind string, key []byte, partition int32, offset int64, original []byte) *schemas.RejectedReading {
	return &schemas.RejectedReading{
		UserID:  string(key),
		Reason:  ReasonMalformedEvent,
		Message: "the log record is not a readable " + kind + " message",

		SourcePartition: partition, SourceOffset: offset, Original: original,
	}
}

// Erasure returns the erasure an erasure request becomes once ApplyProfile
// has erased the user: it tells the read side to delete the user's data.
func Erasure(ev *schemas.ProfileEvent) *schemas.Erasure {
	return &schemas.Erasure{TenantID: ev.TenantID, EventID: ev.EventID, UserID: ev.UserID,
		GatewayID: ev.GatewayID, RequestedAt: ev.OccurredAt, ReceivedAt: ev.ReceivedAt}
}
