package userkeys

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
)

// schemaSQL creates the key store's tables. A shredded key keeps its row
// without key material (wrapped and kek_id NULL): ingest must not give an
// erased user a new key, and a record sealed with it must read as
// shredded, not as unknown.
const schemaSQL = `
CREATE TABLE IF NOT EXISTS user_data_keys (
	key_id      bytea       PRIMARY KEY,
	tenant_id   text        NOT NULL,
	user_id     text        NOT NULL,
	kek_id      text,
	wrapped     bytea,
	created_at  timestamptz NOT NULL DEFAULT now(),
	shredded_at timestamptz,
	UNIQUE (tenant_id, user_id)
);
COMMENT ON TABLE user_data_keys IS 'Per-user data keys (AES-256-GCM) wrapped by the key-encryption key kek_id; wrapped is NULL once the user was erased (crypto-shredding, docs/privacy.md).';
CREATE TABLE IF NOT EXISTS user_erasures (
	tenant_id    text        NOT NULL,
	user_id      text        NOT NULL,
	requested_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, user_id)
);
COMMENT ON TABLE user_erasures IS 'Erasures whose read models have not all confirmed yet; the data key is shredded, and the row deleted, once they have.';
`

// notifyChannel carries the hex id of every key shredded, so that every
// process drops it from its cache at once (see listen).
const notifyChannel = "vitals_user_keys_shredded"

// Config configures a Store.
type Config struct {
	Keyring KeyringConfig
	// CacheKeys bounds the keys held in memory (about 500 bytes each).
	CacheKeys int
}

// DefaultConfig holds up to 200,000 keys, and reads the keyring from the
// environment.
func DefaultConfig() Config { return Config{CacheKeys: 200_000} }

// Store is the data keys of every user: created on first use, unwrapped
// and cached on first read, shredded on erasure. It is safe for
// concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	ring  *Keyring
	log   zerolog.Logger
	cache *cache
	stop  context.CancelFunc
	done  chan struct{}
	once  sync.Once
	// listening: the shreddings of other processes reach the cache.
	listening atomic.Bool
}

// Open migrates the key store's tables and starts listening for
// shreddings made by other processes.
func Open(ctx context.Context, pool *pgxpool.Pool, cfg Config, log zerolog.Logger) (*Store, error) {
	ring, err := cfg.Keyring.Load()
	if err != nil {
		return nil, err
	}
	return OpenWith(ctx, pool, ring, cfg.CacheKeys, log)
}

// OpenWith is Open with a keyring already loaded.
func OpenWith(ctx context.Context, pool *pgxpool.Pool, ring *Keyring, cacheKeys int, log zerolog.Logger) (*Store, error) {
	s := &Store{pool: pool, ring: ring, log: log.With().Str("component", "userkeys").Logger(),
		cache: newCache(cacheKeys), done: make(chan struct{})}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(727013)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schemaSQL)
		return err
	}); err != nil {
		return nil, fmt.Errorf("key store: create tables: %w", err)
	}
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	go s.listen(lctx)
	// Serve once listening, so that no key is cached unwatched; a store
	// that cannot listen yet still serves (keys come from the store, and
	// listen checks the cached ones when it can).
	for deadline := time.Now().Add(listenWait); !s.listening.Load() && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(5 * time.Millisecond)
	}
	return s, nil
}

// listenWait bounds Open's wait for the notifications of shreddings.
const listenWait = 5 * time.Second

// Close stops listening; the pool is the caller's.
func (s *Store) Close() {
	s.once.Do(func() {
		s.stop()
		<-s.done
	})
}

// UserRef names a user.
type UserRef struct{ Tenant, User string }

// ForUsers returns the data keys of users of one tenant (who may repeat),
// creating those that have none, in one round trip for all the keys not
// cached. A shredded key is returned as such: its user was erased.
func (s *Store) ForUsers(ctx context.Context, tenant string, users []string) (map[string]*Key, error) {
	out := make(map[string]*Key, len(users))
	cached, _ := s.cache.keysOf(tenant, users, nil)
	var missing []string
	for i, u := range users {
		if _, done := out[u]; done {
			continue
		}
		if out[u] = cached[i]; cached[i] == nil {
			missing = append(missing, u)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	for range 3 { // a key another process created meanwhile is read on the next try
		got, err := s.getOrCreate(ctx, tenant, missing)
		if err != nil {
			return nil, err
		}
		left := missing[:0]
		for _, u := range missing {
			if k := got[u]; k != nil {
				out[u] = k
				s.cache.put(k)
			} else {
				left = append(left, u)
			}
		}
		if missing = left; len(missing) == 0 {
			return out, nil
		}
	}
	return nil, fmt.Errorf("key store: %d keys neither created nor found", len(missing))
}

// KeysFor appends to out the data key of each of users of one tenant, nil
// for "" (no user), creating those that have none: ForUsers without its
// map, for a caller that seals record by record (ingest, a request's
// hundreds of users at a time).
func (s *Store) KeysFor(ctx context.Context, tenant string, users []string, out []*Key) ([]*Key, error) {
	start := len(out)
	out, missing := s.cache.keysOf(tenant, users, out)
	if len(missing) == 0 {
		return out, nil
	}
	got, err := s.ForUsers(ctx, tenant, missing)
	if err != nil {
		return out[:start], err
	}
	for i, u := range users {
		if out[start+i] == nil && u != "" {
			out[start+i] = got[u]
		}
	}
	return out, nil
}

// getOrCreate inserts new keys for users that have none and returns the
// keys of all of them but those created concurrently by another process.
func (s *Store) getOrCreate(ctx context.Context, tenant string, users []string) (map[string]*Key, error) {
	ids := make([][]byte, len(users))
	wrapped := make([][]byte, len(users))
	raws := make([][]byte, len(users))
	for i, u := range users {
		var id ID
		raw := make([]byte, 32)
		rand.Read(id[:])
		rand.Read(raw)
		ids[i], raws[i] = id[:], raw
		wrapped[i] = s.ring.Current.wrap(raw, wrapAAD(id, tenant, u))
	}
	rows, err := s.pool.Query(ctx, `
		WITH ins AS (
			INSERT INTO user_data_keys (key_id, tenant_id, user_id, kek_id, wrapped)
			SELECT k, $1, u, $2, w FROM unnest($3::bytea[], $4::text[], $5::bytea[]) AS x(k, u, w)
			ON CONFLICT (tenant_id, user_id) DO NOTHING
			RETURNING key_id, user_id, kek_id, wrapped)
		SELECT key_id, user_id, kek_id, wrapped FROM ins
		UNION ALL
		SELECT key_id, user_id, kek_id, wrapped FROM user_data_keys WHERE tenant_id = $1 AND user_id = ANY($4::text[])`,
		tenant, s.ring.Current.id, ids, users, wrapped)
	if err != nil {
		return nil, fmt.Errorf("key store: get or create keys: %w", err)
	}
	out := make(map[string]*Key, len(users))
	var id []byte
	var user string
	var kek *string
	var w []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &user, &kek, &w}, func() error {
		k, err := s.unwrap(id, tenant, user, kek, w)
		if err != nil {
			return err
		}
		out[user] = k
		return nil
	})
	for _, r := range raws {
		clear(r)
	}
	if err != nil {
		return nil, fmt.Errorf("key store: get or create keys: %w", err)
	}
	return out, nil
}

func wrapAAD(id ID, tenant, user string) []byte {
	return append(append(id[:], tenant+"\x00"...), user...)
}

// unwrap makes a Key of a stored row; no wrapped key means shredded.
func (s *Store) unwrap(idb []byte, tenant, user string, kekID *string, wrapped []byte) (*Key, error) {
	var id ID
	if len(idb) != IDLen {
		return nil, fmt.Errorf("key id of %d bytes", len(idb))
	}
	copy(id[:], idb)
	if wrapped == nil || kekID == nil {
		return newKey(id, tenant, user, nil)
	}
	kek := s.ring.byID(*kekID)
	if kek == nil {
		return nil, fmt.Errorf("data key %s is wrapped by %s, which is not in the keyring (current %s): give it as a previous key-encryption key", id, *kekID, s.ring.Current.id)
	}
	raw, err := kek.unwrap(wrapped, wrapAAD(id, tenant, user))
	if err != nil {
		return nil, fmt.Errorf("data key %s does not unwrap with %s: %w", id, *kekID, err)
	}
	defer clear(raw)
	return newKey(id, tenant, user, raw)
}

// ByIDs loads the keys of these ids that are not cached, in one round
// trip. Ids the store does not have are left out (Key then reports
// ErrUnknownKey).
func (s *Store) ByIDs(ctx context.Context, ids []ID) error {
	var missing [][]byte
	seen := map[ID]bool{}
	for _, id := range ids {
		if seen[id] || s.cache.byID(id) != nil {
			continue
		}
		seen[id] = true
		missing = append(missing, append([]byte(nil), id[:]...))
	}
	if len(missing) == 0 {
		return nil
	}
	rows, err := s.pool.Query(ctx, `SELECT key_id, tenant_id, user_id, kek_id, wrapped FROM user_data_keys WHERE key_id = ANY($1)`, missing)
	if err != nil {
		return fmt.Errorf("key store: load keys: %w", err)
	}
	var id []byte
	var tenant, user string
	var kek *string
	var w []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &tenant, &user, &kek, &w}, func() error {
		k, err := s.unwrap(id, tenant, user, kek, w)
		if err != nil {
			return err
		}
		s.cache.put(k)
		return nil
	})
	if err != nil {
		return fmt.Errorf("key store: load keys: %w", err)
	}
	return nil
}

// Key returns a key loaded by ByIDs or ForUsers: ErrUnknownKey if the
// store has none of that id (after ByIDs asked it).
func (s *Store) Key(id ID) (*Key, error) {
	if k := s.cache.byID(id); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownKey, id)
}

// KeyOf returns a user's cached key, nil if none is cached.
func (s *Store) KeyOf(tenant, user string) *Key { return s.cache.byUser(UserRef{tenant, user}) }
