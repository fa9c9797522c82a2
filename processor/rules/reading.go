package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// ApplyReading judges one reading and returns its outcome followed by the
// outcomes of any held readings it released. It is deterministic: it
// depends only on the aggregate and the reading, never on the clock.
func (a *Aggregate) ApplyReading(r *schemas.Reading, src Held, cfg Config) []Outcome {
	return a.AppendReading(nil, r, &src, cfg)
}

// AppendReading is ApplyReading appending to out, so that the processor
// reuses one slice of outcomes for every record instead of allocating one
// per reading. src is where r lies in the log, kept with r if it is held.
func (a *Aggregate) AppendReading(out []Outcome, r *schemas.Reading, src *Held, cfg Config) []Outcome {
	if a.ErasedAt != 0 {
		return append(out, Outcome{Decision: Reject, Reading: r, Reason: ReasonUserErased, Message: "the user asked for erasure; their events are no longer processed"})
	}
	o := a.judge(r, src, cfg)
	if o.Decision != Hold {
		out = append(out, o)
	}
	if len(a.Held) == 0 {
		return out
	}
	return append(out, a.releaseExpired(r.IngestedAt, cfg)...)
}

// judge decides one reading (fresh or held).
func (a *Aggregate) judge(r *schemas.Reading, src *Held, cfg Config) Outcome {
	if r.IngestedAt > a.IngestHigh {
		a.IngestHigh = r.IngestedAt
	}
	if r.Revision > 0 {
		return a.judgeRevision(r, src, cfg)
	}
	lateness := cfg.AllowedLateness.Milliseconds()
	if o, done := a.repeat(r, lateness, cfg); done {
		return o
	}
	st := a.stream(r)
	if st != nil && r.MeasuredAt < st.Newest-lateness {
		return reject(r, ReasonTooLate, "measured %s behind the newest %s reading of device %s; the allowed lateness is %s",
			time.Duration(st.Newest-r.MeasuredAt)*time.Millisecond, r.Metric, r.DeviceID, cfg.AllowedLateness)
	}
	if o, done := a.admit(r, src, cfg); done {
		return o
	}
	minute := r.MeasuredAt / 60000
	if st != nil && st.Rate[minute] >= cfg.MaxPerMinute {
		return reject(r, ReasonRateExceeded, "more than %d %s readings of device %s in one minute", cfg.MaxPerMinute, r.Metric, r.DeviceID)
	}
	st = a.accept(st, r, minute, Fingerprint(r))
	o := Outcome{Decision: Accept, Reading: r}
	if r.MeasuredAt == st.Newest { // only readings at the frontier move alert conditions
		o.Alert = a.alert(st, r, cfg)
	}
	return o
}

// accept applies an accepted reading to its stream st (nil if it has none
// yet, which accept then creates and returns) and remembers its id with
// the fingerprint of its content.
// admit decides what a reading (or revision) is refused or held for
// whatever came before it: a measurement time beyond the allowed clock
// skew, an implausible value, a device not paired at the time (held while
// a pairing may still come, when it came from the log and the aggregate
// has room). It reports false if none applies.
func (a *Aggregate) admit(r *schemas.Reading, src *Held, cfg Config) (Outcome, bool) {
	if r.MeasuredAt > r.IngestedAt+cfg.MaxFutureSkew.Milliseconds() {
		return reject(r, ReasonFutureTimestamp, "measured %s after it was ingested; the allowed clock skew is %s",
			time.Duration(r.MeasuredAt-r.IngestedAt)*time.Millisecond, cfg.MaxFutureSkew), true
	}
	if o, bad := plausible(r); bad {
		return o, true
	}
	if cfg.RequirePairing && !a.pairedAt(r.DeviceID, r.MeasuredAt) {
		if src == nil || len(a.Held) >= cfg.MaxHeld {
			return reject(r, ReasonDeviceNotPaired, "device %s was not paired to the user at the measurement time", r.DeviceID), true
		}
		a.Held = append(a.Held, Held{Reading: *r, Partition: src.Partition, Offset: src.Offset, Original: src.Original})
		return Outcome{Decision: Hold, Reading: r}, true
	}
	return Outcome{}, false
}

func (a *Aggregate) accept(st *Stream, r *schemas.Reading, minute int64, print uint64) *Stream {
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
	a.Seen[strings.Clone(r.EventID)] = SeenEvent{Stream: st.key, At: r.MeasuredAt, Print: print}
	if r.Sequence != nil {
		var buf keyBuf
		a.Seen[string(appendSeqKey(buf[:0], r))] = SeenEvent{Stream: st.key, At: r.MeasuredAt}
	}
	if r.MeasuredAt > a.Newest {
		a.Newest = r.MeasuredAt
	}
	a.Version++
	return st
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
// reading and returns an alert when the condition has held long enough
// (raised), or when it ends after an alert was raised (resolved).
func (a *Aggregate) alert(st *Stream, r *schemas.Reading, cfg Config) *schemas.Alert {
	ru, ok := ruleFor(r.Metric, cfg)
	if !ok {
		return nil
	}
	v := st.Current
	if r.Metric == "spo2" {
		m := metric.MustLookup("spo2")
		v, _ = m.Canonical(r.Value, r.Unit)
	}
	if !ru.holds(v) {
		var resolved *schemas.Alert
		if st.Raised {
			if i := st.run(st.CondSince); i >= 0 {
				run := &st.Runs[i]
				run.Ended = r.MeasuredAt
				resolved = a.lifecycle(ru, run, r, schemas.AlertResolved, ru.resolvedMessage(cfg))
			}
		}
		st.CondSince, st.Raised = 0, false
		return resolved
	}
	if st.CondSince == 0 {
		st.CondSince = r.MeasuredAt
	}
	if st.Raised || r.MeasuredAt-st.CondSince < ru.dur.Milliseconds() {
		return nil
	}
	st.Raised = true
	st.Runs = append(a.liveRuns(st.Runs, cfg), AlertRun{Since: st.CondSince, RaisedAt: r.MeasuredAt, Value: v})
	run := &st.Runs[len(st.Runs)-1]
	// The message is formatted here, not for every reading: almost none
	// raises an alert.
	return a.lifecycle(ru, run, r, schemas.AlertRaised, ru.message(cfg))
}

// AlertRun is one alert a stream raised, kept so that a correction of one
// of the readings that raised it can withdraw it: the condition held from
// Since to RaisedAt (the frontier readings in between raised it), Value
// is the reading's at RaisedAt, Ended when a reading ended the condition
// (0 while it holds). Runs are kept while RaisedAt lies within twice the
// correction window, and dropped once withdrawn.
type AlertRun struct {
	Since    int64   `json:"s"`
	RaisedAt int64   `json:"r"`
	Value    float64 `json:"v"`
	Ended    int64   `json:"e,omitempty"`
}

// maxRuns bounds the alerts a stream keeps for withdrawal.
const maxRuns = 32

// liveRuns drops the runs a correction can no longer reach, and the oldest
// beyond maxRuns-1 (room for one more).
func (a *Aggregate) liveRuns(runs []AlertRun, cfg Config) []AlertRun {
	kept := runs[:0]
	for _, run := range runs {
		if !a.forgotten(run.RaisedAt, cfg) {
			kept = append(kept, run)
		}
	}
	if n := len(kept) - (maxRuns - 1); n > 0 {
		kept = append(kept[:0], kept[n:]...)
	}
	if len(kept) == 0 {
		return nil
	}
	return kept
}

// run is the index of the run that started at since, -1 if none.
func (st *Stream) run(since int64) int {
	for i := range st.Runs {
		if st.Runs[i].Since == since {
			return i
		}
	}
	return -1
}

// withdrawAlert withdraws the alert whose raising readings the accepted
// revision r changed: r falls in the run [Since, RaisedAt] and withdraws
// its reading, or corrects it to a value outside the condition. If the
// condition was still holding, it starts afresh with the next reading
// that meets it. Corrections never raise or resolve an alert.
func (a *Aggregate) withdrawAlert(st *Stream, r *schemas.Reading, cfg Config) *schemas.Alert {
	ru, ok := ruleFor(r.Metric, cfg)
	if !ok {
		return nil
	}
	for i := range st.Runs {
		run := st.Runs[i]
		if r.MeasuredAt < run.Since || r.MeasuredAt > run.RaisedAt {
			continue
		}
		if !r.Withdrawn {
			m, _ := metric.Lookup(r.Metric)
			if v, _ := m.Canonical(r.Value, r.Unit); ru.holds(v) {
				return nil
			}
		}
		if st.Runs = append(st.Runs[:i], st.Runs[i+1:]...); len(st.Runs) == 0 {
			st.Runs = nil
		}
		if st.Raised && st.CondSince == run.Since {
			st.CondSince, st.Raised = 0, false
		}
		return a.lifecycle(ru, &run, r, schemas.AlertWithdrawn, "withdrawn: a reading that raised it was corrected or withdrawn")
	}
	return nil
}

// alertRule is one of the rules that raise alerts: its condition is a
// value below (low) or above a bound. (No closure: it is made for every
// frontier reading, and must not allocate.)
type alertRule struct {
	name, severity, metric string
	dur                    time.Duration
	bound                  float64
	low                    bool
}

// holds reports whether value v meets the rule's condition.
func (ru alertRule) holds(v float64) bool {
	if ru.low {
		return v < ru.bound
	}
	return v > ru.bound
}

// ruleFor returns the alert rule watching metric, if any.
func ruleFor(metricName string, cfg Config) (alertRule, bool) {
	switch metricName {
	case "spo2":
		return alertRule{name: "spo2_low_sustained", severity: "critical", dur: cfg.SpO2LowFor, metric: metricName, bound: cfg.SpO2Low, low: true}, true
	case "heart_rate":
		return alertRule{name: "heart_rate_high_sustained", severity: "warning", dur: cfg.HeartRateHighFor, metric: metricName, bound: cfg.HeartRateHigh}, true
	}
	return alertRule{}, false
}

func (ru alertRule) message(cfg Config) string {
	if ru.metric == "spo2" {
		return fmt.Sprintf("SpO2 below %g%% for at least %s", cfg.SpO2Low, cfg.SpO2LowFor)
	}
	return fmt.Sprintf("heart rate above %g/min for at least %s", cfg.HeartRateHigh, cfg.HeartRateHighFor)
}

func (ru alertRule) resolvedMessage(cfg Config) string {
	if ru.metric == "spo2" {
		return fmt.Sprintf("resolved: SpO2 back at or above %g%%", cfg.SpO2Low)
	}
	return fmt.Sprintf("resolved: heart rate back at or below %g/min", cfg.HeartRateHigh)
}

// lifecycle returns the alert event of a run: raised, resolved or
// withdrawn by reading r. Its alert id derives from the rule and the start
// of the condition, so a re-processing raises the same alert with the same
// id; each later event of the alert has an id of its own.
func (a *Aggregate) lifecycle(ru alertRule, run *AlertRun, r *schemas.Reading, status, msg string) *schemas.Alert {
	sum := sha256.Sum256([]byte(r.TenantID + "\x00" + r.UserID + "\x00" + r.DeviceID + "\x00" + ru.name + "\x00" + strconv.FormatInt(run.Since, 10)))
	id := "alert-" + hex.EncodeToString(sum[:16])
	event := id
	if status != schemas.AlertRaised {
		event = id + ":" + status
	}
	return &schemas.Alert{
		TenantID: r.TenantID, EventID: event, UserID: r.UserID, DeviceID: r.DeviceID,
		GatewayID: r.GatewayID, Metric: r.Metric, Rule: ru.name, Severity: ru.severity, MeasuredAt: run.RaisedAt,
		StartedAt: run.Since, ReceivedAt: r.ReceivedAt, Value: run.Value, Message: msg,
		AlertID: id, Status: status, StatusAt: r.MeasuredAt, RecordedAt: r.IngestedAt,
	}
}
