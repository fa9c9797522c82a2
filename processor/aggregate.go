package processor

import (
	"fmt"
	"time"

	"github.com/vitalshq/vitals/schemas"
)

// Reason codes the processor gives rejected readings. Stable: analysts and
// dashboards match on them.
const (
	ReasonTooLate        = "too_late"        // older than the allowed lateness behind the newest reading of its stream
	ReasonMalformedEvent = "malformed_event" // the log record could not be decoded
)

// Decision is what the aggregate made of one reading.
type Decision int

// The possible decisions.
const (
	Accept    Decision = iota // new fact: emit an accepted reading
	Duplicate                 // seen before: drop silently, count it
	Reject                    // refused: emit a rejected reading with a reason
)

// Rules are the aggregate's configurable invariants.
type Rules struct {
	// AllowedLateness is how far behind the newest reading of the same
	// user, device and metric a reading may be measured and still be
	// accepted. It is also how long event ids are remembered for
	// duplicate detection: anything older is rejected as too late, so it
	// never needs to be compared.
	AllowedLateness time.Duration
}

// DefaultRules are the documented defaults.
func DefaultRules() Rules { return Rules{AllowedLateness: 10 * time.Minute} }

// Aggregate is one user's state: what the processor needs to judge the
// user's next reading. It is small by construction (bounded by the
// lateness window), because it is rewritten on every batch that touches
// the user.
type Aggregate struct {
	// Version counts the readings applied to this aggregate; it moves with
	// every accepted reading and is stored with the state.
	Version int64 `json:"v"`
	// Streams holds, per device and metric, the event-time frontier and the
	// current value.
	Streams map[string]*Stream `json:"s,omitempty"`
	// Seen maps recently accepted event ids to the stream and time they were
	// measured at, for duplicate detection inside the lateness window.
	Seen map[string]SeenEvent `json:"seen,omitempty"`
}

// Stream is the state of one device's metric for one user.
type Stream struct {
	// Newest is the latest measurement time applied (epoch ms).
	Newest int64 `json:"n"`
	// Current is the value measured at Newest: the "current" state that
	// only moves forward in event time.
	Current float64 `json:"c"`
}

// SeenEvent records where an accepted event id belongs.
type SeenEvent struct {
	Stream string `json:"s"`
	At     int64  `json:"t"`
}

// streamKey joins device and metric with "/", which ingest never lets into
// an identifier.
func streamKey(r *schemas.Reading) string { return r.DeviceID + "/" + r.Metric }

// Apply judges one reading against the aggregate and updates the aggregate
// when the reading is accepted. It is deterministic: it depends only on the
// aggregate and the reading, never on the clock.
func (a *Aggregate) Apply(r *schemas.Reading, rules Rules) (Decision, string, string) {
	lateness := rules.AllowedLateness.Milliseconds()
	if seen, ok := a.Seen[r.EventID]; ok && !a.expired(seen, lateness) {
		return Duplicate, "", ""
	}
	key := streamKey(r)
	st := a.Streams[key]
	if st != nil && r.MeasuredAt < st.Newest-lateness {
		return Reject, ReasonTooLate, fmt.Sprintf("measured %s behind the newest %s reading of device %s; the allowed lateness is %s",
			time.Duration(st.Newest-r.MeasuredAt)*time.Millisecond, r.Metric, r.DeviceID, rules.AllowedLateness)
	}
	if a.Streams == nil {
		a.Streams = make(map[string]*Stream)
		a.Seen = make(map[string]SeenEvent)
	}
	if st == nil {
		st = &Stream{Newest: r.MeasuredAt, Current: r.Value}
		a.Streams[key] = st
	} else if r.MeasuredAt > st.Newest {
		// The seed's rule: the current state moves only for a newer reading;
		// a late one joins the history without moving it.
		st.Newest, st.Current = r.MeasuredAt, r.Value
	}
	a.Seen[r.EventID] = SeenEvent{Stream: key, At: r.MeasuredAt}
	a.Version++
	return Accept, "", ""
}

// expired reports whether a remembered event lies beyond the lateness
// window of its stream. Apply ignores expired entries, so whether Compact
// has removed them yet never changes a decision: outputs do not depend on
// where batch boundaries fell.
func (a *Aggregate) expired(s SeenEvent, lateness int64) bool {
	st := a.Streams[s.Stream]
	return st != nil && s.At < st.Newest-lateness
}

// Compact forgets the event ids that have expired, keeping the stored state
// bounded by the lateness window.
func (a *Aggregate) Compact(rules Rules) {
	lateness := rules.AllowedLateness.Milliseconds()
	for id, s := range a.Seen {
		if a.expired(s, lateness) {
			delete(a.Seen, id)
		}
	}
}
