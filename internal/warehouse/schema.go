package warehouse

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Table names. Every table lives in the database of Config.Database.
const (
	// ReadingsTable holds the processor's accepted readings, one row per
	// reading (ReplacingMergeTree: copies collapse on merge; see
	// DedupReadings).
	ReadingsTable = "readings"
	// RejectedTable holds the processor's rejected readings with their
	// reason, for data-quality analysis.
	RejectedTable = "rejected_readings"
	// AlertsTable holds the alerts the processor's rules raised.
	AlertsTable = "alerts"
	// ProfileEventsTable holds the raw profile events (registered, updated,
	// erasure_requested); UserDimension folds them into one row per user.
	ProfileEventsTable = "profile_events"
	// DeviceEventsTable holds the raw device events (paired, unpaired,
	// status); UserDimension takes the device model from them.
	DeviceEventsTable = "device_events"
	// ErasedUsersTable holds one row per erasure the processor decided.
	// Rows are never deleted: queries anti-join it (NotErased) so that an
	// erased user is invisible as soon as the erasure is stored, before the
	// asynchronous DELETE mutations have finished.
	ErasedUsersTable = "erased_users"
	// DailyRollupTable is the per tenant, user, metric and UTC day rollup
	// of the readings table, maintained by the materialized view
	// DailyRollupView on every insert into readings. It is an
	// AggregatingMergeTree: its columns are aggregate states, so a query
	// must always aggregate them with the -Merge combinators and GROUP BY,
	// because unmerged parts hold several rows per key:
	//
	//	SELECT day,
	//	       countMerge(readings)       AS n,
	//	       minMerge(min_value)        AS min,
	//	       maxMerge(max_value)        AS max,
	//	       sumMerge(sum_value)        AS sum,
	//	       sumMerge(sum_squares)      AS sum_sq,   -- stddevPop = sqrt(sum_sq/n - (sum/n)^2)
	//	       quantilesTDigestMerge(0.5, 0.9, 0.99)(quantiles) AS q  -- Array(Float32), approximate
	//	FROM vitals.readings_daily
	//	WHERE tenant_id = ? AND metric = ? AND user_id = ? AND day >= ? AND day < ?
	//	GROUP BY day ORDER BY day
	//
	// Any levels may be passed to quantilesTDigestMerge: the stored t-digest
	// does not depend on them. The t-digest is approximate (typically within
	// about 1 % of rank); use the readings table where exact percentiles
	// are required. The projector inserts each accepted reading exactly
	// once, so the rollup counts equal the raw table's distinct readings;
	// erasure deletes the user's rows here too.
	DailyRollupTable = "readings_daily"
	// DailyRollupView is the materialized view that feeds DailyRollupTable.
	DailyRollupView = "readings_daily_mv"
	// ValuesRollupTable is the exact multiset of values per tenant,
	// metric, UTC day and user: one row per distinct value with the number
	// of readings that have it, maintained by ValuesRollupView on every
	// insert into readings. Exact percentiles, histograms, means and
	// standard deviations of whole days follow from it (the query service
	// computes them from value counts anyway), and a user's heart rate has
	// about a hundred distinct values a day against thousands of readings.
	// It is a SummingMergeTree: unmerged parts hold several rows per key,
	// so always add up the count:
	//
	//	SELECT value, sum(readings) AS n
	//	FROM vitals.readings_daily_values
	//	WHERE tenant_id = ? AND metric = ? AND day >= ? AND day < ?
	//	GROUP BY value ORDER BY value
	//
	// The sorting key starts (tenant_id, metric, day), so a tenant- or
	// cohort-wide day range is one contiguous slice; one user's readings
	// are contiguous in ReadingsTable instead. Unlike ReadingsTable it
	// cannot collapse copies: it is exact because the projector inserts
	// each accepted reading once (see the package comment).
	ValuesRollupTable = "readings_daily_values"
	// ValuesRollupView is the materialized view that feeds
	// ValuesRollupTable.
	ValuesRollupView = "readings_daily_values_mv"
	// RevisionsTable holds what revisions of readings changed, as signed
	// rows: for every revision (a correction or withdrawal of an event id)
	// the version of the reading the read side held, copied with sign -1
	// (retracted), and the new version with sign +1 (none for a
	// withdrawal). ReadingsTable keeps every reading as first accepted
	// (revision 0) untouched; the readings as they stand are ReadingsTable
	// (each row +1) and RevisionsTable together, every row weighed by its
	// sign, and as they stood at a past moment the rows recorded by then
	// (ingested_at_ms of ReadingsTable, recorded_at_ms here). Its sorting
	// key ends in (event_id, revision, sign), so that copies collapse on
	// merge and history does not.
	RevisionsTable = "reading_revisions"
	// DailyRevisionsTable is DailyRollupTable's companion: per tenant,
	// user, metric and UTC day, what revisions changed in the count, the
	// sum and the sum of squares (signed), and how many revision rows the
	// day has, maintained by DailyRevisionsView. The day's figures are the
	// two tables' sums; a day with revision rows must take min, max and
	// quantiles from ValuesRollupTable (DailyRollupTable's states cannot
	// forget a retracted value).
	DailyRevisionsTable = "readings_daily_revisions"
	// DailyRevisionsView feeds DailyRevisionsTable from RevisionsTable.
	DailyRevisionsView = "readings_daily_revisions_mv"
	// ValuesRevisionsView feeds ValuesRollupTable from RevisionsTable with
	// signed counts, so that the value counts are those of the readings
	// as they stand.
	ValuesRevisionsView = "reading_revisions_values_mv"
	// ReplayPausesTable is how `vitals replay rebuild` asks the projectors
	// writing this database to pause while it swaps rebuilt tables into
	// place, and how they acknowledge (see package projector, pause.go).
	ReplayPausesTable = "replay_pauses"
)

// column is one column of a table, with the comment analysts see in
// system.columns and clickhouse-client's DESCRIBE.
type column struct {
	name, typ, def, comment string
}

// upgradedTypes are the columns whose type changed since an earlier
// release, by table and column: the type they were created with, which
// Migrate changes to the current one. The value rollup's counts became
// signed with revisions.
var upgradedTypes = map[[2]string]string{
	{ValuesRollupTable, "readings"}: "UInt64",
}

// table is a table's definition. Migrate creates it if missing, adds the
// columns an older version lacks, and brings column comments up to date,
// so the Go definition is the one source of truth for the schema.
type table struct {
	name    string
	columns []column
	// engine is everything after the column list: ENGINE, PARTITION BY,
	// ORDER BY. It cannot change after creation.
	engine string
}

// Shared column definitions.
var (
	colTenant       = column{"tenant_id", "String", "", "Tenant that owns the user; taken from the gateway's API key, never the payload."}
	colUser         = column{"user_id", "String", "", "Pseudonymous user id (the Kafka key)."}
	colInsertedAt   = column{"inserted_at", "DateTime", "now()", "When the projector inserted the row (server clock)."}
	colLogPartition = column{"log_partition", "Int32", "-1", "Partition of the Kafka topic this row was projected from (-1: row written before positions were stored)."}
	colLogOffset    = column{"log_offset", "Int64", "-1", "Offset of the record in that partition; the projector resumes after max(log_offset)."}

	// The rollups' key columns.
	colRollupMetric = column{"metric", "String", "", "Metric registry name."}
	colRollupDay    = column{"day", "Date", "", "UTC day of measured_at."}

	// The columns profile and device events share.
	colEventID         = column{"event_id", "String", "", "Gateway-assigned event id."}
	colEventGateway    = column{"gateway_id", "String", "", "Gateway that posted the event."}
	colEventReceivedAt = column{"received_at_ms", "Int64", "", "When the gateway received the event, epoch ms UTC."}
	colEventIngestedAt = column{"ingested_at_ms", "Int64", "", "When ingest accepted the event, epoch ms UTC."}
)

// readingColumns are the columns of ReadingsTable, which RevisionsTable
// has too.
var readingColumns = []column{
	colTenant, colUser,
	{name: "device_id", typ: "String", comment: "Device that measured the reading."},
	{name: "gateway_id", typ: "String", comment: "Gateway that posted it."},
	{name: "metric", typ: "String", comment: "Metric registry name, e.g. heart_rate (see GET /v1/catalogue)."},
	{name: "loinc", typ: "String", comment: "LOINC code of the metric."},
	{name: "value", typ: "Float64", comment: "Value in the metric's canonical unit (systolic for blood_pressure)."},
	{name: "unit", typ: "String", comment: "Canonical UCUM unit of value."},
	{name: "measured_at", typ: "DateTime", comment: "Measurement time, UTC, whole seconds (for partitioning and date functions)."},
	{name: "measured_at_ms", typ: "Int64", comment: "Measurement time, epoch milliseconds UTC."},
	{name: "received_at_ms", typ: "Int64", comment: "When the gateway received the reading, epoch ms UTC."},
	{name: "ingested_at_ms", typ: "Int64", comment: "When ingest accepted the reading, epoch ms UTC."},
	{name: "event_id", typ: "String", comment: "Gateway-assigned id, unique per tenant and user; copies of one reading share it."},
	{name: "source_topic", typ: "String", comment: "Raw readings topic the input came from (rows written before 2026-11 hold the accepted topic)."},
	{name: "source_partition", typ: "Int32", comment: "Partition of the input in the raw readings topic."},
	{name: "source_offset", typ: "Int64", comment: "Offset of the input in the raw readings topic."},
	colInsertedAt,
	{name: "period_end_ms", typ: "Int64", def: "0", comment: "End of the interval for interval metrics (steps, active_energy, sleep_stage), epoch ms; 0 otherwise."},
	{name: "second_value", typ: "Nullable(Float64)", comment: "Diastolic for blood_pressure, canonical unit; NULL otherwise."},
	{name: "stage", typ: "String", def: "''", comment: "Sleep stage for sleep_stage (awake, light, deep, rem); empty otherwise."},
	{name: "sequence", typ: "Nullable(Int64)", comment: "Device sequence number, if the device sends one."},
	colLogPartition, colLogOffset,
}

// revisionColumns are the columns RevisionsTable adds to readingColumns.
var revisionColumns = []column{
	{name: "revision", typ: "Int64", comment: "The version's revision: 0 for a reading as first sent, n >= 1 for its nth revision."},
	{name: "sign", typ: "Int8", comment: "+1: the version the revision brought; -1: the version it retracted (a copy of the row that held it). Weigh every row by sign: sum(sign) counts readings."},
	{name: "recorded_at_ms", typ: "Int64", comment: "When ingest received the revision that wrote the row, epoch ms: as of a time T, the rows with recorded_at_ms <= T (and the readings with ingested_at_ms <= T) are what was known."},
}

// tables are Vitals' tables, in creation order.
var tables = []table{
	{
		name:    ReadingsTable,
		columns: readingColumns,
		engine: `ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(measured_at)
	ORDER BY (tenant_id, user_id, metric, measured_at_ms, event_id)`,
	},
	{
		name:    RevisionsTable,
		columns: append(append([]column{}, readingColumns...), revisionColumns...),
		engine: `ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(measured_at)
	ORDER BY (tenant_id, user_id, metric, measured_at_ms, event_id, revision, sign)`,
	},
	{
		name: RejectedTable,
		columns: []column{
			colTenant, colUser,
			{"device_id", "String", "", "Device named by the reading."},
			{"metric", "String", "", "Metric named by the reading."},
			{"measured_at", "DateTime", "", "Measurement time, UTC, whole seconds."},
			{"measured_at_ms", "Int64", "", "Measurement time, epoch milliseconds UTC."},
			{"reason", "String", "", "Stable reason code: too_late, future_timestamp, implausible_value, device_not_paired, rate_exceeded, user_erased, malformed_event; for revisions stale_revision, conflicting_repeat, correction_window_passed."},
			{"message", "String", "", "Human explanation; never contains the health value."},
			{"event_id", "String", "", "The reading's event id (one event id can be rejected more than once, e.g. a late repeat)."},
			{"source_topic", "String", "", "Raw readings topic the input came from."},
			{"source_partition", "Int32", "", "Partition of the input in the raw readings topic."},
			{"source_offset", "Int64", "", "Offset of the input in the raw readings topic; with source_partition it identifies the rejection."},
			colLogPartition, colLogOffset, colInsertedAt,
		},
		// One raw record is rejected at most once, so its position is the
		// key: a re-emitted rejection collapses on merge.
		engine: `ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(measured_at)
	ORDER BY (tenant_id, reason, source_partition, source_offset)`,
	},
	{
		name: AlertsTable,
		columns: []column{
			colTenant, colUser,
			{"device_id", "String", "", "Device of the reading that raised the alert."},
			{"gateway_id", "String", "", "Gateway that posted that reading."},
			{"metric", "String", "", "Metric the rule watches."},
			{"rule", "String", "", "Rule name, e.g. spo2_low_sustained, heart_rate_high_sustained."},
			{"severity", "String", "", "info, warning or critical."},
			{"started_at", "DateTime", "", "Start of the condition, UTC, whole seconds."},
			{"started_at_ms", "Int64", "", "Start of the condition, epoch ms UTC."},
			{"measured_at", "DateTime", "", "Measurement time of the reading that raised the alert, UTC."},
			{"measured_at_ms", "Int64", "", "The same, epoch ms UTC."},
			{"received_at_ms", "Int64", "", "When the gateway received that reading, epoch ms UTC."},
			{"value", "Float64", "", "That reading's value, canonical unit."},
			{"message", "String", "", "Human explanation."},
			{name: "event_id", typ: "String", comment: "Unique per event of the alert's lifecycle: the alert id when raised, with :resolved or :withdrawn appended for the later events."},
			colLogPartition, colLogOffset, colInsertedAt,
			{name: "alert_id", typ: "String", def: "event_id", comment: "The alert: derived from the rule and the start of the condition, so a reprocess raises the same id; shared by its raised, resolved and withdrawn events."},
			{name: "status", typ: "String", def: "'raised'", comment: "raised (the condition held long enough), resolved (it ended), withdrawn (a reading that raised it was corrected away or withdrawn)."},
			{name: "status_at_ms", typ: "Int64", def: "measured_at_ms", comment: "Measurement time of the reading that caused this status, epoch ms."},
			{name: "recorded_at_ms", typ: "Int64", def: "0", comment: "When ingest received the record that caused this status, epoch ms (0 for alerts stored before the lifecycle): as_of queries leave out later ones."},
		},
		engine: `ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(started_at)
	ORDER BY (tenant_id, user_id, rule, started_at_ms, event_id)`,
	},
	{
		name: ProfileEventsTable,
		columns: []column{
			colTenant, colUser,
			colEventID, colEventGateway,
			{"kind", "String", "", "registered, updated or erasure_requested."},
			{"birth_year", "Int32", "0", "Birth year; 0 when the event does not state it."},
			{"sex", "String", "''", "female, male, other or unknown; empty when the event does not state it."},
			{"region", "String", "''", "ISO 3166-1 alpha-2 or ISO 3166-2 code; empty when the event does not state it."},
			{"occurred_at", "DateTime", "", "When the change happened, UTC."},
			{"occurred_at_ms", "Int64", "", "The same, epoch ms UTC; later events win in UserDimension."},
			colEventReceivedAt, colEventIngestedAt,
			colLogPartition, colLogOffset, colInsertedAt,
		},
		engine: `ENGINE = ReplacingMergeTree()
	ORDER BY (tenant_id, user_id, occurred_at_ms, event_id)`,
	},
	{
		name: DeviceEventsTable,
		columns: []column{
			colTenant, colUser,
			{"device_id", "String", "", "The device."},
			colEventID, colEventGateway,
			{"kind", "String", "", "paired, unpaired or status."},
			{"model", "String", "''", "Device model, e.g. fitbit-charge-hr; empty when not stated."},
			{"firmware", "String", "''", "Firmware version; empty when not stated."},
			{"occurred_at", "DateTime", "", "When it happened on the device, UTC."},
			{"occurred_at_ms", "Int64", "", "The same, epoch ms UTC."},
			colEventReceivedAt, colEventIngestedAt,
			colLogPartition, colLogOffset, colInsertedAt,
		},
		engine: `ENGINE = ReplacingMergeTree()
	ORDER BY (tenant_id, user_id, occurred_at_ms, event_id)`,
	},
	{
		name: ErasedUsersTable,
		columns: []column{
			colTenant, colUser,
			{"event_id", "String", "", "Event id of the erasure request."},
			{"gateway_id", "String", "", "Gateway that posted the request."},
			{"requested_at_ms", "Int64", "", "When the user asked, epoch ms UTC."},
			{"received_at_ms", "Int64", "", "When the gateway received the request, epoch ms UTC."},
			colLogPartition, colLogOffset,
			{"erased_at", "DateTime", "now()", "When the projector stored the erasure and issued the deletes."},
		},
		engine: `ENGINE = ReplacingMergeTree()
	ORDER BY (tenant_id, user_id, event_id)`,
	},
	{
		name: DailyRollupTable,
		columns: []column{
			colTenant, colUser,
			colRollupMetric, colRollupDay,
			{"readings", "AggregateFunction(count)", "", "State of count(): read with countMerge(readings)."},
			{"min_value", "AggregateFunction(min, Float64)", "", "State of min(value): minMerge(min_value)."},
			{"max_value", "AggregateFunction(max, Float64)", "", "State of max(value): maxMerge(max_value)."},
			{"sum_value", "AggregateFunction(sum, Float64)", "", "State of sum(value): sumMerge(sum_value)."},
			{"sum_squares", "AggregateFunction(sum, Float64)", "", "State of sum(value*value): sumMerge(sum_squares); with count and sum gives the variance."},
			{"quantiles", "AggregateFunction(quantilesTDigest(0.5), Float64)", "", "t-digest of value: quantilesTDigestMerge(0.5, 0.9, ...)(quantiles), any levels, approximate, Float32."},
		},
		// Per-user long ranges read (tenant, metric, user) then a day range;
		// tenant- and cohort-wide queries read one metric's slice.
		engine: `ENGINE = AggregatingMergeTree()
	PARTITION BY toYYYYMM(day)
	ORDER BY (tenant_id, metric, user_id, day)`,
	},
	{
		name: ValuesRollupTable,
		columns: []column{
			colTenant, colUser,
			colRollupMetric, colRollupDay,
			{"value", "Float64", "", "One distinct value (canonical unit; systolic for blood_pressure) of the user's readings that day."},
			{name: "readings", typ: "Int64", comment: "Readings of the user, metric and day with this value, revisions counted with their sign (a retracted version -1); rows of unmerged parts add up: always sum(readings)."},
		},
		// Day before user: cohort- and tenant-wide queries over a day range
		// read one contiguous slice and filter users in it.
		engine: `ENGINE = SummingMergeTree(readings)
	PARTITION BY toYYYYMM(day)
	ORDER BY (tenant_id, metric, day, user_id, value)`,
	},
	{
		name: DailyRevisionsTable,
		columns: []column{
			colTenant, colUser,
			colRollupMetric, colRollupDay,
			{name: "readings", typ: "Int64", comment: "What revisions changed in the day's count of readings (add it to countMerge(readings) of readings_daily); always sum()."},
			{name: "sum_value", typ: "Float64", comment: "What revisions changed in the sum of values; always sum()."},
			{name: "sum_squares", typ: "Float64", comment: "What revisions changed in the sum of squared values; always sum()."},
			{name: "revision_rows", typ: "UInt64", comment: "Rows of reading_revisions for the day: where sum(revision_rows) > 0, min, max and quantiles of readings_daily include retracted values; take them from readings_daily_values."},
		},
		engine: `ENGINE = SummingMergeTree((readings, sum_value, sum_squares, revision_rows))
	PARTITION BY toYYYYMM(day)
	ORDER BY (tenant_id, metric, user_id, day)`,
	},
	replayPauses,
}

// replayPauses is ReplayPausesTable's definition; it is not a projection
// and is never rebuilt or swapped.
var replayPauses = table{
	name: ReplayPausesTable,
	columns: []column{
		{"pause_id", "String", "", "Id of one swap's pause, chosen by vitals replay rebuild."},
		{"kind", "String", "", "pause (replay asks), ack (a projector group member has stopped inserting), resume (replay is done)."},
		{"member", "String", "''", "Consumer group member id of the acknowledging projector; empty otherwise."},
		{"until_ms", "Int64", "", "Deadline of the pause, epoch ms: projectors resume by themselves after it, should replay die."},
		{"at", "DateTime", "now()", "When the row was written (server clock)."},
	},
	engine: `ENGINE = MergeTree()
	ORDER BY (pause_id, kind)`,
}

// rollupSelect is DailyRollupView's query and its backfill's, over {src},
// the readings rows (the view's insert block, or the deduplicated table).
const rollupSelect = `SELECT tenant_id, user_id, metric, toDate(measured_at, 'UTC') AS day,
		countState() AS readings,
		minState(value) AS min_value,
		maxState(value) AS max_value,
		sumState(value) AS sum_value,
		sumState(value * value) AS sum_squares,
		quantilesTDigestState(0.5)(value) AS quantiles
	FROM {src}
	GROUP BY tenant_id, user_id, metric, day`

// valuesSelect is ValuesRollupView's query and its backfill's.
const valuesSelect = `SELECT tenant_id, user_id, metric, toDate(measured_at, 'UTC') AS day, value,
		toInt64(count()) AS readings
	FROM {src}
	GROUP BY tenant_id, user_id, metric, day, value`

// revisionsValuesSelect is ValuesRevisionsView's query and its backfill's:
// the signed counts of the revision rows.
const revisionsValuesSelect = `SELECT tenant_id, user_id, metric, toDate(measured_at, 'UTC') AS day, value,
		sum(toInt64(sign)) AS readings
	FROM {src}
	GROUP BY tenant_id, user_id, metric, day, value`

// dailyRevisionsSelect is DailyRevisionsView's query and its backfill's.
const dailyRevisionsSelect = `SELECT tenant_id, user_id, metric, toDate(measured_at, 'UTC') AS day,
		sum(toInt64(sign)) AS readings,
		sum(value * sign) AS sum_value,
		sum(value * value * sign) AS sum_squares,
		count() AS revision_rows
	FROM {src}
	GROUP BY tenant_id, user_id, metric, day`

// view is a materialized view that feeds a rollup table from every insert
// into a source table (readings or reading_revisions).
type view struct {
	name, table, source string
	// query is the view's SELECT over {src}; columns are its result
	// columns, the ones of the table it fills.
	query   string
	columns []string
}

// RollupViews are the names of the rollups' materialized views.
var RollupViews = []string{DailyRollupView, ValuesRollupView, ValuesRevisionsView, DailyRevisionsView}

// views are the rollups' materialized views, created after the tables.
var views = []view{
	{DailyRollupView, DailyRollupTable, ReadingsTable, rollupSelect,
		[]string{"tenant_id", "user_id", "metric", "day", "readings", "min_value", "max_value", "sum_value", "sum_squares", "quantiles"}},
	{ValuesRollupView, ValuesRollupTable, ReadingsTable, valuesSelect,
		[]string{"tenant_id", "user_id", "metric", "day", "value", "readings"}},
	{ValuesRevisionsView, ValuesRollupTable, RevisionsTable, revisionsValuesSelect,
		[]string{"tenant_id", "user_id", "metric", "day", "value", "readings"}},
	{DailyRevisionsView, DailyRevisionsTable, RevisionsTable, dailyRevisionsSelect,
		[]string{"tenant_id", "user_id", "metric", "day", "readings", "sum_value", "sum_squares", "revision_rows"}},
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func (c column) ddl() string {
	s := c.name + " " + c.typ
	if c.def != "" {
		s += " DEFAULT " + c.def
	}
	return s + " COMMENT " + quote(c.comment)
}

func (t table) createSQL(db string) string {
	cols := make([]string, len(t.columns))
	for i, c := range t.columns {
		cols[i] = "\t" + c.ddl()
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (\n%s\n) %s", db, t.name, strings.Join(cols, ",\n"), t.engine)
}

// Migrate creates or upgrades the database objects the projector and the
// query service need. It is idempotent and safe to run at every start:
//
//   - missing tables are created (CREATE TABLE IF NOT EXISTS);
//   - columns a table lacks are added. 18.16 has no ADD COLUMN IF NOT
//     EXISTS, so the existing columns are read from system.columns first;
//   - column comments that differ from the definitions here are updated;
//   - each rollup's materialized view is created if missing, and then
//     the rollup is backfilled from the rows already in readings. Upgrade
//     a database that already holds readings with the projectors stopped
//     (`vitals migrate`): rows inserted while a view is being created
//     could be counted twice or missed by the backfill.
func Migrate(ctx context.Context, conn driver.Conn, database string) error {
	if !validIdent(database) {
		return fmt.Errorf("clickhouse database name %q is not a valid identifier", database)
	}
	if c := ClusterOf(conn); c != nil {
		return migrateCluster(ctx, c, database)
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+database); err != nil {
		return fmt.Errorf("create database %s: %w", database, err)
	}
	upgraded := map[string]bool{} // tables whose column types changed
	for _, t := range tables {
		if err := conn.Exec(ctx, t.createSQL(database)); err != nil {
			return fmt.Errorf("create table %s.%s: %w", database, t.name, err)
		}
		changed, err := upgradeColumns(ctx, conn, database, t)
		if err != nil {
			return err
		}
		upgraded[t.name] = changed
	}
	for _, v := range views {
		// A view whose table's types changed writes the old types, which
		// 18.16 refuses: it is made again, over the rows it already fed.
		if upgraded[v.table] {
			if err := recreateView(ctx, conn, database, v); err != nil {
				return err
			}
			continue
		}
		if err := migrateView(ctx, conn, database, v); err != nil {
			return err
		}
	}
	return nil
}

// recreateView drops and creates v again, without backfilling: the table
// holds what the old view fed it.
func recreateView(ctx context.Context, conn driver.Conn, db string, v view) error {
	if err := conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", db, v.name)); err != nil {
		return fmt.Errorf("drop view %s.%s: %w", db, v.name, err)
	}
	if err := conn.Exec(ctx, v.createSQL(db)); err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("create view %s.%s: %w", db, v.name, err)
	}
	return nil
}

// upgradeColumns adds the columns t lacks, changes the types
// upgradedTypes names and syncs comments. It reports whether a type
// changed.
func upgradeColumns(ctx context.Context, conn driver.Conn, db string, t table) (bool, error) {
	rows, err := conn.Query(ctx, `SELECT name, type, comment FROM system.columns WHERE database = ? AND table = ?`, db, t.name)
	if err != nil {
		return false, fmt.Errorf("read columns of %s.%s: %w", db, t.name, err)
	}
	have, types := map[string]string{}, map[string]string{}
	for rows.Next() {
		var name, typ, comment string
		if err := rows.Scan(&name, &typ, &comment); err != nil {
			rows.Close()
			return false, fmt.Errorf("read columns of %s.%s: %w", db, t.name, err)
		}
		have[name], types[name] = comment, typ
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read columns of %s.%s: %w", db, t.name, err)
	}
	changed := false
	for _, c := range t.columns {
		comment, ok := have[c.name]
		var stmt string
		switch {
		case !ok:
			stmt = fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s", db, t.name, c.ddl())
		case upgradedTypes[[2]string{t.name, c.name}] == types[c.name]:
			stmt = fmt.Sprintf("ALTER TABLE %s.%s MODIFY COLUMN %s", db, t.name, c.ddl())
			changed = true
		case comment != c.comment:
			stmt = fmt.Sprintf("ALTER TABLE %s.%s COMMENT COLUMN %s %s", db, t.name, c.name, quote(c.comment))
		default:
			continue
		}
		if err := conn.Exec(ctx, stmt); err != nil {
			return false, fmt.Errorf("upgrade %s.%s column %s: %w", db, t.name, c.name, err)
		}
	}
	return changed, nil
}

// migrateView creates a rollup's materialized view and, when this call
// created it, backfills the rollup from the readings already stored
// (deduplicated with FINAL, erased users left out). The view is created
// without IF NOT EXISTS so that of two concurrent migrations only the one
// that created it backfills.
func migrateView(ctx context.Context, conn driver.Conn, db string, v view) error {
	var n uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM system.tables WHERE database = ? AND name = ?`, db, v.name).Scan(&n); err != nil {
		return fmt.Errorf("look up view %s.%s: %w", db, v.name, err)
	}
	if n > 0 {
		return nil
	}
	if err := conn.Exec(ctx, v.createSQL(db)); err != nil {
		if strings.Contains(err.Error(), "already exists") {
			return nil // another migration won the race and backfills
		}
		return fmt.Errorf("create view %s.%s: %w", db, v.name, err)
	}
	return backfill(ctx, conn, db, v)
}

// backfill fills v's rollup from the rows its source table already holds
// (deduplicated with FINAL, erased users left out).
func backfill(ctx context.Context, conn driver.Conn, db string, v view) error {
	srcCols := "tenant_id, user_id, metric, measured_at, value"
	if strings.TrimSuffix(v.source, LocalSuffix) == RevisionsTable {
		srcCols += ", sign"
	}
	src := fmt.Sprintf("(SELECT %s FROM %s.%s FINAL WHERE %s)", srcCols, db, v.source, NotErased(db))
	q := fmt.Sprintf("INSERT INTO %s.%s (%s) %s", db, v.table, strings.Join(v.columns, ", "), strings.ReplaceAll(v.query, "{src}", src))
	if err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("backfill %s.%s: %w", db, v.table, err)
	}
	return nil
}

// createSQL is the statement that creates the view in db.
func (v view) createSQL(db string) string {
	return fmt.Sprintf("CREATE MATERIALIZED VIEW %s.%s TO %s.%s AS %s", db, v.name, db, v.table,
		strings.ReplaceAll(v.query, "{src}", db+"."+v.source))
}

// RecreateViews drops and creates again the rollups' materialized views in
// db, without a backfill: the rollups must already hold what the readings
// table holds. `vitals replay` calls it right after a swap or rollback has
// renamed rebuilt tables into place, while the projectors are paused: on
// current releases (checked on 26.9) a view whose source table is renamed
// stops firing, so inserts into the readings table renamed into place would
// never reach the rollups; 18.16 follows the names. database must be a
// validated identifier. On a cluster the views are over the local tables of
// every server, and are made again there.
func RecreateViews(ctx context.Context, conn driver.Conn, database string) error {
	if c := ClusterOf(conn); c != nil {
		for _, addr := range c.Servers() {
			sc, err := c.Server(addr)
			if err != nil {
				return err
			}
			if err := recreateViews(ctx, sc, database, true); err != nil {
				return fmt.Errorf("on %s: %w", addr, err)
			}
		}
		return nil
	}
	return recreateViews(ctx, conn, database, false)
}

func recreateViews(ctx context.Context, conn driver.Conn, database string, local bool) error {
	for _, v := range views {
		if local {
			v.table, v.source = Local(v.table), Local(v.source)
		}
		if err := conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", database, v.name)); err != nil {
			return fmt.Errorf("drop view %s.%s: %w", database, v.name, err)
		}
		if err := conn.Exec(ctx, v.createSQL(database)); err != nil {
			return fmt.Errorf("create view %s.%s: %w", database, v.name, err)
		}
	}
	return nil
}

// tableByName is the definition of a table; it panics on an unknown
// name, which is a programming error.
func tableByName(name string) table {
	for _, t := range tables {
		if t.name == name {
			return t
		}
	}
	panic("warehouse: unknown table " + name)
}

// TableColumns returns the column names of a table in definition order,
// for the projector's INSERT column lists and for tests. It panics on an
// unknown table, which is a programming error.
func TableColumns(name string) []string {
	t := tableByName(name)
	out := make([]string, 0, len(t.columns))
	for _, c := range t.columns {
		if c.def == "now()" {
			continue // filled by the server
		}
		out = append(out, c.name)
	}
	return out
}

// TableColumnTypes returns the ClickHouse type of every column of a table
// by column name, for tests that check what the projector appends against
// the DDL. It panics on an unknown table, which is a programming error.
func TableColumnTypes(name string) map[string]string {
	t := tableByName(name)
	out := make(map[string]string, len(t.columns))
	for _, c := range t.columns {
		out[c.name] = c.typ
	}
	return out
}

// ErasableTables are the tables that hold a user's rows and that an
// erasure deletes from. ErasedUsersTable is not among them: it is the
// record of the erasure itself.
var ErasableTables = []string{ReadingsTable, RevisionsTable, DailyRollupTable, DailyRevisionsTable, ValuesRollupTable, RejectedTable, AlertsTable, ProfileEventsTable, DeviceEventsTable}
