package projector

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/schemas"
)

// Revisions of readings.
//
// An accepted reading with revision 0 is a row of the readings table, as
// always. One with revision n >= 1 (a correction or withdrawal the
// processor applied, in order) goes to the revisions table as signed rows:
// a copy of the version of its event id the read side holds, with sign -1,
// and (unless it is a withdrawal) the new version with sign +1. The held
// version is read from what is stored, the readings and revisions tables,
// and from the batch itself where an earlier record of it made the
// version: so the retraction is exactly the row the read side holds, and
// the rollups' views, fed by both tables, subtract exactly what they
// added. Both rows carry the revision record's position, so the record is
// inserted once like any other (a record whose event has nothing stored
// and that withdraws it leaves no row; doing it again does nothing).
//
// The lookup must see every earlier record of the event: a user's
// records are in one partition, consumed in order by one projector at a
// time, and a batch is stored (or given up) before the next is decoded.

// errRevision is readingsBuf.add's answer for a record with revision >= 1,
// which belongs to the revisions table.
var errRevision = errors.New("a revision: it goes to the revisions table")

// version is one version of a reading as the tables store it: the columns
// of the readings table and its revision.
type version struct {
	tenant, user, device, gateway, metric, loinc, unit, eventID, sourceTopic, stage string

	value                              float64
	measuredAt, receivedAt, ingestedAt int64
	sourcePartition                    int32
	sourceOffset, periodEnd            int64
	secondValue                        opt[float64]
	sequence                           opt[int64]
	revision                           int64
}

// eventKey names a reading across versions.
type eventKey struct{ tenant, user, event string }

// revisionRecord is a decoded accepted reading with revision >= 1.
type revisionRecord struct {
	v         version
	withdrawn bool
	rec       *kgo.Record
}

// revisionsBuf holds rows of the revisions table. Records are added as
// they are decoded; the rows are made by resolve, once the versions they
// retract are known.
type revisionsBuf struct {
	codec       acceptedCodec
	sourceTopic string

	records []revisionRecord

	readingCols
	pos        position
	revision   col[int64]
	sign       col[int8]
	recordedAt col[int64]
}

func (b *revisionsBuf) columns() []namedColumn {
	return append(append(b.readingCols.columns(),
		namedColumn{"revision", &b.revision}, namedColumn{"sign", &b.sign}, namedColumn{"recorded_at_ms", &b.recordedAt}),
		b.pos.columns()...)
}

// add decodes a revision record; its rows come later (resolve). It
// returns the row key the record's rows will have.
func (b *revisionsBuf) add(rec *kgo.Record) (row, error) {
	var f schemas.FlatAcceptedReading
	if err := b.codec.decode(rec, &f); err != nil {
		return row{}, err
	}
	if f.Revision <= 0 {
		return row{}, fmt.Errorf("record %d/%d is not a revision", rec.Partition, rec.Offset)
	}
	b.records = append(b.records, revisionRecord{v: flatVersion(&f, b.sourceTopic), withdrawn: f.Withdrawn, rec: rec})
	return row{tenant: f.TenantID, user: f.UserID, partition: rec.Partition, offset: rec.Offset}, nil
}

// flatVersion is the version an accepted reading makes.
func flatVersion(f *schemas.FlatAcceptedReading, sourceTopic string) version {
	v := version{tenant: f.TenantID, user: f.UserID, device: f.DeviceID, gateway: f.GatewayID, metric: f.Metric,
		loinc: f.LOINC, unit: f.Unit, eventID: f.EventID, sourceTopic: sourceTopic, stage: f.Stage, value: f.Value,
		measuredAt: f.MeasuredAt, receivedAt: f.ReceivedAt, ingestedAt: f.IngestedAt,
		sourcePartition: f.SourcePartition, sourceOffset: f.SourceOffset, periodEnd: f.PeriodEnd, revision: f.Revision,
		secondValue: opt[float64]{f.SecondValue, f.HasSecondValue}, sequence: opt[int64]{f.Sequence, f.HasSequence}}
	return v
}

// appendRow appends version v as a row with sign, recorded at recordedAt,
// at the position of rec.
func (b *revisionsBuf) appendRow(v *version, sign int8, recordedAt int64, rec *kgo.Record) row {
	b.readingCols.add(v)
	b.revision.add(v.revision)
	b.sign.add(sign)
	b.recordedAt.add(recordedAt)
	return b.pos.add(rec, v.tenant, v.user)
}

// acceptedRef is one record of the accepted-readings topic in a batch, in
// order: row i of the readings table's share, or revision record i.
type acceptedRef struct {
	revision bool
	i        int
}

// resolve makes the revisions table's rows of the batch: for every
// revision record, in order, the retraction of the version its event id
// holds and the new version. held looks up the versions stored before
// the batch.
func resolve(order []acceptedRef, readings *pending, revisions *pending, held func(keys []eventKey) (map[eventKey][]version, error)) error {
	rb := revisions.buf.(*revisionsBuf)
	if len(rb.records) == 0 {
		return nil
	}
	var rd *readingsBuf
	if readings != nil {
		rd = readings.buf.(*readingsBuf)
	}
	// The versions the batch itself makes, as of the record being
	// resolved; a key present with nil holds nothing (withdrawn).
	latest := map[eventKey][]version{}
	var need []eventKey
	seen := map[eventKey]bool{}
	for _, ref := range order {
		if !ref.revision {
			continue
		}
		r := &rb.records[ref.i]
		k := eventKey{r.v.tenant, r.v.user, r.v.eventID}
		if !seen[k] {
			seen[k] = true
			need = append(need, k)
		}
	}
	stored, err := held(need)
	if err != nil {
		return err
	}
	for _, ref := range order {
		if !ref.revision {
			v := rd.version(ref.i)
			latest[eventKey{v.tenant, v.user, v.eventID}] = []version{v}
			continue
		}
		r := &rb.records[ref.i]
		k := eventKey{r.v.tenant, r.v.user, r.v.eventID}
		vs, inBatch := latest[k]
		if !inBatch {
			vs = stored[k]
		}
		for i := range vs {
			revisions.rows = append(revisions.rows, rb.appendRow(&vs[i], -1, r.v.ingestedAt, r.rec))
		}
		if r.withdrawn {
			latest[k] = nil
			continue
		}
		revisions.rows = append(revisions.rows, rb.appendRow(&r.v, 1, r.v.ingestedAt, r.rec))
		latest[k] = []version{r.v}
	}
	rb.records = rb.records[:0]
	return nil
}

// versionColumns are the columns a lookup reads, in version's order.
const versionColumns = `tenant_id, user_id, device_id, gateway_id, metric, loinc, unit, event_id, source_topic, stage,
	value, measured_at_ms, received_at_ms, ingested_at_ms, source_partition, source_offset, period_end_ms, second_value, sequence`

// heldVersions returns the versions of the given readings that the
// readings and revisions tables hold: a version counts once however many
// copies of its row are stored, and not at all once a row with sign -1
// retracts it. Normally each reading holds one version (none once
// withdrawn).
func (p *Projector) heldVersions(ctx context.Context, keys []eventKey) (map[eventKey][]version, error) {
	out := map[eventKey][]version{}
	byTenant := map[string][]eventKey{}
	for _, k := range keys {
		byTenant[k.tenant] = append(byTenant[k.tenant], k)
	}
	for tenant, ks := range byTenant {
		for len(ks) > 0 {
			chunk := ks[:min(len(ks), 500)]
			ks = ks[len(chunk):]
			if err := p.lookUp(ctx, tenant, chunk, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// lookUp adds the held versions of one tenant's readings to out.
func (p *Projector) lookUp(ctx context.Context, tenant string, keys []eventKey, out map[eventKey][]version) error {
	tuples := strings.TrimSuffix(strings.Repeat("(?, ?), ", len(keys)), ", ")
	cond := fmt.Sprintf("tenant_id = ? AND (user_id, event_id) IN (%s)", tuples)
	args := []any{tenant}
	for _, k := range keys {
		args = append(args, k.user, k.event)
	}
	q := fmt.Sprintf(`SELECT %[1]s, toInt64(0) AS rev, toInt8(1) AS sgn FROM %[2]s.%[3]s WHERE %[5]s
		UNION ALL
		SELECT %[1]s, revision AS rev, sign AS sgn FROM %[2]s.%[4]s WHERE %[5]s`,
		versionColumns, p.db, warehouse.ReadingsTable, warehouse.RevisionsTable, cond)
	rows, err := p.conn.Query(ctx, q, append(args, args...)...)
	if err != nil {
		return fmt.Errorf("look up revised readings: %w", err)
	}
	defer rows.Close()
	type id struct {
		k   eventKey
		rev int64
	}
	plus, minus := map[id]version{}, map[id]bool{}
	var order []id
	for rows.Next() {
		var v version
		var sign int8
		var second *float64
		var seq *int64
		if err := rows.Scan(&v.tenant, &v.user, &v.device, &v.gateway, &v.metric, &v.loinc, &v.unit, &v.eventID, &v.sourceTopic, &v.stage,
			&v.value, &v.measuredAt, &v.receivedAt, &v.ingestedAt, &v.sourcePartition, &v.sourceOffset, &v.periodEnd, &second, &seq,
			&v.revision, &sign); err != nil {
			return fmt.Errorf("look up revised readings: %w", err)
		}
		v.secondValue, v.sequence = optOf(second), optOf(seq)
		n := id{eventKey{v.tenant, v.user, v.eventID}, v.revision}
		if sign < 0 {
			minus[n] = true
			continue
		}
		if _, dup := plus[n]; !dup {
			plus[n] = v
			order = append(order, n)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up revised readings: %w", err)
	}
	for _, n := range order {
		if !minus[n] {
			out[n.k] = append(out[n.k], plus[n])
		}
	}
	return nil
}
