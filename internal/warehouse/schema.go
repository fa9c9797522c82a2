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
)

// tables are Vitals' tables, in creation order.
var tables = []table{
	{
		name: ReadingsTable,
		columns: []column{
			colTenant, colUser,
			{"device_id", "String", "", "Device that measured the reading."},
			{"gateway_id", "String", "", "Gateway that posted it."},
			{"metric", "String", "", "Metric registry name, e.g. heart_rate (see GET /v1/catalogue)."},
			{"loinc", "String", "", "LOINC code of the metric."},
			{"value", "Float64", "", "Value in the metric's canonical unit (systolic for blood_pressure)."},
			{"unit", "String", "", "Canonical UCUM unit of value."},
			{"measured_at", "DateTime", "", "Measurement time, UTC, whole seconds (for partitioning and date functions)."},
			{"measured_at_ms", "Int64", "", "Measurement time, epoch milliseconds UTC."},
			{"received_at_ms", "Int64", "", "When the gateway received the reading, epoch ms UTC."},
			{"ingested_at_ms", "Int64", "", "When ingest accepted the reading, epoch ms UTC."},
			{"event_id", "String", "", "Gateway-assigned id, unique per tenant and user; copies of one reading share it."},
			{"source_topic", "String", "", "Raw readings topic the input came from (rows written before 2026-11 hold the accepted topic)."},
			{"source_partition", "Int32", "", "Partition of the input in the raw readings topic."},
			{"source_offset", "Int64", "", "Offset of the input in the raw readings topic."},
			colInsertedAt,
			{"period_end_ms", "Int64", "0", "End of the interval for interval metrics (steps, active_energy, sleep_stage), epoch ms; 0 otherwise."},
			{"second_value", "Nullable(Float64)", "", "Diastolic for blood_pressure, canonical unit; NULL otherwise."},
			{"stage", "String", "''", "Sleep stage for sleep_stage (awake, light, deep, rem); empty otherwise."},
			{"sequence", "Nullable(Int64)", "", "Device sequence number, if the device sends one."},
			colLogPartition, colLogOffset,
		},
		engine: `ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(measured_at)
	ORDER BY (tenant_id, user_id, metric, measured_at_ms, event_id)`,
	},
	{
		name: RejectedTable,
		columns: []column{
			colTenant, colUser,
			{"device_id", "String", "", "Device named by the reading."},
			{"metric", "String", "", "Metric named by the reading."},
			{"measured_at", "DateTime", "", "Measurement time, UTC, whole seconds."},
			{"measured_at_ms", "Int64", "", "Measurement time, epoch milliseconds UTC."},
			{"reason", "String", "", "Stable reason code: too_late, future_timestamp, implausible_value, device_not_paired, rate_exceeded, user_erased, malformed_event."},
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
			{"event_id", "String", "", "Derived from the rule and the start of the condition: a reprocess raises the same id."},
			colLogPartition, colLogOffset, colInsertedAt,
		},
		engine: `ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(started_at)
	ORDER BY (tenant_id, user_id, rule, started_at_ms, event_id)`,
	},
	{
		name: ProfileEventsTable,
		columns: []column{
			colTenant, colUser,
			{"event_id", "String", "", "Gateway-assigned event id."},
			{"gateway_id", "String", "", "Gateway that posted the event."},
			{"kind", "String", "", "registered, updated or erasure_requested."},
			{"birth_year", "Int32", "0", "Birth year; 0 when the event does not state it."},
			{"sex", "String", "''", "female, male, other or unknown; empty when the event does not state it."},
			{"region", "String", "''", "ISO 3166-1 alpha-2 or ISO 3166-2 code; empty when the event does not state it."},
			{"occurred_at", "DateTime", "", "When the change happened, UTC."},
			{"occurred_at_ms", "Int64", "", "The same, epoch ms UTC; later events win in UserDimension."},
			{"received_at_ms", "Int64", "", "When the gateway received the event, epoch ms UTC."},
			{"ingested_at_ms", "Int64", "", "When ingest accepted the event, epoch ms UTC."},
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
			{"event_id", "String", "", "Gateway-assigned event id."},
			{"gateway_id", "String", "", "Gateway that posted the event."},
			{"kind", "String", "", "paired, unpaired or status."},
			{"model", "String", "''", "Device model, e.g. fitbit-charge-hr; empty when not stated."},
			{"firmware", "String", "''", "Firmware version; empty when not stated."},
			{"occurred_at", "DateTime", "", "When it happened on the device, UTC."},
			{"occurred_at_ms", "Int64", "", "The same, epoch ms UTC."},
			{"received_at_ms", "Int64", "", "When the gateway received the event, epoch ms UTC."},
			{"ingested_at_ms", "Int64", "", "When ingest accepted the event, epoch ms UTC."},
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
			{"metric", "String", "", "Metric registry name."},
			{"day", "Date", "", "UTC day of measured_at."},
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
			{"metric", "String", "", "Metric registry name."},
			{"day", "Date", "", "UTC day of measured_at."},
			{"value", "Float64", "", "One distinct value (canonical unit; systolic for blood_pressure) of the user's readings that day."},
			{"readings", "UInt64", "", "Readings of the user, metric and day with this value; rows of unmerged parts add up: always sum(readings)."},
		},
		// Day before user: cohort- and tenant-wide queries over a day range
		// read one contiguous slice and filter users in it.
		engine: `ENGINE = SummingMergeTree(readings)
	PARTITION BY toYYYYMM(day)
	ORDER BY (tenant_id, metric, day, user_id, value)`,
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
		count() AS readings
	FROM {src}
	GROUP BY tenant_id, user_id, metric, day, value`

// view is a materialized view that feeds a rollup table from every insert
// into readings.
type view struct {
	name, table string
	// query is the view's SELECT over {src}; its columns are the table's.
	query string
}

// views are the rollups' materialized views, created after the tables.
var views = []view{
	{DailyRollupView, DailyRollupTable, rollupSelect},
	{ValuesRollupView, ValuesRollupTable, valuesSelect},
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
	for _, t := range tables {
		if err := conn.Exec(ctx, t.createSQL(database)); err != nil {
			return fmt.Errorf("create table %s.%s: %w", database, t.name, err)
		}
		if err := upgradeColumns(ctx, conn, database, t); err != nil {
			return err
		}
	}
	for _, v := range views {
		if err := migrateView(ctx, conn, database, v); err != nil {
			return err
		}
	}
	return nil
}

// upgradeColumns adds the columns t lacks and syncs comments.
func upgradeColumns(ctx context.Context, conn driver.Conn, db string, t table) error {
	rows, err := conn.Query(ctx, `SELECT name, comment FROM system.columns WHERE database = ? AND table = ?`, db, t.name)
	if err != nil {
		return fmt.Errorf("read columns of %s.%s: %w", db, t.name, err)
	}
	have := map[string]string{}
	for rows.Next() {
		var name, comment string
		if err := rows.Scan(&name, &comment); err != nil {
			rows.Close()
			return fmt.Errorf("read columns of %s.%s: %w", db, t.name, err)
		}
		have[name] = comment
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read columns of %s.%s: %w", db, t.name, err)
	}
	for _, c := range t.columns {
		comment, ok := have[c.name]
		var stmt string
		switch {
		case !ok:
			stmt = fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s", db, t.name, c.ddl())
		case comment != c.comment:
			stmt = fmt.Sprintf("ALTER TABLE %s.%s COMMENT COLUMN %s %s", db, t.name, c.name, quote(c.comment))
		default:
			continue
		}
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("upgrade %s.%s column %s: %w", db, t.name, c.name, err)
		}
	}
	return nil
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
	create := fmt.Sprintf("CREATE MATERIALIZED VIEW %s.%s TO %s.%s AS %s", db, v.name, db, v.table,
		strings.ReplaceAll(v.query, "{src}", db+"."+ReadingsTable))
	if err := conn.Exec(ctx, create); err != nil {
		if strings.Contains(err.Error(), "already exists") {
			return nil // another migration won the race and backfills
		}
		return fmt.Errorf("create view %s.%s: %w", db, v.name, err)
	}
	src := fmt.Sprintf("(SELECT tenant_id, user_id, metric, measured_at, value FROM %s.%s FINAL WHERE %s)", db, ReadingsTable, NotErased(db))
	var cols []string
	for _, c := range tableByName(v.table).columns {
		cols = append(cols, c.name)
	}
	backfill := fmt.Sprintf("INSERT INTO %s.%s (%s) %s", db, v.table, strings.Join(cols, ", "), strings.ReplaceAll(v.query, "{src}", src))
	if err := conn.Exec(ctx, backfill); err != nil {
		return fmt.Errorf("backfill %s.%s: %w", db, v.table, err)
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
var ErasableTables = []string{ReadingsTable, DailyRollupTable, ValuesRollupTable, RejectedTable, AlertsTable, ProfileEventsTable, DeviceEventsTable}
