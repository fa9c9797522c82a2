package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/replay"
)

// benchReplayReport is bench replay's result.
type benchReplayReport struct {
	Command       string          `json:"command"`
	Machine       loadgen.Machine `json:"machine"`
	TopicPrefix   string          `json:"topic_prefix"`
	Database      string          `json:"database"`
	Partitions    int             `json:"partitions"`
	Records       int64           `json:"records"`
	BatchRows     int             `json:"batch_rows"`
	FillSeconds   float64         `json:"fill_seconds"`
	Seconds       float64         `json:"rebuild_seconds"`
	EventsPerSec  float64         `json:"events_per_sec"`
	VerifySeconds float64         `json:"verify_seconds"`
	SwapPaused    string          `json:"swap_paused"`
	LiveRows      uint64          `json:"live_rows_after_swap"`
	RollupRows    uint64          `json:"live_rollup_readings_after_swap"`
}

// benchReplay measures vitals replay rebuild: it fills an accepted-readings
// topic of its own with --bench-rows readings, then rebuilds the readings
// table (and its rollup) of a fresh database from it, with verification
// and swap, and reports events per second from the start of projecting to
// caught up. Topics, databases and groups are deleted at the end unless
// --bench-keep.
func benchReplay(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := newFlags("bench replay")
	s.kafkaFlags(fs)
	s.chFlags(fs)
	s.projectorFlags(fs)
	benchScratch(fs, "bench-replay-", "vitals_bench_replay_")
	var r replaySettings
	replayFlags(fs, &r)
	rebuildFlags(fs, &r)
	var b benchProjSettings
	var verify bool
	var cpuProfile string
	fs.String(&cpuProfile, "bench-cpuprofile", "", "write a CPU profile of this process over the rebuild to this file")
	fs.Int(&b.rows, "bench-rows", 10_000_000, "accepted heart-rate readings to replay")
	fs.Int(&b.users, "bench-users", 10000, "distinct users the readings are spread over")
	fs.Bool(&b.keep, "bench-keep", false, "keep the topics, the ClickHouse databases and the Kafka groups")
	fs.Bool(&verify, "bench-verify", true, "verify the rebuilt table against the log before the swap (timed apart)")
	fs.Duration(&b.timeout, "bench-timeout", 20*time.Minute, "bound on the whole run; clean-up comes after it")
	fs.String(&b.jsonOut, "bench-json", "", "also write the result as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if b.rows < 1 || b.users < 1 || b.timeout <= 0 {
		return errors.New("--bench-rows, --bench-users and --bench-timeout must be positive")
	}
	if s.kafkaPrefix == "vitals" || s.chDatabase == "vitals" {
		return errors.New("bench replay fills and deletes topics and databases of its own; do not point it at vitals")
	}
	s.projectorGroup = s.kafkaPrefix + ".live"
	log, err := s.logger()
	if err != nil {
		return err
	}
	kcfg := s.kafka()
	cfg := replay.DefaultConfig()
	cfg.Kafka, cfg.Warehouse, cfg.Projector, cfg.LiveGroup = kcfg, s.warehouse(), s.projector(), s.projectorGroup
	cfg.Tables, cfg.Verify = []string{warehouse.ReadingsTable}, verify
	cfg.Projector.MaxRows, cfg.Instances, cfg.ProgressEvery = r.batchRows, r.instances, r.progressEvery
	applyReplayTuning(&r)
	cfg.Progress = newProgressOutput(os.Stderr, log).show
	rep := benchReplayReport{Command: commandLine(), Machine: loadgen.ThisMachine(), TopicPrefix: s.kafkaPrefix, Database: s.chDatabase,
		Partitions: kcfg.Partitions, Records: int64(b.rows), BatchRows: cfg.Projector.MaxRows}

	runCtx, cancelRun := context.WithTimeout(ctx, b.timeout)
	defer cancelRun()
	if err := eventlog.EnsureTopics(runCtx, kcfg, log); err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(kcfg.ClientOpts(log), kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	defer func() {
		if !b.keep {
			benchCleanup(ctx, cl, kcfg, s.warehouse(), []string{s.projectorGroup + "-replay-" + s.chDatabase},
				[]string{s.chDatabase, cfg.ShadowDatabase(), cfg.OldDatabase()}, log)
		}
	}()

	fillStart := time.Now()
	if err := fillAcceptedTopic(runCtx, cl, kcfg.Topics, b.users, b.rows, log); err != nil {
		return err
	}
	rep.FillSeconds = time.Since(fillStart).Seconds()
	if cpuProfile != "" {
		prof, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	began := time.Now()
	res, err := replay.Rebuild(runCtx, cfg, log)
	if cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	rep.Seconds = res.CaughtUp.Seconds()
	rep.EventsPerSec = float64(res.Records) / rep.Seconds
	rep.VerifySeconds = time.Since(began).Seconds() - rep.Seconds
	rep.SwapPaused = res.Paused.String()
	conn, err := warehouse.Open(runCtx, s.warehouse())
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.QueryRow(runCtx, fmt.Sprintf("SELECT count() FROM %s.%s", s.chDatabase, warehouse.ReadingsTable)).Scan(&rep.LiveRows); err != nil {
		return fmt.Errorf("count rows: %w", err)
	}
	if err := conn.QueryRow(runCtx, fmt.Sprintf("SELECT countMerge(readings) FROM %s.%s", s.chDatabase, warehouse.DailyRollupTable)).Scan(&rep.RollupRows); err != nil {
		return fmt.Errorf("count rollup readings: %w", err)
	}
	fmt.Fprintf(stdout, "bench replay: %d accepted readings, %d partitions, batch %d rows; machine: %d CPU (%s), load %s at start\n",
		rep.Records, rep.Partitions, rep.BatchRows, rep.Machine.NumCPU, rep.Machine.CPUModel, rep.Machine.LoadAvg)
	fmt.Fprintf(stdout, "fill (not measured): %.1fs\n", rep.FillSeconds)
	fmt.Fprintf(stdout, "rebuilt from Kafka into ClickHouse: %.2fs = %.0f events/s\n", rep.Seconds, rep.EventsPerSec)
	fmt.Fprintf(stdout, "verify + swap: %.1fs (pause %s); live after the swap: %d rows, %d readings in the rollup\n", rep.VerifySeconds, rep.SwapPaused, rep.LiveRows, rep.RollupRows)
	if b.jsonOut != "" {
		js, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(b.jsonOut, append(js, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", b.jsonOut, err)
		}
	}
	if rep.LiveRows != uint64(b.rows) || rep.RollupRows != uint64(b.rows) {
		return fmt.Errorf("ClickHouse holds %d rows and %d rollup readings, want %d of each", rep.LiveRows, rep.RollupRows, b.rows)
	}
	return nil
}

// benchScratch gives a benchmark that fills and deletes its own topics and
// database fresh names under the given prefixes. The database default is
// replaced even when VITALS_CLICKHOUSE_DATABASE is set (deploy/stack.sh env
// sets it to the real one); only an explicit flag chooses another.
func benchScratch(fs *envflag.Set, topicPrefix, databasePrefix string) {
	started := time.Now().UTC().Format("20060102_150405")
	for name, def := range map[string]string{
		"kafka-topic-prefix":  topicPrefix + started,
		"clickhouse-database": databasePrefix + started,
	} {
		if _, ok := os.LookupEnv(fs.EnvName(name)); !ok || name == "clickhouse-database" {
			f := fs.Lookup(name)
			_ = f.Value.Set(def)
			f.DefValue = def
		}
	}
}

// benchCleanup deletes a benchmark's topics, consumer groups and ClickHouse
// databases, logging what it cannot delete.
func benchCleanup(ctx context.Context, cl *kgo.Client, kcfg eventlog.Config, wh warehouse.Config, groups, databases []string, log zerolog.Logger) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var names []string
	for _, sp := range kcfg.Specs() {
		names = append(names, sp.Name)
	}
	if _, err := kadm.NewClient(cl).DeleteTopics(cctx, names...); err != nil {
		log.Warn().Err(err).Msg("delete the bench topics")
	}
	for _, g := range groups {
		deleteBenchGroup(cctx, kcfg, g, log)
	}
	conn, err := warehouse.Open(cctx, wh)
	if err != nil {
		log.Warn().Err(err).Msg("drop the bench databases")
		return
	}
	defer conn.Close()
	for _, db := range databases {
		if err := conn.Exec(cctx, "DROP DATABASE IF EXISTS "+db); err != nil {
			log.Warn().Err(err).Str("database", db).Msg("drop a bench database")
		}
	}
}
