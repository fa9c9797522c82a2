package warehouse

// # On a ClickHouse cluster
//
// With Config.Cluster set (--clickhouse-cluster NAME), Open reads the
// cluster's layout from system.clusters of the seed server (Config.Addr,
// a comma-separated list to try in turn) and returns a ClusterConn. Every
// table then exists twice on every server:
//
//   - <name>_local, a Replicated*MergeTree holding the server's shard
//     (the engine of the single-node table with Replicated in front; the
//     ZooKeeper path names the cluster, database, table, a creation token
//     and {shard}, the replica is {replica}: the servers' macros);
//   - <name>, a Distributed table over every shard's <name>_local, sharded
//     by cityHash64(tenant_id, user_id).
//
// Queries read <name> unchanged, so the query service, the CLI and
// analysts' SQL need no cluster-specific text. Every table is sharded by
// the same key, so a user's rows of every table (erasures and profile
// events included) live on one shard, and the connection's
// distributed_product_mode = 'local' turns the subqueries over
// Distributed tables inside a Distributed query (NotErased,
// UserDimension) into per-shard subqueries over the local tables, which
// is exact because of that co-location. Writers that need exactly-once
// (the projector) insert into each shard's <name>_local themselves; see
// package projector. The rollups' materialized views are created on every
// server over the local tables; a replica that receives an insert feeds
// its views, and the rollup parts replicate like any other.
//
// ReplayPausesTable is not sharded: every server holds all of its rows
// (one replicated table whose replicas are all the servers), so that a
// projector and a replay that talk to different servers see the same
// pauses.
//
// ClickHouse 18.16 does not replicate CREATE, DROP or RENAME, so Migrate
// runs them on every server itself (ON CLUSTER would need every server
// up as well, and its answers are asynchronous).

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/go-faster/city"
)

// LocalSuffix ends the name of a sharded table's local part on each
// server: readings_local under the Distributed table readings.
const LocalSuffix = "_local"

// ShardingKey is the Distributed tables' sharding expression; ShardOf
// computes the same in Go.
const ShardingKey = "cityHash64(tenant_id, user_id)"

// Shard is one shard of the cluster.
type Shard struct {
	// Num is the shard's number in system.clusters (from 1).
	Num int
	// Weight is its share of the sharding key's values.
	Weight uint32
	// Replicas are the native addresses of its servers, in the order of
	// the cluster's definition: writers prefer the first reachable one.
	Replicas []string
}

// Cluster is the layout of a ClickHouse cluster and a connection to each
// of its servers.
type Cluster struct {
	// Name is the cluster's name in the servers' remote_servers.
	Name   string
	Shards []Shard
	slots  []int // shard index of each weight slot
	cfg    Config

	mu    sync.Mutex
	conns map[string]driver.Conn // by address, opened on first use
}

// ClusterConn is what Open returns for a cluster: queries go through
// the embedded connection, which talks to the servers in order (the next
// when one is down) with the settings Distributed queries need; Cluster
// reaches each server on its own.
type ClusterConn struct {
	driver.Conn
	*Cluster
}

// Close closes the front connection and every server's.
func (c *ClusterConn) Close() error {
	err := c.Conn.Close()
	c.Cluster.close()
	return err
}

// ClusterOf returns the cluster conn was opened for, or nil for a single
// server.
func ClusterOf(conn driver.Conn) *Cluster {
	if cc, ok := conn.(*ClusterConn); ok {
		return cc.Cluster
	}
	return nil
}

// frontSettings are sent with every query of the front connection: an
// INSERT into a Distributed table returns once every shard has its rows.
//
// Two more settings must come from the user's profile on the servers,
// because clickhouse-go can send only numeric settings to 18.16:
// distributed_product_mode = 'local' (subqueries over Distributed tables
// inside a Distributed query read each shard's local table, exact because
// every table is sharded by user; Open refuses a cluster without it) and
// load_balancing = 'in_order' (reads go to the first live replica of each
// shard, the one writers prefer, so that a read after a write sees it).
var frontSettings = clickhouse.Settings{
	"insert_distributed_sync": 1,
}

// checkProfile fails unless the session has the settings a cluster needs
// from the user's profile (see frontSettings).
func checkProfile(ctx context.Context, conn driver.Conn, cfg Config) error {
	var mode string
	if err := conn.QueryRow(ctx, "SELECT value FROM system.settings WHERE name = 'distributed_product_mode'").Scan(&mode); err != nil {
		return fmt.Errorf("read distributed_product_mode: %w", err)
	}
	if mode != "local" {
		return fmt.Errorf("the profile of ClickHouse user %q has distributed_product_mode = %s: a cluster needs local (and load_balancing = in_order), see docs/operations.md", cfg.User, mode)
	}
	return nil
}

// openCluster reads the cluster's layout from the first seed that
// answers and opens the front connection over all its servers.
func openCluster(ctx context.Context, cfg Config) (driver.Conn, error) {
	if !validIdent(cfg.Cluster) {
		return nil, fmt.Errorf("clickhouse cluster name %q: want [A-Za-z_][A-Za-z0-9_]*", cfg.Cluster)
	}
	c := &Cluster{Name: cfg.Cluster, cfg: cfg, conns: map[string]driver.Conn{}}
	var errs []error
	var seed string
	for _, addr := range strings.Split(cfg.Addr, ",") {
		addr = strings.TrimSpace(addr)
		conn, err := openServer(ctx, cfg, []string{addr}, nil)
		if err == nil {
			err = c.discover(ctx, conn)
			conn.Close()
		}
		if err == nil {
			seed = addr
			break
		}
		errs = append(errs, fmt.Errorf("clickhouse %s: %w", addr, err))
	}
	if seed == "" {
		return nil, errors.Join(errs...)
	}
	addrs := []string{seed}
	for _, s := range c.Shards {
		for _, r := range s.Replicas {
			if r != seed {
				addrs = append(addrs, r)
			}
		}
	}
	front, err := openServer(ctx, cfg, addrs, frontSettings)
	if err != nil {
		return nil, fmt.Errorf("clickhouse cluster %s: %w", cfg.Cluster, err)
	}
	if err := checkProfile(ctx, front, cfg); err != nil {
		front.Close()
		return nil, fmt.Errorf("clickhouse cluster %s: %w", cfg.Cluster, err)
	}
	return &ClusterConn{Conn: front, Cluster: c}, nil
}

// discover reads the cluster's shards and replicas from system.clusters.
func (c *Cluster) discover(ctx context.Context, conn driver.Conn) error {
	rows, err := conn.Query(ctx, `SELECT shard_num, shard_weight, host_name, port FROM system.clusters
		WHERE cluster = ? ORDER BY shard_num, replica_num`, c.Name)
	if err != nil {
		return fmt.Errorf("read cluster %s: %w", c.Name, err)
	}
	defer rows.Close()
	var shards []Shard
	for rows.Next() {
		var num, weight uint32
		var host string
		var port uint16
		if err := rows.Scan(&num, &weight, &host, &port); err != nil {
			return fmt.Errorf("read cluster %s: %w", c.Name, err)
		}
		if len(shards) == 0 || shards[len(shards)-1].Num != int(num) {
			shards = append(shards, Shard{Num: int(num), Weight: weight})
		}
		s := &shards[len(shards)-1]
		s.Replicas = append(s.Replicas, host+":"+strconv.Itoa(int(port)))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read cluster %s: %w", c.Name, err)
	}
	if len(shards) == 0 {
		return fmt.Errorf("cluster %s is not in the server's remote_servers", c.Name)
	}
	c.Shards = shards
	c.slots = slots(shards)
	return nil
}

// slots maps each weight slot to its shard the way the Distributed engine
// does: shard i owns Weight consecutive slots, in shard order.
func slots(shards []Shard) []int {
	var out []int
	for i, s := range shards {
		for range max(s.Weight, 1) {
			out = append(out, i)
		}
	}
	return out
}

// ShardingHash is cityHash64(tenant, user) as ClickHouse computes it for
// two String arguments: CityHash64 v1.0.2 of each, combined with
// Hash128to64.
func ShardingHash(tenant, user string) uint64 {
	return hash128to64(city.CH64([]byte(tenant)), city.CH64([]byte(user)))
}

// hash128to64 is CityHash's Hash128to64 of the 128-bit value (low, high),
// which ClickHouse uses to combine the hashes of several arguments.
func hash128to64(low, high uint64) uint64 {
	const mul = 0x9ddfea08eb382d69
	a := (low ^ high) * mul
	a ^= a >> 47
	b := (high ^ a) * mul
	b ^= b >> 47
	return b * mul
}

// ShardOf returns the index in Shards of the shard that holds the rows of
// tenant's user: the shard a Distributed insert would choose.
func (c *Cluster) ShardOf(tenant, user string) int {
	return c.slots[ShardingHash(tenant, user)%uint64(len(c.slots))]
}

// Servers returns every server's address, shard by shard.
func (c *Cluster) Servers() []string {
	var out []string
	for _, s := range c.Shards {
		out = append(out, s.Replicas...)
	}
	return out
}

// Server returns the connection to one server, opening it on first use.
// It is not pinged: a server that is down fails the first statement.
func (c *Cluster) Server(addr string) (driver.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn, ok := c.conns[addr]; ok {
		return conn, nil
	}
	opts, err := options(c.cfg, []string{addr}, 4, nil)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", addr, err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", addr, err)
	}
	c.conns[addr] = conn
	return conn, nil
}

// Reachable reports whether the server answers a ping within the dial
// timeout.
func (c *Cluster) Reachable(ctx context.Context, addr string) bool {
	conn, err := c.Server(addr)
	if err != nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	return conn.Ping(pctx) == nil
}

func (c *Cluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, conn := range c.conns {
		conn.Close()
		delete(c.conns, addr)
	}
}

// Local is the name of table's part on each server: LocalSuffix added,
// except for ReplayPausesTable, which is not sharded.
func Local(table string) string {
	if table == ReplayPausesTable {
		return table
	}
	return table + LocalSuffix
}

// IsSharded reports whether name is one of the tables that a cluster
// holds as a Distributed table over local tables (every table but
// ReplayPausesTable; views are not tables).
func IsSharded(name string) bool {
	for _, t := range tables {
		if t.name == name {
			return name != ReplayPausesTable
		}
	}
	return false
}

// ExecEverywhere runs a statement on every server (DDL that 18.16 does
// not replicate: CREATE, DROP, RENAME), in the cluster's order, and stops
// at the first failure. On a single server it is conn.Exec.
func ExecEverywhere(ctx context.Context, conn driver.Conn, q string, args ...any) error {
	c := ClusterOf(conn)
	if c == nil {
		return conn.Exec(ctx, q, args...)
	}
	for _, addr := range c.Servers() {
		sc, err := c.Server(addr)
		if err == nil {
			err = sc.Exec(ctx, q, args...)
		}
		if err != nil {
			return fmt.Errorf("on %s: %w", addr, err)
		}
	}
	return nil
}

// ExecPerShard runs a statement on one replica of every shard, the first
// that answers (replicated statements: ALTER ... DELETE, INSERT into a
// local table from another). On a single server it is conn.Exec.
func ExecPerShard(ctx context.Context, conn driver.Conn, q string, args ...any) error {
	c := ClusterOf(conn)
	if c == nil {
		return conn.Exec(ctx, q, args...)
	}
	for i := range c.Shards {
		if err := c.ExecOnShard(ctx, i, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// ExecOnShard runs a statement on the first replica of shard i (an index
// in Shards) that takes it.
func (c *Cluster) ExecOnShard(ctx context.Context, i int, q string, args ...any) error {
	var errs []error
	for _, addr := range c.Shards[i].Replicas {
		sc, err := c.Server(addr)
		if err == nil {
			if err = sc.Exec(ctx, q, args...); err == nil {
				return nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("shard %d: %w", c.Shards[i].Num, errors.Join(errs...))
}

// SyncReplicas waits until every replica of the tables in db has fetched
// every part the other replicas of its shard announced (SYSTEM SYNC
// REPLICA on every server), so that a Distributed read sees every
// acknowledged insert whichever replica it reads. Tests and verifiers use
// it; a single server has nothing to wait for.
func SyncReplicas(ctx context.Context, conn driver.Conn, db string, tables ...string) error {
	c := ClusterOf(conn)
	if c == nil {
		return nil
	}
	for _, t := range tables {
		if err := ExecEverywhere(ctx, conn, fmt.Sprintf("SYSTEM SYNC REPLICA %s.%s", db, Local(t))); err != nil {
			return fmt.Errorf("sync replicas of %s.%s: %w", db, t, err)
		}
	}
	return nil
}

// engineRE finds a MergeTree family engine and its arguments.
var engineRE = regexp.MustCompile(`ENGINE\s*=\s*(\w*MergeTree)\(([^)]*)\)`)

// replicatedEngine turns a table's engine clause into its replicated
// twin with the ZooKeeper path zkPath and replica name replica.
func replicatedEngine(engine, zkPath, replica string) (string, error) {
	m := engineRE.FindStringSubmatchIndex(engine)
	if m == nil {
		return "", fmt.Errorf("engine %q is not of the MergeTree family", engine)
	}
	name, args := engine[m[2]:m[3]], strings.TrimSpace(engine[m[4]:m[5]])
	rargs := quote(zkPath) + ", " + quote(replica)
	if args != "" {
		rargs += ", " + args
	}
	return engine[:m[0]] + "ENGINE = Replicated" + name + "(" + rargs + ")" + engine[m[1]:], nil
}

// ServerFilledColumns are the columns of table that the server fills
// (DEFAULT now()), which TableColumns leaves out. A writer that relies on
// replicated insert deduplication sends them itself: a retried block is
// dropped only if it is identical, and the server's clock would differ.
func ServerFilledColumns(table string) []string {
	var out []string
	for _, c := range tableByName(table).columns {
		if c.def == "now()" {
			out = append(out, c.name)
		}
	}
	return out
}

// PartitionColumn is the DateTime or Date column by whose month table
// is partitioned, or "" if it has no partitions.
func PartitionColumn(table string) string {
	m := partitionRE.FindStringSubmatch(tableByName(table).engine)
	if m == nil {
		return ""
	}
	return m[1]
}

var partitionRE = regexp.MustCompile(`PARTITION BY toYYYYMM\((\w+)\)`)
