package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Table names. The records are in recordsTable, each tenant's newest
// sequence number and hash in headsTable.
const (
	recordsTable = "access_audit"
	headsTable   = "access_audit_heads"
	// schemaLock serialises concurrent schema creation (see credential).
	schemaLock = 727015
)

const schema = `
CREATE TABLE IF NOT EXISTS access_audit (
	tenant_id  text        NOT NULL,
	seq        bigint      NOT NULL,
	at         timestamptz NOT NULL,
	actor      text        NOT NULL,
	actor_name text        NOT NULL,
	remote     text        NOT NULL,
	action     text        NOT NULL,
	target     text        NOT NULL,
	user_id    text        NOT NULL,
	cohort     text        NOT NULL,
	metric     text        NOT NULL,
	range_from timestamptz,
	range_to   timestamptz,
	rows       bigint,
	status     integer     NOT NULL,
	outcome    text        NOT NULL,
	code       text        NOT NULL,
	prev_hash  bytea       NOT NULL,
	hash       bytea       NOT NULL,
	PRIMARY KEY (tenant_id, seq)
);
COMMENT ON TABLE access_audit IS 'Access audit trail: one row per query API request or export, denied ones included; a SHA-256 hash chain per tenant (vitals audit verify). Append-only.';
CREATE INDEX IF NOT EXISTS access_audit_by_user ON access_audit (tenant_id, user_id, at) WHERE user_id <> '';
CREATE TABLE IF NOT EXISTS access_audit_heads (
	tenant_id text   PRIMARY KEY,
	seq       bigint NOT NULL,
	hash      bytea  NOT NULL
);
COMMENT ON TABLE access_audit_heads IS 'Newest record (seq, hash) of each tenant''s access audit chain; appends lock the row, so a chain grows one record at a time.';
CREATE OR REPLACE FUNCTION access_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'access_audit is append-only: % refused', TG_OP;
END $$;
CREATE OR REPLACE TRIGGER access_audit_no_change BEFORE UPDATE OR DELETE ON access_audit
	FOR EACH ROW EXECUTE FUNCTION access_audit_append_only();
CREATE OR REPLACE TRIGGER access_audit_no_truncate BEFORE TRUNCATE ON access_audit
	FOR EACH STATEMENT EXECUTE FUNCTION access_audit_append_only();
`

// columns are recordsTable's columns in the order scan reads them.
const columns = `tenant_id, seq, at, actor, actor_name, remote, action, target, user_id, cohort, metric,
	range_from, range_to, rows, status, outcome, code, prev_hash, hash`

// Store keeps the audit trail in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewStore creates the tables if needed.
func NewStore(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit tables: %w", err)
	}
	return &Store{pool: pool, now: time.Now}, nil
}

// Append adds r to the end of its tenant's chain and returns it as
// stored. Appends to one chain are serialised by the head row's lock;
// the record is durable when Append returns nil.
func (s *Store) Append(ctx context.Context, r Record) (Record, error) {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Creates the head on a tenant's first record and locks it until
		// commit; DO UPDATE (of nothing) makes RETURNING see an existing row.
		var seq int64
		var prev []byte
		err := tx.QueryRow(ctx, `INSERT INTO access_audit_heads AS h (tenant_id, seq, hash) VALUES ($1, 0, $2)
			ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = h.tenant_id RETURNING h.seq, h.hash`, r.Tenant, genesis).Scan(&seq, &prev)
		if err != nil {
			return err
		}
		r.At, r.Seq, r.PrevHash = s.now(), seq+1, prev
		r.normalize()
		r.Hash = r.ComputeHash()
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO access_audit (`+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
			r.Tenant, r.Seq, r.At, r.Actor, r.ActorName, r.Remote, r.Action, r.Target, r.User, r.Cohort, r.Metric,
			r.From, r.To, r.Rows, r.Status, r.Outcome, r.Code, r.PrevHash, r.Hash)
		b.Queue(`UPDATE access_audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1`, r.Tenant, r.Seq, r.Hash)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return Record{}, fmt.Errorf("append audit record: %w", err)
	}
	return r, nil
}

func scan(row pgx.CollectableRow) (Record, error) {
	var r Record
	err := row.Scan(&r.Tenant, &r.Seq, &r.At, &r.Actor, &r.ActorName, &r.Remote, &r.Action, &r.Target, &r.User, &r.Cohort,
		&r.Metric, &r.From, &r.To, &r.Rows, &r.Status, &r.Outcome, &r.Code, &r.PrevHash, &r.Hash)
	r.At = r.At.UTC()
	return r, err
}

// Filter selects records to list.
type Filter struct {
	Tenant string // required
	// User keeps the records of accesses to one person's data.
	User string
	// Actor keeps one token's (or command's) records.
	Actor string
	// Since and Until bound At when not zero.
	Since, Until time.Time
	// Limit keeps the newest Limit records (0: all).
	Limit int
}

// List returns the records of f, oldest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	until := f.Until
	if until.IsZero() {
		until = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = 1 << 62
	}
	// pgx's rows carry a failed query's error, which CollectRows returns.
	rows, _ := s.pool.Query(ctx, `SELECT * FROM (SELECT `+columns+` FROM access_audit
		WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND ($3 = '' OR actor = $3) AND at >= $4 AND at < $5
		ORDER BY seq DESC LIMIT $6) newest ORDER BY seq`, f.Tenant, f.User, f.Actor, f.Since, until, limit)
	out, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("list audit records: %w", err)
	}
	return out, nil
}

// Chain is the result of verifying one tenant's chain.
type Chain struct {
	Tenant string
	// Records is how many records were read; HeadSeq and HeadHash are the
	// head row's (what to keep elsewhere to anchor the chain).
	Records  int64
	HeadSeq  int64
	HeadHash []byte
	// Problems are the breaks found (at most maxProblems); none when the
	// chain is intact.
	Problems []Problem
}

// OK reports whether the chain is intact.
func (c Chain) OK() bool { return len(c.Problems) == 0 }

// maxProblems bounds the problems reported per chain: after an edit
// every later record may disagree.
const maxProblems = 20

// Tenants returns every tenant with a chain ("" is the chain of callers
// who could not be identified), heads and records both considered, so a
// deleted head is found too.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant_id FROM access_audit_heads
		UNION SELECT DISTINCT tenant_id FROM access_audit ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("audit tenants: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("audit tenants: %w", err)
	}
	return out, nil
}

// Verify recomputes tenant's chain from its first record: sequence
// numbers without gaps, each record's PrevHash equal to the previous
// Hash, each Hash equal to the hash of the record's contents, and the
// head equal to the last record.
func (s *Store) Verify(ctx context.Context, tenant string) (Chain, error) {
	c := Chain{Tenant: tenant}
	problem := func(seq int64, format string, args ...any) {
		if len(c.Problems) < maxProblems {
			c.Problems = append(c.Problems, Problem{Tenant: tenant, Seq: seq, Reason: fmt.Sprintf(format, args...)})
		}
	}
	prev, want := genesis, int64(1)
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM access_audit WHERE tenant_id = $1 ORDER BY seq`, tenant)
	if err != nil {
		return c, fmt.Errorf("verify audit chain: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return c, fmt.Errorf("verify audit chain: %w", err)
		}
		c.Records++
		if r.Seq != want {
			problem(r.Seq, "expected record %d next: %d record(s) missing", want, r.Seq-want)
		}
		if !bytes.Equal(r.PrevHash, prev) {
			problem(r.Seq, "prev_hash %x is not the previous record's hash %x", r.PrevHash, prev)
		}
		if h := r.ComputeHash(); !bytes.Equal(h, r.Hash) {
			problem(r.Seq, "contents changed: they hash to %x, the record says %x", h, r.Hash)
		}
		prev, want = r.Hash, r.Seq+1
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("verify audit chain: %w", err)
	}
	err = s.pool.QueryRow(ctx, `SELECT seq, hash FROM access_audit_heads WHERE tenant_id = $1`, tenant).Scan(&c.HeadSeq, &c.HeadHash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if c.Records > 0 {
			problem(want-1, "the chain has no head row")
		}
	case err != nil:
		return c, fmt.Errorf("verify audit chain head: %w", err)
	case c.HeadSeq != want-1 || !bytes.Equal(c.HeadHash, prev):
		problem(c.HeadSeq, "the head (record %d, %x) is not the last record (%d, %x): records were removed from the end or added around the chain",
			c.HeadSeq, c.HeadHash, want-1, prev)
	}
	return c, nil
}

// HashAt returns the hash of tenant's record seq, to check an anchor
// (a head kept elsewhere) against the stored chain.
func (s *Store) HashAt(ctx context.Context, tenant string, seq int64) ([]byte, error) {
	var h []byte
	err := s.pool.QueryRow(ctx, `SELECT hash FROM access_audit WHERE tenant_id = $1 AND seq = $2`, tenant, seq).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("tenant %q has no audit record %d", tenant, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("audit record %d: %w", seq, err)
	}
	return h, nil
}
