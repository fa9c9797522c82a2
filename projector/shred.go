package projector

import (
	"context"
	"fmt"
	"time"

	"github.com/vitalshq/vitals/internal/tenantsql"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// An erasure ends here. The processor made the user a tombstone and sent
// the erasure; the projector stored it, issued deletes in every table and
// noted the erasure pending in the key store (notePending, before the
// batch's offsets are committed). The shred loop then waits until
// ClickHouse holds nothing of the user in any database a rebuild uses
// (the live one, its _shadow and the _old tables a swap kept) nor in the
// tenant's direct-SQL copies, with every delete mutation done, and only
// then shreds the user's data key: from
// that moment nothing of the user opens anywhere, in the log, a copy of it
// or a snapshot, and a rebuild or reprocess skips the user's records.

// shredEvery is how often pending erasures are looked at.
const shredEvery = 2 * time.Second

// notePending records the erasures of a batch as pending in the key store.
func (p *Projector) notePending(ctx context.Context, users []row) error {
	if p.keys == nil || !p.cfg.Shred {
		return nil
	}
	seen := map[userKey]bool{}
	for _, u := range users {
		k := userKey{u.tenant, u.user}
		if seen[k] {
			continue
		}
		seen[k] = true
		if err := p.keys.Pending(ctx, u.tenant, u.user); err != nil {
			return err
		}
	}
	return nil
}

// shredLoop finishes pending erasures until ctx ends.
func (p *Projector) shredLoop(ctx context.Context) {
	t := time.NewTicker(shredEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.shredPending(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn().Err(err).Msg("erasures: cannot finish pending erasures yet; trying again")
		}
	}
}

// shredPending looks at every pending erasure once.
func (p *Projector) shredPending(ctx context.Context) error {
	pending, err := p.keys.PendingErasures(ctx, 100)
	if err != nil || len(pending) == 0 {
		return err
	}
	for _, u := range pending {
		// The tenant's direct-SQL copies (vitals sql-users) hold the
		// user's rows too, cleartext: the key stays until they are gone.
		dbs := []string{p.db, p.db + "_shadow", p.db + "_old", tenantsql.Database(p.db, u.Tenant)}
		done, err := p.erasedEverywhere(ctx, dbs, u)
		if err != nil {
			return err
		}
		if !done {
			continue
		}
		if err := p.keys.Shred(ctx, u.Tenant, u.User); err != nil {
			return err
		}
		p.log.Info().Str("tenant", u.Tenant).Msg("erasure finished: every table has forgotten the user; data key shredded")
	}
	return nil
}

// erasedEverywhere reports whether no table of dbs holds a row of the
// user and none has a delete still running; it issues the deletes that a
// table still needs (one holding rows of the user and running none).
func (p *Projector) erasedEverywhere(ctx context.Context, dbs []string, u userkeys.UserRef) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, p.cfg.InsertTimeout)
	defer cancel()
	done := true
	for _, db := range dbs {
		tables, err := p.existingTables(qctx, db)
		if err != nil {
			return false, err
		}
		for _, t := range warehouse.ErasableTables {
			if !tables[t] {
				continue
			}
			var running uint64
			if err := p.conn.QueryRow(qctx, "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0", db, t).Scan(&running); err != nil {
				return false, fmt.Errorf("erasure: mutations of %s.%s: %w", db, t, err)
			}
			if running > 0 {
				done = false
				continue
			}
			var n uint64
			if err := p.conn.QueryRow(qctx, fmt.Sprintf("SELECT count() FROM %s.%s WHERE tenant_id = ? AND user_id = ?", db, t), u.Tenant, u.User).Scan(&n); err != nil {
				return false, fmt.Errorf("erasure: rows left in %s.%s: %w", db, t, err)
			}
			if n == 0 {
				continue
			}
			done = false
			if err := p.conn.Exec(qctx, fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE tenant_id = ? AND user_id = ?", db, t), u.Tenant, u.User); err != nil {
				return false, fmt.Errorf("erasure: delete from %s.%s: %w", db, t, err)
			}
		}
	}
	return done, nil
}

// existingTables returns the tables of db (none if db does not exist).
func (p *Projector) existingTables(ctx context.Context, db string) (map[string]bool, error) {
	out, err := warehouse.ScanSet[string](p.conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ?", db))
	if err != nil {
		return nil, fmt.Errorf("erasure: tables of %s: %w", db, err)
	}
	return out, nil
}
