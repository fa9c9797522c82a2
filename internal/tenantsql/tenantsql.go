// Package tenantsql gives a tenant's analysts direct, read-only SQL on
// ClickHouse over their tenant's rows and nothing else: a database per
// tenant holding copies of the tenant's rows of the shared tables, kept
// current by materialized views, and a ClickHouse user that may read that
// database only (users.go).
//
// Why copies, not views: ClickHouse 18.16 checks a view's inner query
// against the reading user's databases, so a user allowed only a database
// of views over the shared tables cannot read them (tried: "Access denied
// to database vitals"); and a Distributed table that reads through a
// privileged user forwards the analyst's query text, subqueries included,
// so `WHERE x IN (SELECT ... FROM vitals.readings)` would run with the
// privileged user's rights (tried: it does). A copy fed at insert time
// needs no privilege at read time. The feeds run in the inserting user's
// context (the projector's), and select an explicit column list, so a
// column added to a shared table later cannot break the projector's
// inserts; `Resync` brings new columns in.
//
// The copies hold what the shared tables hold, copies of a row included
// (ReplacingMergeTree collapses them on merge; queries deduplicate as
// docs/warehouse.md shows). Erasure reaches them: the projector deletes
// an erased user's rows from the tenant's copies too (EraseUsers). The
// daily rollups are not copied: they count every inserted row, and a
// copy begun while the projector writes could count a row twice.
package tenantsql

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/ident"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// CopiedTables are the shared tables whose tenant rows a tenant database
// holds, under the same names.
var CopiedTables = []string{warehouse.ReadingsTable, warehouse.RejectedTable, warehouse.AlertsTable,
	warehouse.ProfileEventsTable, warehouse.DeviceEventsTable, warehouse.ErasedUsersTable}

// markerTable, in a tenant database, holds the tenant's id (the
// database's name cannot always be read back into it).
const markerTable = "tenant"

// feedPrefix starts the name of each copy's feed (a materialized view in
// the tenant database, so that dropping the database drops its feeds).
const feedPrefix = "feed_"

var plainTenant = regexp.MustCompile(`^[A-Za-z0-9]{1,40}$`)

// Slug is tenant as an identifier: the id itself when it is short and
// alphanumeric, otherwise its other characters replaced by _ and a hash
// of the id appended, so that two tenants never share a slug.
func Slug(tenant string) string {
	if plainTenant.MatchString(tenant) {
		return tenant
	}
	var b strings.Builder
	for _, c := range tenant {
		if b.Len() >= 40 {
			break
		}
		if c < 128 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(tenant))
	return b.String() + "_" + hex.EncodeToString(sum[:4])
}

// Database is the tenant's database beside the shared database shared;
// the tenant's ClickHouse user has the same name.
func Database(shared, tenant string) string { return shared + "_tenant_" + Slug(tenant) }

// quote is a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// check validates what is spliced into SQL: the shared database name
// (an identifier) and the tenant (an ident, quoted as a literal).
func check(shared, tenant string) error {
	if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`).MatchString(shared) {
		return fmt.Errorf("clickhouse database name %q is not a valid identifier", shared)
	}
	return ident.Check("tenant", tenant)
}

// Stats says what Provision did.
type Stats struct {
	Database string
	// Created are the copies made (and backfilled) by this call; the
	// others existed.
	Created []string
	// Rows is the rows copied by the backfills.
	Rows uint64
}

// Provision makes tenant's database, a copy of each of CopiedTables with
// its feed, and backfills each copy it created from the tenant's rows in
// the shared tables. Existing copies are left as they are, so it is safe
// to repeat. The feed starts before the backfill: a row inserted in
// between may be copied twice, which the copies' ReplacingMergeTree
// collapses like any other copy.
func Provision(ctx context.Context, conn driver.Conn, shared, tenant string) (Stats, error) {
	st := Stats{Database: Database(shared, tenant)}
	if err := check(shared, tenant); err != nil {
		return st, err
	}
	db := st.Database
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return st, fmt.Errorf("tenant database %s: %w", db, err)
	}
	if err := writeMarker(ctx, conn, db, tenant); err != nil {
		return st, err
	}
	for _, t := range CopiedTables {
		exists, err := tableExists(ctx, conn, db, t)
		if err != nil {
			return st, err
		}
		if exists {
			continue
		}
		n, err := copyTable(ctx, conn, shared, db, t, tenant)
		if err != nil {
			return st, err
		}
		st.Created, st.Rows = append(st.Created, t), st.Rows+n
	}
	return st, nil
}

// writeMarker records the tenant's id in its database.
func writeMarker(ctx context.Context, conn driver.Conn, db, tenant string) error {
	exists, err := tableExists(ctx, conn, db, markerTable)
	if err != nil || exists {
		return err
	}
	if err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.%s (tenant_id String) ENGINE = TinyLog", db, markerTable)); err != nil {
		return fmt.Errorf("tenant marker %s: %w", db, err)
	}
	if err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s.%s (tenant_id) SELECT %s", db, markerTable, quote(tenant))); err != nil {
		return fmt.Errorf("tenant marker %s: %w", db, err)
	}
	return nil
}

func tableExists(ctx context.Context, conn driver.Conn, db, table string) (bool, error) {
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&n); err != nil {
		return false, fmt.Errorf("look for %s.%s: %w", db, table, err)
	}
	return n > 0, nil
}

// columns are the stored columns of shared.table, in order (not
// MATERIALIZED or ALIAS ones, which an INSERT cannot name).
func columns(ctx context.Context, conn driver.Conn, shared, table string) ([]string, error) {
	// In the table's order (18.16's system.columns has no position column
	// to sort by; both versions list a table's columns in order).
	rows, err := conn.Query(ctx, `SELECT name FROM system.columns WHERE database = ? AND table = ? AND default_kind IN ('', 'DEFAULT')`,
		shared, table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s.%s: %w", shared, table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("columns of %s.%s: %w", shared, table, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 && rows.Err() == nil {
		return nil, fmt.Errorf("%s.%s has no columns: run vitals migrate first", shared, table)
	}
	return out, rows.Err()
}

// copyTable makes db.table like shared.table, its feed, and backfills it.
func copyTable(ctx context.Context, conn driver.Conn, shared, db, table, tenant string) (uint64, error) {
	cols, err := columns(ctx, conn, shared, table)
	if err != nil {
		return 0, err
	}
	list := strings.Join(cols, ", ")
	where := "tenant_id = " + quote(tenant)
	stmts := []string{
		fmt.Sprintf("CREATE TABLE %s.%s AS %s.%s", db, table, shared, table),
		fmt.Sprintf("CREATE MATERIALIZED VIEW %s.%s%s TO %s.%s AS SELECT %s FROM %s.%s WHERE %s",
			db, feedPrefix, table, db, table, list, shared, table, where),
		fmt.Sprintf("INSERT INTO %s.%s (%s) SELECT %s FROM %s.%s WHERE %s", db, table, list, list, shared, table, where),
	}
	for _, q := range stmts {
		if err := conn.Exec(ctx, q); err != nil {
			return 0, fmt.Errorf("copy of %s.%s: %w", shared, table, err)
		}
	}
	var n uint64
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", db, table)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s.%s: %w", db, table, err)
	}
	return n, nil
}

// Drop removes tenant's database: its feeds first, so no insert into a
// shared table ever targets a missing copy, then the copies.
func Drop(ctx context.Context, conn driver.Conn, shared, tenant string) error {
	if err := check(shared, tenant); err != nil {
		return err
	}
	db := Database(shared, tenant)
	for _, t := range CopiedTables {
		if err := conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", db, feedPrefix, t)); err != nil && !missingDatabase(err) {
			return fmt.Errorf("drop feed of %s.%s: %w", db, t, err)
		}
	}
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		return fmt.Errorf("drop %s: %w", db, err)
	}
	return nil
}

// missingDatabase reports ClickHouse's "database doesn't exist" (code 81).
func missingDatabase(err error) bool {
	return strings.Contains(err.Error(), "code: 81") || strings.Contains(err.Error(), "doesn't exist")
}

// Resync drops tenant's copies and makes them again from the shared
// tables: after a replay rebuilt the shared tables (the copies keep the
// rows they had) or a migration added columns.
func Resync(ctx context.Context, conn driver.Conn, shared, tenant string) (Stats, error) {
	if err := Drop(ctx, conn, shared, tenant); err != nil {
		return Stats{}, err
	}
	return Provision(ctx, conn, shared, tenant)
}

// Tenant is a provisioned tenant.
type Tenant struct {
	ID, Database string
}

// List returns the tenants provisioned beside shared.
func List(ctx context.Context, conn driver.Conn, shared string) ([]Tenant, error) {
	rows, err := conn.Query(ctx, `SELECT database FROM system.tables WHERE name = ? AND startsWith(database, ?) ORDER BY database`,
		markerTable, shared+"_tenant_")
	if err != nil {
		return nil, fmt.Errorf("list tenant databases: %w", err)
	}
	var dbs []string
	for rows.Next() {
		var db string
		if err := rows.Scan(&db); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list tenant databases: %w", err)
		}
		dbs = append(dbs, db)
	}
	rows.Close()
	var out []Tenant
	for _, db := range dbs {
		var id string
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT any(tenant_id) FROM %s.%s", db, markerTable)).Scan(&id); err != nil {
			return nil, fmt.Errorf("tenant of %s: %w", db, err)
		}
		if Database(shared, id) == db { // not a lookalike made by hand
			out = append(out, Tenant{ID: id, Database: db})
		}
	}
	return out, nil
}

// EraseUsers deletes the given users' rows (tenant → user ids) from
// their tenants' copies, where a tenant has them: the projector calls it
// with every erasure it applies to the shared tables. Like those deletes
// it is an asynchronous mutation, and repeating it is harmless.
func EraseUsers(ctx context.Context, conn driver.Conn, shared string, users map[string][]string) error {
	for tenant, ids := range users {
		if len(ids) == 0 || check(shared, tenant) != nil {
			continue
		}
		db := Database(shared, tenant)
		exists, err := tableExists(ctx, conn, db, markerTable)
		if err != nil {
			return err
		}
		if !exists {
			continue
		}
		for _, t := range CopiedTables {
			if t == warehouse.ErasedUsersTable {
				continue // the record of the erasure itself, as in the shared tables
			}
			if ok, err := tableExists(ctx, conn, db, t); err != nil || !ok {
				if err != nil {
					return err
				}
				continue // a copy not made (yet): nothing to erase
			}
			args := make([]any, len(ids))
			for i, id := range ids {
				args[i] = id
			}
			q := fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE user_id IN (%s)", db, t, strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", "))
			if err := conn.Exec(ctx, q, args...); err != nil && !missingDatabase(err) { // revoked meanwhile
				return fmt.Errorf("erase %d users from %s.%s: %w", len(ids), db, t, err)
			}
		}
	}
	return nil
}
