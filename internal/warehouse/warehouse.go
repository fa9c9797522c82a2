// Package warehouse is Vitals' read side in ClickHouse: how to connect, the
// tables the projector writes and the query service reads (schema.go), and
// the SQL building blocks queries share: DedupReadings, UserDimension,
// NotErased, and the rollups DailyRollupTable and ValuesRollupTable.
// docs/warehouse.md describes every table with example SQL.
//
// The DDL is written for both ClickHouse 18.16 (the only server Debian
// ships, used by the local stack) and current releases: new-style MergeTree
// syntax, no DateTime64 (milliseconds live in Int64 epoch-ms columns beside
// a DateTime), column comments but no table COMMENT clause, and explicit
// column lists in every INSERT.
//
// # Exactly-once effect
//
// 18.16 has no insert deduplication for non-replicated tables, and the
// rollups' materialized views count every inserted row, so the projector
// inserts each topic record exactly once: rows carry their record's
// position (log_partition, log_offset) and a newly assigned partition
// resumes after the highest one stored (see package projector). As a second
// line of defence the readings table is a ReplacingMergeTree whose sorting
// key ends in the event id, so copies made by other means collapse on
// merge, and DedupReadings collapses them at query time until then. The
// rollups have no such defence: their exactness depends on the projector
// alone, which is why exact queries that read ValuesRollupTable are exact
// only as long as nothing but the projector inserts into readings.
//
// # Erasure
//
// Erasure deletes a user's rows with asynchronous mutations; erased_users
// records it at once and NotErased (included in DedupReadings and
// UserDimension) hides the user from queries meanwhile.
package warehouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/tlsconf"
)

// Config locates the ClickHouse database.
type Config struct {
	// Addr is the server's host:port for Protocol: the native protocol's
	// port (9000) or the HTTP interface's (8123).
	Addr string
	// Protocol is ProtocolNative (the default) or ProtocolHTTP, for
	// servers that expose only the HTTP interface. Both send the same SQL
	// text; HTTP needs a current release (docs/clickhouse.md).
	Protocol string
	Database string
	User     string
	Password string
	// DialTimeout bounds connecting; ReadTimeout bounds waiting on a query.
	DialTimeout time.Duration
	ReadTimeout time.Duration
	// Compression of the native protocol's blocks: "lz4", "none", or
	// "auto" (the default): none when Addr is a loopback address, where
	// compressing only burns both sides' CPU, lz4 otherwise.
	Compression string
	// TLS makes the connection TLS (ClickHouse's secure native port,
	// tcp_port_secure), trusting the authorities in TLSCA (PEM; empty:
	// the system's) and checking TLSServerName (empty: the host of Addr)
	// in the server's certificate. A TLS setting without TLS is refused
	// rather than connecting in plaintext.
	TLS           bool
	TLSCA         string
	TLSServerName string
	// SessionDatabase is the database a session starts in ("": default);
	// a user allowed one database only (a tenant's) must start in it.
	SessionDatabase string
	// Cluster, if set, is the name of a cluster in the servers'
	// remote_servers: tables are then sharded and replicated, and Addr
	// may list several seed servers, comma-separated (cluster.go).
	Cluster string
}

// DefaultConfig is the local stack's configuration.
func DefaultConfig() Config {
	return Config{
		Addr:        "127.0.0.1:19000",
		Protocol:    ProtocolNative,
		Database:    "vitals",
		User:        "default",
		DialTimeout: 5 * time.Second,
		ReadTimeout: 60 * time.Second,
		Compression: CompressionAuto,
	}
}

// Protocols of Config.Protocol.
const (
	ProtocolNative = "native"
	ProtocolHTTP   = "http"
)

// protocol resolves Config.Protocol.
func protocol(setting string) (clickhouse.Protocol, error) {
	switch setting {
	case ProtocolNative, "":
		return clickhouse.Native, nil
	case ProtocolHTTP:
		return clickhouse.HTTP, nil
	}
	return 0, fmt.Errorf("clickhouse protocol %q: want native or http", setting)
}

// Compression settings of Config.Compression.
const (
	CompressionAuto = "auto"
	CompressionLZ4  = "lz4"
	CompressionNone = "none"
)

// compression resolves Config.Compression for addr.
func compression(setting, addr string) (*clickhouse.Compression, error) {
	switch setting {
	case CompressionLZ4:
		return &clickhouse.Compression{Method: clickhouse.CompressionLZ4}, nil
	case CompressionNone:
		return nil, nil
	case CompressionAuto, "":
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil, nil
		}
		return &clickhouse.Compression{Method: clickhouse.CompressionLZ4}, nil
	}
	return nil, fmt.Errorf("clickhouse compression %q: want auto, lz4 or none", setting)
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
	if cfg.Cluster != "" {
		return openCluster(ctx, cfg)
	}
	conn, err := openServer(ctx, cfg, []string{cfg.Addr}, nil)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.Addr, err)
	}
	return conn, nil
}

// options are the settings of a pool of at most conns connections over
// addrs, tried in order: one server, a cluster's front connection and
// each server of a cluster alike get the configured protocol,
// credentials, TLS and timeouts. Compression auto judges loopback by the
// first address (a cluster is on one machine or on several). Every
// statement names its database, so the session can start in "default"
// even before Migrate has created ours; 18.16 rejects settings it does not
// know, so settings is nil but for a cluster's front connection.
func options(cfg Config, addrs []string, conns int, settings clickhouse.Settings) (*clickhouse.Options, error) {
	comp, err := compression(cfg.Compression, addrs[0])
	if err != nil {
		return nil, err
	}
	proto, err := protocol(cfg.Protocol)
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	switch {
	case cfg.TLS:
		if tc, err = tlsconf.Client(cfg.TLSCA, cfg.TLSServerName); err != nil {
			return nil, err
		}
	case cfg.TLSCA != "" || cfg.TLSServerName != "":
		return nil, errors.New("a TLS certificate authority or server name is set but TLS is not: enable it, or the connection would be unencrypted")
	}
	session := cfg.SessionDatabase
	if session == "" {
		session = "default"
	}
	return &clickhouse.Options{
		Addr:             addrs,
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
		Protocol:         proto,
		Auth:             clickhouse.Auth{Database: session, Username: cfg.User, Password: cfg.Password},
		Settings:         settings,
		DialTimeout:      cfg.DialTimeout,
		ReadTimeout:      cfg.ReadTimeout,
		MaxOpenConns:     conns,
		MaxIdleConns:     conns / 2,
		ConnMaxLifetime:  time.Hour,
		Compression:      comp,
		TLS:              tc,
	}, nil
}

// openServer opens a pool of 8 connections over addrs (options) and pings
// it.
func openServer(ctx context.Context, cfg Config, addrs []string, settings clickhouse.Settings) (driver.Conn, error) {
	opts, err := options(cfg, addrs, 8, settings)
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// DedupReadings is a subquery over the readings table that yields each
// reading once, however many copies are stored, as columns uid (user_id),
// event_id, val (the value) and at_ms (measured_at_ms). Copies are rows
// with the same sorting key (tenant, user, metric, measurement time, event
// id), which is what the ReplacingMergeTree collapses on merge; grouping by
// the event id alone would merge different users' readings that happen to
// share an id (ids are unique per tenant and user only). The aliases differ
// from the column names because 18.16 resolves an alias before a column of
// the same name in WHERE. where is a condition on the table's columns with
// ? placeholders; it must be built from constants. Readings of erased users
// are left out (see NotErased).
func DedupReadings(database, where string) string {
	return fmt.Sprintf(`SELECT user_id AS uid, event_id, any(value) AS val, measured_at_ms AS at_ms
		FROM %s.%s WHERE (%s) AND %s GROUP BY tenant_id, user_id, metric, measured_at_ms, event_id`,
		database, ReadingsTable, where, NotErased(database))
}
