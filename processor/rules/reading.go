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
	lateness := cfg.AllowedLateness.Milliseconds()
	if a.duplicate(r, lateness) {
		return Outcome{Decision: Duplicate, Reading: r}
	}
	st := a.stream(r)
	if st != nil && r.MeasuredAt < st.Newest-lateness {
		return reject(r, ReasonTooLate, "measured %s behind the newest %s reading of device %s; the allowed lateness is %s",
			time.Duration(st.Newest-r.MeasuredAt)*time.Millisecond, r.Metric, r.DeviceID, cfg.AllowedLateness)
	}
	if r.MeasuredAt > r.IngestedAt+cfg.MaxFutureSkew.Milliseconds() {
		return reject(r, ReasonFutureTimestamp, "measured %s after it was ingested; the allowed clock skew is %s",
			time.Duration(r.MeasuredAt-r.IngestedAt)*time.Millisecond, cfg.MaxFutureSkew)
	}
	if o, bad := plausible(r); bad {
		return o
	}
	if cfg.RequirePairing && !a.pairedAt(r.DeviceID, r.MeasuredAt) {
		if src == nil || len(a.Held) >= cfg.MaxHeld {
			return reject(r, ReasonDeviceNotPaired, "device %s was not paired to the user at the measurement time", r.DeviceID)
		}
		a.Held = append(a.Held, Held{Reading: *r, Partition: src.Partition, Offset: src.Offset, Original: src.Original})
		return Outcome{Decision: Hold, Reading: r}
	}
	minute := r.MeasuredAt / 60000
	if st != nil && st.Rate[minute] >= cfg.MaxPerMinute {
		return reject(r, ReasonRateExceeded, "more than %d %s readings of device %s in one minute", cfg.MaxPerMinute, r.Metric, r.DeviceID)
	}
	st = a.accept(st, r, minute)
	o := Outcome{Decision: Accept, Reading: r}
	if r.MeasuredAt == st.Newest { // only readings at the frontier move alert conditions
		o.Alert = a.alert(st, r, cfg)
	}
	return o
}

// duplicate reports whether r's event id, or its device and sequence
// number, was accepted before and is still remembered.
func (a *Aggregate) duplicate(r *schemas.Reading, lateness int64) bool {
	if seen, ok := a.Seen[r.EventID]; ok && !a.expired(seen, lateness) {
		return true
	}
	if r.Sequence != nil {
		var buf keyBuf
		if seen, ok := a.Seen[string(appendSeqKey(buf[:0], r))]; ok && !a.expired(seen, lateness) {
			return true
		}
	}
	return false
}

// accept applies an accepted reading to its stream st (nil if it has none
// yet, which accept then creates and returns) and remembers its id.
func (a *Aggregate) accept(st *Stream, r *schemas.Reading, minute int64) *Stream {
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
// reading and returns an alert when the condition has held long enough.
func (a *Aggregate) alert(st *Stream, r *schemas.Reading, cfg Config) *schemas.Alert {
	var holds bool
	var rule string
	var severity string
	var dur time.Duration
	v := st.Current
	switch r.Metric {
	case "spo2":
		m := metric.MustLookup("spo2")
		v, _ = m.Canonical(r.Value, r.Unit)
		holds, rule, severity, dur = v < cfg.SpO2Low, "spo2_low_sustained", "critical", cfg.SpO2LowFor
	case "heart_rate":
		holds, rule, severity, dur = v > cfg.HeartRateHigh, "heart_rate_high_sustained", "warning", cfg.HeartRateHighFor
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
		msg = fmt.Sprintf("SpO2 below %g%% for at least %s", cfg.SpO2Low, cfg.SpO2LowFor)
	} else {
		msg = fmt.Sprintf("heart rate above %g/min for at least %s", cfg.HeartRateHigh, cfg.HeartRateHighFor)
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
