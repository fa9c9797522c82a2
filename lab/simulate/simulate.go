// Package simulate is a fleet simulator for the ingest API and a verifier
// of what the pipeline made of it.
//
// Run posts readings of N simulated users at a target rate over HTTP, as
// JSON or as Avro ReadingBatch bodies (Options.Format),
// replaying the bundled Fitbit heart-rate sample (values and their order,
// one sample user per simulated user modulo 8) with measurement times at
// the moment of sending, plus SpO2 and step-interval readings. It injects
// faults whose outcome the processor's rules (rules.DefaultConfig in processor/rules)
// decide without ambiguity, and writes a manifest line per event with the
// outcome it must have: accepted, rejected with a reason, dead-lettered by
// ingest, or refused (wrong API key). Verify compares ClickHouse and the
// dead-letter topic with the manifest.
//
// Every user's items are posted by one client, in order, and a request is
// retried (only its items without a final verdict) until ingest answers for
// them before the client's next request: so the log holds each user's
// events in the order they were generated, except that a retried item may
// also appear twice, which the processor drops as a repeat. Fault items are
// placed relative to readings ingest has acknowledged, with margins of
// minutes around the 10-minute allowed lateness, so that the expected
// outcome does not depend on timing.
package simulate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Fault kinds, as written in the manifest's "fault" field.
const (
	FaultNone        = "none"         // a normal reading: accepted
	FaultDuplicate   = "duplicate"    // an acknowledged reading sent again: dropped as a repeat
	FaultOutOfOrder  = "out_of_order" // 3 min behind its stream: accepted (within the lateness)
	FaultLate        = "late"         // 15 min behind an acknowledged reading of its stream: too_late
	FaultUnpaired    = "unpaired"     // from a device never paired, 15 min behind the user: device_not_paired
	FaultImplausible = "implausible"  // heart rate 300/min: implausible_value
	FaultMalformed   = "malformed"    // unknown unit, or a bad timestamp (JSON) or NaN value (Avro): refused by ingest, dead-lettered
	FaultWrongKey    = "wrong_key"    // posted with an unknown API key: refused (401), stored nowhere
	// Revisions of an acknowledged reading, each of a reading not revised
	// before.
	FaultCorrection  = "correction"         // revision 2 with another value: the reading holds it
	FaultWithdrawal  = "withdrawal"         // revision 1, withdrawn: the reading counts nowhere
	FaultStale       = "stale_revision"     // revision 1 of a reading whose correction was acknowledged: stale_revision
	FaultConflicting = "conflicting_repeat" // the reading again with another value, no revision: conflicting_repeat
)

// FaultKinds lists the kinds in report order.
var FaultKinds = []string{FaultNone, FaultDuplicate, FaultOutOfOrder, FaultLate, FaultUnpaired, FaultImplausible, FaultMalformed, FaultWrongKey,
	FaultCorrection, FaultWithdrawal, FaultStale, FaultConflicting}

// Expected outcomes, the manifest's "expect" field.
const (
	ExpectAccepted   = "accepted"    // in readings exactly once, and counted once in the rollup
	ExpectRejected   = "rejected"    // in rejected_readings with Reason, not in readings
	ExpectDeadLetter = "dead_letter" // refused by ingest with Reason and in the dead-letter topic
	ExpectRefused    = "refused"     // the request was refused: stored nowhere
	ExpectRepeat     = "repeat"      // a copy of an earlier event: adds nothing
	ExpectRevised    = "revised"     // a revision: the reading holds its value (Value) and revision, counted once
	ExpectWithdrawn  = "withdrawn"   // a withdrawal: the reading holds no version, counted nowhere
)

// Entry is one manifest line: an event the simulator sent and what must
// become of it.
type Entry struct {
	EventID string `json:"id"`
	UserID  string `json:"user"`
	Metric  string `json:"metric,omitempty"`
	// Day is the UTC day of measured_at, the rollup's day.
	Day    string `json:"day,omitempty"`
	Fault  string `json:"fault"`
	Expect string `json:"expect"`
	Reason string `json:"reason,omitempty"`
	// Revision is the item's revision of the reading (0: as first sent);
	// Value, for ExpectRevised, the value the reading must hold.
	Revision int64   `json:"revision,omitempty"`
	Value    float64 `json:"value,omitempty"`
	// Acked is true when ingest answered for the item with a final verdict
	// (accepted, or rejected for a dead-letter item); for a refused item,
	// true means ingest wrongly accepted it.
	Acked bool `json:"acked"`
	// AckedAt is when that answer came, epoch ms (0 if never).
	AckedAt int64 `json:"acked_at,omitempty"`
	// Attempts counts the requests that carried the item.
	Attempts int `json:"attempts"`
	// Status is ingest's last per-item status or the HTTP failure.
	Status string `json:"status,omitempty"`
}

// manifestWriter serializes entries from concurrent clients. Without a
// destination it only counts them: bench e2e keeps no manifest, and
// encoding one line per reading would be the simulator's largest cost.
type manifestWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer // nil: count only
	line []byte
	n    int
}

func newManifestWriter(w io.Writer) *manifestWriter {
	if w == nil || w == io.Discard {
		return &manifestWriter{}
	}
	return &manifestWriter{w: bufio.NewWriterSize(w, 1<<16)}
}

func (m *manifestWriter) write(es []Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w != nil {
		for i := range es {
			m.line = appendEntry(m.line[:0], &es[i])
			if _, err := m.w.Write(m.line); err != nil {
				return fmt.Errorf("manifest: %w", err)
			}
		}
	}
	m.n += len(es)
	return nil
}

func (m *manifestWriter) flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.w == nil {
		return nil
	}
	if err := m.w.Flush(); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// ReadManifest reads the manifest's JSON lines.
func ReadManifest(r io.Reader) ([]Entry, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	var out []Entry
	for {
		var e Entry
		err := dec.Decode(&e)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("manifest line %d: %w", len(out)+1, err)
		}
		out = append(out, e)
	}
}

// day is the rollup's day of an epoch-ms time.
func day(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.DateOnly) }
