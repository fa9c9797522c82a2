// Package credential stores bearer secrets scoped to one tenant in
// PostgreSQL: the gateways' API keys (ingest) and the analysts' query
// tokens (query) are the same mechanism in different tables, so that both
// get the same hashing, caching and revocation.
//
// A credential is presented as <prefix>_<id>_<secret>: a 64-bit id in hex
// (the row's key, safe to show and log) and a 256-bit secret in hex. Only a
// SHA-256 of the secret is stored: the secret is 256 random bits, so a slow
// password hash would add nothing but latency. The tenant always comes
// from the credential, never from a request.
package credential

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vitalshq/vitals/internal/ident"
)

// Kind is one family of credentials: its table and how it is presented.
// Table is spliced into SQL, so kinds are the constants below only.
type Kind struct {
	// Table holds the credentials.
	Table string
	// Prefix starts every presented credential, so a gateway key sent to
	// the query API (or the reverse) is recognisably the wrong kind.
	Prefix string
	// Noun names the credential in messages, e.g. "API key".
	Noun string
	// lockID serialises concurrent CREATE TABLE IF NOT EXISTS.
	lockID int64
	// comment documents the table in the database.
	comment string
}

// The credential kinds of Vitals.
var (
	// GatewayKeys authenticate gateways posting to ingest.
	GatewayKeys = Kind{Table: "api_keys", Prefix: "vk", Noun: "API key", lockID: 727002,
		comment: "Gateway API keys; only a SHA-256 of each secret is stored."}
	// AnalystTokens authenticate analysts reading through the query API.
	AnalystTokens = Kind{Table: "analyst_tokens", Prefix: "va", Noun: "analyst token", lockID: 727003,
		comment: "Analyst query tokens, each scoped to one tenant; only a SHA-256 of each secret is stored."}
)

// Errors of verification; HTTP layers map them to 401 and 403.
var (
	ErrUnknown = errors.New("unknown or malformed credential")
	ErrRevoked = errors.New("credential revoked")
)

// Credential is a stored credential's public part.
type Credential struct {
	ID        string
	Tenant    string
	Name      string
	CreatedAt time.Time
	RevokedAt *time.Time
}

// Store keeps one kind of credential in PostgreSQL and caches
// verifications briefly, so that a service keeps authenticating known
// callers through a short database outage; a revocation takes effect
// within the cache TTL.
type Store struct {
	kind Kind
	pool *pgxpool.Pool
	ttl  time.Duration

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	cred    Credential
	hash    []byte
	found   bool
	fetched time.Time
}

// NewStore creates kind's table if needed.
func NewStore(ctx context.Context, pool *pgxpool.Pool, kind Kind, ttl time.Duration) (*Store, error) {
	schema := fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %[1]s (
	key_id        text        PRIMARY KEY,
	tenant_id     text        NOT NULL,
	name          text        NOT NULL,
	secret_sha256 bytea       NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	revoked_at    timestamptz
);
COMMENT ON TABLE %[1]s IS '%[2]s';
`, kind.Table, strings.ReplaceAll(kind.comment, "'", "''"))
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, kind.lockID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s table %s: %w", kind.Noun, kind.Table, err)
	}
	return &Store{kind: kind, pool: pool, ttl: ttl, cache: make(map[string]cached)}, nil
}

// Create makes a credential for tenant and returns it in full; it is
// shown once and cannot be recovered.
func (s *Store) Create(ctx context.Context, tenant, name string) (string, Credential, error) {
	if err := ident.Check("tenant", tenant); err != nil {
		return "", Credential{}, err
	}
	if name == "" || len(name) > 200 {
		return "", Credential{}, errors.New("name must be 1 to 200 characters")
	}
	idb := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", Credential{}, fmt.Errorf("create %s: %w", s.kind.Noun, err)
	}
	if _, err := rand.Read(secret); err != nil {
		return "", Credential{}, fmt.Errorf("create %s: %w", s.kind.Noun, err)
	}
	id := hex.EncodeToString(idb)
	sec := hex.EncodeToString(secret)
	sum := sha256.Sum256([]byte(sec))
	c := Credential{ID: id, Tenant: tenant, Name: name}
	err := s.pool.QueryRow(ctx, `INSERT INTO `+s.kind.Table+` (key_id, tenant_id, name, secret_sha256) VALUES ($1, $2, $3, $4) RETURNING created_at`,
		id, tenant, name, sum[:]).Scan(&c.CreatedAt)
	if err != nil {
		return "", Credential{}, fmt.Errorf("create %s: %w", s.kind.Noun, err)
	}
	return s.kind.Prefix + "_" + id + "_" + sec, c, nil
}

// List returns the credentials of a tenant, or of all tenants if tenant is
// empty.
func (s *Store) List(ctx context.Context, tenant string) ([]Credential, error) {
	rows, err := s.pool.Query(ctx, `SELECT key_id, tenant_id, name, created_at, revoked_at FROM `+s.kind.Table+`
		WHERE $1 = '' OR tenant_id = $1 ORDER BY tenant_id, created_at`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", s.kind.Noun, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Credential, error) {
		var c Credential
		err := r.Scan(&c.ID, &c.Tenant, &c.Name, &c.CreatedAt, &c.RevokedAt)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", s.kind.Noun, err)
	}
	return out, nil
}

// Revoke marks a credential revoked; it reports false if no such
// credential exists.
func (s *Store) Revoke(ctx context.Context, id string) (bool, error) {
	ct, err := s.pool.Exec(ctx, `UPDATE `+s.kind.Table+` SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1`, id)
	if err != nil {
		return false, fmt.Errorf("revoke %s: %w", s.kind.Noun, err)
	}
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
	return ct.RowsAffected() == 1, nil
}

// Verify checks a presented credential and returns it; the error is
// ErrUnknown, ErrRevoked, or a database error when it is not cached.
func (s *Store) Verify(ctx context.Context, presented string) (Credential, error) {
	rest, ok := strings.CutPrefix(presented, s.kind.Prefix+"_")
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 16 || len(secret) != 64 {
		return Credential{}, ErrUnknown
	}
	c, err := s.lookup(ctx, id)
	if err != nil {
		return Credential{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	if !c.found || subtle.ConstantTimeCompare(sum[:], c.hash) != 1 {
		return Credential{}, ErrUnknown
	}
	if c.cred.RevokedAt != nil {
		return c.cred, ErrRevoked
	}
	return c.cred, nil
}

func (s *Store) lookup(ctx context.Context, id string) (cached, error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && now.Sub(c.fetched) < s.ttl {
		return c, nil
	}
	stale := c
	c = cached{fetched: now}
	err := s.pool.QueryRow(ctx, `SELECT tenant_id, name, created_at, revoked_at, secret_sha256 FROM `+s.kind.Table+` WHERE key_id = $1`, id).
		Scan(&c.cred.Tenant, &c.cred.Name, &c.cred.CreatedAt, &c.cred.RevokedAt, &c.hash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		if ok { // the database is away: a stale answer beats locking callers out
			// The copy taken under the lock: reading the map here would race
			// with lookups that reach the database and write it.
			return stale, nil
		}
		return cached{}, fmt.Errorf("verify %s: %w", s.kind.Noun, err)
	default:
		c.found = true
		c.cred.ID = id
	}
	s.mu.Lock()
	if len(s.cache) > 100_000 { // bound memory against floods of made-up ids
		clear(s.cache)
	}
	s.cache[id] = c
	s.mu.Unlock()
	return c, nil
}
