package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/scratch"
	"github.com/vitalshq/vitals/processor"
)

// benchProcSettings are bench processor's own flags.
type benchProcSettings struct {
	users, events, metrics        int
	keep, sealed                  bool
	timeout                       time.Duration
	cpuProfile, traceOut, jsonOut string
	heapProfile                   string
}

// benchProcessor measures the processor end to end on the local stack: it
// fills topics of its own with --bench-users users' pairing events and
// --bench-events heart-rate readings (produced directly, not through
// ingest), then runs one processor in this process with a fresh consumer
// group from the start of the log until the offsets stored in PostgreSQL
// reach the log ends, and reports events judged per second over that
// window, the PostgreSQL commit time per batch and the CPU used. The fill
// is not measured. Topics, the group's PostgreSQL rows and the Kafka group
// are deleted at the end unless --bench-keep.
func benchProcessor(ctx context.Context, args []string, stdout io.Writer) error {
	s, b, log, err := procFlags(args)
	if err != nil {
		return err
	}
	kcfg := s.Kafka()
	rep := benchProcReport{
		runInfo: thisRun(), Broker: s.KafkaBrokers, TopicPrefix: s.KafkaPrefix,
		Partitions: kcfg.Partitions, Group: s.ProcessorGroup, Users: b.users, Readings: b.events, Metrics: b.metrics, MaxBatch: s.ProcessorBatch,
		RequirePairing: s.ProcessorPairing, Sealed: b.sealed,
	}

	runCtx, cancelRun := context.WithTimeout(ctx, b.timeout)
	defer cancelRun()
	pool, err := postgres.Open(runCtx, s.PostgresURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	cleanup := func() {
		if b.keep {
			log.Info().Str("prefix", s.KafkaPrefix).Str("group", s.ProcessorGroup).Msg("kept the bench topics, state rows and group (--bench-keep)")
			return
		}
		groups := []string{s.ProcessorGroup}
		scratch.Resources{Kafka: kcfg, Topics: scratch.AllTopics(kcfg), Groups: groups, PostgresURL: s.PostgresURL, StateGroups: groups}.Remove(ctx, log)
	}

	if err := eventlog.EnsureTopics(runCtx, kcfg, log); err != nil {
		return err
	}
	defer cleanup()

	// Fill, unless the topics already hold exactly this run's input (a
	// --bench-keep run with the same prefix).
	prod, err := kgo.NewClient(append(kcfg.ClientOpts(log),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(100000),
		// No RecordDeliveryTimeout: franz-go measures it from the record's
		// timestamp, which the fill sets in the past as ingest's receive time.
	)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer prod.Close()
	adm := kadm.NewClient(prod)
	var keys []*userkeys.Key
	if b.sealed {
		if keys, err = benchUserKeys(runCtx, s, b.users, log); err != nil {
			return err
		}
	}
	ends, err := prepareProcTopics(runCtx, adm, prod, kcfg, s.KafkaPrefix, b, keys, &rep.Fill, log)
	if err != nil {
		return err
	}
	// Every accepted reading must reach the accepted topic too; on reused
	// topics it already holds earlier runs' outputs.
	acceptedEnd := func() (int64, error) {
		var n int64
		lo, err := adm.ListEndOffsets(runCtx, kcfg.Topics.AcceptedReadings)
		if err == nil {
			err = lo.Error()
		}
		lo.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n, err
	}
	accBefore, err := acceptedEnd()
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}

	res, err := runBenchProcessor(runCtx, s, b, pool, ends, log)
	rep.Result = res
	if err == nil {
		var accAfter int64
		if accAfter, err = acceptedEnd(); err == nil {
			rep.Result.AcceptedTopicRecords = accAfter - accBefore
		}
	}
	if b.cpuProfile != "" {
		rep.CPUProfile = b.cpuProfile
	}
	if b.traceOut != "" {
		rep.Trace = b.traceOut
	}
	if res.WindowSeconds > 0 {
		rep.print(stdout)
		if err := writeJSON(b.jsonOut, rep); err != nil {
			log.Warn().Err(err).Msg("write --bench-json")
		}
	}
	if err != nil {
		return err
	}
	return b.check(rep.Result)
}

// check compares what the processor did with what the fill produced.
func (b benchProcSettings) check(res benchProcResult) error {
	var problems []string
	if res.Accepted != int64(b.events) {
		problems = append(problems, fmt.Sprintf("accepted %d readings, want all %d produced (rejected %d, duplicates %d)", res.Accepted, b.events, res.Rejected, res.Duplicates))
	}
	if res.DeviceEvents != int64(b.users) {
		problems = append(problems, fmt.Sprintf("applied %d device events, want %d", res.DeviceEvents, b.users))
	}
	if res.AcceptedTopicRecords != int64(b.events) {
		problems = append(problems, fmt.Sprintf("the accepted topic holds %d records, want %d", res.AcceptedTopicRecords, b.events))
	}
	if len(problems) > 0 {
		return fmt.Errorf("FAILED: %s", strings.Join(problems, "; "))
	}
	return nil
}

// prepareProcTopics fills the topics, unless they already hold exactly
// this run's input (a --bench-keep run with the same prefix), and returns
// their log ends.
func prepareProcTopics(ctx context.Context, adm *kadm.Client, prod *kgo.Client, kcfg eventlog.Config, prefix string, b benchProcSettings, keys []*userkeys.Key, fill *benchFill, log zerolog.Logger) (benchLogEnds, error) {
	ends, err := benchEnds(ctx, adm, kcfg.Topics)
	if err != nil {
		return ends, err
	}
	switch {
	case ends.readings == 0 && ends.devices == 0 && ends.profiles == 0:
		f, err := fillProcessorTopics(ctx, prod, kcfg.Topics, b.users, b.events, b.metrics, keys, log)
		*fill = f
		if err != nil {
			return ends, err
		}
		if ends, err = benchEnds(ctx, adm, kcfg.Topics); err != nil {
			return ends, err
		}
		if ends.readings != int64(b.events) || ends.devices != int64(b.users) || ends.profiles != 0 {
			return ends, fmt.Errorf("after the fill the topics hold %d readings, %d device events and %d profile events; want %d, %d and 0",
				ends.readings, ends.devices, ends.profiles, b.events, b.users)
		}
	case ends.readings == int64(b.events) && ends.devices == int64(b.users) && ends.profiles == 0:
		log.Info().Str("prefix", prefix).Int64("readings", ends.readings).Int64("device_events", ends.devices).Msg("reusing the filled topics")
		fill.Reused = true
		// The output topics hold the earlier run's outputs, numbered as this
		// run numbers its own: the processor would take them for its own
		// and produce nothing (see the processor's seqHeader). Empty them.
		if err := emptyOutputTopics(ctx, adm, kcfg.Topics); err != nil {
			return ends, err
		}
	default:
		return ends, fmt.Errorf("topics %s.* already hold %d readings, %d device events and %d profile events, not this run's %d and %d: use a new --kafka-topic-prefix",
			prefix, ends.readings, ends.devices, ends.profiles, b.events, b.users)
	}
	return ends, nil
}

// procFlags parses bench processor's flags and makes the logger: topics
// of its own under a unique prefix, a fresh group every run and no metrics
// listener (the registry is read in-process), unless the flags or their
// environment variables say otherwise.
func procFlags(args []string) (*cmdline.Settings, benchProcSettings, zerolog.Logger, error) {
	fs, s := cmdline.NewFlags("vitals-lab bench processor")
	s.KafkaFlags(fs)
	s.PostgresFlags(fs)
	s.ProcessorFlags(fs)
	cmdline.SetDefault(fs, "kafka-topic-prefix", "bench-proc-"+time.Now().UTC().Format("20060102-150405"), false)
	cmdline.SetDefault(fs, "processor-metrics-addr", "", false)
	var b benchProcSettings
	fs.Int(&b.users, "bench-users", 100000, "distinct users; each gets one paired device (a device event) before its readings")
	fs.Int(&b.events, "bench-events", 2000000, "heart-rate readings, spread round robin over the users, 1 s apart per user")
	fs.Int(&b.metrics, "bench-metrics", 1, "metrics each user's readings take turns in (1-3: heart rate, SpO2, steps), like the simulator's users; 1 is heart rate only")
	fs.Bool(&b.sealed, "bench-sealed", true, "seal the filled records with their users' data keys, as ingest writes them (false: in clear, as releases before encryption wrote them)")
	fs.Bool(&b.keep, "bench-keep", false, "keep the topics, the group's PostgreSQL rows and the Kafka group (a later run with the same --kafka-topic-prefix reuses the filled topics)")
	fs.Duration(&b.timeout, "bench-timeout", 10*time.Minute, "bound on the whole run (fill and processing); clean-up comes after it")
	fs.String(&b.cpuProfile, "bench-cpuprofile", "", "write a CPU profile of this process over the processing window to this file")
	fs.String(&b.heapProfile, "bench-heapprofile", "", "write a heap profile (live objects after a collection, and allocations since start) to this file when the processing window ends, before the processor stops")
	fs.String(&b.traceOut, "bench-trace", "", "write a runtime execution trace of the processing window to this file (go tool trace -pprof=net|sync|syscall FILE: where the processor waits)")
	fs.String(&b.jsonOut, "bench-json", "", "also write the result as JSON to this file")
	nop := zerolog.Nop()
	if err := fs.Parse(args); err != nil {
		return nil, b, nop, err
	}
	if fs.NArg() > 0 {
		return nil, b, nop, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if b.users < 1 || b.events < 1 || s.ProcessorBatch < 1 || b.timeout <= 0 {
		return nil, b, nop, errors.New("--bench-users, --bench-events, --processor-batch and --bench-timeout must be positive")
	}
	if b.metrics < 1 || b.metrics > benchMetrics {
		return nil, b, nop, fmt.Errorf("--bench-metrics must be 1 to %d", benchMetrics)
	}
	if s.KafkaPrefix == scratch.RealPrefix {
		return nil, b, nop, errors.New("--kafka-topic-prefix vitals is the real event log; bench processor fills and deletes topics of its own")
	}
	groupSet := false
	fs.Visit(func(f *flag.Flag) { groupSet = groupSet || f.Name == "processor-group" })
	if _, ok := os.LookupEnv(fs.EnvName("processor-group")); !groupSet && !ok {
		// A fresh group every run: the processor starts with empty state at
		// the beginning of the log, even on reused topics.
		s.ProcessorGroup = s.KafkaPrefix + "." + scratch.RandomHex(4)
	}
	log, err := s.Logger()
	return s, b, log, err
}

// benchLogEnds are the summed log-end offsets of the processor's inputs.
type benchLogEnds struct{ readings, devices, profiles int64 }

func benchEnds(ctx context.Context, adm *kadm.Client, t eventlog.Topics) (benchLogEnds, error) {
	var e benchLogEnds
	lo, err := adm.ListEndOffsets(ctx, t.Readings, t.DeviceEvents, t.ProfileEvents)
	if err != nil {
		return e, fmt.Errorf("list end offsets: %w", err)
	}
	var oerr error
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			oerr = o.Err
		}
		switch o.Topic {
		case t.Readings:
			e.readings += o.Offset
		case t.DeviceEvents:
			e.devices += o.Offset
		case t.ProfileEvents:
			e.profiles += o.Offset
		}
	})
	if oerr != nil {
		return e, fmt.Errorf("list end offsets: %w", oerr)
	}
	return e, nil
}

// emptyOutputTopics deletes every record of the processor's output topics.
func emptyOutputTopics(ctx context.Context, adm *kadm.Client, t eventlog.Topics) error {
	ends, err := adm.ListEndOffsets(ctx, t.AcceptedReadings, t.RejectedReadings, t.Alerts, t.Erasures)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("output topics' ends: %w", err)
	}
	deleted, err := adm.DeleteRecords(ctx, ends.Offsets())
	if err == nil {
		err = deleted.Error()
	}
	if err != nil {
		return fmt.Errorf("empty the output topics of the reused bench topics: %w", err)
	}
	return nil
}

// benchProcResult is what the processing window measured.
type benchProcResult struct {
	// WindowSeconds runs from Run's start (the group join included) until
	// PostgreSQL held the log-end offsets of every input partition.
	WindowSeconds float64 `json:"window_seconds"`
	// FirstCommitSeconds is when the first batch committed, after Run's
	// start (group join, first fetch, first batch).
	FirstCommitSeconds float64 `json:"first_commit_seconds"`
	NewSeconds         float64 `json:"new_seconds"` // processor.New: connections, migration, topic check
	EventsPerSec       float64 `json:"events_per_sec"`
	// SteadyEventsPerSec counts from the first commit to the end.
	SteadyEventsPerSec float64 `json:"steady_events_per_sec"`
	Judged             int64   `json:"events_judged"`
	Accepted           int64   `json:"accepted"`
	Rejected           int64   `json:"rejected"`
	Duplicates         int64   `json:"duplicates"`
	DeviceEvents       int64   `json:"device_events_applied"`
	Alerts             int64   `json:"alerts"`
	Batches            int64   `json:"batches"`
	// AcceptedTopicRecords is how far the run moved the accepted topic's
	// log end.
	AcceptedTopicRecords int64       `json:"accepted_topic_records"`
	Commit               histSummary `json:"commit_seconds"`
	// CheckpointUsers is the aggregates written per checkpoint: its sum
	// over the events judged is how many snapshots an event cost, which
	// depends on the window's length (one checkpoint per interval), so it
	// is needed to compare the CPU per event of runs of different speed.
	CheckpointUsers histSummary    `json:"checkpoint_users"`
	BatchRecords    histSummary    `json:"batch_records"`
	Outcomes        map[string]int `json:"outcomes,omitempty"`
	CPU             loadgen.CPUUse `json:"cpu"`
	// CPUSeconds is this process's user+system time in the window.
	CPUSeconds float64 `json:"cpu_seconds"`
	// StateRows and StateBytes are the group's aggregate rows and their
	// stored size (pg_column_size of the snapshot) after the run.
	StateRows  int64 `json:"state_rows"`
	StateBytes int64 `json:"state_bytes"`
}

// runBenchProcessor runs one processor until the stored offsets reach the
// log ends and collects what it measured.
func runBenchProcessor(ctx context.Context, s *cmdline.Settings, b benchProcSettings, pool *pgxpool.Pool, ends benchLogEnds, log zerolog.Logger) (benchProcResult, error) {
	var res benchProcResult
	cfg := s.Processor()
	t0 := time.Now()
	p, err := processor.New(ctx, cfg, log)
	if err != nil {
		return res, err
	}
	res.NewSeconds = time.Since(t0).Seconds()
	defer p.Close()

	want := ends.readings + ends.devices + ends.profiles
	log.Info().Str("group", cfg.Group).Int("max_batch", cfg.MaxBatch).Int64("records", want).Msg("bench processor: processing")
	stopProfile, err := startCPUProfile(b.cpuProfile)
	if err != nil {
		return res, err
	}
	stopTrace, err := startProfile(b.traceOut, trace.Start, trace.Stop)
	if err != nil {
		stopProfile()
		return res, err
	}
	cpu0 := loadgen.SampleCPU()
	start := cpu0.At
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()

	judged := func() int64 { return judgedSoFar(p) }
	lastN, lastAt := int64(0), start
	stopProgress := loadgen.Periodically(5*time.Second, func() {
		n, now := judged(), time.Now()
		_, _, _, batches := p.Stats().Snapshot()
		log.Info().Int64("judged", n).Int64("of", want).Int64("batches", batches).
			Float64("events_per_sec", math.Round(float64(n-lastN)/now.Sub(lastAt).Seconds())).
			Float64("events_per_sec_so_far", math.Round(float64(n)/now.Sub(start).Seconds())).
			Dur("elapsed", now.Sub(start).Round(time.Millisecond)).Msg("bench processor: progress")
		lastN, lastAt = n, now
	})
	firstCommit, end, runErr := waitStored(ctx, p, pool, cfg, ends, done)
	switch {
	case errors.Is(runErr, errRunEnded):
		done = nil // Run has returned
	case runErr != nil:
		runErr = fmt.Errorf("bench processor: %d of %d records judged when --bench-timeout (%s) or a signal ended the run: %w", judged(), want, b.timeout, runErr)
	}
	cpu1 := loadgen.SampleCPU()
	stopTrace()
	stopProfile()
	if b.heapProfile != "" {
		// While the processor still holds every user's aggregate.
		runtime.GC()
		if err := writeHeapProfile(b.heapProfile); err != nil {
			log.Warn().Err(err).Msg("write --bench-heapprofile")
		}
	}
	stopProgress()
	stop()
	if done != nil {
		if err := <-done; err != nil {
			log.Warn().Err(err).Msg("processor run")
		}
	}
	if end.IsZero() {
		end = cpu1.At
	}

	// Run has returned (done was received), so its writes happened before
	// these reads.
	st := p.Stats()
	res.Accepted, res.Rejected, res.Duplicates, res.Batches = st.Snapshot()
	res.DeviceEvents, res.Alerts = st.Events, st.Alerts
	res.Judged = res.Accepted + res.Rejected + res.Duplicates + res.DeviceEvents
	res.WindowSeconds = end.Sub(start).Seconds()
	res.EventsPerSec = float64(res.Judged) / res.WindowSeconds
	if !firstCommit.IsZero() {
		res.FirstCommitSeconds = firstCommit.Sub(start).Seconds()
		if d := end.Sub(firstCommit).Seconds(); d > 0 {
			res.SteadyEventsPerSec = float64(res.Judged) / d
		}
	}
	res.CPU = cpu1.Since(cpu0)
	res.CPUSeconds = (cpu1.Process - cpu0.Process).Seconds()

	var text bytes.Buffer
	_, _ = p.Metrics().WriteTo(&text)
	res.Commit = parseHistogram(text.String(), "vitals_processor_commit_seconds")
	res.BatchRecords = parseHistogram(text.String(), "vitals_processor_batch_records")
	res.CheckpointUsers = parseHistogram(text.String(), "vitals_processor_checkpoint_users")
	res.Outcomes = parseCounter(text.String(), "vitals_processor_events_total")

	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pool.QueryRow(sctx, `SELECT count(*), coalesce(sum(pg_column_size(state)), 0) FROM processor_aggregates WHERE group_id = $1`,
		cfg.Group).Scan(&res.StateRows, &res.StateBytes); err != nil {
		log.Warn().Err(err).Msg("state size")
	}
	return res, runErr
}

// judgedSoFar counts the events the running processor has judged.
// Stats.Events has no accessor that locks; while Run runs, the applied
// device and profile events come from the metrics registry instead.
func judgedSoFar(p *processor.Processor) int64 {
	acc, rej, dup, _ := p.Stats().Snapshot()
	var text bytes.Buffer
	_, _ = p.Metrics().WriteTo(&text)
	var ev int64
	for k, n := range parseCounter(text.String(), "vitals_processor_events_total") {
		if strings.Contains(k, "outcome=applied") {
			ev += int64(n)
		}
	}
	return acc + rej + dup + ev
}

// errRunEnded is waitStored's error when the processor stopped first.
var errRunEnded = errors.New("the processor stopped before it reached the log ends")

// waitStored polls until the offsets the processor stored in PostgreSQL
// reach the log ends, and returns when its first batch committed and
// when it caught up. It fails when ctx ends (its error) or Run returns
// first (done).
func waitStored(ctx context.Context, p *processor.Processor, pool *pgxpool.Pool, cfg processor.Config, ends benchLogEnds, done <-chan error) (firstCommit, end time.Time, err error) {
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case err := <-done:
			return firstCommit, end, fmt.Errorf("%w: %v", errRunEnded, err)
		case <-ctx.Done():
			return firstCommit, end, ctx.Err()
		case <-poll.C:
		}
		if _, _, _, batches := p.Stats().Snapshot(); batches > 0 && firstCommit.IsZero() {
			firstCommit = time.Now()
		}
		stored, err := storedOffsets(ctx, pool, cfg.Group)
		if err != nil {
			continue // the deadline check above ends the loop
		}
		t := cfg.Kafka.Topics
		if stored[t.Readings] == ends.readings && stored[t.DeviceEvents] == ends.devices && stored[t.ProfileEvents] == ends.profiles {
			return firstCommit, time.Now(), nil
		}
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// storedOffsets sums the next offsets stored in PostgreSQL per topic.
func storedOffsets(ctx context.Context, pool *pgxpool.Pool, group string) (map[string]int64, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return warehouse.ScanMap[string, int64](pool.Query(qctx, `SELECT topic, sum(next_offset)::bigint FROM processor_offsets WHERE group_id = $1 GROUP BY topic`, group))
}

type benchProcReport struct {
	runInfo
	Broker         string          `json:"broker"`
	TopicPrefix    string          `json:"topic_prefix"`
	Partitions     int             `json:"partitions"`
	Group          string          `json:"group"`
	Users          int             `json:"users"`
	Readings       int             `json:"readings"`
	Metrics        int             `json:"metrics"`
	MaxBatch       int             `json:"max_batch"`
	RequirePairing bool            `json:"require_pairing"`
	Fill           benchFill       `json:"fill"`
	Sealed         bool            `json:"sealed"`
	Result         benchProcResult `json:"result"`
	CPUProfile     string          `json:"cpu_profile,omitempty"`
	Trace          string          `json:"trace,omitempty"`
}

func (r benchProcReport) print(w io.Writer) {
	res := r.Result
	m := r.Machine
	t := newTable(w, "Vitals processor benchmark", r.runInfo)
	row := t.row
	row("log", "broker %s, topics %s.* (%d partitions), group %s", r.Broker, r.TopicPrefix, r.Partitions, r.Group)
	what := "heart-rate readings"
	if r.Metrics > 1 {
		what = fmt.Sprintf("readings taking turns in %d metrics", r.Metrics)
	}
	row("input", "%d users (one pairing each), %d %s (%d per user, 1 Hz), require pairing %v", r.Users, r.Readings, what, r.Readings/max(r.Users, 1), r.RequirePairing)
	if r.Fill.Reused {
		row("fill", "reused the filled topics")
	} else {
		row("fill", "%.1fs, %.0f records/s, %.1f MB of values (not measured), %s", r.Fill.Seconds, r.Fill.RecordsPerSec, float64(r.Fill.Bytes)/1e6, sealedText(r.Sealed))
	}
	row("processor", "one instance in this process, --processor-batch %d; New took %.2fs (not counted)", r.MaxBatch, res.NewSeconds)
	row("", "")
	row("events/s", "%.0f  (%d events judged in %.2fs: from Run's start to the stored offsets reaching the log ends)", res.EventsPerSec, res.Judged, res.WindowSeconds)
	row("events/s after 1st commit", "%.0f  (first batch committed %.2fs after Run's start)", res.SteadyEventsPerSec, res.FirstCommitSeconds)
	row("accepted", "%d of %d readings (rejected %d, duplicates %d); device events applied %d; alerts %d", res.Accepted, r.Readings, res.Rejected, res.Duplicates, res.DeviceEvents, res.Alerts)
	row("accepted topic", "%d records", res.AcceptedTopicRecords)
	c, bs := res.Commit, res.BatchRecords
	// Bucket estimates: "~" interpolated within a bucket, ">" beyond the
	// last finite bound.
	est := func(v float64, o bool, scale float64, prec int) string {
		if o {
			return fmt.Sprintf(">%g", v*scale)
		}
		return fmt.Sprintf("~%.*f", prec, v*scale)
	}
	row("batches", "%d; records per batch mean %.0f, p50 %s, p99 %s (buckets)", res.Batches, bs.Mean, est(bs.P50, bs.P50Over, 1, 0), est(bs.P99, bs.P99Over, 1, 0))
	row("PostgreSQL commit ms/batch", "mean %.1f, p50 %s, p99 %s (buckets); %.1fs in all = %.0f%% of the window", c.Mean*1000, est(c.P50, c.P50Over, 1000, 1), est(c.P99, c.P99Over, 1000, 1), c.Sum, 100*c.Sum/res.WindowSeconds)
	if cu := res.CheckpointUsers; cu.Count > 0 {
		row("checkpoints", "%d, %.0f aggregates written (%.2f per event judged)", cu.Count, cu.Sum, cu.Sum/float64(max(res.Judged, 1)))
	}
	if res.StateRows > 0 {
		row("state", "%d aggregate rows, %.1f MB stored (%.0f B/user)", res.StateRows, float64(res.StateBytes)/1e6, float64(res.StateBytes)/float64(res.StateRows))
	}
	row("cpu", "%.1fs this process (%.2f CPUs, %.1f µs/event), %.2f CPUs whole machine (of %d, broker and PostgreSQL included)",
		res.CPUSeconds, res.CPU.Process, res.CPUSeconds/float64(max(res.Judged, 1))*1e6, res.CPU.Machine, m.NumCPU)
	for _, k := range slices.Sorted(maps.Keys(res.Outcomes)) {
		row("outcome", "%s: %d", k, res.Outcomes[k])
	}
	if r.CPUProfile != "" {
		row("cpu profile", "%s (go tool pprof -top %s)", r.CPUProfile, r.CPUProfile)
	}
	if r.Trace != "" {
		row("trace", "%s (go tool trace -pprof=net %s > net.pprof)", r.Trace, r.Trace)
	}
	t.flush()
}
