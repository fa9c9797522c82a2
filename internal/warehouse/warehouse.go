// Package warehouse is Vitals' read side in ClickHouse: how to connect, and
// the tables the projector writes and the query service reads.
//
// The DDL is written for both ClickHouse 18.16 (the only server Debian
// ships, used by the local stack) and current releases: new-style MergeTree
// syntax, no DateTime64 (milliseconds live in Int64 epoch-ms columns beside
// a DateTime), and explicit column lists in every INSERT.
//
// # Exactly-once effect
//
// The processor may re-emit an accepted reading after a crash, and the
// projector may re-insert a batch after a crash between its insert and its
// offset commit. 18.16 has no insert deduplication for non-replicated tables,
// so the readings table is a ReplacingMergeTree whose sorting key ends in
// the event id: copies of one reading share the whole key and merges keep
// one. Until a merge runs, queries collapse copies themselves by grouping
// on event_id (see DedupReadings), so no answer ever counts a reading twice.
package warehouse

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config locates the ClickHouse database.
type Config struct {
	Addr     string // native protocol host:port
	Database string
	User     string
	Password string
	// DialTimeout bounds connecting; ReadTimeout bounds waiting on a query.
	DialTimeout time.Duration
	ReadTimeout time.Duration
}

// DefaultConfig is the local stack's configuration.
func DefaultConfig() Config {
	return Config{
		Addr:        "127.0.0.1:19000",
		Database:    "vitals",
		User:        "default",
		DialTimeout: 5 * time.Second,
		ReadTimeout: 60 * time.Second,
	}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// validIdent reports whether s can be spliced into SQL as an identifier.
func validIdent(s string) bool { return identRE.MatchString(s) }

// Open connects and checks the connection. The database name is validated
// because it is spliced into SQL as an identifier.
func Open(ctx context.Context, cfg Config) (driver.Conn, error) {
	if !validIdent(cfg.Database) {
		return nil, fmt.Errorf("clickhouse database name %q: want [A-Za-z_][A-Za-z0-9_]*", cfg.Database)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{cfg.Addr},
		// Every statement names its database, so the session can start in
		// "default" even before Migrate has created ours.
		Auth: clickhouse.Auth{Database: "default", Username: cfg.User, Password: cfg.Password},
		// 18.16 rejects settings it does not know; send none by default.
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		MaxOpenConns:    8,
		MaxIdleConns:    4,
		ConnMaxLifetime: time.Hour,
		Compression:     &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

// ReadingsTable is the raw accepted readings fact table.
const ReadingsTable = "readings"

// ReadingsColumns is the projector's INSERT column list, in Append order.
var ReadingsColumns = []string{
	"tenant_id", "user_id", "device_id", "gateway_id", "metric", "loinc",
	"value", "unit", "measured_at", "measured_at_ms", "received_at_ms", "ingested_at_ms",
	"event_id", "source_topic", "source_partition", "source_offset",
}

// migrations are applied in order; each must be idempotent.
var migrations = []string{
	`CREATE TABLE IF NOT EXISTS {db}.readings (
		tenant_id        String,
		user_id          String,
		device_id        String,
		gateway_id       String,
		metric           String,
		loinc            String,
		value            Float64,
		unit             String,
		measured_at      DateTime,
		measured_at_ms   Int64,
		received_at_ms   Int64,
		ingested_at_ms   Int64,
		event_id         String,
		source_topic     String,
		source_partition Int32,
		source_offset    Int64,
		inserted_at      DateTime DEFAULT now()
	) ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(measured_at)
	ORDER BY (tenant_id, user_id, metric, measured_at_ms, event_id)`,
}

// Migrate creates the database objects the projector and the query service
// need. It is idempotent.
func Migrate(ctx context.Context, conn driver.Conn, database string) error {
	if !validIdent(database) {
		return fmt.Errorf("clickhouse database name %q is not a valid identifier", database)
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+database); err != nil {
		return fmt.Errorf("create database %s: %w", database, err)
	}
	for i, m := range migrations {
		if err := conn.Exec(ctx, strings.ReplaceAll(m, "{db}", database)); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}

// DedupReadings is a subquery over the readings table that yields each
// reading once, however many copies are stored, as columns event_id, val
// (the value) and at_ms (measured_at_ms). The aliases differ from the column
// names because 18.16 resolves an alias before a column of the same name in
// WHERE. where is a condition on the table's columns with ? placeholders; it
// must be built from constants.
func DedupReadings(database, where string) string {
	return fmt.Sprintf(`SELECT event_id, any(value) AS val, any(measured_at_ms) AS at_ms
		FROM %s.%s WHERE %s GROUP BY event_id`, database, ReadingsTable, where)
}
