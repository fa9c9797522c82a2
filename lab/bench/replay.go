package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/scratch"
	"github.com/vitalshq/vitals/replay"
)

// benchReplayReport is bench replay's result.
type benchReplayReport struct {
	runInfo
	TopicPrefix   string  `json:"topic_prefix"`
	Database      string  `json:"database"`
	Partitions    int     `json:"partitions"`
	Records       int64   `json:"records"`
	BatchRows     int     `json:"batch_rows"`
	FillSeconds   float64 `json:"fill_seconds"`
	Sealed        bool    `json:"sealed"`
	Seconds       float64 `json:"rebuild_seconds"`
	EventsPerSec  float64 `json:"events_per_sec"`
	VerifySeconds float64 `json:"verify_seconds"`
	SwapPaused    string  `json:"swap_paused"`
	LiveRows      uint64  `json:"live_rows_after_swap"`
	RollupRows    uint64  `json:"live_rollup_readings_after_swap"`
}

// benchReplay measures vitals replay rebuild: it fills an accepted-readings
// topic of its own with --bench-rows readings, then rebuilds the readings
// table (and its rollup) of a fresh database from it, with verification
// and swap, and reports events per second from the start of projecting to
// caught up. Topics, databases and groups are deleted at the end unless
// --bench-keep.
func benchReplay(ctx context.Context, args []string, stdout io.Writer) error {
	b, fs, s := newAcceptedBench("replay", "replay", 10_000_000, 20*time.Minute, "replay", "the rebuild")
	var r cmdline.ReplayTuning
	r.Flags(fs)
	r.RebuildFlags(fs)
	var verify bool
	fs.Bool(&verify, "bench-verify", true, "verify the rebuilt table against the log before the swap (timed apart)")
	if err := b.parse(fs, s, args); err != nil {
		return err
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
	rep := benchReplayReport{runInfo: thisRun(), TopicPrefix: s.KafkaPrefix, Database: s.ClickHouseDatabase,
		Partitions: kcfg.Partitions, Records: int64(b.rows), BatchRows: cfg.Projector.MaxRows, Sealed: b.sealed}

	runCtx, cancelRun := context.WithTimeout(ctx, b.timeout)
	defer cancelRun()
	defer b.remove(ctx, scratch.Resources{Kafka: kcfg, Topics: scratch.AllTopics(kcfg), Groups: []string{s.ProjectorGroup + "-replay-" + s.ClickHouseDatabase}, Warehouse: s.Warehouse(),
		Databases: []string{s.ClickHouseDatabase, cfg.ShadowDatabase(), cfg.OldDatabase()}}, log)
	cl, err := b.fill(runCtx, s, &rep.FillSeconds, log, kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	cl.Close()
	stopProfile, err := startCPUProfile(b.cpuProfile)
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
	if rep.LiveRows, rep.RollupRows, err = b.stored(runCtx, s); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench replay: %d accepted readings, %d partitions, batch %d rows; machine: %d CPU (%s), load %s at start\n",
		rep.Records, rep.Partitions, rep.BatchRows, rep.Machine.NumCPU, rep.Machine.CPUModel, rep.Machine.LoadAvg)
	fmt.Fprintf(stdout, "fill (not measured): %.1fs, %s\n", rep.FillSeconds, sealedText(rep.Sealed))
	fmt.Fprintf(stdout, "rebuilt from Kafka into ClickHouse: %.2fs = %.0f events/s\n", rep.Seconds, rep.EventsPerSec)
	fmt.Fprintf(stdout, "verify + swap: %.1fs (pause %s); live after the swap: %d rows, %d readings in the rollup\n", rep.VerifySeconds, rep.SwapPaused, rep.LiveRows, rep.RollupRows)
	return b.save(rep, rep.LiveRows, rep.RollupRows)
}
