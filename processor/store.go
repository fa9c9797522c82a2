package processor

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaSQL creates the processor's tables. One row per user (a snapshot,
// rewritten when the user's batch commits) and one row per owned partition.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS processor_aggregates (
	group_id   text   NOT NULL,
	tenant_id  text   NOT NULL,
	user_id    text   NOT NULL,
	version    bigint NOT NULL,
	state      bytea  NOT NULL,
	PRIMARY KEY (group_id, tenant_id, user_id)
);
-- Every checkpoint rewrites its users' rows: room on each page lets the
-- update stay on the page (HOT) without touching the primary key index.
ALTER TABLE processor_aggregates SET (fillfactor = 50);
-- Snapshots were JSON before the binary format; UnmarshalBinary still reads them.
DO $$ BEGIN
	IF (SELECT data_type FROM information_schema.columns
	    WHERE table_schema = current_schema() AND table_name = 'processor_aggregates' AND column_name = 'state') = 'jsonb' THEN
		ALTER TABLE processor_aggregates ALTER COLUMN state TYPE bytea USING convert_to(state::text, 'UTF8');
	END IF;
END $$;
-- Snapshots are sealed with their users' data keys (docs/privacy.md), and
-- ciphertext does not compress: storing them as they are spares PostgreSQL
-- trying.
ALTER TABLE processor_aggregates ALTER COLUMN state SET STORAGE EXTERNAL;
COMMENT ON TABLE processor_aggregates IS 'Per-user aggregate snapshot of the processor (write model), per consumer group so that a reprocess starts from empty state; committed atomically with processor_offsets.';
CREATE TABLE IF NOT EXISTS processor_offsets (
	group_id    text    NOT NULL,
	topic       text    NOT NULL,
	partition   integer NOT NULL,
	next_offset bigint  NOT NULL,
	PRIMARY KEY (group_id, topic, partition)
);
COMMENT ON TABLE processor_offsets IS 'Next Kafka offset to process per partition; the source of truth for the processor''s position.';
ALTER TABLE processor_offsets ADD COLUMN IF NOT EXISTS out_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE processor_offsets ADD COLUMN IF NOT EXISTS part_time bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN processor_offsets.part_time IS 'The partition number''s time at next_offset (epoch ms, the newest record timestamp applied): the clock that settles held readings of users who send nothing more.';
ALTER TABLE processor_aggregates ADD COLUMN IF NOT EXISTS held_part integer;
ALTER TABLE processor_aggregates ADD COLUMN IF NOT EXISTS held_until bigint;
COMMENT ON COLUMN processor_aggregates.held_part IS 'For a user holding readings from an unpaired device: the partition number, whose time settles them.';
COMMENT ON COLUMN processor_aggregates.held_until IS 'For a user holding readings: the partition time (epoch ms) past which the first of them is settled.';
CREATE INDEX IF NOT EXISTS processor_aggregates_held ON processor_aggregates (group_id, held_part) WHERE held_until IS NOT NULL;
COMMENT ON COLUMN processor_offsets.out_seq IS 'Outputs emitted for this partition number up to next_offset (every output carries its number in the vitals-seq header): after a crash the processor skips the outputs already in the output topics instead of emitting them twice.';
`

// errFenced means another instance moved a partition's offset since this
// instance loaded it: the partition has changed hands and this batch must
// not be committed.
var errFenced = errors.New("partition offset moved by another owner")

// UserKey identifies an aggregate.
type UserKey struct{ Tenant, User string }

// store keeps aggregates and offsets in PostgreSQL.
type store struct {
	pool  *pgxpool.Pool
	group string
}

func (s *store) migrate(ctx context.Context) error {
	// A transaction-scoped advisory lock keeps instances starting together
	// from racing on CREATE TABLE IF NOT EXISTS.
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(727001)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schemaSQL)
		return err
	})
}

// position is a partition's stored place: the next offset to process, the
// number of outputs emitted before it, and the partition number's time
// there.
type position struct {
	Next     int64
	OutSeq   int64
	PartTime int64
}

// offsets returns the stored position of each partition of topic that has
// one.
func (s *store) offsets(ctx context.Context, topic string, partitions []int32) (map[int32]position, error) {
	// pgx's rows carry a failed query's error, which ForEachRow returns.
	rows, _ := s.pool.Query(ctx,
		`SELECT partition, next_offset, out_seq, part_time FROM processor_offsets WHERE group_id = $1 AND topic = $2 AND partition = ANY($3)`,
		s.group, topic, partitions)
	out := make(map[int32]position)
	var p int32
	var pos position
	_, err := pgx.ForEachRow(rows, []any{&p, &pos.Next, &pos.OutSeq, &pos.PartTime}, func() error { out[p] = pos; return nil })
	if err != nil {
		return nil, fmt.Errorf("load offsets: %w", err)
	}
	return out, nil
}

// loadSQL reads the aggregates of the users ($2, $3) of a group ($1) with
// one primary-key probe per user: the OFFSET 0 fence keeps the planner from
// turning it into a join that reads every row of the group (whose row
// estimate is stale while the group grows fast), which made each load cost
// O(users in the group) and, at 50,000 users, exceed OpTimeout.
const loadSQL = `
	SELECT a.tenant_id, a.user_id, a.state
	FROM unnest($2::text[], $3::text[]) AS k(tenant_id, user_id)
	CROSS JOIN LATERAL (
		SELECT x.tenant_id, x.user_id, x.state FROM processor_aggregates x
		WHERE x.group_id = $1 AND x.tenant_id = k.tenant_id AND x.user_id = k.user_id
		OFFSET 0) a`

// load returns the stored snapshots of the given users (see
// Processor.openSnapshot); absent users are absent from the map.
func (s *store) load(ctx context.Context, keys []UserKey) (map[UserKey][]byte, error) {
	tenants := make([]string, len(keys))
	users := make([]string, len(keys))
	for i, k := range keys {
		tenants[i], users[i] = k.Tenant, k.User
	}
	rows, _ := s.pool.Query(ctx, loadSQL, s.group, tenants, users) // a failed query fails ForEachRow too
	out := make(map[UserKey][]byte, len(keys))
	var k UserKey
	var state []byte
	_, err := pgx.ForEachRow(rows, []any{&k.Tenant, &k.User, &state}, func() error {
		out[k] = bytes.Clone(state)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load aggregates: %w", err)
	}
	return out, nil
}

// heldUsers returns, per partition number of parts, the users holding
// readings and the partition time that settles the first of them.
func (s *store) heldUsers(ctx context.Context, parts []int32) (map[int32]map[UserKey]int64, error) {
	rows, _ := s.pool.Query(ctx, `SELECT held_part, tenant_id, user_id, held_until FROM processor_aggregates
		WHERE group_id = $1 AND held_part = ANY($2) AND held_until IS NOT NULL`, s.group, parts) // a failed query fails ForEachRow too
	out := map[int32]map[UserKey]int64{}
	var part int32
	var k UserKey
	var until int64
	_, err := pgx.ForEachRow(rows, []any{&part, &k.Tenant, &k.User, &until}, func() error {
		if out[part] == nil {
			out[part] = map[UserKey]int64{}
		}
		out[part][k] = until
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load held users: %w", err)
	}
	return out, nil
}

// partitionAdvance moves one partition from one offset to the next.
type partitionAdvance struct {
	Topic     string
	Partition int32
	From      int64 // the offset this instance believed stored; -1 for none
	To        int64
	// OutSeq is the partition number's output count at To, PartTime its
	// time.
	OutSeq, PartTime int64
}

// commit stores the changed aggregates and advances the partitions in one
// transaction. If any partition's stored offset is not the expected From,
// nothing is written and errFenced is returned.
func (s *store) commit(ctx context.Context, rows snapshotRows, adv []partitionAdvance) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, a := range adv {
			var tag int64
			if a.From < 0 {
				ct, err := tx.Exec(ctx, `INSERT INTO processor_offsets (group_id, topic, partition, next_offset, out_seq, part_time)
					VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, s.group, a.Topic, a.Partition, a.To, a.OutSeq, a.PartTime)
				if err != nil {
					return fmt.Errorf("advance offset: %w", err)
				}
				tag = ct.RowsAffected()
			} else {
				ct, err := tx.Exec(ctx, `UPDATE processor_offsets SET next_offset = $5, out_seq = $6, part_time = $7
					WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $4`,
					s.group, a.Topic, a.Partition, a.From, a.To, a.OutSeq, a.PartTime)
				if err != nil {
					return fmt.Errorf("advance offset: %w", err)
				}
				tag = ct.RowsAffected()
			}
			if tag != 1 {
				return fmt.Errorf("%s/%d at %d: %w", a.Topic, a.Partition, a.From, errFenced)
			}
		}
		if len(rows.users) == 0 {
			return nil
		}
		// The snapshots go in by COPY into a per-connection staging table and
		// one statement moves them: pgx encodes a statement's parameters into
		// buffers that grow to their whole size and are dropped after it
		// (four times the snapshots' bytes allocated and copied), while COPY
		// streams them in 64 KiB chunks.
		if _, err := tx.Exec(ctx, stageSQL); err != nil {
			return fmt.Errorf("store aggregates: stage: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"processor_aggregates_stage"}, stageColumns, &rowSource{rows: rows, at: -1}); err != nil {
			return fmt.Errorf("store aggregates: copy: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO processor_aggregates (group_id, tenant_id, user_id, version, state, held_part, held_until)
			SELECT $1, tenant_id, user_id, version, state, NULLIF(held_part, -1), NULLIF(held_until, -1)
			FROM processor_aggregates_stage
			ON CONFLICT (group_id, tenant_id, user_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state,
				held_part = EXCLUDED.held_part, held_until = EXCLUDED.held_until`, s.group); err != nil {
			return fmt.Errorf("store aggregates: %w", err)
		}
		return nil
	})
}

// stageSQL makes the table a checkpoint copies its snapshots into, once per
// connection: a temporary table, so nothing of it outlives the session or is
// written to the WAL, emptied at every commit.
const stageSQL = `CREATE TEMPORARY TABLE IF NOT EXISTS processor_aggregates_stage (
	tenant_id  text    NOT NULL,
	user_id    text    NOT NULL,
	version    bigint  NOT NULL,
	state      bytea   NOT NULL,
	held_part  integer NOT NULL,
	held_until bigint  NOT NULL
) ON COMMIT DELETE ROWS`

// stageColumns are the staging table's columns, in rowSource's order.
var stageColumns = []string{"tenant_id", "user_id", "version", "state", "held_part", "held_until"}

// rowSource feeds snapshotRows to CopyFrom, one row's values in a slice it
// reuses: CopyFrom encodes them before asking for the next row.
type rowSource struct {
	rows snapshotRows
	at   int
	vals [6]any
}

func (r *rowSource) Next() bool {
	r.at++
	return r.at < len(r.rows.users)
}

func (r *rowSource) Values() ([]any, error) {
	i := r.at
	r.vals = [6]any{r.rows.tenants[i], r.rows.users[i], r.rows.versions[i], r.rows.states[i], r.rows.heldParts[i], r.rows.heldUntil[i]}
	return r.vals[:], nil
}

func (r *rowSource) Err() error { return nil }
