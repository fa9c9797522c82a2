package projector

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/schemas"
)

// row is the key of one table row: its user, by which rows of erased
// users are filtered out, and its record's position (stored in
// log_partition/log_offset). The values are in the table's columns.
type row struct {
	tenant, user string
	partition    int32
	offset       int64
}

// tableBuf is one table's rows of a batch, column by column.
type tableBuf interface {
	// add decodes a record and appends its row to every column; on
	// error (the record is unreadable and skipped) it appends nothing.
	add(rec *kgo.Record) (row, error)
	// columns lists the columns in the order of the INSERT column list.
	columns() []namedColumn
}

// sink maps one topic to one table.
type sink struct {
	topic   string
	table   string
	columns []string // the INSERT column list: newBuf's columns, by name
	// resume: the table stores the topic's positions and every record is
	// inserted exactly once, so a newly assigned partition resumes after
	// the highest stored offset. Only erased_users does not resume: erasure
	// handling is idempotent and must be redone after a crash between
	// storing an erasure and issuing its deletes.
	resume bool
	// erasure marks the erasures topic: its rows also trigger deletes.
	erasure bool
	// revisions, on the accepted readings' sink, is the sink of the same
	// topic's revisions (records with revision >= 1), which go to the
	// revisions table (see revisions.go); nil elsewhere.
	revisions *sink
	// newBuf returns an empty column buffer for the table. Buffers hold
	// state, so every projector makes its own and reuses it batch after
	// batch.
	newBuf func() tableBuf
}

// insertSQL is the sink's INSERT statement with its explicit column list
// (18.16 rejects PrepareBatch without one).
func (s *sink) insertSQL(db string) string {
	return fmt.Sprintf("INSERT INTO %s.%s (%s)", db, s.table, strings.Join(s.columns, ", "))
}

// secs is a DateTime column's value: the epoch-ms instant in whole
// seconds, rounded down (DateTime has no milliseconds; the _ms column
// keeps them). clickhouse-go takes a DateTime column as []int64 of epoch
// seconds; rounding down, negative instants included, gives what
// time.UnixMilli(ms).Truncate(time.Second) gave when rows were appended
// as time.Time.
func secs(ms int64) int64 {
	s := ms / 1000
	if ms%1000 < 0 {
		s--
	}
	return s
}

// orZero is the value p points to, or T's zero value (an absent optional
// field's column value) when p is nil.
func orZero[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// sinks builds the projector's topic-to-table mapping.
func sinks(topics eventlog.Topics) []*sink {
	accepted := newAcceptedCodec()
	rejected := schemas.MustCodec(schemas.NameRejectedReading)
	alerts := schemas.MustCodec(schemas.NameAlert)
	erasures := schemas.MustCodec(schemas.NameErasure)
	profiles := schemas.MustCodec(schemas.NameProfileEvent)
	devices := schemas.MustCodec(schemas.NameDeviceEvent)
	revisions := &sink{topic: topics.AcceptedReadings, table: warehouse.RevisionsTable, resume: true,
		newBuf: func() tableBuf { return &revisionsBuf{codec: accepted, sourceTopic: topics.Readings} }}
	out := []*sink{
		{topic: topics.AcceptedReadings, table: warehouse.ReadingsTable, resume: true, revisions: revisions,
			newBuf: func() tableBuf { return &readingsBuf{codec: accepted, sourceTopic: topics.Readings} }},
		{topic: topics.RejectedReadings, table: warehouse.RejectedTable, resume: true,
			newBuf: func() tableBuf { return &rejectedBuf{codec: rejected, sourceTopic: topics.Readings} }},
		{topic: topics.Alerts, table: warehouse.AlertsTable, resume: true,
			newBuf: func() tableBuf { return &alertsBuf{codec: alerts} }},
		{topic: topics.ProfileEvents, table: warehouse.ProfileEventsTable, resume: true,
			newBuf: func() tableBuf { return &profilesBuf{codec: profiles} }},
		{topic: topics.DeviceEvents, table: warehouse.DeviceEventsTable, resume: true,
			newBuf: func() tableBuf { return &devicesBuf{codec: devices} }},
		{topic: topics.Erasures, table: warehouse.ErasedUsersTable, erasure: true,
			newBuf: func() tableBuf { return &erasedBuf{codec: erasures} }},
	}
	for _, s := range append(out, revisions) {
		for _, c := range s.newBuf().columns() {
			s.columns = append(s.columns, c.name)
		}
	}
	return out
}

// position is the pair of columns every table stores its record's
// position in.
type position struct {
	partition col[int32]
	offset    col[int64]
}

// add appends rec's position and returns the key of rec's row, which
// tenant and user own.
func (p *position) add(rec *kgo.Record, tenant, user string) row {
	p.partition.add(rec.Partition)
	p.offset.add(rec.Offset)
	return row{tenant: tenant, user: user, partition: rec.Partition, offset: rec.Offset}
}

func (p *position) columns() []namedColumn {
	return []namedColumn{{"log_partition", &p.partition}, {"log_offset", &p.offset}}
}

// instant is a DateTime column and its name_ms companion, both filled
// from one epoch-ms value: the DateTime for partitioning and date
// functions, the companion to keep the milliseconds.
type instant struct {
	sec col[int64] // DateTime, epoch seconds
	ms  col[int64]
}

func (c *instant) add(ms int64) {
	c.sec.add(secs(ms))
	c.ms.add(ms)
}

// readingCols are the columns of a reading version, which the readings
// and revisions tables share.
type readingCols struct {
	tenant, user, device, gateway, metric, loinc col[string]
	value                                        col[float64]
	unit                                         col[string]
	measured                                     instant
	receivedAtMs, ingestedAtMs                   col[int64]
	eventID, source                              col[string]
	sourcePartition                              col[int32]
	sourceOffset, periodEnd                      col[int64]
	secondValue                                  nullCol[float64]
	stage                                        col[string]
	sequence                                     nullCol[int64]
}

func (c *readingCols) columns() []namedColumn {
	return []namedColumn{
		{"tenant_id", &c.tenant}, {"user_id", &c.user}, {"device_id", &c.device}, {"gateway_id", &c.gateway},
		{"metric", &c.metric}, {"loinc", &c.loinc}, {"value", &c.value}, {"unit", &c.unit},
		{"measured_at", &c.measured.sec}, {"measured_at_ms", &c.measured.ms}, {"received_at_ms", &c.receivedAtMs},
		{"ingested_at_ms", &c.ingestedAtMs}, {"event_id", &c.eventID}, {"source_topic", &c.source},
		{"source_partition", &c.sourcePartition}, {"source_offset", &c.sourceOffset}, {"period_end_ms", &c.periodEnd},
		{"second_value", &c.secondValue}, {"stage", &c.stage}, {"sequence", &c.sequence},
	}
}

// add appends version v (which it does not keep).
func (c *readingCols) add(v *version) {
	c.tenant.add(v.tenant)
	c.user.add(v.user)
	c.device.add(v.device)
	c.gateway.add(v.gateway)
	c.metric.add(v.metric)
	c.loinc.add(v.loinc)
	c.value.add(v.value)
	c.unit.add(v.unit)
	c.measured.add(v.measuredAt)
	c.receivedAtMs.add(v.receivedAt)
	c.ingestedAtMs.add(v.ingestedAt)
	c.eventID.add(v.eventID)
	c.source.add(v.sourceTopic)
	c.sourcePartition.add(v.sourcePartition)
	c.sourceOffset.add(v.sourceOffset)
	c.periodEnd.add(v.periodEnd) // 0 when absent
	c.secondValue.add(v.secondValue)
	c.stage.add(v.stage) // "" when absent
	c.sequence.add(v.sequence)
}

// version returns row i as a version (revision 0).
func (c *readingCols) version(i int) version {
	v := version{tenant: c.tenant.v[i], user: c.user.v[i], device: c.device.v[i], gateway: c.gateway.v[i],
		metric: c.metric.v[i], loinc: c.loinc.v[i], unit: c.unit.v[i], eventID: c.eventID.v[i], sourceTopic: c.source.v[i],
		stage: c.stage.v[i], value: c.value.v[i], measuredAt: c.measured.ms.v[i], receivedAt: c.receivedAtMs.v[i],
		ingestedAt: c.ingestedAtMs.v[i], sourcePartition: c.sourcePartition.v[i], sourceOffset: c.sourceOffset.v[i],
		periodEnd: c.periodEnd.v[i]}
	v.secondValue = opt[float64]{c.secondValue.v[i], !c.secondValue.null[i]}
	v.sequence = opt[int64]{c.sequence.v[i], !c.sequence.null[i]}
	return v
}

// readingsBuf holds rows of the readings table, decoded from accepted
// readings, the bulk of the projector's input, without intermediate
// values: schemas.DecodeFlatAcceptedReading reads the current version
// without allocating, its strings sharing the record's bytes. That is safe
// because nothing modifies a record's value once it is opened (in place,
// before decoding: sealing.go) and nothing reuses it (the Kafka client is
// made without kgo.WithPools, which would recycle them), and the columns
// drop the strings when they are reset, so they pin the fetch buffers only
// while the batch is held.
type readingsBuf struct {
	codec       acceptedCodec
	sourceTopic string
	readingCols
	pos position
}

func (b *readingsBuf) columns() []namedColumn {
	return append(b.readingCols.columns(), b.pos.columns()...)
}

func (b *readingsBuf) add(rec *kgo.Record) (row, error) {
	var f schemas.FlatAcceptedReading
	if err := b.codec.decode(rec, &f); err != nil {
		return row{}, err
	}
	if f.Revision > 0 {
		return row{}, errRevision
	}
	v := flatVersion(&f, b.sourceTopic)
	b.readingCols.add(&v)
	return b.pos.add(rec, f.TenantID, f.UserID), nil
}

// rejectedBuf holds rows of the rejected readings table.
type rejectedBuf struct {
	codec       *schemas.Codec
	sourceTopic string

	tenant, user, device, metric  col[string]
	measured                      instant
	reason, message, eventID, src col[string]
	sourcePartition               col[int32]
	sourceOffset                  col[int64]
	pos                           position
}

func (b *rejectedBuf) columns() []namedColumn {
	return append([]namedColumn{
		{"tenant_id", &b.tenant}, {"user_id", &b.user}, {"device_id", &b.device}, {"metric", &b.metric},
		{"measured_at", &b.measured.sec}, {"measured_at_ms", &b.measured.ms}, {"reason", &b.reason},
		{"message", &b.message}, {"event_id", &b.eventID}, {"source_topic", &b.src},
		{"source_partition", &b.sourcePartition}, {"source_offset", &b.sourceOffset},
	}, b.pos.columns()...)
}

func (b *rejectedBuf) add(rec *kgo.Record) (row, error) {
	var r schemas.RejectedReading
	if err := b.codec.Decode(rec.Value, &r); err != nil {
		return row{}, err
	}
	b.tenant.add(r.TenantID)
	b.user.add(r.UserID)
	b.device.add(r.DeviceID)
	b.metric.add(r.Metric)
	b.measured.add(r.MeasuredAt)
	b.reason.add(r.Reason)
	b.message.add(r.Message)
	b.eventID.add(r.EventID)
	b.src.add(b.sourceTopic)
	b.sourcePartition.add(r.SourcePartition)
	b.sourceOffset.add(r.SourceOffset)
	return b.pos.add(rec, r.TenantID, r.UserID), nil
}

// alertsBuf holds rows of the alerts table.
type alertsBuf struct {
	codec *schemas.Codec

	tenant, user, device, gateway, metric, rule, severity col[string]
	started, measured                                     instant
	receivedAtMs                                          col[int64]
	value                                                 col[float64]
	message, eventID                                      col[string]
	pos                                                   position
	alertID, status                                       col[string]
	statusAtMs, recordedAtMs                              col[int64]
}

func (b *alertsBuf) columns() []namedColumn {
	return append([]namedColumn{
		{"tenant_id", &b.tenant}, {"user_id", &b.user}, {"device_id", &b.device}, {"gateway_id", &b.gateway},
		{"metric", &b.metric}, {"rule", &b.rule}, {"severity", &b.severity},
		{"started_at", &b.started.sec}, {"started_at_ms", &b.started.ms}, {"measured_at", &b.measured.sec},
		{"measured_at_ms", &b.measured.ms}, {"received_at_ms", &b.receivedAtMs},
		{"value", &b.value}, {"message", &b.message}, {"event_id", &b.eventID},
		{"alert_id", &b.alertID}, {"status", &b.status}, {"status_at_ms", &b.statusAtMs}, {"recorded_at_ms", &b.recordedAtMs},
	}, b.pos.columns()...)
}

func (b *alertsBuf) add(rec *kgo.Record) (row, error) {
	var a schemas.Alert
	if err := b.codec.Decode(rec.Value, &a); err != nil {
		return row{}, err
	}
	b.tenant.add(a.TenantID)
	b.user.add(a.UserID)
	b.device.add(a.DeviceID)
	b.gateway.add(a.GatewayID)
	b.metric.add(a.Metric)
	b.rule.add(a.Rule)
	b.severity.add(a.Severity)
	b.started.add(a.StartedAt)
	b.measured.add(a.MeasuredAt)
	b.receivedAtMs.add(a.ReceivedAt)
	b.value.add(a.Value)
	b.message.add(a.Message)
	b.eventID.add(a.EventID)
	b.alertID.add(a.ID())
	statusAt := a.StatusAt
	if a.AlertID == "" { // a v1 alert: raised by the reading it names
		statusAt = a.MeasuredAt
	}
	b.status.add(a.Status)
	b.statusAtMs.add(statusAt)
	b.recordedAtMs.add(a.RecordedAt)
	return b.pos.add(rec, a.TenantID, a.UserID), nil
}

// eventCols are the columns the profile and device events tables share,
// filled from the fields their events share.
type eventCols struct {
	tenant, user, eventID, gateway, kind col[string]
	occurred                             instant
	receivedAtMs, ingestedAtMs           col[int64]
	pos                                  position
}

// eventFields are the fields profile and device events share.
type eventFields struct {
	tenant, user, eventID, gateway, kind string
	occurredAt, receivedAt, ingestedAt   int64
}

// columns lists the shared columns with a table's own after kind.
func (c *eventCols) columns(own ...namedColumn) []namedColumn {
	cols := append([]namedColumn{
		{"tenant_id", &c.tenant}, {"user_id", &c.user}, {"event_id", &c.eventID}, {"gateway_id", &c.gateway}, {"kind", &c.kind},
	}, own...)
	cols = append(cols, namedColumn{"occurred_at", &c.occurred.sec}, namedColumn{"occurred_at_ms", &c.occurred.ms},
		namedColumn{"received_at_ms", &c.receivedAtMs}, namedColumn{"ingested_at_ms", &c.ingestedAtMs})
	return append(cols, c.pos.columns()...)
}

// add appends the shared fields of record rec's event, whose own columns
// the caller fills.
func (c *eventCols) add(rec *kgo.Record, e eventFields) row {
	c.tenant.add(e.tenant)
	c.user.add(e.user)
	c.eventID.add(e.eventID)
	c.gateway.add(e.gateway)
	c.kind.add(e.kind)
	c.occurred.add(e.occurredAt)
	c.receivedAtMs.add(e.receivedAt)
	c.ingestedAtMs.add(e.ingestedAt)
	return c.pos.add(rec, e.tenant, e.user)
}

// profilesBuf holds rows of the profile events table.
type profilesBuf struct {
	codec *schemas.Codec
	eventCols
	birthYear   col[int32]
	sex, region col[string]
}

func (b *profilesBuf) columns() []namedColumn {
	return b.eventCols.columns(namedColumn{"birth_year", &b.birthYear}, namedColumn{"sex", &b.sex}, namedColumn{"region", &b.region})
}

func (b *profilesBuf) add(rec *kgo.Record) (row, error) {
	var e schemas.ProfileEvent
	if err := b.codec.Decode(rec.Value, &e); err != nil {
		return row{}, err
	}
	b.birthYear.add(orZero(e.BirthYear)) // 0: not stated
	b.sex.add(orZero(e.Sex))
	b.region.add(orZero(e.Region))
	return b.eventCols.add(rec, eventFields{e.TenantID, e.UserID, e.EventID, e.GatewayID, e.Kind, e.OccurredAt, e.ReceivedAt, e.IngestedAt}), nil
}

// devicesBuf holds rows of the device events table.
type devicesBuf struct {
	codec *schemas.Codec
	eventCols
	device, model, firmware col[string]
}

func (b *devicesBuf) columns() []namedColumn {
	return b.eventCols.columns(namedColumn{"device_id", &b.device}, namedColumn{"model", &b.model}, namedColumn{"firmware", &b.firmware})
}

func (b *devicesBuf) add(rec *kgo.Record) (row, error) {
	var e schemas.DeviceEvent
	if err := b.codec.Decode(rec.Value, &e); err != nil {
		return row{}, err
	}
	b.device.add(e.DeviceID)
	b.model.add(orZero(e.Model))
	b.firmware.add(orZero(e.Firmware))
	return b.eventCols.add(rec, eventFields{e.TenantID, e.UserID, e.EventID, e.GatewayID, e.Kind, e.OccurredAt, e.ReceivedAt, e.IngestedAt}), nil
}

// erasedBuf holds rows of the erased users table.
type erasedBuf struct {
	codec *schemas.Codec

	tenant, user, eventID, gateway col[string]
	requestedAtMs, receivedAtMs    col[int64]
	pos                            position
}

func (b *erasedBuf) columns() []namedColumn {
	return append([]namedColumn{
		{"tenant_id", &b.tenant}, {"user_id", &b.user}, {"event_id", &b.eventID}, {"gateway_id", &b.gateway},
		{"requested_at_ms", &b.requestedAtMs}, {"received_at_ms", &b.receivedAtMs},
	}, b.pos.columns()...)
}

// addShredded appends the erasure of a user found by a record whose key
// was shredded: no erasure record is readable any more, so the event and
// gateway are unknown, and the row has no position in the erasures topic
// (-1, which replay's verification leaves out as it leaves out the
// shredded records).
func (b *erasedBuf) addShredded(r row) {
	b.tenant.add(r.tenant)
	b.user.add(r.user)
	b.eventID.add("")
	b.gateway.add("")
	b.requestedAtMs.add(0)
	b.receivedAtMs.add(0)
	b.pos.partition.add(-1)
	b.pos.offset.add(-1)
}

func (b *erasedBuf) add(rec *kgo.Record) (row, error) {
	var e schemas.Erasure
	if err := b.codec.Decode(rec.Value, &e); err != nil {
		return row{}, err
	}
	b.tenant.add(e.TenantID)
	b.user.add(e.UserID)
	b.eventID.add(e.EventID)
	b.gateway.add(e.GatewayID)
	b.requestedAtMs.add(e.RequestedAt)
	b.receivedAtMs.add(e.ReceivedAt)
	return b.pos.add(rec, e.TenantID, e.UserID), nil
}
