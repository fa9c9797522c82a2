package rules

import (
	"math"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// Revisions: corrections and withdrawals of a reading already sent.
//
// A reading is an event id; its revision 0 is the reading as first sent,
// revision n >= 1 its nth revision, which replaces every lower one. The
// aggregate applies an event's revisions in order:
//
//   - a revision higher than the one applied is applied: its accepted
//     output tells the read side to retract the version of the event id
//     it holds and (unless it is a withdrawal) to add this one;
//   - a repeat of a revision already seen (same revision, same content) is
//     dropped, like any repeat;
//   - a lower revision than the one applied is rejected stale_revision: it
//     arrived late (or was re-sent) and must not win;
//   - the same revision with other content, and a re-send of an event id
//     with other content that is not marked as a revision, are rejected
//     conflicting_repeat: a correction must raise the revision;
//   - a revision of a reading measured more than Config.CorrectionWindow
//     before the user's newest ingest time is rejected
//     correction_window_passed.
//
// What the read side holds of the event is not kept here: the projector
// looks up the version it stored and retracts exactly that (see package
// projector), so a revision can reach back further than the aggregate
// remembers every reading (the lateness window). What ordering needs is
// kept: every event id seen within the lateness window (Seen), and every
// revised one for twice the correction window (Revised). An event id the
// aggregate no longer remembers was never revised (or was revised before
// the window): its current revision is 0, and any revision of it applies.
// If no version is stored, the projector has nothing to retract and the
// revision becomes the reading.

// Revised is what the aggregate keeps of an event id that has been
// revised, so that its later revisions apply in order.
type Revised struct {
	// Revision is the revision applied; Withdrawn says it withdrew the
	// reading.
	Revision  int64 `json:"r"`
	Withdrawn bool  `json:"w,omitempty"`
	// Measured is the latest measurement time among the versions applied:
	// the entry is kept while it lies within twice the correction window
	// behind IngestHigh.
	Measured int64 `json:"m"`
	// Prints are the fingerprints of the versions applied, so that a
	// repeat of an earlier one is recognised (the last maxPrints).
	Prints []RevisionPrint `json:"p,omitempty"`
}

// RevisionPrint is the fingerprint of one revision of a reading.
type RevisionPrint struct {
	Revision int64  `json:"r"`
	Print    uint64 `json:"p"`
}

// maxPrints bounds the fingerprints kept per revised event id.
const maxPrints = 8

// printOf returns the fingerprint of revision n, 0 if it is not known.
func (rv *Revised) printOf(n int64) uint64 {
	for _, p := range rv.Prints {
		if p.Revision == n {
			return p.Print
		}
	}
	return 0
}

// note records the fingerprint of revision n.
func (rv *Revised) note(n int64, print uint64) {
	if print == 0 || rv.printOf(n) != 0 {
		return
	}
	if len(rv.Prints) == maxPrints {
		rv.Prints = append(rv.Prints[:0], rv.Prints[1:]...)
	}
	rv.Prints = append(rv.Prints, RevisionPrint{Revision: n, Print: print})
}

// Fingerprint identifies a reading's content: device, metric, the values
// in the canonical unit, its times and stage, and whether it is a
// withdrawal; not its ids, format or arrival times, which a re-send may
// change. It is FNV-1a over those fields, computed without allocating
// (every accepted reading has one), and never 0.
func Fingerprint(r *schemas.Reading) uint64 {
	h := fnv64(fnvOffset)
	h.str(r.DeviceID)
	h.byte(0)
	h.str(r.Metric)
	h.byte(0)
	if r.Withdrawn {
		h.byte('w')
	} else {
		m, _ := metric.Lookup(r.Metric)
		v, _ := m.Canonical(r.Value, r.Unit)
		h.u64(math.Float64bits(v))
		if r.SecondValue != nil {
			d, _ := m.Canonical(*r.SecondValue, r.Unit)
			h.byte('2')
			h.u64(math.Float64bits(d))
		}
		if r.PeriodEnd != nil {
			h.byte('e')
			h.u64(uint64(*r.PeriodEnd))
		}
		if r.Stage != nil {
			h.str(*r.Stage)
		}
	}
	h.u64(uint64(r.MeasuredAt))
	return max(uint64(h), 1)
}

// fnv64 is a 64-bit FNV-1a hash being computed.
type fnv64 uint64

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func (h *fnv64) byte(c byte) { *h = (*h ^ fnv64(c)) * fnvPrime }

func (h *fnv64) str(s string) {
	for i := 0; i < len(s); i++ {
		h.byte(s[i])
	}
}

// u64 hashes v's 8 bytes, little-endian.
func (h *fnv64) u64(v uint64) {
	for i := range 8 {
		h.byte(byte(v >> (8 * i)))
	}
}

// forgotten reports whether something measured at measured has left the
// revision memory: more than twice the correction window behind
// IngestHigh. Apply ignores forgotten entries, so whether Compact has
// removed them yet never changes a decision.
func (a *Aggregate) forgotten(measured int64, cfg Config) bool {
	return measured < a.IngestHigh-2*cfg.CorrectionWindow.Milliseconds()
}

// revised returns the revision state of event id, nil if it has none (or
// it is forgotten).
func (a *Aggregate) revised(id string, cfg Config) *Revised {
	rv := a.Revised[id]
	if rv == nil || a.forgotten(rv.Measured, cfg) {
		return nil
	}
	return rv
}

// repeat judges a reading as first sent (revision 0) whose event id, or
// device and sequence number, was seen before: a repeat is dropped, a
// re-send with other content is conflicting_repeat, and one of a reading
// revised since is stale. done is false for a reading not seen before.
func (a *Aggregate) repeat(r *schemas.Reading, lateness int64, cfg Config) (o Outcome, done bool) {
	if rv := a.revised(r.EventID, cfg); rv != nil {
		if p := rv.printOf(0); p == 0 || p != Fingerprint(r) {
			return reject(r, ReasonStaleRevision, "event %s was revised (revision %d applied); this is its revision 0, sent again with other content or not remembered", r.EventID, rv.Revision), true
		}
		return Outcome{Decision: Duplicate, Reading: r}, true
	}
	if seen, ok := a.Seen[r.EventID]; ok && !a.expired(seen, lateness) {
		if seen.Print != 0 && seen.Print != Fingerprint(r) {
			return reject(r, ReasonConflictingRepeat, "event %s was accepted with other content; to correct it send it again with revision 1 (JSON and Avro revision, FHIR status corrected)", r.EventID), true
		}
		return Outcome{Decision: Duplicate, Reading: r}, true
	}
	if r.Sequence != nil {
		var buf keyBuf
		if seen, ok := a.Seen[string(appendSeqKey(buf[:0], r))]; ok && !a.expired(seen, lateness) {
			return Outcome{Decision: Duplicate, Reading: r}, true
		}
	}
	return Outcome{}, false
}

// judgeRevision decides a revision (Revision >= 1) of a reading; see the
// top of this file.
func (a *Aggregate) judgeRevision(r *schemas.Reading, src *Held, cfg Config) Outcome {
	if r.MeasuredAt < a.IngestHigh-cfg.CorrectionWindow.Milliseconds() {
		return reject(r, ReasonCorrectionWindow, "revision %d of event %s: the reading was measured %s before the newest reading of the user arrived; revisions may reach back %s",
			r.Revision, r.EventID, time.Duration(a.IngestHigh-r.MeasuredAt)*time.Millisecond, cfg.CorrectionWindow)
	}
	print := Fingerprint(r)
	current, known := int64(0), uint64(0) // what is applied, as far as remembered
	rv := a.revised(r.EventID, cfg)
	switch seen, ok := a.Seen[r.EventID]; {
	case rv != nil:
		current, known = rv.Revision, rv.printOf(r.Revision)
	case ok && !a.expired(seen, cfg.AllowedLateness.Milliseconds()):
		known = 0 // only revision 0 is applied: r is above it
	}
	switch {
	case r.Revision < current && known == print:
		return Outcome{Decision: Duplicate, Reading: r}
	case r.Revision < current:
		return reject(r, ReasonStaleRevision, "revision %d of event %s arrived after revision %d was applied", r.Revision, r.EventID, current)
	case r.Revision == current && known == print:
		return Outcome{Decision: Duplicate, Reading: r}
	case r.Revision == current:
		return reject(r, ReasonConflictingRepeat, "revision %d of event %s was applied with other content; a further correction needs revision %d", r.Revision, r.EventID, current+1)
	}
	if !r.Withdrawn {
		if o, done := a.admit(r, src, cfg); done {
			return o
		}
	}
	return a.applyRevision(r, rv, print, cfg)
}

// applyRevision accepts revision r: its event id's state moves to it, a
// correction at its stream's frontier becomes the stream's current value,
// and an alert it undoes is withdrawn.
func (a *Aggregate) applyRevision(r *schemas.Reading, rv *Revised, print uint64, cfg Config) Outcome {
	a.init()
	if rv == nil {
		rv = &Revised{Measured: r.MeasuredAt}
		if seen, ok := a.Seen[r.EventID]; ok && !a.expired(seen, cfg.AllowedLateness.Milliseconds()) {
			rv.note(0, seen.Print)
			rv.Measured = max(rv.Measured, seen.At)
		}
		if a.Revised == nil {
			a.Revised = make(map[string]*Revised)
		}
		a.Revised[strings.Clone(r.EventID)] = rv
	}
	rv.Revision, rv.Withdrawn, rv.Measured = r.Revision, r.Withdrawn, max(rv.Measured, r.MeasuredAt)
	rv.note(r.Revision, print)
	a.Version++
	o := Outcome{Decision: Accept, Reading: r}
	st := a.stream(r)
	if st == nil {
		return o
	}
	if !r.Withdrawn && r.MeasuredAt == st.Newest {
		m, _ := metric.Lookup(r.Metric)
		st.Current, _ = m.Canonical(r.Value, r.Unit)
	}
	o.Alert = a.withdrawAlert(st, r, cfg)
	return o
}
