package query

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// The clean-partition shortcut on a ClickHouse cluster
//
// On a cluster (warehouse.ClusterOf) the readings table is Distributed and
// its rows live in readings_local on every server. A reading's copies are
// all on its user's shard, so a partition is clean when, on every
// server, it is one part made by a merge; the snapshot then names each
// clean partition by all those parts (server and part name), so that a
// change on any replica, or a replica coming back, is seen by heldIn.
// A server that does not answer is left out: the Distributed query reads
// its shard's other replica.

// clusterPartitions lists the readings partitions of a cluster, clean or
// not, from every server's parts (partsSnapshot is the same on one server).
func (s *Service) clusterPartitions(ctx context.Context, c *warehouse.Cluster) (snapshot, error) {
	db, local := s.cfg.Warehouse.Database, warehouse.Local(warehouse.ReadingsTable)
	var key string
	err := s.conn.QueryRow(ctx, `SELECT partition_key FROM system.tables WHERE database = ? AND name = ?`, db, local).Scan(&key)
	if err != nil {
		return snapshot{}, fmt.Errorf("readings partition key: %w", err)
	}
	if key != partitionKey {
		return snapshot{}, nil
	}
	parts := map[uint32][]string{}
	single := map[uint32]bool{} // every server holds the partition as one merged part
	for _, addr := range c.Servers() {
		got, err := serverParts(ctx, c, addr, db, local)
		if err != nil {
			if ctx.Err() != nil {
				return snapshot{}, err
			}
			continue
		}
		for p, names := range got {
			if _, ok := single[p]; !ok {
				single[p] = true
			}
			single[p] = single[p] && len(names) == 1 && names[0].merged
			for _, n := range names {
				parts[p] = append(parts[p], addr+"/"+n.name)
			}
		}
	}
	sn := snapshot{clean: map[uint32]string{}, dirty: map[uint32]bool{}}
	for p, names := range parts {
		if single[p] {
			sort.Strings(names)
			sn.clean[p] = strings.Join(names, " ")
		} else {
			sn.dirty[p] = true
		}
	}
	return sn, nil
}

type partName struct {
	name   string
	merged bool
}

// serverParts lists one server's active parts of the readings table by
// month partition; nil (no shortcut) if a partition is not a month.
func serverParts(ctx context.Context, c *warehouse.Cluster, addr, db, table string) (map[uint32][]partName, error) {
	conn, err := c.Server(addr)
	if err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, `SELECT partition, name, level FROM system.parts WHERE database = ? AND table = ? AND active`, db, table)
	if err != nil {
		return nil, fmt.Errorf("readings parts on %s: %w", addr, err)
	}
	defer rows.Close()
	out := map[uint32][]partName{}
	for rows.Next() {
		var partition, name string
		var level uint32
		if err := rows.Scan(&partition, &name, &level); err != nil {
			return nil, fmt.Errorf("readings parts on %s: %w", addr, err)
		}
		p, err := strconv.ParseUint(partition, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("readings partition %q on %s is not a month", partition, addr)
		}
		out[uint32(p)] = append(out[uint32(p)], partName{name, level > 0})
	}
	return out, rows.Err()
}

// clusterRollupPays is rollupPays on a cluster: the active rows of the
// local tables, added up over every server that answers.
func (s *Service) clusterRollupPays(ctx context.Context, c *warehouse.Cluster) (bool, error) {
	db := s.cfg.Warehouse.Database
	n := map[string]uint64{}
	for _, addr := range c.Servers() {
		conn, err := c.Server(addr)
		if err != nil {
			return false, err
		}
		rows, err := conn.Query(ctx, `SELECT table, sum(rows) FROM system.parts WHERE database = ? AND table IN (?, ?) AND active GROUP BY table`,
			db, warehouse.Local(warehouse.ReadingsTable), warehouse.Local(warehouse.ValuesRollupTable))
		if err != nil {
			if ctx.Err() != nil {
				return false, fmt.Errorf("table sizes: %w", err)
			}
			continue
		}
		for rows.Next() {
			var table string
			var count uint64
			if err := rows.Scan(&table, &count); err != nil {
				rows.Close()
				return false, fmt.Errorf("table sizes: %w", err)
			}
			n[table] += count
		}
		rows.Close()
	}
	return n[warehouse.Local(warehouse.ValuesRollupTable)]*minCondensation <= n[warehouse.Local(warehouse.ReadingsTable)], nil
}
