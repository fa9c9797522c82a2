package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/scratch"
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
	fs, s := cmdline.NewFlags("vitals-lab bench replay")
	s.KafkaFlags(fs)
	s.ClickHouseFlags(fs)
	s.ProjectorFlags(fs)
	scratch.Names(fs, "bench-replay-", "vitals_bench_replay_")
	var r cmdline.ReplayTuning
	r.Flags(fs)
	r.RebuildFlags(fs)
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
	if s.KafkaPrefix == scratch.RealPrefix || s.ClickHouseDatabase == scratch.RealPrefix {
		return errors.New("bench replay fills and deletes topics and databases of its own; do not point it at vitals")
	}
	s.ProjectorGroup = s.KafkaPrefix + ".live"
	log, err := s.Logger()
	if err != nil {
		return err
	}
	kcfg := s.Kafka()
	cfg := replay.DefaultConfig()
	cfg.Kafka, cfg.Warehouse, cfg.Projector, cfg.LiveGroup = kcfg, s.Warehouse(), s.Projector(), s.ProjectorGroup
	cfg.Tables, cfg.Verify = []string{warehouse.ReadingsTable}, verify
	cfg.Projector.MaxRows, cfg.Instances, cfg.ProgressEvery = r.BatchRows, r.Instances, r.ProgressEvery
	r.Apply()
	cfg.Progress = cmdline.NewProgress(os.Stderr, log).Show
	rep := benchReplayReport{Command: cmdline.Invocation(), Machine: loadgen.ThisMachine(), TopicPrefix: s.KafkaPrefix, Database: s.ClickHouseDatabase,
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
			scratch.Resources{Kafka: kcfg, Topics: scratch.AllTopics(kcfg), Groups: []string{s.ProjectorGroup + "-replay-" + s.ClickHouseDatabase}, Warehouse: s.Warehouse(),
				Databases: []string{s.ClickHouseDatabase, cfg.ShadowDatabase(), cfg.OldDatabase()}}.Remove(ctx, log)
		}
	}()

	fillStart := time.Now()
	if err := fillAcceptedTopic(runCtx, cl, kcfg.Topics, b.users, b.rows, log); err != nil {
		return err
	}
	rep.FillSeconds = time.Since(fillStart).Seconds()
	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return err
	}
	began := time.Now()
	res, err := replay.Rebuild(runCtx, cfg, log)
	stopProfile()
	if err != nil {
		return err
	}
	rep.Seconds = res.CaughtUp.Seconds()
	rep.EventsPerSec = float64(res.Records) / rep.Seconds
	rep.VerifySeconds = time.Since(began).Seconds() - rep.Seconds
	rep.SwapPaused = res.Paused.String()
	conn, err := warehouse.Open(runCtx, s.Warehouse())
	if err != nil {
		return err
	}
	defer conn.Close()
	if rep.LiveRows, rep.RollupRows, err = countStored(runCtx, conn, s.ClickHouseDatabase); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench replay: %d accepted readings, %d partitions, batch %d rows; machine: %d CPU (%s), load %s at start\n",
		rep.Records, rep.Partitions, rep.BatchRows, rep.Machine.NumCPU, rep.Machine.CPUModel, rep.Machine.LoadAvg)
	fmt.Fprintf(stdout, "fill (not measured): %.1fs\n", rep.FillSeconds)
	fmt.Fprintf(stdout, "rebuilt from Kafka into ClickHouse: %.2fs = %.0f events/s\n", rep.Seconds, rep.EventsPerSec)
	fmt.Fprintf(stdout, "verify + swap: %.1fs (pause %s); live after the swap: %d rows, %d readings in the rollup\n", rep.VerifySeconds, rep.SwapPaused, rep.LiveRows, rep.RollupRows)
	if b.jsonOut != "" {
		if err := writeJSON(b.jsonOut, rep); err != nil {
			return err
		}
	}
	if rep.LiveRows != uint64(b.rows) || rep.RollupRows != uint64(b.rows) {
		return fmt.Errorf("ClickHouse holds %d rows and %d rollup readings, want %d of each", rep.LiveRows, rep.RollupRows, b.rows)
	}
	return nil
}
