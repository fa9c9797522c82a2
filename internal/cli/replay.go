package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/replay"
)

// replaySettings are vitals replay's own flags.
type replaySettings struct {
	cmdline.ReplayTuning
	tables, from, group, version string
	dryRun, noVerify, noSwap     bool
	pauseTimeout                 time.Duration
}

// cmdReplay is `vitals replay rebuild|rollback|reprocess`.
func cmdReplay(ctx context.Context, args []string, stdout io.Writer) error {
	usage := errors.New("usage: vitals replay rebuild|rollback|reprocess|encrypt [flags] (vitals replay rebuild -h lists them)")
	if len(args) == 0 {
		return usage
	}
	switch args[0] {
	case "rebuild", "rollback":
		return replayTables(ctx, args[0], args[1:], stdout)
	case "reprocess":
		return replayReprocess(ctx, args[1:], stdout)
	case "encrypt":
		return replayEncrypt(ctx, args[1:], stdout)
	}
	return usage
}

// replayEncrypt copies raw topics written in clear by earlier releases
// into a new version of them, sealed (docs/privacy.md).
func replayEncrypt(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s, r := replayFlags("encrypt")
	fs.String(&r.version, "version", "", "version of the sealed raw topics, e.g. v2 (required)")
	log, bar, err := r.start(fs, s, args, "usage: vitals replay encrypt --version v2 [flags]")
	if err != nil {
		return err
	}
	res, err := replay.Encrypt(ctx, replay.EncryptConfig{Kafka: s.Kafka(), Version: r.version, PostgresURL: s.PostgresURL,
		UserKeys: s.UserKeys(), ProgressEvery: r.ProgressEvery, Progress: bar.Show}, log)
	bar.End()
	if err != nil {
		return stoppedCleanly(ctx, err, stdout)
	}
	fmt.Fprintf(stdout, "sealed %d records into %s, %s, %s, %s in %.1fs; %d copied as they were (sealed already, or no user's), %d of erased users left out\n",
		res.Sealed, res.Topics.Readings, res.Topics.DeviceEvents, res.Topics.ProfileEvents, res.Topics.DeadLetters, res.Took.Seconds(), res.Copied, res.Shredded)
	_, err = fmt.Fprintf(stdout, "next (docs/privacy.md): stop ingest, run vitals replay encrypt again for what came meanwhile, start ingest with --kafka-raw-version %s; "+
		"vitals replay reprocess --kafka-raw-version %s --version <new output version>, cut the projectors over, then delete the old topics\n", r.version, r.version)
	return err
}

func replayTables(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	fs, s, r := replayFlags(sub)
	s.ClickHouseFlags(fs)
	s.ProjectorFlags(fs)
	r.RebuildFlags(fs)
	fs.String(&r.tables, "tables", "all", "tables to "+sub+", comma-separated: "+strings.Join(replay.Rebuildable, ",")+" or all")
	if sub == "rebuild" {
		fs.String(&r.from, "from-timestamp", "", "rebuild from this record time (RFC 3339) on; rows of earlier records are copied from the live tables (default: from the start of each topic)")
		fs.Bool(&r.dryRun, "dry-run", false, "print what would happen (tables, topics, offsets, rows) and change nothing")
		fs.Bool(&r.noVerify, "no-verify", false, "skip comparing the shadow with the log before the swap")
		fs.Bool(&r.noSwap, "no-swap", false, "stop once the shadow has caught up (and is verified), without swapping")
		fs.String(&r.group, "replay-group", "", "consumer group of the shadow projector (default <projector-group>-replay-<database>)")
	}
	fs.Duration(&r.pauseTimeout, "replay-pause-timeout", replay.DefaultConfig().PauseTimeout, "longest the live projectors are paused for the swap; they resume by themselves after it")
	log, bar, err := r.start(fs, s, args, "")
	if err != nil {
		return err
	}
	cfg := replay.DefaultConfig()
	cfg.Kafka, cfg.Warehouse, cfg.Projector, cfg.LiveGroup = s.Kafka(), s.Warehouse(), s.Projector(), s.ProjectorGroup
	cfg.Group, cfg.PauseTimeout, cfg.ProgressEvery = r.group, r.pauseTimeout, r.ProgressEvery
	cfg.Verify, cfg.Swap = !r.noVerify, !r.noSwap
	cfg.Projector.MaxRows, cfg.Instances = r.BatchRows, r.Instances
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
	cfg.Progress = bar.Show
	res, err := replay.Rebuild(ctx, cfg, log)
	bar.End()
	if res != nil {
		printRebuild(stdout, res)
	}
	return stoppedCleanly(ctx, err, stdout)
}

// replayFlags is the flag set of vitals replay sub with the flags every
// subcommand has: Kafka's, PostgreSQL's and the replay tuning's.
func replayFlags(sub string) (*envflag.Set, *cmdline.Settings, *replaySettings) {
	fs, s := cmdline.NewFlags("vitals replay " + sub)
	s.KafkaFlags(fs)
	s.PostgresFlags(fs)
	r := &replaySettings{}
	r.Flags(fs)
	return fs, s, r
}

// start parses and checks args, makes the logger and the progress
// display, and applies the tuning. A subcommand that needs --version
// passes its usage, the error without it or with arguments; the others
// take no arguments either.
func (r *replaySettings) start(fs *envflag.Set, s *cmdline.Settings, args []string, usage string) (zerolog.Logger, *cmdline.Progress, error) {
	nop := zerolog.Nop()
	if err := fs.Parse(args); err != nil {
		return nop, nil, err
	}
	if err := s.CheckKafka(); err != nil {
		return nop, nil, err
	}
	if usage != "" && (r.version == "" || fs.NArg() > 0) {
		return nop, nil, errors.New(usage)
	}
	if fs.NArg() > 0 {
		return nop, nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log, err := s.Logger()
	if err != nil {
		return log, nil, err
	}
	r.Apply()
	return log, cmdline.NewProgress(os.Stderr, log), nil
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
	fs, s, r := replayFlags("reprocess")
	s.ProcessorFlags(fs)
	fs.String(&r.version, "version", "", "version of the new output topics, e.g. v2 (required)")
	fs.String(&r.group, "replay-group", "", "consumer group and state key of the reprocess (default <processor-group>-<version>)")
	log, bar, err := r.start(fs, s, args, "usage: vitals replay reprocess --version v2 [flags]")
	if err != nil {
		return err
	}
	res, err := replay.Reprocess(ctx, replay.ReprocessConfig{Processor: s.Processor(), Version: r.version, Group: r.group,
		ProgressEvery: r.ProgressEvery, Progress: bar.Show}, log)
	bar.End()
	if err != nil {
		return stoppedCleanly(ctx, err, stdout)
	}
	fmt.Fprintf(stdout, "reprocessed %d raw records in %.1fs with group %s: %d accepted, %d rejected, %d repeats, %d shredded (erased users, skipped)\n",
		res.Records, res.Took.Seconds(), res.Group, res.Accepted, res.Rejected, res.Duplicates, res.Shredded)
	fmt.Fprintf(stdout, "outputs: %s, %s, %s, %s\n", res.Topics.AcceptedReadings, res.Topics.RejectedReadings, res.Topics.Alerts, res.Topics.Erasures)
	_, err = fmt.Fprintf(stdout, "cut over (docs/replay.md): keep this version's processor running (vitals processor --processor-group %s --kafka-output-version %s), "+
		"stop the live projectors, vitals replay rebuild --kafka-output-version %s, then start the projectors with --kafka-output-version %s\n",
		res.Group, r.version, r.version, r.version)
	return err
}
