package projector

// Projecting into a ClickHouse cluster
//
// On a cluster (warehouse.Config.Cluster) one Kafka partition's rows
// belong to several shards: a user's rows live on the shard
// warehouse.ShardOf picks, the same one a Distributed insert would. An
// insert into a Distributed table is asynchronous and not atomic across
// shards, so the projector does not use it. It splits each table's share
// of a batch by shard itself and inserts each part into that shard's
// local replicated table, on the first replica in the cluster's order
// that takes it (the one Distributed reads prefer, so that a read after a
// write sees it; a replica an insert failed on is tried last for 30 s).
// It keeps exactly-once with two defences:
//
//   - Positions per shard. Every row stores its record's position, and
//     each shard receives a partition's rows in offset order, one INSERT
//     per batch (per batch and month for the readings table, see below).
//     When a partition is assigned, the projector reads, for every shard,
//     the highest offset of that partition stored there (the maximum over
//     the shard's replicas), and drops each later record's row if its
//     shard already holds that offset. It starts reading at the committed
//     offset, which covers every shard; the per-shard floors skip what a
//     crash between the inserts and the commit left stored on some shards
//     only. A replica that is down may hold inserts the others have not
//     fetched yet: the floors are then trusted only if a live replica of
//     the shard has no such fetch queued (system.replicas), and otherwise
//     the assignment waits until it has.
//   - Replicated insert deduplication. A failed insert is retried with the
//     identical block (the server-filled inserted_at/erased_at are sent by
//     the projector, fixed at the first attempt, so that the block is
//     byte for byte the same), on the same or the other replica. A
//     replicated table keeps the hashes of its recent blocks in ZooKeeper
//     and drops a block it already has, whichever replica took it; 18.16
//     then does not feed the block to the materialized views either, so
//     the rollups do not count it twice, and it never deduplicates the
//     views' own inserts (two different batches with the same rollup rows
//     are both counted). Deduplication is per part, though, and a block
//     that is partly new feeds the views whole or not at all, so the
//     readings table, the views' source, is inserted one month partition
//     per INSERT: every insert is one part, stored or dropped whole.
//
// Erasure: an erasure row goes to its user's shard like every other row,
// and the user's rows are deleted there (one ALTER ... DELETE per table
// on one replica of the shard; replicated tables replicate mutations).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// shardRouter is the projector's cluster state.
type shardRouter struct {
	cluster *warehouse.Cluster
	// failedAt is when an insert into each replica (by shard, then index
	// in Replicas) last failed: writes go to the replicas in the
	// cluster's order, the one Distributed reads prefer, skipping one
	// that failed in the last retryReplicaAfter.
	failedAt [][]time.Time
	// floors are, per table and partition of its topic, the highest
	// offset stored on each shard (and month, for the tables that feed
	// views) when the partition was assigned. Per table, not per topic:
	// the accepted readings' records go to two tables (readings and
	// revisions), and a crash between a batch's two inserts leaves one
	// holding later offsets than the other.
	// The assignment callback writes them while Run reads them: mu.
	mu     sync.Mutex
	floors map[tablePartition]map[groupKey]int64
	// bufs are the per-shard tables of a batch, reused batch after batch.
	bufs map[groupBufKey]*pending
}

// groupKey is one INSERT's destination: a shard (an index in the
// cluster's Shards) and, for the readings table, a month (YYYYMM; 0 for
// other tables).
type groupKey struct {
	shard int
	month uint32
}

type groupBufKey struct {
	table string
	groupKey
}

// shardGroup is a table's rows of one batch for one groupKey.
type shardGroup struct {
	key groupKey
	t   *pending
}

func newShardRouter(c *warehouse.Cluster) *shardRouter {
	r := &shardRouter{cluster: c, floors: map[tablePartition]map[groupKey]int64{}, bufs: map[groupBufKey]*pending{}}
	for _, s := range c.Shards {
		r.failedAt = append(r.failedAt, make([]time.Time, len(s.Replicas)))
	}
	return r
}

// retryReplicaAfter is how long a replica an insert failed on is tried
// last.
const retryReplicaAfter = 30 * time.Second

// order is the order in which an insert tries shard i's replicas: the
// cluster's, those that failed lately last.
func (r *shardRouter) order(i int) []int {
	var ok, failed []int
	for ri, at := range r.failedAt[i] {
		if !at.IsZero() && time.Since(at) < retryReplicaAfter {
			failed = append(failed, ri)
		} else {
			ok = append(ok, ri)
		}
	}
	return append(ok, failed...)
}

// tablePartition is a table and a partition of the topic it stores.
type tablePartition struct {
	table string
	part  int32
}

// splitsByMonth reports whether a table's inserts are one month each: the
// readings and revisions tables, which feed the rollups' views.
func splitsByMonth(table string) bool {
	return table == warehouse.ReadingsTable || table == warehouse.RevisionsTable
}

// pick appends the values of src (a column of the same type) at the
// indexes idx.
func (c *col[T]) pick(src column, idx []int) {
	s := src.(*col[T])
	for _, i := range idx {
		c.v = append(c.v, s.v[i])
	}
}

func (c *nullCol[T]) pick(src column, idx []int) {
	s := src.(*nullCol[T])
	for _, i := range idx {
		c.v = append(c.v, s.v[i])
		c.null = append(c.null, s.null[i])
	}
}

// split divides t's rows into groups, leaving out rows their shard
// already stores, and fixes the server-filled columns at now. It is done
// once per batch: retries send the same groups.
func (p *Projector) split(t *pending) {
	r := p.shards
	now := time.Now().Unix()
	month := monthOf(t)
	idx := map[groupKey][]int{}
	skipped := 0
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, row := range t.rows {
		k := groupKey{shard: r.cluster.ShardOf(row.tenant, row.user)}
		if month != nil {
			k.month = month(i)
		}
		if t.sink.resume {
			if f, ok := r.floors[tablePartition{t.sink.table, row.partition}][k]; ok && row.offset <= f {
				skipped++
				continue
			}
		}
		idx[k] = append(idx[k], i)
	}
	if skipped > 0 {
		p.log.Info().Str("table", t.sink.table).Int("already_stored", skipped).Msg("rows their shard already holds (stored before a crash or rebalance) skipped")
	}
	keys := make([]groupKey, 0, len(idx))
	for k := range idx {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b groupKey) int { return cmp.Or(cmp.Compare(a.shard, b.shard), cmp.Compare(a.month, b.month)) })
	t.groups = t.groups[:0]
	for _, k := range keys {
		bk := groupBufKey{t.sink.table, k}
		g := r.bufs[bk]
		if g == nil {
			g = newPending(t.sink)
			for _, name := range warehouse.ServerFilledColumns(t.sink.table) {
				g.cols = append(g.cols, namedColumn{name, &col[int64]{}})
			}
			r.bufs[bk] = g
		}
		g.reset()
		for _, i := range idx[k] {
			g.rows = append(g.rows, t.rows[i])
		}
		for ci, c := range t.cols {
			g.cols[ci].col.pick(c.col, idx[k])
		}
		for _, c := range g.cols[len(t.cols):] {
			fixed := c.col.(*col[int64])
			for range idx[k] {
				fixed.add(now)
			}
		}
		t.groups = append(t.groups, shardGroup{key: k, t: g})
	}
}

// monthOf returns, for the readings table, a function giving row i's
// month partition (YYYYMM of its partition column, a DateTime held as
// epoch seconds); nil for other tables.
func monthOf(t *pending) func(i int) uint32 {
	if !splitsByMonth(t.sink.table) {
		return nil
	}
	name := warehouse.PartitionColumn(t.sink.table)
	for _, c := range t.cols {
		if c.name == name {
			return func(i int) uint32 {
				secs, _ := c.col.value(i).(int64)
				d := time.Unix(secs, 0).UTC()
				return uint32(d.Year()*100 + int(d.Month()))
			}
		}
	}
	panic("projector: table " + t.sink.table + " has no column " + name)
}

// insertSharded is insert on a cluster: every group not stored yet is
// inserted into its shard, as the identical block every attempt.
func (p *Projector) insertSharded(ctx context.Context, t *pending) error {
	if !t.split {
		p.split(t)
		t.split = true
	}
	var erased []row
	for _, g := range t.groups {
		if g.t.stored {
			continue
		}
		if err := p.insertGroup(ctx, t.sink, g); err != nil {
			return err
		}
		// A retry sends the rows as they were split, including rows of
		// users erased since (the filter took them out of t only): delete
		// those now, as for an erasure stored during the insert.
		for _, r := range g.t.rows {
			if p.erased.has(r) {
				erased = append(erased, r)
			}
		}
	}
	if len(erased) > 0 {
		if err := p.deleteUsers(ctx, erased); err != nil {
			return err
		}
	}
	t.stored, t.uncertain = true, false
	return nil
}

// insertGroup inserts one group into its shard, trying its replicas from
// the cluster's order on (see shardRouter.order).
func (p *Projector) insertGroup(ctx context.Context, s *sink, g shardGroup) error {
	r := p.shards
	shard := r.cluster.Shards[g.key.shard]
	names := make([]string, len(g.t.cols))
	for i, c := range g.t.cols {
		names[i] = c.name
	}
	q := fmt.Sprintf("INSERT INTO %s.%s (%s)", p.db, warehouse.Local(s.table), strings.Join(names, ", "))
	var errs []error
	for _, ri := range r.order(g.key.shard) {
		addr := shard.Replicas[ri]
		start := time.Now()
		err := p.sendGroup(ctx, addr, q, g.t)
		if err == nil {
			r.failedAt[g.key.shard][ri] = time.Time{}
			g.t.stored = true
			p.stats.Inserted.Add(int64(len(g.t.rows)))
			p.m.insert.WithLabelValues(s.table).Observe(time.Since(start).Seconds())
			p.m.rows.WithLabelValues(s.table).Add(float64(len(g.t.rows)))
			return nil
		}
		r.failedAt[g.key.shard][ri] = time.Now()
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("insert into %s, shard %d: %w", s.table, shard.Num, errors.Join(errs...))
}

func (p *Projector) sendGroup(ctx context.Context, addr, q string, t *pending) error {
	conn, err := p.shards.cluster.Server(addr)
	if err != nil {
		return err
	}
	b, err := conn.PrepareBatch(ctx, q)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer b.Abort()
	if err := sendColumns(b, t); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	return b.Send()
}

// adjustSharded is adjust on a cluster: it keeps the committed offsets
// and reads, for every newly assigned partition, what each shard holds.
func (p *Projector) adjustSharded(ctx context.Context, s *sink, parts map[int32]kgo.Offset, ids []int32) error {
	sinks := []*sink{s}
	if s.revisions != nil {
		sinks = append(sinks, s.revisions)
	}
	for _, s := range sinks {
		if err := p.shardFloorsOf(ctx, s, parts, ids); err != nil {
			return err
		}
	}
	return nil
}

// shardFloorsOf notes the floors of s's table for the partitions ids.
func (p *Projector) shardFloorsOf(ctx context.Context, s *sink, parts map[int32]kgo.Offset, ids []int32) error {
	floors, err := p.shardFloors(ctx, s.table, ids)
	if err != nil {
		return err
	}
	p.shards.mu.Lock()
	for _, part := range ids {
		p.shards.floors[tablePartition{s.table, part}] = floors[part]
	}
	p.shards.mu.Unlock()
	for _, part := range ids {
		if len(floors[part]) > 0 {
			p.log.Info().Str("table", s.table).Int32("partition", part).Int64("committed", parts[part].EpochOffset().Offset).
				Str("stored_per_shard", describeFloors(floors[part])).Msg("resuming at the committed offset, skipping rows each shard already holds")
		}
	}
	return nil
}

// shardFloors reads the highest stored offset of the partitions per
// shard (and month, for the readings table), once the inserts into table
// running on any server have finished (awaitInsertsEverywhere).
func (p *Projector) shardFloors(ctx context.Context, table string, parts []int32) (map[int32]map[groupKey]int64, error) {
	if err := p.awaitInsertsEverywhere(ctx, table); err != nil {
		return nil, err
	}
	list := make([]string, len(parts))
	for i, part := range parts {
		list[i] = strconv.Itoa(int(part))
	}
	month := "toUInt32(0)"
	if splitsByMonth(table) {
		month = "toUInt32(toYYYYMM(" + warehouse.PartitionColumn(table) + "))"
	}
	q := fmt.Sprintf("SELECT log_partition, %s AS m, max(log_offset) FROM %s.%s WHERE log_partition IN (%s) GROUP BY log_partition, m",
		month, p.db, warehouse.Local(table), strings.Join(list, ", "))
	out := map[int32]map[groupKey]int64{}
	for si, shard := range p.shards.cluster.Shards {
		var down []string
		complete := false
		for _, addr := range shard.Replicas {
			got, done, err := p.replicaFloors(ctx, addr, table, q)
			if err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				down = append(down, addr)
				continue
			}
			complete = complete || done
			for part, ms := range got {
				if out[part] == nil {
					out[part] = map[groupKey]int64{}
				}
				for m, off := range ms {
					k := groupKey{shard: si, month: m}
					if cur, ok := out[part][k]; !ok || off > cur {
						out[part][k] = off
					}
				}
			}
		}
		if len(down) == len(shard.Replicas) {
			return nil, fmt.Errorf("read stored positions of %s on shard %d: no replica answers", table, shard.Num)
		}
		if len(down) > 0 && !complete {
			return nil, fmt.Errorf("read stored positions of %s on shard %d: %s is down and no live replica has fetched every insert it may hold; waiting",
				table, shard.Num, strings.Join(down, ", "))
		}
	}
	return out, nil
}

// replicaFloors runs the floors query q on one replica, and reports
// whether that replica holds every insert its shard has announced (the
// replication log read, no part waiting to be fetched).
func (p *Projector) replicaFloors(ctx context.Context, addr, table, q string) (map[int32]map[uint32]int64, bool, error) {
	conn, err := p.shards.cluster.Server(addr)
	if err != nil {
		return nil, false, err
	}
	var queued uint32
	var pulled uint8
	err = conn.QueryRow(ctx, `SELECT toUInt32(inserts_in_queue), toUInt8(log_pointer > log_max_index) FROM system.replicas WHERE database = ? AND table = ?`,
		p.db, warehouse.Local(table)).Scan(&queued, &pulled)
	if err != nil {
		return nil, false, fmt.Errorf("replica state of %s on %s: %w", table, addr, err)
	}
	out, err := warehouse.ScanNested[int32, uint32, int64](conn.Query(ctx, q))
	if err != nil {
		return nil, false, fmt.Errorf("stored positions of %s on %s: %w", table, addr, err)
	}
	return out, queued == 0 && pulled == 1, nil
}

// awaitInsertsEverywhere is awaitInserts on every live server: a killed
// projector's last inserts may still be running on any of them.
func (p *Projector) awaitInsertsEverywhere(ctx context.Context, table string) error {
	for _, addr := range p.shards.cluster.Servers() {
		conn, err := p.shards.cluster.Server(addr)
		if err != nil {
			return err
		}
		if err := awaitInsertsOn(ctx, conn, p.db, warehouse.Local(table)); err != nil {
			if ctx.Err() != nil {
				return err
			}
			continue // a server that does not answer runs nothing for us
		}
	}
	return nil
}

// deleteUsersSharded is deleteUsers on a cluster: each user's rows are
// deleted on the user's shard only.
func (p *Projector) deleteUsersSharded(ctx context.Context, users []row) error {
	byShard := map[int][]row{}
	for _, u := range users {
		s := p.shards.cluster.ShardOf(u.tenant, u.user)
		byShard[s] = append(byShard[s], u)
	}
	for s, us := range byShard {
		where, args, _ := usersWhere(us)
		for _, t := range warehouse.ErasableTables {
			q := fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE %s", p.db, warehouse.Local(t), where)
			if err := p.shards.cluster.ExecOnShard(ctx, s, q, args...); err != nil {
				return fmt.Errorf("erase %d users from %s: %w", len(us), t, err)
			}
		}
	}
	p.log.Info().Int("users", len(users)).Int("shards", len(byShard)).Msg("erasure: deletes issued in every table of the users' shards")
	return nil
}

// usersWhere is the condition selecting the users' rows, each user once,
// and the users by tenant.
func usersWhere(users []row) (string, []any, map[string][]string) {
	seen := map[userKey]bool{}
	var conds []string
	var args []any
	byTenant := map[string][]string{}
	for _, u := range users {
		k := userKey{u.tenant, u.user}
		if seen[k] {
			continue
		}
		seen[k] = true
		conds = append(conds, "(tenant_id = ? AND user_id = ?)")
		args = append(args, u.tenant, u.user)
		byTenant[u.tenant] = append(byTenant[u.tenant], u.user)
	}
	return strings.Join(conds, " OR "), args, byTenant
}

func describeFloors(m map[groupKey]int64) string {
	keys := make([]groupKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b groupKey) int { return cmp.Or(cmp.Compare(a.shard, b.shard), cmp.Compare(a.month, b.month)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("shard%d", k.shard+1)
		if k.month != 0 {
			parts[i] += "/" + strconv.Itoa(int(k.month))
		}
		parts[i] += "@" + strconv.FormatInt(m[k], 10)
	}
	return strings.Join(parts, " ")
}
