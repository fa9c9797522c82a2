package projector

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/tenantsql"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// userKey identifies a user across tenants.
type userKey struct{ tenant, user string }

// erasedSet is the projector's copy of the erased_users table. Erasures
// are rare, so the whole set is held in memory (about 100 bytes a user)
// and reloaded only when the table's row count changes, which one cheap
// count() per batch detects.
type erasedSet struct {
	conn  driver.Conn
	db    string
	count uint64
	valid bool
	users map[userKey]struct{}
}

func newErasedSet(conn driver.Conn, db string) *erasedSet {
	return &erasedSet{conn: conn, db: db, users: map[userKey]struct{}{}}
}

// refresh reloads the set if erased_users changed, and returns the row
// count it saw.
func (e *erasedSet) refresh(ctx context.Context) (uint64, error) {
	var n uint64
	if err := e.conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", e.db, warehouse.ErasedUsersTable)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count erased users: %w", err)
	}
	if e.valid && n == e.count {
		return n, nil
	}
	rows, err := e.conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT tenant_id, user_id FROM %s.%s", e.db, warehouse.ErasedUsersTable))
	if err != nil {
		return 0, fmt.Errorf("load erased users: %w", err)
	}
	defer rows.Close()
	users := make(map[userKey]struct{}, n)
	for rows.Next() {
		var k userKey
		if err := rows.Scan(&k.tenant, &k.user); err != nil {
			return 0, fmt.Errorf("load erased users: %w", err)
		}
		users[k] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("load erased users: %w", err)
	}
	e.users, e.count, e.valid = users, n, true
	return n, nil
}

// add records erasures of this batch (already stored). The strings are
// copied: a row's strings may share its record's bytes, which the set
// must not keep alive.
func (e *erasedSet) add(rs []row) {
	for _, r := range rs {
		if !e.has(r) {
			e.users[userKey{strings.Clone(r.tenant), strings.Clone(r.user)}] = struct{}{}
		}
	}
}

func (e *erasedSet) has(r row) bool {
	_, ok := e.users[userKey{r.tenant, r.user}]
	return ok
}

// filter drops the rows of erased users from t and counts them.
func (e *erasedSet) filter(t *pending, dropped *atomic.Int64) {
	if len(e.users) == 0 {
		return
	}
	if n := t.retain(func(r row) bool { return !e.has(r) }); n > 0 {
		dropped.Add(int64(n))
	}
}

// erasedIn returns one row per erased user among the rows of the tables.
func (e *erasedSet) erasedIn(tables []*pending) []row {
	seen := map[userKey]bool{}
	var out []row
	for _, t := range tables {
		if t.sink.erasure {
			continue
		}
		for _, r := range t.rows {
			k := userKey{r.tenant, r.user}
			if !seen[k] && e.has(r) {
				seen[k] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// deleteUsers deletes the users' rows from every table that holds user
// rows, one mutation per table for the whole batch (a mutation rewrites
// the table's parts, so fewer is cheaper). Mutations run asynchronously;
// NotErased hides the users from queries meanwhile. Repeating it is
// harmless.
func (p *Projector) deleteUsers(ctx context.Context, users []row) error {
	if p.shards != nil {
		return p.deleteUsersSharded(ctx, users)
	}
	where, args, byTenant := usersWhere(users)
	n := len(args) / 2 // users
	for _, t := range warehouse.ErasableTables {
		if err := p.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE %s", p.db, t, where), args...); err != nil {
			return fmt.Errorf("erase %d users from %s: %w", n, t, err)
		}
	}
	// The tenants' direct-SQL copies (vitals sql-users) hold the rows too.
	if err := tenantsql.EraseUsers(ctx, p.conn, p.db, byTenant); err != nil {
		return err
	}
	p.log.Info().Int("users", n).Msg("erasure: deletes issued in every table")
	return nil
}
