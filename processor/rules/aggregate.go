package rules

import (
	"strconv"

	"github.com/vitalshq/vitals/schemas"
)

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
	// IngestHigh is the latest ingest time of the user's readings judged:
	// the clock, taken from the log, against which the correction window
	// is measured.
	IngestHigh int64 `json:"ih,omitempty"`
	// Revised holds, per event id that has been revised, what ordering its
	// later revisions needs; kept while the event can still be revised
	// (see Revised).
	Revised map[string]*Revised `json:"rv,omitempty"`
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
	// Runs are the alerts this stream raised that a correction may still
	// withdraw (see AlertRun), oldest first.
	Runs []AlertRun `json:"ar,omitempty"`
	// key is the stream's key in Aggregate.Streams. The ids remembered for
	// the stream share this one copy of it, and judging a reading needs
	// no new string to name its stream.
	key string
}

// SeenEvent records where an accepted event id belongs, and the
// fingerprint of what was accepted under it (0: not known, in snapshots
// written before fingerprints), which tells a repeat from a conflicting
// re-send.
type SeenEvent struct {
	Stream string `json:"s"`
	At     int64  `json:"t"`
	Print  uint64 `json:"p,omitempty"`
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

// appendSeqKey appends the key under which a reading's device and
// sequence number are remembered, "#device/sequence", to b.
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

// Compact forgets what can no longer change a decision: expired event ids
// and rate minutes outside the lateness window.
func (a *Aggregate) Compact(cfg Config) {
	lateness := cfg.AllowedLateness.Milliseconds()
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
		st.Runs = a.liveRuns(st.Runs, cfg)
	}
	for id, rv := range a.Revised {
		if a.forgotten(rv.Measured, cfg) {
			delete(a.Revised, id)
		}
	}
	if len(a.Revised) == 0 {
		a.Revised = nil
	}
}
