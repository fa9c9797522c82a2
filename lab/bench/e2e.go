package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/procs"
	"github.com/vitalshq/vitals/lab/sandbox"
	"github.com/vitalshq/vitals/lab/simulate"
)

// e2eSettings are bench e2e's own flags.
type e2eSettings struct {
	runs               int
	users, perUser     int
	maxRate, freshRate float64
	maxFor, freshFor   time.Duration
	warm               time.Duration
	engineRate         float64
	engineFor, catchUp time.Duration
	results, logDir    string
	keep               bool
	format             string
	vitals             string
	// cluster: run again on the cluster stack (e2e_cluster.go), whose
	// settings script prints.
	cluster bool
	script  string
}

// e2eRun is one run's result, one JSON line of --bench-results.
type e2eRun struct {
	Date    string          `json:"date"`
	Commit  string          `json:"commit"`
	Command string          `json:"command"`
	Machine loadgen.Machine `json:"machine"`
	Run     string          `json:"run"`
	Format  string          `json:"format"`
	// PerUser is --bench-per-user: consecutive readings of one user in a
	// request.
	PerUser int `json:"per_user,omitempty"`
	// Stack is "single" or "cluster" (--bench-cluster).
	Stack string `json:"stack,omitempty"`

	// Throughput: readings posted at MaxRate until every one is queryable.
	MaxRate float64 `json:"offered_rate"`
	// WarmReadings were streamed before, unmeasured (--bench-warm).
	WarmReadings     int64   `json:"warm_readings,omitempty"`
	Readings         int64   `json:"readings"`
	IngestAckPerSec  float64 `json:"ingest_acked_per_sec"`
	AllQueryableSecs float64 `json:"all_queryable_seconds"`
	EndToEndPerSec   float64 `json:"end_to_end_per_sec"`
	// Roles: CPU seconds per million readings and peak RSS over the
	// throughput phase.
	Roles map[string]roleUse `json:"roles"`
	// The rest of the machine over the same phase, in CPU seconds per
	// million readings: the shared services, the simulator (this
	// process, probes and polls included) and every process together.
	// Their sum is the budget a 2-core machine must fit: 20 CPU s per
	// million at 100,000 readings/s.
	Services     map[string]float64 `json:"services_cpu_seconds_per_million"`
	SimulatorCPU float64            `json:"simulator_cpu_seconds_per_million"`
	MachineCPU   float64            `json:"machine_cpu_seconds_per_million"`

	// Freshness at a fixed rate: ingest's answer to the row visible.
	FreshRate float64   `json:"fresh_rate"`
	FreshAcks float64   `json:"fresh_acked_per_sec"`
	Fresh     freshness `json:"freshness"`
	FreshLost int       `json:"fresh_probes_not_seen"`

	// The projector against ClickHouse's Kafka engine on the same records.
	EngineRows       int64     `json:"engine_rows"`
	OursPerSec       float64   `json:"projector_rows_per_sec"`
	EnginePerSec     float64   `json:"kafka_engine_rows_per_sec"`
	Ratio            float64   `json:"projector_to_engine_ratio"`
	EngineFreshRate  float64   `json:"engine_fresh_rate"`
	OursFresh        freshness `json:"projector_freshness"`
	EngineFresh      freshness `json:"kafka_engine_freshness"`
	EngineFreshRatio float64   `json:"engine_to_projector_p99_ratio"`
}

type roleUse struct {
	CPUPerMillion float64 `json:"cpu_seconds_per_million"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
}

// benchE2E measures the whole pipeline on the local stack; see the
// bench target in the Makefile and README's Performance section.
func benchE2E(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := cmdline.AllFlags("vitals-lab bench e2e")
	var b e2eSettings
	fs.Int(&b.runs, "bench-runs", 3, "runs; medians are printed at the end")
	fs.Int(&b.users, "bench-users", 50000, "simulated users")
	fs.Int(&b.perUser, "bench-per-user", 1, "consecutive readings of one user in a request (1: each reading of a request is another user's, the hardest case for the per-user state and data keys; a phone app posts its user's readings together)")
	fs.Float64Var(&b.maxRate, "bench-rate", 100000, "offered readings/s of the throughput phase")
	fs.Duration(&b.maxFor, "bench-duration", 15*time.Second, "length of the throughput phase's stream")
	fs.Duration(&b.warm, "bench-warm", 0, "before the throughput phase, stream the same users at --bench-rate for this long, unmeasured, so that the phase measures users the pipeline already knows (their data keys made and cached), as in a running deployment; 0: every user is new to the phase")
	fs.Float64Var(&b.freshRate, "bench-fresh-rate", 50000, "readings/s of the freshness phase")
	fs.Duration(&b.freshFor, "bench-fresh-duration", 20*time.Second, "length of the freshness phase")
	fs.Float64Var(&b.engineRate, "bench-engine-fresh-rate", 20000, "records/s produced straight into both topics to compare freshness with the Kafka engine")
	fs.Duration(&b.engineFor, "bench-engine-fresh-duration", 15*time.Second, "length of that comparison")
	fs.Duration(&b.catchUp, "bench-timeout", 10*time.Minute, "longest wait for rows to become queryable in each phase")
	fs.String(&b.results, "bench-results", "bench/out/e2e.jsonl", "append each run's JSON line to this file (bench/out/ is git-ignored; bench/results/ holds the published runs)")
	fs.String(&b.logDir, "bench-log-dir", sandbox.DefaultLogDir, "directory of the roles' logs")
	fs.Bool(&b.keep, "bench-keep", false, "keep each run's topics, databases and state")
	fs.String(&b.format, "bench-format", loadgen.FormatJSON, "the simulator's request bodies: json or avro")
	fs.Bool(&b.cluster, "bench-cluster", false, "run again on the cluster stack (make up-cluster) and print both side by side")
	fs.String(&b.script, "bench-stack-script", "deploy/stack.sh", "script whose env --cluster prints the cluster stack's settings")
	bin, err := sandbox.ParseWithBinary(fs, args)
	if err != nil {
		return err
	}
	b.vitals = bin
	if b.format != loadgen.FormatJSON && b.format != loadgen.FormatAvro {
		return fmt.Errorf("--bench-format %q: want json or avro", b.format)
	}
	log, err := s.Logger()
	if err != nil {
		return err
	}
	var cs *cmdline.Settings
	if b.cluster {
		if cs, err = clusterSettings(s, b.script); err != nil {
			return err
		}
	}
	runAll := func(s *cmdline.Settings, stack string) ([]e2eRun, error) {
		var runs []e2eRun
		for i := range b.runs {
			log.Info().Int("run", i+1).Int("of", b.runs).Str("stack", stack).Msg("bench e2e")
			s2 := *s
			r, err := benchE2EOnce(ctx, &s2, b, log)
			if err != nil {
				return nil, fmt.Errorf("%s run %d: %w", stack, i+1, err)
			}
			r.Stack = stack
			r.print(stdout)
			if err := appendJSONLine(b.results, r); err != nil {
				return nil, err
			}
			runs = append(runs, r)
		}
		if len(runs) > 1 {
			printMedians(stdout, runs)
		}
		return runs, nil
	}
	single, err := runAll(s, "single")
	if err != nil || cs == nil {
		return err
	}
	cluster, err := runAll(cs, "cluster")
	if err != nil {
		return err
	}
	printSideBySide(stdout, single, cluster)
	return nil
}

func benchE2EOnce(ctx context.Context, s *cmdline.Settings, b e2eSettings, log zerolog.Logger) (e2eRun, error) {
	r := e2eRun{Date: time.Now().UTC().Format(time.RFC3339), Commit: gitCommit(), Command: cmdline.Invocation(), Machine: loadgen.ThisMachine(),
		MaxRate: b.maxRate, FreshRate: b.freshRate, EngineFreshRate: b.engineRate, Roles: map[string]roleUse{}}
	box, err := sandbox.New(ctx, s, "bench", b.logDir, b.vitals, log)
	if err != nil {
		return r, err
	}
	defer func() { box.Close(b.keep) }()
	r.Run, r.Format, r.PerUser = box.ID, b.format, max(1, b.perUser)
	conn, err := warehouse.Open(ctx, s.Warehouse())
	if err != nil {
		return r, err
	}
	defer conn.Close()
	rctx, stopRoles := context.WithCancel(ctx)
	defer stopRoles()
	roles := []*procs.Proc{box.Role("ingest", "ingest"), box.Role("processor", "processor"), box.Role("projector", "projector")}
	for _, p := range roles {
		if err := p.Supervise(rctx); err != nil {
			return r, err
		}
	}
	if err := cmdline.WaitHealthy(ctx, box.IngestURL); err != nil {
		return r, err
	}
	m := simulate.Flags{Users: b.users, PerUser: b.perUser, Batch: 500, Clients: 8, Drain: time.Minute, Format: b.format, NoFaults: true}

	// Throughput: offer maxRate for maxFor, then wait until every
	// acknowledged reading is queryable.
	var total int64
	countRows := func(qctx context.Context) (int64, error) {
		var n uint64
		err := conn.QueryRow(qctx, fmt.Sprintf("SELECT count() FROM %s.readings WHERE tenant_id = ?", s.ClickHouseDatabase), s.Tenant).Scan(&n)
		return int64(n), err
	}
	m.Rate = b.maxRate
	if b.warm > 0 {
		m.Duration = b.warm
		o := m.Options(box.IngestURL, box.Key, box.ID+"a", log)
		o.EventPrefix = "warm-"
		res, err := simulate.RunWithProgress(ctx, o)
		if err != nil {
			return r, err
		}
		total = res.Acked
		if err := waitRows(ctx, countRows, total, b.catchUp, "warm-up", log); err != nil {
			return r, err
		}
		r.WarmReadings = total
	}
	before, svcBefore, selfBefore, machBefore := usages(roles), procs.ServiceCPU(stackDir()), selfCPU(), procs.MachineCPU()
	m.Duration = b.maxFor
	start := time.Now()
	res, err := simulate.RunWithProgress(ctx, m.Options(box.IngestURL, box.Key, box.ID+"a", log))
	if err != nil {
		return r, err
	}
	measured := res.Acked
	total += measured
	if err := waitRows(ctx, countRows, total, b.catchUp, "throughput phase", log); err != nil {
		return r, err
	}
	took := time.Since(start)
	after, svcAfter, selfAfter, machAfter := usages(roles), procs.ServiceCPU(stackDir()), selfCPU(), procs.MachineCPU()
	perM := func(a, b float64) float64 { return (b - a) / float64(measured) * 1e6 }
	r.Services = map[string]float64{}
	for name, sec := range svcAfter.Since(svcBefore) {
		r.Services[name] = perM(0, sec)
	}
	r.SimulatorCPU, r.MachineCPU = perM(selfBefore, selfAfter), perM(machBefore, machAfter)
	r.Readings, r.IngestAckPerSec = measured, res.AckedPerSec
	r.AllQueryableSecs, r.EndToEndPerSec = took.Seconds(), float64(measured)/took.Seconds()
	for i, p := range roles {
		r.Roles[p.Name] = roleUse{CPUPerMillion: (after[i].CPUSeconds - before[i].CPUSeconds) / float64(measured) * 1e6, PeakRSSMB: float64(after[i].PeakRSSBytes) / (1 << 20)}
	}

	// Freshness at a fixed rate: probe readings' ingest answer to the
	// moment a poll of ClickHouse first returns them.
	m.Rate, m.Duration = b.freshRate, b.freshFor
	o := m.Options(box.IngestURL, box.Key, box.ID+"b", log)
	var probes []string
	for c := range o.Clients {
		probes = append(probes, simulate.ProbeUser(o.RunID, c))
	}
	w := newProbeWatch(conn, s.ClickHouseDatabase, s.Tenant, probes)
	o.OnProbe = w.acked
	wctx, stopWatch := context.WithCancel(ctx)
	go w.run(wctx)
	res, err = simulate.RunWithProgress(ctx, o)
	if err != nil {
		stopWatch()
		return r, err
	}
	total += res.Acked
	r.FreshAcks = res.AckedPerSec
	err = waitRows(ctx, countRows, total, b.catchUp, "freshness phase", log)
	stopWatch()
	if err != nil {
		return r, err
	}
	w.poll(ctx)
	r.Fresh, r.FreshLost = w.latency()
	for _, p := range roles {
		if err := p.Stop(20 * time.Second); err != nil {
			log.Warn().Err(err).Str("role", p.Name).Msg("stop")
		}
	}
	if s.ClickHouseCluster != "" {
		return r, nil // no Kafka engine comparison on the cluster (e2e_cluster.go)
	}
	if err := compareEngine(ctx, s, box, conn, b, &r, log); err != nil {
		return r, err
	}
	return r, nil
}

func usages(ps []*procs.Proc) []procs.Usage {
	out := make([]procs.Usage, len(ps))
	for i, p := range ps {
		out[i] = p.Usage()
	}
	return out
}

// selfCPU is this process's user+system CPU seconds so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// gitCommit is the checkout's commit, "-dirty" when the tree has changes.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "-dirty"
	}
	return c
}

func appendJSONLine(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	js, err := json.Marshal(v)
	if err == nil {
		_, err = f.Write(append(js, '\n'))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("results %s: %w", path, err)
	}
	return nil
}

func (r e2eRun) print(w io.Writer) {
	fmt.Fprintf(w, "\nVitals end-to-end benchmark %s (%s, commit %s, %s stack)\n", r.Run, r.Date, r.Commit, cmp.Or(r.Stack, "single"))
	fmt.Fprintf(w, "command: %s\nmachine: %d CPUs, %s, %s, load %s at start\n", r.Command, r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.LoadAvg)
	fmt.Fprintf(w, "simulator bodies: %s, %d consecutive readings of a user per request (--bench-per-user)\n", r.Format, max(1, r.PerUser))
	if r.WarmReadings > 0 {
		fmt.Fprintf(w, "warm-up (--bench-warm, not measured): %d readings of the same users\n", r.WarmReadings)
	}
	fmt.Fprintf(w, "throughput: %d readings offered at %.0f/s (ingest acked %.0f/s), all queryable after %.1fs: %.0f readings/s end to end\n",
		r.Readings, r.MaxRate, r.IngestAckPerSec, r.AllQueryableSecs, r.EndToEndPerSec)
	for _, name := range slices.Sorted(maps.Keys(r.Roles)) {
		u := r.Roles[name]
		fmt.Fprintf(w, "  %-10s %.1f CPU s per million readings, peak RSS %.0f MB\n", name, u.CPUPerMillion, u.PeakRSSMB)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Services)) {
		fmt.Fprintf(w, "  %-10s %.1f CPU s per million readings (shared service: this checkout's stack)\n", name, r.Services[name])
	}
	fmt.Fprintf(w, "  %-10s %.1f CPU s per million readings (this process)\n", "simulator", r.SimulatorCPU)
	fmt.Fprintf(w, "  %-10s %.1f CPU s per million readings (every process; 2 cores at 100,000/s allow 20)\n", "machine", r.MachineCPU)
	f := r.Fresh
	fmt.Fprintf(w, "freshness at %.0f/s (acked %.0f/s): p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms (%d probes, %d not seen)\n",
		r.FreshRate, r.FreshAcks, f.P50Ms, f.P95Ms, f.P99Ms, f.MaxMs, f.Count, r.FreshLost)
	if r.Stack == "cluster" {
		return // no Kafka engine comparison on the cluster
	}
	fmt.Fprintf(w, "projector vs ClickHouse Kafka engine (JSONEachRow copy), %d pre-filled records: %.0f vs %.0f rows/s = %.2fx\n",
		r.EngineRows, r.OursPerSec, r.EnginePerSec, r.Ratio)
	fmt.Fprintf(w, "  freshness at %.0f records/s: projector p50/p95/p99 %.0f/%.0f/%.0f ms, engine %.0f/%.0f/%.0f ms (engine p99 / projector p99 = %.2f)\n",
		r.EngineFreshRate, r.OursFresh.P50Ms, r.OursFresh.P95Ms, r.OursFresh.P99Ms, r.EngineFresh.P50Ms, r.EngineFresh.P95Ms, r.EngineFresh.P99Ms, r.EngineFreshRatio)
}

// printMedians prints the median of each headline figure over the runs.
func printMedians(w io.Writer, runs []e2eRun) {
	med := func(f func(e2eRun) float64) string {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		parts := make([]string, len(runs))
		for i, r := range runs {
			parts[i] = fmt.Sprintf("%.4g", f(r))
		}
		return fmt.Sprintf("%.4g (runs %s)", v[len(v)/2], strings.Join(parts, " / "))
	}
	fmt.Fprintf(w, "\nmedians of %d runs\n", len(runs))
	fmt.Fprintf(w, "  end-to-end readings/s      %s\n", med(func(r e2eRun) float64 { return r.EndToEndPerSec }))
	fmt.Fprintf(w, "  freshness p50 / p99 ms     %s / %s\n", med(func(r e2eRun) float64 { return r.Fresh.P50Ms }), med(func(r e2eRun) float64 { return r.Fresh.P99Ms }))
	for _, name := range []string{"ingest", "processor", "projector"} {
		fmt.Fprintf(w, "  %-10s CPU s/M, MB   %s, %s\n", name, med(func(r e2eRun) float64 { return r.Roles[name].CPUPerMillion }), med(func(r e2eRun) float64 { return r.Roles[name].PeakRSSMB }))
	}
	for _, name := range []string{procs.ServiceKafka, procs.ServiceClickHouse, procs.ServicePostgres, procs.ServiceZooKeeper} {
		fmt.Fprintf(w, "  %-10s CPU s/M       %s\n", name, med(func(r e2eRun) float64 { return r.Services[name] }))
	}
	fmt.Fprintf(w, "  simulator  CPU s/M       %s\n", med(func(r e2eRun) float64 { return r.SimulatorCPU }))
	fmt.Fprintf(w, "  machine    CPU s/M       %s\n", med(func(r e2eRun) float64 { return r.MachineCPU }))
	if runs[0].Stack == "cluster" {
		return
	}
	fmt.Fprintf(w, "  projector rows/s           %s\n", med(func(r e2eRun) float64 { return r.OursPerSec }))
	fmt.Fprintf(w, "  kafka engine rows/s        %s\n", med(func(r e2eRun) float64 { return r.EnginePerSec }))
	fmt.Fprintf(w, "  projector / engine         %s\n", med(func(r e2eRun) float64 { return r.Ratio }))
	fmt.Fprintf(w, "  projector / engine p99 ms  %s / %s\n", med(func(r e2eRun) float64 { return r.OursFresh.P99Ms }), med(func(r e2eRun) float64 { return r.EngineFresh.P99Ms }))
}
