package replay

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// Catching the restored tables up after a rollback
//
// Between a swap and its rollback the live projectors write into the
// rebuilt tables and commit their offsets, so after the rollback they
// resume past those records: the restored tables would lack them, and a
// projector cannot tell that from rows deleted by an erasure (why it
// resumes at the committed offset when that is later than the stored
// positions). So Rollback, while the live projectors are still paused,
// copies from the replaced tables into the restored ones every row whose
// record the restored table has no row of (positions above its highest
// per partition); the rollups follow through their views. Erasures copied
// this way were decided after the restored tables were replaced, so their
// users' rows are deleted from the restored tables too. On a cluster this
// runs shard by shard on the local tables.

// catchUpRestored copies rows of records after the restored tables'
// positions from db from (the replaced tables) into db live.
func (s *session) catchUpRestored(ctx context.Context, live, from string, tables []string) (int, error) {
	if err := warehouse.SyncReplicas(ctx, s.ch, from, tables...); err != nil {
		return 0, err
	}
	copied := 0
	var erased []string
	err := s.onEachShard(ctx, func(conn driver.Conn) error {
		var conds []string
		var args []any
		for _, t := range tables {
			if _, ok := s.topicOf[t]; !ok {
				continue // the rollups: their views follow the readings copied
			}
			n, users, err := copyAfter(ctx, conn, live, from, s.local(t), strings.Join(warehouse.TableColumns(t), ", "), t == warehouse.ErasedUsersTable)
			if err != nil {
				return fmt.Errorf("catch %s.%s up: %w", live, t, err)
			}
			copied += n
			for _, u := range users {
				conds = append(conds, "(tenant_id = ? AND user_id = ?)")
				args = append(args, u[0], u[1])
			}
		}
		erased = append(erased, conds...)
		if len(conds) == 0 {
			return nil
		}
		// The erasures just copied: their users' rows are deleted here.
		for _, t := range warehouse.ErasableTables {
			q := fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE %s", live, s.local(t), strings.Join(conds, " OR "))
			if err := conn.Exec(ctx, q, args...); err != nil {
				return fmt.Errorf("erase from restored %s: %w", t, err)
			}
		}
		return nil
	})
	if len(erased) > 0 {
		s.log.Info().Int("users", len(erased)).Msg("rollback: users erased while the rebuilt tables were live deleted from the restored ones")
	}
	return copied, err
}

// copyAfter copies, partition by partition, the rows of from.table whose
// position is above the highest one live.table holds, and returns how
// many and, if users, their distinct (tenant, user) pairs.
func copyAfter(ctx context.Context, conn driver.Conn, live, from, table, cols string, users bool) (int, [][2]string, error) {
	have, err := warehouse.MaxPositions(ctx, conn, live, table)
	if err != nil {
		return 0, nil, err
	}
	src, err := warehouse.MaxPositions(ctx, conn, from, table)
	if err != nil {
		return 0, nil, err
	}
	copied := 0
	var who [][2]string
	for part, top := range src {
		after, ok := have[part]
		if !ok {
			after = -1
		}
		if top <= after {
			continue
		}
		var n uint64
		cq := fmt.Sprintf("SELECT count() FROM %s.%s WHERE log_partition = ? AND log_offset > ?", from, table)
		if err := conn.QueryRow(ctx, cq, part, after).Scan(&n); err != nil {
			return 0, nil, err
		}
		if users {
			u, err := distinctUsers(ctx, conn, from, table, part, after)
			if err != nil {
				return 0, nil, err
			}
			who = append(who, u...)
		}
		q := fmt.Sprintf("INSERT INTO %s.%s (%s) SELECT %s FROM %s.%s WHERE log_partition = ? AND log_offset > ?", live, table, cols, cols, from, table)
		if err := conn.Exec(ctx, q, part, after); err != nil {
			return 0, nil, err
		}
		copied += int(n)
	}
	return copied, who, nil
}

// distinctUsers are the users of db.table's rows of a partition after
// an offset.
func distinctUsers(ctx context.Context, conn driver.Conn, db, table string, part int32, after int64) ([][2]string, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT tenant_id, user_id FROM %s.%s WHERE log_partition = ? AND log_offset > ?", db, table), part, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var u [2]string
		if err := rows.Scan(&u[0], &u[1]); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// onEachShard runs fn with a connection to the server or, on a cluster,
// to one replica of each shard in turn (the first that answers).
func (s *session) onEachShard(ctx context.Context, fn func(driver.Conn) error) error {
	c := warehouse.ClusterOf(s.ch)
	if c == nil {
		return fn(s.ch)
	}
	for _, shard := range c.Shards {
		var conn driver.Conn
		for _, addr := range shard.Replicas {
			if c.Reachable(ctx, addr) {
				conn, _ = c.Server(addr)
				break
			}
		}
		if conn == nil {
			return fmt.Errorf("shard %d: no replica answers", shard.Num)
		}
		if err := fn(conn); err != nil {
			return fmt.Errorf("shard %d: %w", shard.Num, err)
		}
	}
	return nil
}
