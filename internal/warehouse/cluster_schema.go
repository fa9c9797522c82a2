package warehouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// migrateCluster is Migrate on a cluster: the same tables, views and
// columns, as a replicated local table and a Distributed table on every
// server (see cluster.go). A server that is down cannot be migrated; if
// every object already exists on the servers that are up, that is
// enough (the down one keeps its tables on disk), otherwise Migrate
// fails rather than create a table on one replica of a shard only.
func migrateCluster(ctx context.Context, c *Cluster, db string) error {
	var up, down []string
	for _, addr := range c.Servers() {
		if c.Reachable(ctx, addr) {
			up = append(up, addr)
		} else {
			down = append(down, addr)
		}
	}
	if len(down) > 0 {
		return c.checkComplete(ctx, db, up, down)
	}
	for _, addr := range up {
		if err := c.exec(ctx, addr, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
			return fmt.Errorf("create database %s: %w", db, err)
		}
	}
	for _, t := range tables {
		if err := c.migrateTable(ctx, db, t); err != nil {
			return err
		}
	}
	for _, v := range views {
		if err := c.migrateView(ctx, db, v); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) exec(ctx context.Context, addr, q string, args ...any) error {
	conn, err := c.Server(addr)
	if err != nil {
		return err
	}
	if err := conn.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("on %s: %w", addr, err)
	}
	return nil
}

// expectedObjects are the names every server must have in a migrated
// database.
func expectedObjects() []string {
	var out []string
	for _, t := range tables {
		out = append(out, Local(t.name))
		if t.name != ReplayPausesTable {
			out = append(out, t.name)
		}
	}
	for _, v := range views {
		out = append(out, v.name)
	}
	return out
}

// checkComplete succeeds if every server in up has every object.
func (c *Cluster) checkComplete(ctx context.Context, db string, up, down []string) error {
	for _, addr := range up {
		have, err := c.tableNames(ctx, addr, db)
		if err != nil {
			return err
		}
		for _, name := range expectedObjects() {
			if !have[name] {
				return fmt.Errorf("clickhouse cluster %s: %s.%s is missing on %s and %s cannot be reached: migrate with every server up",
					c.Name, db, name, addr, strings.Join(down, ", "))
			}
		}
	}
	return nil
}

// tableNames lists the tables and views of db on one server.
func (c *Cluster) tableNames(ctx context.Context, addr, db string) (map[string]bool, error) {
	conn, err := c.Server(addr)
	if err != nil {
		return nil, err
	}
	out, err := ScanSet[string](conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ?", db))
	if err != nil {
		return nil, fmt.Errorf("list tables of %s on %s: %w", db, addr, err)
	}
	return out, nil
}

// migrateTable creates t's local table on every server, all replicas of a
// shard with one ZooKeeper path, and its Distributed table, and upgrades
// their columns.
func (c *Cluster) migrateTable(ctx context.Context, db string, t table) error {
	local := Local(t.name)
	servers := c.Servers()
	path, err := c.zkPath(ctx, db, local)
	if err != nil {
		return err
	}
	replica := "{replica}"
	if t.name == ReplayPausesTable {
		replica = "{shard}-{replica}" // one table whose replicas are all the servers
	}
	lt := t
	lt.name = local
	create := func(addr, p string) error {
		if lt.engine, err = replicatedEngine(t.engine, p, replica); err != nil {
			return err
		}
		if err := c.exec(ctx, addr, localCreateSQL(db, lt)); err != nil {
			return fmt.Errorf("create table %s.%s: %w", db, local, err)
		}
		return nil
	}
	if path == "" {
		// The first server creates the table with a new path; every other
		// takes the path it actually has, so that of two migrations racing
		// to create it, both give the other servers the same path.
		if err := create(servers[0], newZKPath(c.Name, db, local, t.name == ReplayPausesTable)); err != nil {
			return err
		}
		if path, err = c.zkPath(ctx, db, local); err != nil {
			return err
		}
		if path == "" {
			return fmt.Errorf("create table %s.%s on %s: no replica path afterwards", db, local, servers[0])
		}
	}
	for _, addr := range servers {
		if err := create(addr, path); err != nil {
			return err
		}
		if err := c.upgradeReplicated(ctx, addr, db, lt); err != nil {
			return err
		}
	}
	if t.name == ReplayPausesTable {
		return nil
	}
	dt := t
	dt.engine = fmt.Sprintf("ENGINE = Distributed(%s, %s, %s, %s)", c.Name, db, local, ShardingKey)
	for _, addr := range servers {
		if err := c.exec(ctx, addr, dt.createSQL(db)); err != nil {
			return fmt.Errorf("create table %s.%s: %w", db, t.name, err)
		}
		conn, err := c.Server(addr)
		if err != nil {
			return err
		}
		if _, err := upgradeColumns(ctx, conn, db, dt); err != nil {
			return fmt.Errorf("on %s: %w", addr, err)
		}
	}
	return nil
}

// localCreateSQL is t's CREATE TABLE for a replicated local table:
// without column comments, which 18.16 cannot keep in ZooKeeper (a
// commented column without a DEFAULT makes the table unloadable: "Table
// structure in ZooKeeper is too different"). Analysts see the comments on
// the Distributed table.
func localCreateSQL(db string, t table) string {
	cols := make([]string, len(t.columns))
	for i, c := range t.columns {
		cols[i] = "\t" + c.localDDL()
	}
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (\n%s\n) %s", db, t.name, strings.Join(cols, ",\n"), t.engine)
}

func (c column) localDDL() string {
	if c.def != "" {
		return c.name + " " + c.typ + " DEFAULT " + c.def
	}
	return c.name + " " + c.typ
}

// upgradeReplicated adds the columns a replicated local table lacks on
// one server. 18.16 replicates ALTER ADD COLUMN, so another replica's
// change may arrive after this one read its columns: "already exists"
// means just that.
func (c *Cluster) upgradeReplicated(ctx context.Context, addr, db string, t table) error {
	conn, err := c.Server(addr)
	if err != nil {
		return err
	}
	have, err := ScanSet[string](conn.Query(ctx, `SELECT name FROM system.columns WHERE database = ? AND table = ?`, db, t.name))
	if err != nil {
		return fmt.Errorf("read columns of %s.%s on %s: %w", db, t.name, addr, err)
	}
	for _, col := range t.columns {
		if have[col.name] {
			continue
		}
		err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s", db, t.name, col.localDDL()))
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("upgrade %s.%s column %s on %s: %w", db, t.name, col.name, addr, err)
		}
	}
	return nil
}

// zkPath returns the ZooKeeper path of local's replicas, as the engine
// takes it ({shard} or "all" at the end), from the first server that has
// the table, or "" if none has.
func (c *Cluster) zkPath(ctx context.Context, db, local string) (string, error) {
	for _, addr := range c.Servers() {
		conn, err := c.Server(addr)
		if err != nil {
			return "", err
		}
		var p string
		err = conn.QueryRow(ctx, "SELECT zookeeper_path FROM system.replicas WHERE database = ? AND table = ?", db, local).Scan(&p)
		if err != nil {
			if strings.Contains(err.Error(), "no rows") {
				continue
			}
			return "", fmt.Errorf("replica path of %s.%s on %s: %w", db, local, addr, err)
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return "", fmt.Errorf("replica path of %s.%s on %s: %q has no shard part", db, local, addr, p)
		}
		if p[i+1:] == "all" {
			return p, nil
		}
		return p[:i] + "/{shard}", nil
	}
	return "", nil
}

// newZKPath is a fresh ZooKeeper path for a table: the creation time
// keeps it apart from every earlier table of the same name (a rebuild's
// shadow tables are created again after each swap, and a table renamed
// into place keeps its path).
func newZKPath(cluster, db, local string, everywhere bool) string {
	shard := "{shard}"
	if everywhere {
		shard = "all"
	}
	return fmt.Sprintf("/clickhouse/vitals/%s/%s.%s.%s/%s", cluster, db, local, strconv.FormatInt(time.Now().UnixNano(), 36), shard)
}

// migrateView creates a rollup's view on every server over the local
// tables. A shard none of whose replicas had the view is backfilled once,
// on its first replica, from the rows its source table already holds.
func (c *Cluster) migrateView(ctx context.Context, db string, v view) error {
	lv := v
	lv.table, lv.source = Local(v.table), Local(v.source)
	create := lv.createSQL(db)
	for _, s := range c.Shards {
		had := false
		var created []string
		for _, addr := range s.Replicas {
			have, err := c.tableNames(ctx, addr, db)
			if err != nil {
				return err
			}
			if have[v.name] {
				had = true
				continue
			}
			if err := c.exec(ctx, addr, create); err != nil {
				if strings.Contains(err.Error(), "already exists") {
					had = true // another migration created it and backfills
					continue
				}
				return fmt.Errorf("create view %s.%s: %w", db, v.name, err)
			}
			created = append(created, addr)
		}
		if had || len(created) == 0 {
			continue
		}
		conn, err := c.Server(created[0])
		if err != nil {
			return err
		}
		if err := backfill(ctx, conn, db, lv); err != nil {
			return fmt.Errorf("on %s: %w", created[0], err)
		}
	}
	return nil
}
