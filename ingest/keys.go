package ingest

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
)

// API keys: every gateway belongs to a tenant and authenticates with a key
// of the form vk_<key id>_<secret>. Only a SHA-256 of the secret is stored:
// the secret is 256 random bits, so a slow password hash would add nothing
// but latency. The tenant always comes from the key, never from a payload.

const keysSchemaSQL = `
CREATE TABLE IF NOT EXISTS api_keys (
	key_id        text        PRIMARY KEY,
	tenant_id     text        NOT NULL,
	name          text        NOT NULL,
	secret_sha256 bytea       NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	revoked_at    timestamptz
);
COMMENT ON TABLE api_keys IS 'Gateway API keys; only a SHA-256 of each secret is stored.';
`

// Errors of key verification; the HTTP layer maps them to 401 and 403.
var (
	ErrBadKey     = errors.New("unknown or malformed API key")
	ErrRevokedKey = errors.New("API key revoked")
)

// Key is a stored key's public part.
type Key struct {
	ID        string
	Tenant    string
	Name      string
	CreatedAt time.Time
	RevokedAt *time.Time
}

// KeyStore keeps API keys in PostgreSQL and caches verifications briefly,
// so that ingest keeps authenticating known gateways through a short
// database outage; a revocation takes effect within the cache TTL.
type KeyStore struct {
	pool *pgxpool.Pool
	ttl  time.Duration

	mu    sync.Mutex
	cache map[string]cachedKey
}

type cachedKey struct {
	key     Key
	hash    []byte
	found   bool
	fetched time.Time
}

// NewKeyStore creates the keys table if needed.
func NewKeyStore(ctx context.Context, pool *pgxpool.Pool, ttl time.Duration) (*KeyStore, error) {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(727002)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, keysSchemaSQL)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("api keys table: %w", err)
	}
	return &KeyStore{pool: pool, ttl: ttl, cache: make(map[string]cachedKey)}, nil
}

// Create makes a key for tenant and returns it in full; it is shown once.
func (s *KeyStore) Create(ctx context.Context, tenant, name string) (string, Key, error) {
	if r := checkID("tenant", tenant); r != nil {
		return "", Key{}, errors.New(r.Message)
	}
	if name == "" || len(name) > 200 {
		return "", Key{}, errors.New("name must be 1 to 200 characters")
	}
	idb := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", Key{}, err
	}
	if _, err := rand.Read(secret); err != nil {
		return "", Key{}, err
	}
	id := hex.EncodeToString(idb)
	sec := hex.EncodeToString(secret)
	sum := sha256.Sum256([]byte(sec))
	k := Key{ID: id, Tenant: tenant, Name: name}
	err := s.pool.QueryRow(ctx, `INSERT INTO api_keys (key_id, tenant_id, name, secret_sha256) VALUES ($1, $2, $3, $4) RETURNING created_at`,
		id, tenant, name, sum[:]).Scan(&k.CreatedAt)
	if err != nil {
		return "", Key{}, fmt.Errorf("create key: %w", err)
	}
	return "vk_" + id + "_" + sec, k, nil
}

// List returns the keys of a tenant, or of all tenants if tenant is empty.
func (s *KeyStore) List(ctx context.Context, tenant string) ([]Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT key_id, tenant_id, name, created_at, revoked_at FROM api_keys
		WHERE $1 = '' OR tenant_id = $1 ORDER BY tenant_id, created_at`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
		var k Key
		err := r.Scan(&k.ID, &k.Tenant, &k.Name, &k.CreatedAt, &k.RevokedAt)
		return k, err
	})
}

// Revoke marks a key revoked; it reports false if no such key exists.
func (s *KeyStore) Revoke(ctx context.Context, id string) (bool, error) {
	ct, err := s.pool.Exec(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1`, id)
	if err != nil {
		return false, fmt.Errorf("revoke key: %w", err)
	}
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
	return ct.RowsAffected() == 1, nil
}

// Verify checks a presented key and returns it; the error is ErrBadKey,
// ErrRevokedKey, or a database error when the key is not cached.
func (s *KeyStore) Verify(ctx context.Context, presented string) (Key, error) {
	rest, ok := strings.CutPrefix(presented, "vk_")
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 16 || len(secret) != 64 {
		return Key{}, ErrBadKey
	}
	c, err := s.lookup(ctx, id)
	if err != nil {
		return Key{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	if !c.found || subtle.ConstantTimeCompare(sum[:], c.hash) != 1 {
		return Key{}, ErrBadKey
	}
	if c.key.RevokedAt != nil {
		return c.key, ErrRevokedKey
	}
	return c.key, nil
}

func (s *KeyStore) lookup(ctx context.Context, id string) (cachedKey, error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && now.Sub(c.fetched) < s.ttl {
		return c, nil
	}
	c = cachedKey{fetched: now}
	err := s.pool.QueryRow(ctx, `SELECT tenant_id, name, created_at, revoked_at, secret_sha256 FROM api_keys WHERE key_id = $1`, id).
		Scan(&c.key.Tenant, &c.key.Name, &c.key.CreatedAt, &c.key.RevokedAt, &c.hash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		if ok { // the database is away: a stale answer beats locking gateways out
			return s.cache[id], nil
		}
		return cachedKey{}, fmt.Errorf("verify key: %w", err)
	default:
		c.found = true
		c.key.ID = id
	}
	s.mu.Lock()
	if len(s.cache) > 100_000 { // bound memory against floods of made-up ids
		clear(s.cache)
	}
	s.cache[id] = c
	s.mu.Unlock()
	return c, nil
}
