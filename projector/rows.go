package projector

import (
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/schemas"
)

// row is one table row decoded from one topic record, with the record's
// position (stored in log_partition/log_offset) and its user, by which
// rows of erased users are filtered out.
type row struct {
	tenant, user string
	partition    int32
	offset       int64
	vals         []any // in the sink's column order
}

// sink maps one topic to one table.
type sink struct {
	topic   string
	table   string
	columns []string
	// resume: the table stores the topic's positions and every record is
	// inserted exactly once, so a newly assigned partition resumes after
	// the highest stored offset. Only erased_users does not resume: erasure
	// handling is idempotent and must be redone after a crash between
	// storing an erasure and issuing its deletes.
	resume bool
	// erasure marks the erasures topic: its rows also trigger deletes.
	erasure bool
	// decode maps a record to a row; an error means the record is
	// unreadable and is skipped.
	decode func(rec *kgo.Record) (row, error)
}

// insertSQL is the sink's INSERT statement with its explicit column list
// (18.16 rejects PrepareBatch without one).
func (s *sink) insertSQL(db string) string {
	return fmt.Sprintf("INSERT INTO %s.%s (%s)", db, s.table, strings.Join(s.columns, ", "))
}

// Column lists, in the order the decode functions produce values.
var (
	readingsColumns = []string{
		"tenant_id", "user_id", "device_id", "gateway_id", "metric", "loinc",
		"value", "unit", "measured_at", "measured_at_ms", "received_at_ms", "ingested_at_ms",
		"event_id", "source_topic", "source_partition", "source_offset",
		"period_end_ms", "second_value", "stage", "sequence", "log_partition", "log_offset",
	}
	rejectedColumns = []string{
		"tenant_id", "user_id", "device_id", "metric", "measured_at", "measured_at_ms",
		"reason", "message", "event_id", "source_topic", "source_partition", "source_offset",
		"log_partition", "log_offset",
	}
	alertsColumns = []string{
		"tenant_id", "user_id", "device_id", "gateway_id", "metric", "rule", "severity",
		"started_at", "started_at_ms", "measured_at", "measured_at_ms", "received_at_ms",
		"value", "message", "event_id", "log_partition", "log_offset",
	}
	profileColumns = []string{
		"tenant_id", "user_id", "event_id", "gateway_id", "kind", "birth_year", "sex", "region",
		"occurred_at", "occurred_at_ms", "received_at_ms", "ingested_at_ms", "log_partition", "log_offset",
	}
	deviceColumns = []string{
		"tenant_id", "user_id", "device_id", "event_id", "gateway_id", "kind", "model", "firmware",
		"occurred_at", "occurred_at_ms", "received_at_ms", "ingested_at_ms", "log_partition", "log_offset",
	}
	erasedColumns = []string{
		"tenant_id", "user_id", "event_id", "gateway_id", "requested_at_ms", "received_at_ms", "log_partition", "log_offset",
	}
)

// sec is a DateTime column's value: the epoch-ms instant truncated to
// the second (DateTime has no milliseconds; the _ms column keeps them).
func sec(ms int64) time.Time { return time.UnixMilli(ms).UTC().Truncate(time.Second) }

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// sinks builds the projector's topic-to-table mapping.
func sinks(topics eventlog.Topics) []*sink {
	accepted := schemas.MustCodec(schemas.NameAcceptedReading)
	rejected := schemas.MustCodec(schemas.NameRejectedReading)
	alerts := schemas.MustCodec(schemas.NameAlert)
	erasures := schemas.MustCodec(schemas.NameErasure)
	profiles := schemas.MustCodec(schemas.NameProfileEvent)
	devices := schemas.MustCodec(schemas.NameDeviceEvent)
	return []*sink{
		{topic: topics.AcceptedReadings, table: warehouse.ReadingsTable, columns: readingsColumns, resume: true,
			decode: func(rec *kgo.Record) (row, error) {
				var r schemas.AcceptedReading
				if err := accepted.Decode(rec.Value, &r); err != nil {
					return row{}, err
				}
				var periodEnd int64
				if r.PeriodEnd != nil {
					periodEnd = *r.PeriodEnd
				}
				return row{tenant: r.TenantID, user: r.UserID, partition: rec.Partition, offset: rec.Offset, vals: []any{
					r.TenantID, r.UserID, r.DeviceID, r.GatewayID, r.Metric, r.LOINC,
					r.Value, r.Unit, sec(r.MeasuredAt), r.MeasuredAt, r.ReceivedAt, r.IngestedAt,
					r.EventID, topics.Readings, r.SourcePartition, r.SourceOffset,
					periodEnd, r.SecondValue, str(r.Stage), r.Sequence, rec.Partition, rec.Offset,
				}}, nil
			}},
		{topic: topics.RejectedReadings, table: warehouse.RejectedTable, columns: rejectedColumns, resume: true,
			decode: func(rec *kgo.Record) (row, error) {
				var r schemas.RejectedReading
				if err := rejected.Decode(rec.Value, &r); err != nil {
					return row{}, err
				}
				return row{tenant: r.TenantID, user: r.UserID, partition: rec.Partition, offset: rec.Offset, vals: []any{
					r.TenantID, r.UserID, r.DeviceID, r.Metric, sec(r.MeasuredAt), r.MeasuredAt,
					r.Reason, r.Message, r.EventID, topics.Readings, r.SourcePartition, r.SourceOffset,
					rec.Partition, rec.Offset,
				}}, nil
			}},
		{topic: topics.Alerts, table: warehouse.AlertsTable, columns: alertsColumns, resume: true,
			decode: func(rec *kgo.Record) (row, error) {
				var a schemas.Alert
				if err := alerts.Decode(rec.Value, &a); err != nil {
					return row{}, err
				}
				return row{tenant: a.TenantID, user: a.UserID, partition: rec.Partition, offset: rec.Offset, vals: []any{
					a.TenantID, a.UserID, a.DeviceID, a.GatewayID, a.Metric, a.Rule, a.Severity,
					sec(a.StartedAt), a.StartedAt, sec(a.MeasuredAt), a.MeasuredAt, a.ReceivedAt,
					a.Value, a.Message, a.EventID, rec.Partition, rec.Offset,
				}}, nil
			}},
		{topic: topics.ProfileEvents, table: warehouse.ProfileEventsTable, columns: profileColumns, resume: true,
			decode: func(rec *kgo.Record) (row, error) {
				var e schemas.ProfileEvent
				if err := profiles.Decode(rec.Value, &e); err != nil {
					return row{}, err
				}
				var birthYear int32
				if e.BirthYear != nil {
					birthYear = *e.BirthYear
				}
				return row{tenant: e.TenantID, user: e.UserID, partition: rec.Partition, offset: rec.Offset, vals: []any{
					e.TenantID, e.UserID, e.EventID, e.GatewayID, e.Kind, birthYear, str(e.Sex), str(e.Region),
					sec(e.OccurredAt), e.OccurredAt, e.ReceivedAt, e.IngestedAt, rec.Partition, rec.Offset,
				}}, nil
			}},
		{topic: topics.DeviceEvents, table: warehouse.DeviceEventsTable, columns: deviceColumns, resume: true,
			decode: func(rec *kgo.Record) (row, error) {
				var e schemas.DeviceEvent
				if err := devices.Decode(rec.Value, &e); err != nil {
					return row{}, err
				}
				return row{tenant: e.TenantID, user: e.UserID, partition: rec.Partition, offset: rec.Offset, vals: []any{
					e.TenantID, e.UserID, e.DeviceID, e.EventID, e.GatewayID, e.Kind, str(e.Model), str(e.Firmware),
					sec(e.OccurredAt), e.OccurredAt, e.ReceivedAt, e.IngestedAt, rec.Partition, rec.Offset,
				}}, nil
			}},
		{topic: topics.Erasures, table: warehouse.ErasedUsersTable, columns: erasedColumns, erasure: true,
			decode: func(rec *kgo.Record) (row, error) {
				var e schemas.Erasure
				if err := erasures.Decode(rec.Value, &e); err != nil {
					return row{}, err
				}
				return row{tenant: e.TenantID, user: e.UserID, partition: rec.Partition, offset: rec.Offset, vals: []any{
					e.TenantID, e.UserID, e.EventID, e.GatewayID, e.RequestedAt, e.ReceivedAt, rec.Partition, rec.Offset,
				}}, nil
			}},
	}
}
