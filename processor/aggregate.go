package processor

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/metric"
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

// Rules are the aggregate's configurable invariants.
type Rules struct {
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
}

// DefaultRules are the documented defaults.
func DefaultRules() Rules {
	return Rules{
		AllowedLateness:  10 * time.Minute,
		MaxFutureSkew:    5 * time.Minute,
		RequirePairing:   true,
		MaxHeld:          2000,
		MaxPerMinute:     600,
		SpO2Low:          90,
		SpO2LowFor:       60 * time.Second,
		HeartRateHigh:    180,
		HeartRateHighFor: 5 * time.Minute,
	}
}

// Aggregate is one user's state: what the processor needs to judge the
// user's next event. It stays small (bounded by the lateness window and
// MaxHeld), because it is rewritten on every batch that touches the user.
type Aggregate struct {
	// Version counts the events applied to this aggregate.
	Version int64 `json:"v"`
	// Streams holds, per device and metric, the event-time frontier, the
	// current value, the rate window and alert conditions.
	Streams map[string]*Stream `json:"s,omitempty"`
	// Seen maps recently accepted event ids (and "#device/sequence" keys)
	// to the stream and time they were measured at.
	Seen map[string]SeenEvent `json:"seen,omitempty"`
	// Devices is the pairing history of the user's devices.
	Devices map[string][]Pairing `json:"d,omitempty"`
	// Held are readings from devices not (yet) paired at their time.
	Held []Held `json:"h,omitempty"`
	// Newest is the latest measurement time of any accepted reading: the
	// user's event-time watermark, which releases held readings.
	Newest int64 `json:"n,omitempty"`
	// ErasedAt, once set, makes the aggregate a tombstone: the user asked
	// for erasure at that time and every later event is refused.
	ErasedAt int64 `json:"erased,omitempty"`
}

// Stream is the state of one device's metric for one user.
type Stream struct {
	Newest  int64   `json:"n"` // latest measurement time applied (epoch ms)
	Current float64 `json:"c"` // value at Newest: the "current" state, which only moves forward
	// Rate counts readings per minute of measurement time, for the
	// minutes still inside the lateness window.
	Rate map[int64]int `json:"r,omitempty"`
	// CondSince is when the stream's alert condition (SpO2 low, heart rate
	// high) began, 0 if it does not hold; Raised says whether this run of
	// the condition already raised its alert.
	CondSince int64 `json:"cs,omitempty"`
	Raised    bool  `json:"cr,omitempty"`
	// key is the stream's key in Aggregate.Streams. The ids remembered for
	// the stream share this one copy of it, and judging a reading needs
	// no new string to name its stream.
	key string
}

// SeenEvent records where an accepted event id belongs.
type SeenEvent struct {
	Stream string `json:"s"`
	At     int64  `json:"t"`
}

// Pairing is one interval during which a device belonged to the user:
// [From, To), To = 0 while still paired.
type Pairing struct {
	From int64 `json:"f"`
	To   int64 `json:"t,omitempty"`
}

// Held is a reading waiting for its device's pairing, with what its output
// needs.
type Held struct {
	Reading   schemas.Reading `json:"r"`
	Partition int32           `json:"p"`
	Offset    int64           `json:"o"`
	Original  []byte          `json:"b"`
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
	// Alert is set when accepting the reading raised an alert.
	Alert *schemas.Alert
}

// streamKey joins device and metric with "/", which ingest never lets into
// an identifier.
func streamKey(r *schemas.Reading) string { return r.DeviceID + "/" + r.Metric }

// keyBuf is room on the stack for a stream or sequence key: looking one up
// in a map through string(bytes) allocates nothing, so only keys that are
// stored cost an allocation.
type keyBuf [96]byte

// stream returns the state of r's device and metric, nil if there is none.
func (a *Aggregate) stream(r *schemas.Reading) *Stream {
	var buf keyBuf
	k := append(append(append(buf[:0], r.DeviceID...), '/'), r.Metric...)
	return a.Streams[string(k)]
}

func (a *Aggregate) init() {
	if a.Streams == nil {
		a.Streams = make(map[string]*Stream)
	}
	if a.Seen == nil {
		a.Seen = make(map[string]SeenEvent)
	}
	if a.Devices == nil {
		a.Devices = make(map[string][]Pairing)
	}
}

// expired reports whether a remembered event lies beyond the lateness
// window of its stream. Apply ignores expired entries, so whether Compact
// has removed them yet never changes a decision: outputs do not depend on
// where batch boundaries fell.
func (a *Aggregate) expired(s SeenEvent, lateness int64) bool {
	st := a.Streams[s.Stream]
	return st != nil && s.At < st.Newest-lateness
}

func seqKey(r *schemas.Reading) string {
	var buf keyBuf
	return string(appendSeqKey(buf[:0], r))
}

// appendSeqKey appends seqKey(r) to b.
func appendSeqKey(b []byte, r *schemas.Reading) []byte {
	b = append(append(append(b, '#'), r.DeviceID...), '/')
	return strconv.AppendInt(b, *r.Sequence, 10)
}

// pairedAt reports whether device was paired to the user at t.
func (a *Aggregate) pairedAt(device string, t int64) bool {
	for _, p := range a.Devices[device] {
		if t >= p.From && (p.To == 0 || t < p.To) {
			return true
		}
	}
	return false
}

// ApplyReading judges one reading and returns its outcome followed by the
// outcomes of any held readings it released. It is deterministic: it
// depends only on the aggregate and the reading, never on the clock.
func (a *Aggregate) ApplyReading(r *schemas.Reading, src Held, rules Rules) []Outcome {
	return a.appendReading(nil, r, &src, rules)
}

// appendReading is ApplyReading appending to out, so that the processor
// reuses one slice of outcomes for every record instead of allocating one
// per reading.
func (a *Aggregate) appendReading(out []Outcome, r *schemas.Reading, src *Held, rules Rules) []Outcome {
	if a.ErasedAt != 0 {
		return append(out, Outcome{Decision: Reject, Reading: r, Reason: ReasonUserErased, Message: "the user asked for erasure; their events are no longer processed"})
	}
	o := a.judge(r, src, rules)
	if o.Decision != Hold {
		out = append(out, o)
	}
	if len(a.Held) == 0 {
		return out
	}
	return append(out, a.releaseExpired(r.IngestedAt, rules)...)
}

// judge decides one reading (fresh or held).
func (a *Aggregate) judge(r *schemas.Reading, src *Held, rules Rules) Outcome {
	lateness := rules.AllowedLateness.Milliseconds()
	if seen, ok := a.Seen[r.EventID]; ok && !a.expired(seen, lateness) {
		return Outcome{Decision: Duplicate, Reading: r}
	}
	if r.Sequence != nil {
		var buf keyBuf
		if seen, ok := a.Seen[string(appendSeqKey(buf[:0], r))]; ok && !a.expired(seen, lateness) {
			return Outcome{Decision: Duplicate, Reading: r}
		}
	}
	st := a.stream(r)
	if st != nil && r.MeasuredAt < st.Newest-lateness {
		return reject(r, ReasonTooLate, "measured %s behind the newest %s reading of device %s; the allowed lateness is %s",
			time.Duration(st.Newest-r.MeasuredAt)*time.Millisecond, r.Metric, r.DeviceID, rules.AllowedLateness)
	}
	if r.MeasuredAt > r.IngestedAt+rules.MaxFutureSkew.Milliseconds() {
		return reject(r, ReasonFutureTimestamp, "measured %s after it was ingested; the allowed clock skew is %s",
			time.Duration(r.MeasuredAt-r.IngestedAt)*time.Millisecond, rules.MaxFutureSkew)
	}
	if o, bad := plausible(r); bad {
		return o
	}
	if rules.RequirePairing && !a.pairedAt(r.DeviceID, r.MeasuredAt) {
		if src == nil || len(a.Held) >= rules.MaxHeld {
			return reject(r, ReasonDeviceNotPaired, "device %s was not paired to the user at the measurement time", r.DeviceID)
		}
		a.Held = append(a.Held, Held{Reading: *r, Partition: src.Partition, Offset: src.Offset, Original: src.Original})
		return Outcome{Decision: Hold, Reading: r}
	}
	minute := r.MeasuredAt / 60000
	if st != nil && st.Rate[minute] >= rules.MaxPerMinute {
		return reject(r, ReasonRateExceeded, "more than %d %s readings of device %s in one minute", rules.MaxPerMinute, r.Metric, r.DeviceID)
	}
	a.init()
	if st == nil {
		key := streamKey(r)
		st = &Stream{Newest: r.MeasuredAt, Current: r.Value, key: key}
		a.Streams[key] = st
	} else if r.MeasuredAt > st.Newest {
		st.Newest, st.Current = r.MeasuredAt, r.Value
	}
	if st.Rate == nil {
		st.Rate = make(map[int64]int)
	}
	st.Rate[minute]++
	// The id is copied: a decoded reading's strings share the decoder's
	// buffers with other readings', and remembering the id itself would
	// keep all of them in memory for as long as the id is remembered.
	a.Seen[strings.Clone(r.EventID)] = SeenEvent{Stream: st.key, At: r.MeasuredAt}
	if r.Sequence != nil {
		var buf keyBuf
		a.Seen[string(appendSeqKey(buf[:0], r))] = SeenEvent{Stream: st.key, At: r.MeasuredAt}
	}
	if r.MeasuredAt > a.Newest {
		a.Newest = r.MeasuredAt
	}
	a.Version++
	o := Outcome{Decision: Accept, Reading: r}
	if r.MeasuredAt == st.Newest { // only readings at the frontier move alert conditions
		o.Alert = a.alert(st, r, rules)
	}
	return o
}

func reject(r *schemas.Reading, reason, format string, args ...any) Outcome {
	return Outcome{Decision: Reject, Reading: r, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// plausible checks the registry's ranges on the canonical value.
func plausible(r *schemas.Reading) (Outcome, bool) {
	m, ok := metric.Lookup(r.Metric)
	if !ok {
		return reject(r, ReasonImplausibleValue, "metric %q is not in the registry", r.Metric), true
	}
	v, _ := m.Canonical(r.Value, r.Unit)
	switch m.Shape {
	case metric.Interval:
		secs := float64(derefOr(r.PeriodEnd, r.MeasuredAt)-r.MeasuredAt) / 1000
		if v < 0 {
			return reject(r, ReasonImplausibleValue, "%s must not be negative", m.Name), true
		}
		if max := m.MaxPerSecond * secs; v > max {
			return reject(r, ReasonImplausibleValue, "%s above %g %s for an interval of %gs (%g per second)", m.Name, max, m.Unit, secs, m.MaxPerSecond), true
		}
	case metric.Pair:
		if v < m.Min || v > m.Max {
			return reject(r, ReasonImplausibleValue, "%s outside %g–%g %s", m.Name, m.Min, m.Max, m.Unit), true
		}
		if r.SecondValue != nil {
			d, _ := m.Canonical(*r.SecondValue, r.Unit)
			if d < m.Second.Min || d > m.Second.Max {
				return reject(r, ReasonImplausibleValue, "%s %s outside %g–%g %s", m.Name, m.Second.Name, m.Second.Min, m.Second.Max, m.Unit), true
			}
			if !(v > d) {
				return reject(r, ReasonImplausibleValue, "%s: systolic must be above %s", m.Name, m.Second.Name), true
			}
		}
	default:
		if v < m.Min || v > m.Max || math.IsNaN(v) {
			return reject(r, ReasonImplausibleValue, "%s outside %g–%g %s", m.Name, m.Min, m.Max, m.Unit), true
		}
	}
	return Outcome{}, false
}

func derefOr(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

// alert updates the stream's alert condition with an accepted frontier
// reading and returns an alert when the condition has held long enough.
func (a *Aggregate) alert(st *Stream, r *schemas.Reading, rules Rules) *schemas.Alert {
	var holds bool
	var rule string
	var severity string
	var dur time.Duration
	v := st.Current
	switch r.Metric {
	case "spo2":
		m := metric.MustLookup("spo2")
		v, _ = m.Canonical(r.Value, r.Unit)
		holds, rule, severity, dur = v < rules.SpO2Low, "spo2_low_sustained", "critical", rules.SpO2LowFor
	case "heart_rate":
		holds, rule, severity, dur = v > rules.HeartRateHigh, "heart_rate_high_sustained", "warning", rules.HeartRateHighFor
	default:
		return nil
	}
	if !holds {
		st.CondSince, st.Raised = 0, false
		return nil
	}
	if st.CondSince == 0 {
		st.CondSince = r.MeasuredAt
	}
	if st.Raised || r.MeasuredAt-st.CondSince < dur.Milliseconds() {
		return nil
	}
	st.Raised = true
	// The message is formatted here, not for every reading: almost none
	// raises an alert.
	var msg string
	if r.Metric == "spo2" {
		msg = fmt.Sprintf("SpO2 below %g%% for at least %s", rules.SpO2Low, rules.SpO2LowFor)
	} else {
		msg = fmt.Sprintf("heart rate above %g/min for at least %s", rules.HeartRateHigh, rules.HeartRateHighFor)
	}
	// The id derives from the rule and the start of the condition, so a
	// re-processing raises the same alert with the same id.
	sum := sha256.Sum256([]byte(r.TenantID + "\x00" + r.UserID + "\x00" + r.DeviceID + "\x00" + rule + "\x00" + strconv.FormatInt(st.CondSince, 10)))
	return &schemas.Alert{
		TenantID: r.TenantID, EventID: "alert-" + hex.EncodeToString(sum[:16]), UserID: r.UserID, DeviceID: r.DeviceID,
		GatewayID: r.GatewayID, Metric: r.Metric, Rule: rule, Severity: severity, MeasuredAt: r.MeasuredAt,
		StartedAt: st.CondSince, ReceivedAt: r.ReceivedAt, Value: v, Message: msg,
	}
}

// ApplyDevice records a pairing change and returns the outcomes of held
// readings it decided.
func (a *Aggregate) ApplyDevice(ev *schemas.DeviceEvent, rules Rules) []Outcome {
	if a.ErasedAt != 0 {
		return nil
	}
	a.init()
	switch ev.Kind {
	case "paired":
		ps := a.Devices[ev.DeviceID]
		for _, p := range ps {
			if p.From == ev.OccurredAt {
				return nil // a repeat
			}
		}
		ps = append(ps, Pairing{From: ev.OccurredAt})
		sort.Slice(ps, func(i, j int) bool { return ps[i].From < ps[j].From })
		// Each interval ends where the next pairing starts, unless an
		// unpairing ended it earlier.
		for i := range ps[:len(ps)-1] {
			if ps[i].To == 0 || ps[i].To > ps[i+1].From {
				ps[i].To = ps[i+1].From
			}
		}
		a.Devices[strings.Clone(ev.DeviceID)] = ps // a copy of its own, as for the ids in judge
	case "unpaired":
		ps := a.Devices[ev.DeviceID]
		for i := len(ps) - 1; i >= 0; i-- { // the interval the unpairing falls in
			if ps[i].From <= ev.OccurredAt && (ps[i].To == 0 || ev.OccurredAt < ps[i].To) {
				ps[i].To = ev.OccurredAt
				break
			}
		}
	default: // status reports change nothing the invariants use
		return nil
	}
	a.Version++
	return append(a.releasePaired(rules), a.releaseExpired(ev.IngestedAt, rules)...)
}

// releasePaired judges the held readings whose device is now paired at
// their time, in the order they arrived.
func (a *Aggregate) releasePaired(rules Rules) []Outcome {
	return a.releaseHeld(func(h *Held) (Outcome, bool) {
		if !a.pairedAt(h.Reading.DeviceID, h.Reading.MeasuredAt) {
			return Outcome{}, false
		}
		return a.judge(&h.Reading, nil, rules), true
	})
}

// releaseHeld removes the held readings that decide releases, in the order
// they arrived, and returns their outcomes, each carrying its held reading.
func (a *Aggregate) releaseHeld(decide func(h *Held) (Outcome, bool)) []Outcome {
	var out []Outcome
	kept := a.Held[:0]
	for i := range a.Held {
		h := a.Held[i]
		if o, release := decide(&h); release {
			o.Held = &h
			out = append(out, o)
			continue
		}
		kept = append(kept, h)
	}
	a.Held = kept
	if len(a.Held) == 0 {
		a.Held = nil
	}
	return out
}

// releaseExpired rejects the held readings whose pairing can no longer
// arrive in time: the user's event time has moved more than the allowed
// lateness past them, or they were ingested more than the allowed lateness
// before the event being applied (ingestedAt). Both clocks come from the
// log, so the outcome is the same on every replay.
func (a *Aggregate) releaseExpired(ingestedAt int64, rules Rules) []Outcome {
	if len(a.Held) == 0 {
		return nil
	}
	lateness := rules.AllowedLateness.Milliseconds()
	return a.releaseHeld(func(h *Held) (Outcome, bool) {
		if h.Reading.MeasuredAt >= a.Newest-lateness && h.Reading.IngestedAt >= ingestedAt-lateness {
			return Outcome{}, false
		}
		return reject(&h.Reading, ReasonDeviceNotPaired, "device %s was not paired to the user at the measurement time (no pairing arrived within the allowed lateness)", h.Reading.DeviceID), true
	})
}

// ApplyProfile handles a profile event. An erasure request turns the
// aggregate into a tombstone; the returned outcomes reject what was held.
// It reports whether the user was erased by this event.
func (a *Aggregate) ApplyProfile(ev *schemas.ProfileEvent) ([]Outcome, bool) {
	if a.ErasedAt != 0 || ev.Kind != "erasure_requested" {
		return nil, false
	}
	var out []Outcome
	for i := range a.Held {
		h := a.Held[i]
		o := reject(&h.Reading, ReasonUserErased, "the user asked for erasure; their events are no longer processed")
		o.Held = &h
		out = append(out, o)
	}
	*a = Aggregate{Version: a.Version + 1, ErasedAt: max(ev.OccurredAt, 1)}
	return out, true
}

// Compact forgets what can no longer change a decision: expired event ids
// and rate minutes outside the lateness window.
func (a *Aggregate) Compact(rules Rules) {
	lateness := rules.AllowedLateness.Milliseconds()
	if len(a.Streams) == 1 {
		// The common case, one device and metric: compare with its cutoff
		// instead of looking the stream up for every remembered id.
		for key, st := range a.Streams {
			cutoff := st.Newest - lateness
			for id, s := range a.Seen {
				if s.At < cutoff && s.Stream == key {
					delete(a.Seen, id)
				}
			}
		}
	} else {
		for id, s := range a.Seen {
			if a.expired(s, lateness) {
				delete(a.Seen, id)
			}
		}
	}
	for _, st := range a.Streams {
		for m := range st.Rate {
			if (m+1)*60000 < st.Newest-lateness {
				delete(st.Rate, m)
			}
		}
	}
}
