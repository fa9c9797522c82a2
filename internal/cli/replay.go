package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/replay"
)

// replaySettings are vitals replay's own flags.
type replaySettings struct {
	tables, from, group, version string
	batchRows, instances         int
	gcPercent                    int
	dryRun, noVerify, noSwap     bool
	pauseTimeout, progressEvery  time.Duration
}

// cmdReplay is `vitals replay rebuild|rollback|reprocess`.
func cmdReplay(ctx context.Context, args []string, stdout io.Writer) error {
	usage := errors.New("usage: vitals replay rebuild|rollback|reprocess [flags] (vitals replay rebuild -h lists them)")
	if len(args) == 0 {
		return usage
	}
	switch args[0] {
	case "rebuild", "rollback":
		return replayTables(ctx, args[0], args[1:], stdout)
	case "reprocess":
		return replayReprocess(ctx, args[1:], stdout)
	}
	return usage
}

// replayFlags registers the flags every replay subcommand shares.
func replayFlags(fs *envflag.Set, r *replaySettings) {
	fs.Duration(&r.progressEvery, "replay-progress-interval", 2*time.Second, "how often progress is shown (a bar on a terminal, a log line otherwise)")
	fs.Int(&r.gcPercent, "replay-gc-percent", 400, "Go GC target of this process: a replay allocates large insert blocks, and collecting less often saves CPU for ClickHouse on a small machine")
}

// rebuildFlags registers the shadow projection's tuning flags.
func rebuildFlags(fs *envflag.Set, r *replaySettings) {
	d := replay.DefaultConfig()
	fs.Int(&r.batchRows, "replay-batch-rows", 200000, "rows per ClickHouse insert of the shadow projection (larger than the live projector's: throughput, not latency)")
	fs.Int(&r.instances, "replay-instances", d.Instances, "shadow projectors sharing the partitions in this process")
}

// applyReplayTuning sets the process-wide GC target for the replay.
func applyReplayTuning(r *replaySettings) {
	if r.gcPercent > 0 {
		debug.SetGCPercent(r.gcPercent)
	}
}

func replayTables(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	fs, s := newFlags("replay " + sub)
	s.kafkaFlags(fs)
	s.chFlags(fs)
	s.projectorFlags(fs)
	var r replaySettings
	replayFlags(fs, &r)
	rebuildFlags(fs, &r)
	fs.String(&r.tables, "tables", "all", "tables to "+sub+", comma-separated: "+strings.Join(replay.Rebuildable, ",")+" or all")
	if sub == "rebuild" {
		fs.String(&r.from, "from-timestamp", "", "rebuild from this record time (RFC 3339) on; rows of earlier records are copied from the live tables (default: from the start of each topic)")
		fs.Bool(&r.dryRun, "dry-run", false, "print what would happen (tables, topics, offsets, rows) and change nothing")
		fs.Bool(&r.noVerify, "no-verify", false, "skip comparing the shadow with the log before the swap")
		fs.Bool(&r.noSwap, "no-swap", false, "stop once the shadow has caught up (and is verified), without swapping")
		fs.String(&r.group, "replay-group", "", "consumer group of the shadow projector (default <projector-group>-replay-<database>)")
	}
	fs.Duration(&r.pauseTimeout, "replay-pause-timeout", replay.DefaultConfig().PauseTimeout, "longest the live projectors are paused for the swap; they resume by themselves after it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.checkKafka(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	cfg := replay.DefaultConfig()
	cfg.Kafka, cfg.Warehouse, cfg.Projector, cfg.LiveGroup = s.kafka(), s.warehouse(), s.projector(), s.projectorGroup
	cfg.Group, cfg.PauseTimeout, cfg.ProgressEvery = r.group, r.pauseTimeout, r.progressEvery
	cfg.Verify, cfg.Swap = !r.noVerify, !r.noSwap
	cfg.Projector.MaxRows, cfg.Instances = r.batchRows, r.instances
	applyReplayTuning(&r)
	cfg.Tables = strings.Split(r.tables, ",")
	if r.from != "" {
		if cfg.From, err = time.Parse(time.RFC3339, r.from); err != nil {
			return fmt.Errorf("--from-timestamp: %w", err)
		}
	}
	if sub == "rollback" {
		tables, err := replay.Rollback(ctx, cfg, log)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "rolled back %s: the previous tables are live again, the rebuilt ones are in %s\n", strings.Join(tables, ", "), cfg.ShadowDatabase())
		return err
	}
	if r.dryRun {
		plan, err := replay.DryRun(ctx, cfg, log)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "dry run: nothing is changed")
		plan.Print(stdout)
		return nil
	}
	bar := newProgressOutput(os.Stderr, log)
	cfg.Progress = bar.show
	res, err := replay.Rebuild(ctx, cfg, log)
	bar.end()
	if res != nil {
		printRebuild(stdout, res)
	}
	return stoppedCleanly(ctx, err, stdout)
}

// stoppedCleanly turns the error of a replay stopped by Ctrl-C or SIGTERM
// into a note: the consumer group, the shadow tables and the processor
// state persist, so stopping is a normal way to pause a long replay.
func stoppedCleanly(ctx context.Context, err error, stdout io.Writer) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	_, werr := fmt.Fprintln(stdout, "stopped; run the same command again to resume")
	return werr
}

func printRebuild(w io.Writer, res *replay.Result) {
	res.Plan.Print(w)
	secs := res.CaughtUp.Seconds()
	fmt.Fprintf(w, "projected %d records in %.1fs (%.0f records/s)\n", res.Records, secs, float64(res.Records)/math.Max(secs, 1e-9))
	if len(res.Verified) > 0 {
		var records, rows uint64
		for _, c := range res.Verified {
			records += c.Records
			rows += c.Rows
		}
		fmt.Fprintf(w, "verified %d table partitions: %d log records = %d rows, event-id hash sums equal\n", len(res.Verified), records, rows)
	}
	if res.Swapped {
		fmt.Fprintf(w, "swapped into %s in one RENAME; live projectors paused %s; previous tables kept in %s (vitals replay rollback)\n",
			res.Plan.LiveDatabase, res.Paused.Round(time.Millisecond), res.Plan.OldDatabase)
	}
}

func replayReprocess(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := newFlags("replay reprocess")
	s.kafkaFlags(fs)
	s.pgFlags(fs)
	s.processorFlags(fs)
	var r replaySettings
	replayFlags(fs, &r)
	fs.String(&r.version, "version", "", "version of the new output topics, e.g. v2 (required)")
	fs.String(&r.group, "replay-group", "", "consumer group and state key of the reprocess (default <processor-group>-<version>)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.checkKafka(); err != nil {
		return err
	}
	if r.version == "" || fs.NArg() > 0 {
		return errors.New("usage: vitals replay reprocess --version v2 [flags]")
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	applyReplayTuning(&r)
	bar := newProgressOutput(os.Stderr, log)
	res, err := replay.Reprocess(ctx, replay.ReprocessConfig{Processor: s.processor(), Version: r.version, Group: r.group,
		ProgressEvery: r.progressEvery, Progress: bar.show}, log)
	bar.end()
	if err != nil {
		return stoppedCleanly(ctx, err, stdout)
	}
	fmt.Fprintf(stdout, "reprocessed %d raw records in %.1fs with group %s: %d accepted, %d rejected, %d repeats\n",
		res.Records, res.Took.Seconds(), res.Group, res.Accepted, res.Rejected, res.Duplicates)
	fmt.Fprintf(stdout, "outputs: %s, %s, %s, %s\n", res.Topics.AcceptedReadings, res.Topics.RejectedReadings, res.Topics.Alerts, res.Topics.Erasures)
	_, err = fmt.Fprintf(stdout, "cut over (docs/replay.md): keep this version's processor running (vitals processor --processor-group %s --kafka-output-version %s), "+
		"stop the live projectors, vitals replay rebuild --kafka-output-version %s, then start the projectors with --kafka-output-version %s\n",
		res.Group, r.version, r.version, r.version)
	return err
}

// progressOutput shows replay progress: a bar redrawn in place on a
// terminal, a structured log line per report otherwise.
type progressOutput struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	log      zerolog.Logger
	drawn    bool
}

func newProgressOutput(f *os.File, log zerolog.Logger) *progressOutput {
	st, err := f.Stat()
	return &progressOutput{w: f, terminal: err == nil && st.Mode()&os.ModeCharDevice != 0, log: log}
}

func (o *progressOutput) show(p replay.Progress) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.terminal {
		o.log.Info().Str("phase", p.Phase).Int64("done", p.Done).Int64("total", p.Total).Float64("records_per_sec", math.Round(p.Rate)).
			Dur("eta", p.ETA.Round(time.Second)).Msg("replay progress")
		return
	}
	fmt.Fprint(o.w, "\r"+progressBar(p, 30))
	o.drawn = true
}

// end finishes the bar's line.
func (o *progressOutput) end() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.drawn {
		fmt.Fprintln(o.w)
		o.drawn = false
	}
}

// progressBar renders p in one line: phase, bar of width cells, done and
// total, rate and ETA.
func progressBar(p replay.Progress, width int) string {
	frac := 1.0
	if p.Total > 0 {
		frac = math.Min(float64(p.Done)/float64(p.Total), 1)
	}
	full := int(frac * float64(width))
	eta := "--"
	if p.ETA > 0 {
		eta = p.ETA.Round(time.Second).String()
	} else if p.Done >= p.Total {
		eta = "0s"
	}
	return fmt.Sprintf("%-9s [%s%s] %5.1f%% %d/%d %.0f rec/s ETA %s ",
		p.Phase, strings.Repeat("#", full), strings.Repeat(".", width-full), 100*frac, p.Done, p.Total, p.Rate, eta)
}
