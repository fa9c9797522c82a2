// Package replay rebuilds Vitals' ClickHouse projections and reprocesses
// the raw event log, while the live system keeps serving.
//
// The Kafka topics are the event log (raw topics and outputs are kept
// forever, see eventlog.Config.Specs), so every table can be derived again:
//
//   - Rebuild projects the topics of some tables into shadow tables of the
//     same definition in a database of their own (<db>_shadow) with a
//     consumer group of its own, while the live projector keeps writing
//     the live tables. When the shadow has caught up with the topics' end
//     offsets, it is verified against the log (count and sum of
//     murmurHash2_64(event_id) per partition, computed on both sides), the
//     live projectors are paused (see package projector, pause.go), the
//     shadow is brought level with the live position, and one RENAME TABLE
//     statement moves the live tables to <db>_old and the shadow tables into
//     place. The live projectors then resume from the positions stored in
//     the new tables, so no record is skipped or inserted twice.
//   - Rollback puts the tables kept in <db>_old back the same way.
//   - Reprocess runs the processor over the raw topics with a fresh
//     consumer group (hence empty state) writing versioned output topics,
//     e.g. vitals.readings.accepted.v2, beside the old ones.
//
// Progress is measured from the groups' committed offsets against the
// topics' end offsets, so a rerun after Ctrl-C (the group, the shadow
// tables and the processor state persist) shows where it resumes, and the
// standard kafka-consumer-groups tool sees the same figures.
//
// # Atomicity on ClickHouse 18.16
//
// A multi-table RENAME in 18.16 takes a DDL guard on every name, but
// renames the tables one after another, each after the queries running on
// it finished. Each live/shadow pair is adjacent in the statement so that
// one table's swap is atomic in practice; across tables a reader can see
// one table swapped and another not (measured: docs/replay.md).
package replay

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/projector"
)

// Config configures Rebuild and Rollback.
type Config struct {
	// Kafka locates the topics (including the output version to read).
	Kafka eventlog.Config
	// Warehouse locates ClickHouse and the live database.
	Warehouse warehouse.Config
	// Projector is the template of the shadow projector (batch size, flush
	// interval, timeouts); its Kafka, Warehouse, Group and Tables are set
	// by Rebuild.
	Projector projector.Config
	// Instances is how many shadow projectors share the shadow group's
	// partitions (at most the partition count does work).
	Instances int
	// LiveGroup is the live projectors' consumer group: Rebuild pauses its
	// members for the swap and reads its committed positions.
	LiveGroup string
	// Group is the shadow projector's consumer group; empty means
	// "<LiveGroup>-replay-<database>". It persists until the swap, so a
	// rerun resumes.
	Group string
	// Tables to rebuild (warehouse table names); empty means all.
	Tables []string
	// From, if not zero, rebuilds only from this record time on: the rows
	// of earlier records are copied from the live tables.
	From time.Time
	// PauseTimeout bounds the live projectors' pause for the swap; they
	// resume by themselves after it.
	PauseTimeout time.Duration
	// Verify compares the shadow with the log before the swap.
	Verify bool
	// Swap: swap the shadow into place once caught up (and verified). If
	// false, Rebuild stops when the shadow has caught up.
	Swap bool
	// ProgressEvery is how often Progress is called.
	ProgressEvery time.Duration
	// Progress, if set, receives the progress at ProgressEvery.
	Progress func(Progress)
}

// DefaultConfig returns the local stack's defaults.
func DefaultConfig() Config {
	return Config{
		Kafka:         eventlog.DefaultConfig(),
		Warehouse:     warehouse.DefaultConfig(),
		Projector:     projector.DefaultConfig(),
		LiveGroup:     projector.DefaultConfig().Group,
		Instances:     2,
		PauseTimeout:  30 * time.Second,
		Verify:        true,
		Swap:          true,
		ProgressEvery: 2 * time.Second,
	}
}

// ShadowDatabase is where Rebuild builds the new tables.
func (c Config) ShadowDatabase() string { return c.Warehouse.Database + "_shadow" }

// OldDatabase is where the swap keeps the replaced tables for Rollback.
func (c Config) OldDatabase() string { return c.Warehouse.Database + "_old" }

// group is the shadow projector's consumer group.
func (c Config) group() string {
	if c.Group != "" {
		return c.Group
	}
	return c.LiveGroup + "-replay-" + c.Warehouse.Database
}

// Rebuildable are the tables Rebuild can rebuild, in swap order.
var Rebuildable = []string{
	warehouse.ReadingsTable, warehouse.RevisionsTable, warehouse.DailyRollupTable, warehouse.DailyRevisionsTable, warehouse.ValuesRollupTable,
	warehouse.RejectedTable, warehouse.AlertsTable,
	warehouse.ProfileEventsTable, warehouse.DeviceEventsTable, warehouse.ErasedUsersTable,
}

// ResolveTables validates a table selection and completes it: "all" or
// nothing selects every table; the readings table and its rollups go
// together (the rollups are fed by views on inserts into readings, and the
// query service reads the value rollup in place of the readings); and the
// erasures are always replayed, because without them rows of erased users
// would be projected again.
func ResolveTables(names []string) ([]string, error) {
	want := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
		case n == "all":
			for _, t := range Rebuildable {
				want[t] = true
			}
		case slices.Contains(Rebuildable, n):
			want[n] = true
		default:
			return nil, fmt.Errorf("table %q cannot be rebuilt; choose from %s or all", n, strings.Join(Rebuildable, ", "))
		}
	}
	if len(want) == 0 {
		for _, t := range Rebuildable {
			want[t] = true
		}
	}
	group := []string{warehouse.ReadingsTable, warehouse.RevisionsTable, warehouse.DailyRollupTable, warehouse.DailyRevisionsTable, warehouse.ValuesRollupTable}
	if slices.ContainsFunc(group, func(t string) bool { return want[t] }) {
		for _, t := range group {
			want[t] = true
		}
	}
	want[warehouse.ErasedUsersTable] = true
	var out []string
	for _, t := range Rebuildable {
		if want[t] {
			out = append(out, t)
		}
	}
	return out, nil
}

// Progress is a replay's progress: records of the log behind the group's
// committed offsets since the start, out of those up to the end offsets.
type Progress struct {
	Phase       string
	Done, Total int64
	// Rate is records per second since the phase started; ETA is the time
	// left at that rate (0 if unknown).
	Rate float64
	ETA  time.Duration
}
