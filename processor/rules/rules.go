// Package rules is the processor's judgement: one user's aggregate and
// what it decides about each of the user's events. Everything here is a
// plain function of the aggregate and the event (no Kafka, no PostgreSQL,
// no clock), so it is table-tested on its own and gives the same decisions
// on every replay of the same log; the processor package is the engine
// around it (merge, checkpoints, outputs, group membership).
//
// An event goes to its user's Aggregate (ApplyReading, ApplyDevice,
// ApplyProfile), which returns Outcomes; the functions of outputs.go say
// which output message each outcome becomes. Compact forgets what can no
// longer change a decision, and MarshalBinary/UnmarshalBinary are the
// snapshot a checkpoint stores.
package rules

import (
	"time"

	"github.com/vitalshq/vitals/schemas"
)

// Reason codes the processor gives rejected readings. Stable: analysts and
// dashboards match on them.
const (
	ReasonTooLate          = "too_late"          // older than the allowed lateness behind the newest reading of its stream
	ReasonFutureTimestamp  = "future_timestamp"  // measured further ahead of its ingest time than the allowed skew
	ReasonDeviceNotPaired  = "device_not_paired" // the device was not paired to the user at the measurement time
	ReasonImplausibleValue = "implausible_value" // outside the metric's plausible range; the message names the bound
	ReasonRateExceeded     = "rate_exceeded"     // more readings per device and metric per minute than allowed
	ReasonUserErased       = "user_erased"       // the user asked for erasure before this event
	ReasonMalformedEvent   = "malformed_event"   // the log record could not be decoded
	// Revisions (corrections and withdrawals of an event id).
	ReasonStaleRevision     = "stale_revision"           // a lower revision than the one applied: it arrived late or was re-sent
	ReasonConflictingRepeat = "conflicting_repeat"       // the event id (and revision) was applied with other content: a correction must raise the revision
	ReasonCorrectionWindow  = "correction_window_passed" // a revision of a reading measured longer ago than the correction window
)

// Decision is what the aggregate made of one reading.
type Decision int

// The possible decisions.
const (
	Accept    Decision = iota // new fact: emit an accepted reading
	Duplicate                 // seen before: drop silently, count it
	Reject                    // refused: emit a rejected reading with a reason
	Hold                      // not judgeable yet (its device's pairing may still arrive): keep it
)

// Config holds the aggregate's configurable invariants.
type Config struct {
	// AllowedLateness is how far behind the newest reading of the same
	// user, device and metric a reading may be measured and still be
	// accepted. It is also how long event ids are remembered for duplicate
	// detection, and how long (in the user's event time) a reading from an
	// unpaired device is held waiting for its pairing.
	AllowedLateness time.Duration
	// MaxFutureSkew is how far past its ingest time a reading may be
	// measured (device clocks run fast).
	MaxFutureSkew time.Duration
	// RequirePairing enforces device ownership.
	RequirePairing bool
	// MaxHeld bounds the readings held per user waiting for a pairing;
	// beyond it an unpaired reading is rejected at once.
	MaxHeld int
	// MaxPerMinute bounds readings per device and metric per minute of
	// measurement time.
	MaxPerMinute int
	// SpO2Low and SpO2LowFor: an alert when SpO2 stays below the threshold
	// (percent) for at least that long.
	SpO2Low    float64
	SpO2LowFor time.Duration
	// HeartRateHigh and HeartRateHighFor: an alert when heart rate stays
	// above the threshold (/min) for at least that long.
	HeartRateHigh    float64
	HeartRateHighFor time.Duration
	// CorrectionWindow is how far back a revision (a correction or
	// withdrawal) may reach: one of a reading measured more than this
	// before the newest ingest time of the user's readings is rejected
	// correction_window_passed. What the processor remembers of revised
	// readings, to apply their revisions in order, is kept for twice as
	// long (see Revised).
	CorrectionWindow time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		AllowedLateness:  10 * time.Minute,
		MaxFutureSkew:    5 * time.Minute,
		RequirePairing:   true,
		MaxHeld:          2000,
		MaxPerMinute:     600,
		SpO2Low:          90,
		SpO2LowFor:       60 * time.Second,
		HeartRateHigh:    180,
		HeartRateHighFor: 5 * time.Minute,
		CorrectionWindow: 7 * 24 * time.Hour,
	}
}

// Outcome is one output of applying an event.
type Outcome struct {
	Decision Decision
	Reason   string // for Reject
	Message  string // for Reject: never contains the health value
	// Reading is the reading judged (for a held reading released later,
	// the held one).
	Reading *schemas.Reading
	// Held carries the source position of a released held reading.
	Held *Held
	// Alert is set when accepting the reading raised or resolved an
	// alert, or (a revision) withdrew one.
	Alert *schemas.Alert
}
