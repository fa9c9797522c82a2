package simulate

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/schemas"
)

// copies counts one event id's rows: all of them, and the distinct source
// records they came from (a row inserted twice shares its source record; a
// reading sent twice and rejected twice does not).
type copies struct{ rows, sources uint64 }

// Observed is what the pipeline stored for one tenant.
type Observed struct {
	Accepted map[string]copies            // readings, by event id
	Rejected map[string]map[string]copies // rejected_readings, by event id and reason
	Dead     map[string]map[string]int    // dead-letter records, by event id and reason
	// Rollup is countMerge(readings) of readings_daily, plus what
	// revisions changed (readings_daily_revisions), by user, metric, day.
	Rollup map[[3]string]uint64
	// Held is, by event id, the versions of the reading the readings and
	// revision rows hold (each should hold one, or none once withdrawn).
	Held map[string][]Held
}

// Held is a version of a reading the tables hold: its revision, value and
// how many times it is held (rows minus retractions).
type Held struct {
	Revision int64
	Value    float64
	Net      int64
}

// Observe reads the tenant's readings, rejections and rollup from database
// db and every dead-letter record of the tenant from topic deadLetters,
// opening those sealed with keys.
func Observe(ctx context.Context, conn driver.Conn, keys *userkeys.Store, db, tenant string, kopts []kgo.Opt, deadLetters string) (*Observed, error) {
	o := &Observed{Accepted: map[string]copies{}, Rejected: map[string]map[string]copies{}, Dead: map[string]map[string]int{}, Rollup: map[[3]string]uint64{},
		Held: map[string][]Held{}}
	err := scanAll(ctx, conn, "readings", fmt.Sprintf(`SELECT event_id, count(), uniqExact(source_partition, source_offset)
		FROM %s.readings WHERE tenant_id = ? GROUP BY event_id`, db), []any{tenant}, func(rows warehouse.Rows) error {
		var id string
		var c copies
		if err := rows.Scan(&id, &c.rows, &c.sources); err != nil {
			return err
		}
		o.Accepted[id] = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = scanAll(ctx, conn, "rejections", fmt.Sprintf(`SELECT event_id, reason, count(), uniqExact(source_partition, source_offset)
		FROM %s.rejected_readings WHERE tenant_id = ? GROUP BY event_id, reason`, db), []any{tenant}, func(rows warehouse.Rows) error {
		var id, reason string
		var c copies
		if err := rows.Scan(&id, &reason, &c.rows, &c.sources); err != nil {
			return err
		}
		if o.Rejected[id] == nil {
			o.Rejected[id] = map[string]copies{}
		}
		o.Rejected[id][reason] = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = scanAll(ctx, conn, "rollup", fmt.Sprintf(`SELECT user_id, metric, toString(day) AS d, toUInt64(sum(n)) FROM (
			SELECT user_id, metric, day, toInt64(countMerge(readings)) AS n FROM %[1]s.readings_daily WHERE tenant_id = ? GROUP BY user_id, metric, day
			UNION ALL
			SELECT user_id, metric, day, sum(readings) AS n FROM %[1]s.readings_daily_revisions WHERE tenant_id = ? GROUP BY user_id, metric, day)
		GROUP BY user_id, metric, d HAVING sum(n) != 0`, db), []any{tenant, tenant}, func(rows warehouse.Rows) error {
		var k [3]string
		var n uint64
		if err := rows.Scan(&k[0], &k[1], &k[2], &n); err != nil {
			return err
		}
		o.Rollup[k] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := o.readHeld(ctx, conn, db, tenant); err != nil {
		return nil, err
	}
	codec := schemas.MustCodec(schemas.NameDeadLetter)
	err = eventlog.ReadToEnd(ctx, kopts, deadLetters, func(r *kgo.Record) error {
		if err := keys.LoadRecordKeys(ctx, []*kgo.Record{r}); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		value, _, err := keys.OpenRecord(nil, r)
		if err != nil {
			return fmt.Errorf("verify: dead letter at %d/%d: %w", r.Partition, r.Offset, err)
		}
		var d schemas.DeadLetter
		if err := codec.Decode(value, &d); err != nil {
			return fmt.Errorf("verify: dead letter at %d/%d: %w", r.Partition, r.Offset, err)
		}
		if d.TenantID == tenant {
			if o.Dead[d.EventID] == nil {
				o.Dead[d.EventID] = map[string]int{}
			}
			o.Dead[d.EventID][d.Reason]++
		}
		return nil
	})
	return o, err
}

// readHeld reads, per event id, the versions its readings row and its
// revision rows hold: each row counted +1, each retraction -1, per
// revision; the revised event ids only (the rest hold their reading).
func (o *Observed) readHeld(ctx context.Context, conn driver.Conn, db, tenant string) error {
	return scanAll(ctx, conn, "revisions", fmt.Sprintf(`SELECT event_id, rev, any(v), sum(n) AS k FROM (
			SELECT event_id, toInt64(0) AS rev, value AS v, toInt64(1) AS n FROM %[1]s.readings
			WHERE tenant_id = ? AND event_id IN (SELECT event_id FROM %[1]s.reading_revisions WHERE tenant_id = ?)
			UNION ALL
			SELECT event_id, revision AS rev, value AS v, toInt64(sign) AS n FROM %[1]s.reading_revisions WHERE tenant_id = ?)
		GROUP BY event_id, rev HAVING k != 0`, db), []any{tenant, tenant, tenant}, func(rows warehouse.Rows) error {
		var id string
		var h Held
		if err := rows.Scan(&id, &h.Revision, &h.Value, &h.Net); err != nil {
			return err
		}
		o.Held[id] = append(o.Held[id], h)
		return nil
	})
}

// scanAll runs a query and calls fn with each row; its errors name what
// was read, as every table Observe reads is checked alike.
func scanAll(ctx context.Context, conn driver.Conn, what, sql string, args []any, fn func(warehouse.Rows) error) error {
	rows, err := conn.Query(ctx, sql, args...)
	if err := warehouse.EachRow(rows, err, fn); err != nil {
		return fmt.Errorf("verify: read %s: %w", what, err)
	}
	return nil
}

// revisionReason is a rejection a revision or re-send of an accepted
// reading gets, which does not concern the reading itself.
func revisionReason(reason string) bool {
	return reason == "stale_revision" || reason == "conflicting_repeat"
}

// Verdicts of one manifest entry.
const (
	VerdictOK                 = "ok"
	VerdictMissing            = "missing"              // acknowledged, expected somewhere, not there
	VerdictDuplicated         = "duplicated"           // stored more than once from one source record
	VerdictWrongReason        = "wrong_reason"         // stored with another outcome or reason
	VerdictStoredAfterRefusal = "stored_after_refusal" // a refused request's item was stored
	VerdictUnacked            = "unacked"              // ingest never answered; present at most once: fine
)

// hasOutcome reports whether the event reached any outcome: stored as a
// reading, rejected or dead-lettered.
func (o *Observed) hasOutcome(id string) bool {
	return o.Accepted[id].rows > 0 || len(o.Rejected[id]) > 0 || len(o.Dead[id]) > 0
}

// Verdict judges one entry against what was stored. Copies from resending
// an item are allowed where the processor documents them: a resent
// rejected item is rejected again, and a resend that arrives after the
// lateness window is rejected too_late beside the accepted original.
func (o *Observed) Verdict(e Entry) string {
	acc := o.Accepted[e.EventID]
	rej := o.Rejected[e.EventID]
	dup := acc.rows > acc.sources
	for _, c := range rej {
		dup = dup || c.rows > c.sources
	}
	if dup {
		return VerdictDuplicated
	}
	switch e.Expect {
	case ExpectAccepted:
		for reason, c := range rej {
			if revisionReason(reason) {
				continue
			}
			if reason != "too_late" || e.Attempts < 2 || c.sources >= uint64(e.Attempts) {
				return VerdictWrongReason
			}
		}
		switch {
		case acc.sources > 1:
			return VerdictDuplicated
		case acc.rows == 1:
			return VerdictOK
		case !e.Acked:
			return VerdictUnacked
		}
		return VerdictMissing
	case ExpectRevised, ExpectWithdrawn:
		return o.revisionVerdict(e)
	case ExpectRejected:
		if acc.rows > 0 && !revisionReason(e.Reason) {
			return VerdictWrongReason
		}
		for reason := range rej {
			if reason != e.Reason && !revisionReason(reason) {
				return VerdictWrongReason
			}
		}
		switch c := rej[e.Reason]; {
		case c.sources > uint64(max(e.Attempts, 1)):
			return VerdictDuplicated
		case c.rows > 0:
			return VerdictOK
		case !e.Acked:
			return VerdictUnacked
		}
		return VerdictMissing
	case ExpectDeadLetter:
		if acc.rows > 0 || len(rej) > 0 {
			return VerdictWrongReason
		}
		for reason := range o.Dead[e.EventID] {
			if reason != e.Reason {
				return VerdictWrongReason
			}
		}
		if o.Dead[e.EventID][e.Reason] > 0 {
			return VerdictOK
		}
		if !e.Acked {
			return VerdictUnacked
		}
		return VerdictMissing
	case ExpectRefused:
		if e.Acked || acc.rows > 0 || len(rej) > 0 || len(o.Dead[e.EventID]) > 0 {
			return VerdictStoredAfterRefusal
		}
		return VerdictOK
	case ExpectRepeat:
		if acc.sources > 1 {
			return VerdictDuplicated
		}
		return VerdictOK
	}
	return VerdictWrongReason
}

// revisionVerdict judges a correction (the reading holds exactly its
// version, once) or a withdrawal (it holds none).
func (o *Observed) revisionVerdict(e Entry) string {
	held := o.Held[e.EventID]
	for _, h := range held {
		if h.Net != 1 {
			return VerdictDuplicated
		}
	}
	switch {
	case e.Expect == ExpectRevised && len(held) == 1 && held[0].Revision == e.Revision && held[0].Value == e.Value:
		return VerdictOK
	case e.Expect == ExpectWithdrawn && len(held) == 0 && o.Accepted[e.EventID].rows > 0:
		return VerdictOK
	case len(held) > 1 || (len(held) == 1 && held[0].Revision > e.Revision):
		return VerdictWrongReason
	case !e.Acked:
		return VerdictUnacked
	}
	return VerdictMissing
}

// FaultRow is one line of the summary: a fault kind and its verdicts.
type FaultRow struct {
	Fault    string         `json:"fault"`
	Expect   string         `json:"expect"`
	Sent     int            `json:"sent"`
	Acked    int            `json:"acked"`
	Verdicts map[string]int `json:"verdicts"`
}

// Report is the verifier's answer.
type Report struct {
	Faults []FaultRow `json:"faults"`
	// Extra counts stored event ids the manifest does not have.
	Extra int `json:"extra_event_ids"`
	// AcceptedExpected is the number of distinct readings that must be in
	// readings; RawRows and RawDistinct are what is there.
	AcceptedExpected int    `json:"accepted_expected"`
	RawRows          uint64 `json:"raw_rows"`
	RawDistinct      int    `json:"raw_distinct_event_ids"`
	RollupReadings   uint64 `json:"rollup_readings"`
	// Withdrawn counts the readings withdrawn: the rollup counts the raw
	// rows less these.
	Withdrawn uint64 `json:"withdrawn"`
	// RollupMismatches counts (user, metric, day) whose rollup count is not
	// the number of distinct readings stored for it.
	RollupMismatches int `json:"rollup_mismatches"`
	// AckedWithoutOutcome counts events ingest acknowledged that reached
	// no outcome at all: no reading, no rejection, no dead letter (a
	// reading held for ever would be one). It must be 0.
	AckedWithoutOutcome int      `json:"acked_without_outcome"`
	Examples            []string `json:"examples,omitempty"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	if r.Extra > 0 || r.RollupMismatches > 0 || r.AckedWithoutOutcome > 0 || uint64(r.RawDistinct) != r.RawRows || r.RollupReadings != r.RawRows-r.Withdrawn {
		return false
	}
	for _, f := range r.Faults {
		for v, n := range f.Verdicts {
			if n > 0 && v != VerdictOK && v != VerdictUnacked {
				return false
			}
		}
	}
	return true
}

// Compare checks every manifest entry and the tables as a whole.
func Compare(entries []Entry, o *Observed) *Report {
	r := &Report{}
	rows := map[string]*FaultRow{}
	known := map[string]bool{}
	perKey := map[[3]string]uint64{}
	withdrawn := map[string]bool{}
	for _, e := range entries {
		if e.Expect == ExpectWithdrawn && len(o.Held[e.EventID]) == 0 && o.Accepted[e.EventID].rows > 0 {
			withdrawn[e.EventID] = true
		}
	}
	r.Withdrawn = uint64(len(withdrawn))
	for _, e := range entries {
		known[e.EventID] = true
		fr := rows[e.Fault]
		if fr == nil {
			fr = &FaultRow{Fault: e.Fault, Expect: e.Expect, Verdicts: map[string]int{}}
			if e.Reason != "" && e.Expect != ExpectDeadLetter {
				fr.Expect += " " + e.Reason
			}
			rows[e.Fault] = fr
		}
		fr.Sent++
		if e.Acked {
			fr.Acked++
		}
		v := o.Verdict(e)
		fr.Verdicts[v]++
		if v != VerdictOK && v != VerdictUnacked && len(r.Examples) < 20 {
			r.Examples = append(r.Examples, fmt.Sprintf("%s %s (%s, acked %v, %d attempts): %s", e.Fault, e.EventID, e.Expect, e.Acked, e.Attempts, v))
		}
		if e.Acked && e.Expect != ExpectRefused && e.Expect != ExpectRepeat && !o.hasOutcome(e.EventID) {
			r.AckedWithoutOutcome++
		}
		if e.Expect == ExpectAccepted && o.Accepted[e.EventID].rows > 0 {
			r.AcceptedExpected++
			if !withdrawn[e.EventID] {
				perKey[[3]string{e.UserID, e.Metric, e.Day}]++
			}
		}
	}
	for _, k := range FaultKinds {
		if fr := rows[k]; fr != nil {
			r.Faults = append(r.Faults, *fr)
		}
	}
	for id, c := range o.Accepted {
		r.RawRows += c.rows
		r.RawDistinct++
		if !known[id] {
			r.Extra++
		}
	}
	for id := range o.Rejected {
		if !known[id] {
			r.Extra++
		}
	}
	for id := range o.Dead {
		if !known[id] {
			r.Extra++
		}
	}
	for k, n := range o.Rollup {
		r.RollupReadings += n
		if perKey[k] != n {
			r.RollupMismatches++
		}
	}
	for k, n := range perKey {
		if _, ok := o.Rollup[k]; !ok && n > 0 {
			r.RollupMismatches++
		}
	}
	return r
}

// Print writes the summary table.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	verdicts := []string{VerdictOK, VerdictUnacked, VerdictMissing, VerdictDuplicated, VerdictWrongReason, VerdictStoredAfterRefusal}
	fmt.Fprint(tw, "fault\texpected\tsent\tacked")
	for _, v := range verdicts {
		fmt.Fprintf(tw, "\t%s", v)
	}
	fmt.Fprintln(tw, "\t")
	for _, f := range r.Faults {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d", f.Fault, f.Expect, f.Sent, f.Acked)
		for _, v := range verdicts {
			fmt.Fprintf(tw, "\t%d", f.Verdicts[v])
		}
		fmt.Fprintln(tw, "\t")
	}
	tw.Flush()
	fmt.Fprintf(w, "readings: %d rows, %d distinct event ids, %d expected present, %d withdrawn since; rollup counts %d readings, %d (user, metric, day) mismatches; %d stored event ids not in the manifest; %d acknowledged without any outcome\n",
		r.RawRows, r.RawDistinct, r.AcceptedExpected, r.Withdrawn, r.RollupReadings, r.RollupMismatches, r.Extra, r.AckedWithoutOutcome)
	for _, e := range r.Examples {
		fmt.Fprintln(w, "  e.g.", e)
	}
	if r.OK() {
		fmt.Fprintln(w, "VERIFIED: every acknowledged event has exactly its expected outcome; nothing missing, nothing extra")
	} else {
		fmt.Fprintln(w, "FAILED: see the table")
	}
}
