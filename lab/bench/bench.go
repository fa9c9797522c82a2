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
	"text/tabwriter"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/loadgen"
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

// writeJSON writes v, indented, to path (--bench-json); an empty path
// (the flag unset) writes nothing.
func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// runInfo says how and where a benchmark ran; the reports embed it, so
// its fields lead their JSON.
type runInfo struct {
	Command string            `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
	Machine loadgen.Machine   `json:"machine"`
}

// thisRun is the running benchmark's runInfo, the machine's load as of now.
func thisRun() runInfo {
	return runInfo{Command: cmdline.Invocation(), Env: benchEnv(), Machine: loadgen.ThisMachine()}
}

// table prints a report as aligned key-value rows after a title and the
// run's command line, VITALS_BENCH_* variables and machine.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, title string, r runInfo) *table {
	fmt.Fprintf(w, "\n%s\n\n", title)
	t := &table{tw: tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)}
	t.row("command", "%s", r.Command)
	for _, k := range slices.Sorted(maps.Keys(r.Env)) {
		t.row("env", "%s=%s", k, r.Env[k])
	}
	m := r.Machine
	t.row("machine", "%d CPUs (GOMAXPROCS %d), %s, %s %s, load avg %s at start", m.NumCPU, m.GOMAXPROCS, m.CPUModel, m.GoVersion, m.OSArch, m.LoadAvg)
	return t
}

func (t *table) row(k, format string, args ...any) {
	fmt.Fprintf(t.tw, "%s\t%s\n", k, fmt.Sprintf(format, args...))
}

func (t *table) flush() { t.tw.Flush() }

// startProfile starts a profile or trace of this process into path with
// start (pprof.StartCPUProfile, trace.Start), none if path is empty, and
// returns the function that ends it with stop.
func startProfile(path string, start func(io.Writer) error, stop func()) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return func() { stop(); f.Close() }, nil
}

// startCPUProfile starts a CPU profile into path (see startProfile).
func startCPUProfile(path string) (func(), error) {
	return startProfile(path, pprof.StartCPUProfile, pprof.StopCPUProfile)
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
