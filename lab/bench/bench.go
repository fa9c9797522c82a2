// Package bench is vitals-lab bench: benchmarks of the pipeline on the
// local stack, a file each. ingest posts pre-encoded batches to an
// in-process ingest (readings/s, latency); processor and projector fill
// topics of their own and time one in-process instance through them;
// replay times a rebuild; query times the query API over generated
// readings; e2e runs the whole pipeline as child processes of the vitals
// binary under the fleet simulator. Each benchmark makes its own topics,
// groups and databases (lab/scratch) and removes them unless kept.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// benchmarks are the subcommands of vitals-lab bench.
var benchmarks = map[string]func(ctx context.Context, args []string, stdout io.Writer) error{
	"ingest": benchIngest, "processor": benchProcessor, "projector": benchProjector,
	"replay": benchReplay, "query": benchQuery, "e2e": benchE2E,
}

// Command is `vitals-lab bench <benchmark>`.
func Command(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || benchmarks[args[0]] == nil {
		names := slices.Sorted(maps.Keys(benchmarks))
		return fmt.Errorf("usage: vitals-lab bench %s [flags] (vitals-lab bench ingest -h lists them)", strings.Join(names, "|"))
	}
	return benchmarks[args[0]](ctx, args[1:], stdout)
}

// benchEnv lists the VITALS_BENCH_* variables, which change the flags'
// defaults; connection settings are left out (they may hold passwords).
func benchEnv() map[string]string {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "VITALS_BENCH_") {
			out[k] = v
		}
	}
	return out
}

// writeJSON writes v, indented, to path (--bench-json).
func writeJSON(path string, v any) error {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// startCPUProfile starts a CPU profile of this process into path (none if
// path is empty) and returns the function that ends it.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// countStored counts the readings in db's raw table and in its daily
// rollup, which a run that stored every reading exactly once has equal.
func countStored(ctx context.Context, conn driver.Conn, db string) (raw, rollup uint64, err error) {
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", db, warehouse.ReadingsTable)).Scan(&raw); err != nil {
		return 0, 0, fmt.Errorf("count raw rows: %w", err)
	}
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT countMerge(readings) FROM %s.%s", db, warehouse.DailyRollupTable)).Scan(&rollup); err != nil {
		return 0, 0, fmt.Errorf("count rollup readings: %w", err)
	}
	return raw, rollup, nil
}
