package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/processor"
)

// ReprocessConfig configures Reprocess.
type ReprocessConfig struct {
	// Processor is the template of the reprocessing processor: Kafka (its
	// raw topics), PostgreSQL, Rules and batching. Its Group and output
	// topics are replaced.
	Processor processor.Config
	// Version names the new outputs, e.g. "v2": vitals.readings.accepted.v2.
	Version string
	// Group is the consumer group (and so the key of the state in
	// PostgreSQL); empty means "<Processor.Group>-<Version>". A new group
	// starts from the beginning of the raw topics with empty state; the
	// same group resumes.
	Group string
	// ProgressEvery and Progress report progress.
	ProgressEvery time.Duration
	Progress      func(Progress)
}

// ReprocessResult is what Reprocess did.
type ReprocessResult struct {
	Group  string
	Topics eventlog.Topics
	// Records is the raw records processed by this run; Took how long.
	Records int64
	Took    time.Duration
	// Accepted, Rejected and Duplicates count this run's readings.
	Accepted, Rejected, Duplicates int64
	// Shredded counts the records skipped because their user's data key
	// was shredded (the user was erased): nothing of them is re-emitted.
	Shredded int64
}

// Reprocess runs the processor over the raw topics into the output topics
// of cfg.Version until it has processed every record that was in the raw
// topics when it started, then stops it (state and positions committed).
// The projector is cut over separately (see docs/replay.md): the old
// outputs stay until deleted on purpose.
func Reprocess(ctx context.Context, cfg ReprocessConfig, log zerolog.Logger) (*ReprocessResult, error) {
	log = log.With().Str("role", "replay").Logger()
	pcfg := cfg.Processor
	topics, err := pcfg.Kafka.Topics.WithOutputVersion(cfg.Version)
	if err != nil {
		return nil, fmt.Errorf("reprocess: %w", err)
	}
	if topics.AcceptedReadings == pcfg.Kafka.Topics.AcceptedReadings && cfg.Group == "" {
		return nil, fmt.Errorf("reprocess: version %s is the outputs the live processor writes; choose a new one", cfg.Version)
	}
	pcfg.Kafka.Topics = topics
	pcfg.Group = cfg.Group
	if pcfg.Group == "" {
		pcfg.Group = cfg.Processor.Group + "-" + cfg.Version
	}
	pcfg.InstanceID, pcfg.MetricsAddr = "", ""
	res := &ReprocessResult{Group: pcfg.Group, Topics: topics}
	raw := []string{topics.Readings, topics.DeviceEvents, topics.ProfileEvents}

	cl, err := kgo.NewClient(pcfg.Kafka.ClientOpts(log)...)
	if err != nil {
		return nil, fmt.Errorf("reprocess: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// before: records a previous run of the group already processed.
	var start positions
	var before int64
	err = func() error {
		actx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		var err error
		if start, err = startOffsets(actx, adm, time.Time{}, raw...); err != nil {
			return err
		}
		ends, err := endOffsets(actx, adm, raw...)
		if err != nil {
			return err
		}
		at, err := committedOffsets(actx, adm, pcfg.Group, raw...)
		before = at.done(start, ends)
		return err
	}()
	if err != nil {
		return nil, err
	}
	log.Info().Str("group", pcfg.Group).Str("accepted_topic", topics.AcceptedReadings).Msg("reprocessing the raw topics with fresh state")
	p, err := processor.New(ctx, pcfg, log)
	if err != nil {
		return nil, err
	}
	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- p.Run(pctx)
		p.Close()
	}()
	began := time.Now()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var ends positions
	werr := func() error {
		actx, cancel := context.WithTimeout(wctx, opTimeout)
		defer cancel()
		if ends, err = endOffsets(actx, adm, raw...); err != nil {
			return err
		}
		t := newTracker("reprocess", start, ends)
		poll := func(ctx context.Context) (positions, error) {
			select {
			case err := <-done:
				done <- err
				return nil, fmt.Errorf("processor stopped: %w", err)
			default:
			}
			return committedOffsets(ctx, adm, pcfg.Group, raw...)
		}
		return watch(wctx, cfg.ProgressEvery, cfg.Progress, t, poll, func(p positions) bool { return p.reached(ends) })
	}()
	stop()
	perr := <-done
	res.Took = time.Since(began)
	res.Accepted, res.Rejected, res.Duplicates, _ = p.Stats().Snapshot()
	res.Shredded = p.Stats().ShreddedCount()
	res.Records = start.span(ends) - before
	if werr != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("reprocess stopped (a rerun resumes with group %s): %w", pcfg.Group, ctx.Err())
		}
		return res, werr
	}
	if perr != nil {
		return res, fmt.Errorf("reprocess: processor: %w", perr)
	}
	log.Info().Int64("records", res.Records).Dur("took", res.Took).Msg("reprocessed up to the end offsets taken at the start")
	return res, nil
}
