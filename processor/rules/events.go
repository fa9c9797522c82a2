package rules

import (
	"sort"
	"strings"

	"github.com/vitalshq/vitals/schemas"
)

// readings it decided.
func (a *Aggregate) ApplyDevice(ev *schemas.DeviceEvent, cfg Config) []Outcome {
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
	return append(a.releasePaired(cfg), a.releaseExpired(ev.IngestedAt, cfg)...)
}

// releasePaired judges the held readings whose device is now paired at
// their time, in the order they arrived.
func (a *Aggregate) releasePaired(cfg Config) []Outcome {
	return a.releaseHeld(func(h *Held) (Outcome, bool) {
		if !a.pairedAt(h.Reading.DeviceID, h.Reading.MeasuredAt) {
			return Outcome{}, false
		}
		return a.judge(&h.Reading, nil, cfg), true
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
func (a *Aggregate) releaseExpired(ingestedAt int64, cfg Config) []Outcome {
	if len(a.Held) == 0 {
		return nil
	}
	lateness := cfg.AllowedLateness.Milliseconds()
	return a.releaseHeld(func(h *Held) (Outcome, bool) {
		if h.Reading.MeasuredAt >= a.Newest-lateness && h.Reading.IngestedAt >= ingestedAt-lateness {
			return Outcome{}, false
		}
		return neverPaired(h), true
	})
}

// neverPaired rejects a held reading whose pairing did not come in time.
func neverPaired(h *Held) Outcome {
	return reject(&h.Reading, ReasonDeviceNotPaired, "device %s was not paired to the user at the measurement time (no pairing arrived within the allowed lateness)", h.Reading.DeviceID)
}

// ExpireHeld rejects the held readings whose pairing can no longer arrive
// in time by the partition's clock: their partition's time (the newest
// ingest time of its records, from the log, so the same on every replay)
// has moved more than the allowed lateness past their ingest time. It is
// what settles a held reading of a user who sends nothing more.
func (a *Aggregate) ExpireHeld(partitionTime int64, cfg Config) []Outcome {
	if len(a.Held) == 0 {
		return nil
	}
	lateness := cfg.AllowedLateness.Milliseconds()
	return a.releaseHeld(func(h *Held) (Outcome, bool) {
		if h.Reading.IngestedAt >= partitionTime-lateness {
			return Outcome{}, false
		}
		return neverPaired(h), true
	})
}

// HeldDeadline is the partition time past which ExpireHeld settles the
// first of the held readings, and false if none is held.
func (a *Aggregate) HeldDeadline(cfg Config) (int64, bool) {
	if len(a.Held) == 0 {
		return 0, false
	}
	first := a.Held[0].Reading.IngestedAt
	for _, h := range a.Held[1:] {
		first = min(first, h.Reading.IngestedAt)
	}
	return first + cfg.AllowedLateness.Milliseconds(), true
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
