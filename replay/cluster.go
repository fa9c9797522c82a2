package replay

import (
	"context"
	"fmt"
	"strings"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// Rebuilding on a ClickHouse cluster
//
// On a cluster (warehouse.ClusterOf) a table is a Distributed table over
// <table>_local on every server (see package warehouse). A rebuild works
// on the local tables: the shadow projector writes each shard's
// shadow.<table>_local (package projector routes rows itself), the checks
// read the shadow's Distributed tables once every replica has fetched
// every part (SYSTEM SYNC REPLICA), and the swap renames the local tables
// on every server while the live projectors are paused. The live
// Distributed tables name their local tables, so they read the rebuilt
// ones from then on; the old database keeps the replaced local tables.
// 18.16 renames per server, so a swap is one RENAME per server, not one
// for the whole cluster: every server must be up, a failure on one
// renames the others back, and a query in the milliseconds between two
// servers' renames may read old tables on one shard and new ones on the
// other.

// local is the name DDL uses for table: its local table on a cluster.
func (s *session) local(table string) string {
	if warehouse.ClusterOf(s.ch) == nil {
		return table
	}
	return warehouse.Local(table)
}

// logicalNames maps the names of a database's tables on a cluster to the
// tables they make up: <table> where <table>_local exists (the
// Distributed table alone is not a table with rows), and views as they are.
func logicalNames(have map[string]bool) map[string]bool {
	out := map[string]bool{}
	for n := range have {
		if base, ok := strings.CutSuffix(n, warehouse.LocalSuffix); ok {
			out[base] = true
			continue
		}
		if !warehouse.IsSharded(n) {
			out[n] = true // views, and the table that is not sharded
		}
	}
	return out
}

// rename runs RENAME TABLE pairs ("db.a TO db.b") on the server or, on a
// cluster, on every server, renaming back the servers done if one fails.
func (s *session) rename(ctx context.Context, pairs []string) error {
	c := warehouse.ClusterOf(s.ch)
	if c == nil {
		return s.exec(ctx, "RENAME TABLE "+strings.Join(pairs, ", "))
	}
	for _, addr := range c.Servers() {
		if !c.Reachable(ctx, addr) {
			return fmt.Errorf("clickhouse %s does not answer: a swap renames on every server", addr)
		}
	}
	back := make([]string, len(pairs))
	for i, p := range pairs {
		from, to, _ := strings.Cut(p, " TO ")
		back[len(pairs)-1-i] = to + " TO " + from
	}
	var done []string
	for _, addr := range c.Servers() {
		conn, err := c.Server(addr)
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, opTimeout)
			err = conn.Exec(rctx, "RENAME TABLE "+strings.Join(pairs, ", "))
			cancel()
		}
		if err == nil {
			done = append(done, addr)
			continue
		}
		for _, d := range done {
			conn, _ := c.Server(d)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
			if uerr := conn.Exec(rctx, "RENAME TABLE "+strings.Join(back, ", ")); uerr != nil {
				s.log.Error().Err(uerr).Str("server", d).Msg("cannot rename back after a failed swap: check the tables of this server")
			}
			cancel()
		}
		return fmt.Errorf("rename on %s (the servers before it were renamed back): %w", addr, err)
	}
	return nil
}
