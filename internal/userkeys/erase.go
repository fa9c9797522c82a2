package userkeys

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// An erasure goes: the processor decides (the user's aggregate becomes a
// tombstone and an erasure record goes to the read models); the projector
// deletes the user from every ClickHouse table and, when every deletion
// has completed, shreds the key here. Until then the erasure is pending
// (user_erasures), so a crash in between is finished by whoever looks
// next.

// Pending records that the read models are erasing the user.
func (s *Store) Pending(ctx context.Context, tenant, user string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO user_erasures (tenant_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, tenant, user)
	if err != nil {
		return fmt.Errorf("key store: note erasure: %w", err)
	}
	return nil
}

// PendingErasures lists the erasures not finished, oldest first.
func (s *Store) PendingErasures(ctx context.Context, limit int) ([]UserRef, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, user_id FROM user_erasures ORDER BY requested_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("key store: pending erasures: %w", err)
	}
	var out []UserRef
	var r UserRef
	_, err = pgx.ForEachRow(rows, []any{&r.Tenant, &r.User}, func() error { out = append(out, r); return nil })
	if err != nil {
		return nil, fmt.Errorf("key store: pending erasures: %w", err)
	}
	return out, nil
}

// Shred destroys the user's data key and finishes the erasure: nothing
// sealed with the key opens again, anywhere. A user without a key gets a
// shredded one, so no key is ever made for the user again. Every process
// drops the key from its cache on the notification (see listen).
func (s *Store) Shred(ctx context.Context, tenant, user string) error {
	var id ID
	rand.Read(id[:])
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var got []byte
		err := tx.QueryRow(ctx, `
			INSERT INTO user_data_keys (key_id, tenant_id, user_id, shredded_at) VALUES ($1, $2, $3, now())
			ON CONFLICT (tenant_id, user_id) DO UPDATE SET wrapped = NULL, kek_id = NULL,
				shredded_at = coalesce(user_data_keys.shredded_at, now())
			RETURNING key_id`, id[:], tenant, user).Scan(&got)
		if err != nil {
			return err
		}
		copy(id[:], got)
		if _, err := tx.Exec(ctx, `DELETE FROM user_erasures WHERE tenant_id = $1 AND user_id = $2`, tenant, user); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, id.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("key store: shred: %w", err)
	}
	s.cache.shred(id)
	return nil
}

// Shredded reports whether the user's key was shredded.
func (s *Store) Shredded(ctx context.Context, tenant, user string) (bool, error) {
	var shredded bool
	err := s.pool.QueryRow(ctx, `SELECT shredded_at IS NOT NULL FROM user_data_keys WHERE tenant_id = $1 AND user_id = $2`, tenant, user).Scan(&shredded)
	if err == pgx.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("key store: %w", err)
	}
	return shredded, nil
}

// Rewrap wraps every data key not wrapped by the current KEK again under
// it, in batches of batch keys, one transaction each; the keys themselves
// do not change, so nothing sealed needs rewriting. tenant, if not empty,
// limits it to one tenant's keys. It returns how many it rewrapped.
func (s *Store) Rewrap(ctx context.Context, batch int, tenant string) (int, error) {
	total := 0
	for {
		n, err := s.rewrapBatch(ctx, batch, tenant)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
		s.log.Info().Int("rewrapped", total).Str("kek", s.ring.Current.id).Msg("rewrapping data keys")
	}
}

func (s *Store) rewrapBatch(ctx context.Context, batch int, tenant string) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT key_id, tenant_id, user_id, kek_id, wrapped FROM user_data_keys
			WHERE wrapped IS NOT NULL AND kek_id <> $1 AND ($3 = '' OR tenant_id = $3) ORDER BY key_id LIMIT $2 FOR UPDATE`, s.ring.Current.id, batch, tenant)
		if err != nil {
			return err
		}
		type upd struct {
			id []byte
			w  []byte
		}
		var ups []upd
		var id []byte
		var tenant, user string
		var kekID *string
		var w []byte
		_, err = pgx.ForEachRow(rows, []any{&id, &tenant, &user, &kekID, &w}, func() error {
			kek := s.ring.byID(*kekID)
			if kek == nil {
				return fmt.Errorf("data key %x is wrapped by %s, which is not in the keyring: give it as a previous key-encryption key", id, *kekID)
			}
			var kid ID
			copy(kid[:], id)
			raw, err := kek.unwrap(w, wrapAAD(kid, tenant, user))
			if err != nil {
				return fmt.Errorf("data key %s does not unwrap with %s: %w", kid, *kekID, err)
			}
			ups = append(ups, upd{append([]byte(nil), id...), s.ring.Current.wrap(raw, wrapAAD(kid, tenant, user))})
			clear(raw)
			return nil
		})
		if err != nil {
			return err
		}
		for _, u := range ups {
			if _, err := tx.Exec(ctx, `UPDATE user_data_keys SET wrapped = $2, kek_id = $3 WHERE key_id = $1`, u.id, u.w, s.ring.Current.id); err != nil {
				return err
			}
		}
		n = len(ups)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("key store: rewrap: %w", err)
	}
	return n, nil
}

// Counts tells how many keys the store holds by state and KEK.
func (s *Store) Counts(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT coalesce(kek_id, 'shredded'), count(*) FROM user_data_keys GROUP BY 1 ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("key store: count keys: %w", err)
	}
	out := map[string]int64{}
	var k string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("key store: count keys: %w", err)
	}
	return out, nil
}

// listenRetry is the wait before listening again after the connection
// was lost.
const listenRetry = 2 * time.Second

// DropTenant deletes every data key of a tenant and returns how many:
// nothing the tenant's users sealed opens afterwards, and nothing records
// that they were erased. It is for the lab's scratch tenants (a bench or
// chaos run makes one of its own and leaves nothing behind); a
// deployment erases users one by one, through the read models, instead.
// The processes that cached the keys must have ended: they are not told.
func DropTenant(ctx context.Context, pool *pgxpool.Pool, tenant string) (int64, error) {
	ct, err := pool.Exec(ctx, `DELETE FROM user_data_keys WHERE tenant_id = $1`, tenant)
	if err != nil {
		return 0, fmt.Errorf("key store: drop tenant %s: %w", tenant, err)
	}
	return ct.RowsAffected(), nil
}
