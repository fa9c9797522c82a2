package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Run consumes until ctx ends. A batch already produced when ctx ends is
// still committed, within ShutdownGrace, before Run returns.
func (p *Processor) Run(ctx context.Context) error {
	p.log.Info().Str("group", p.cfg.Group).Msg("processing")
	if err := p.serveMetrics(ctx); err != nil {
		return err
	}
	blocked := false
	p.checkpoint = time.Now()
	for {
		fetches := p.poll(ctx, blocked)
		if ctx.Err() != nil {
			err := p.finalCheckpoint(ctx)
			p.cl.AllowRebalance()
			return err
		}
		if err := p.fetchError(fetches); err != nil {
			return err
		}
		batch := p.take(ctx, fetches)
		// While records wait in the merge, polls must time out so the log
		// ends are looked at again: an empty topic never wakes a poll.
		blocked = p.buffered() > 0
		if len(batch) > 0 {
			if err := p.handle(ctx, batch); err != nil {
				return p.abandon(ctx, err, "stopped before the step finished; it will be processed again")
			}
		}
		if err := p.checkpointIfDue(ctx); err != nil {
			return p.abandon(ctx, err, "")
		}
		p.cl.AllowRebalance()
	}
}

// serveMetrics serves /metrics at MetricsAddr, if set, until ctx ends.
func (p *Processor) serveMetrics(ctx context.Context) error {
	if p.cfg.MetricsAddr == "" {
		return nil
	}
	if err := p.reg.ServeMetrics(ctx, p.log, p.cfg.MetricsAddr); err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	return nil
}

// poll returns the next records. It waits until the next checkpoint is due
// at the most, and a quarter of a second if records are blocked in the
// merge (to look at the log ends again).
func (p *Processor) poll(ctx context.Context, blocked bool) kgo.Fetches {
	pctx, cancel := ctx, context.CancelFunc(func() {})
	switch {
	case blocked: // wake up to look at the log ends again
		pctx, cancel = context.WithTimeout(ctx, 250*time.Millisecond)
	case p.pending():
		pctx, cancel = context.WithDeadline(ctx, p.checkpoint.Add(p.cfg.CheckpointInterval))
	}
	defer cancel()
	return p.cl.PollRecords(pctx, p.cfg.MaxBatch)
}

// fetchError logs the fetch errors and returns the one that ends the
// processor (a closed client); the client retries the others itself.
func (p *Processor) fetchError(fetches kgo.Fetches) error {
	var fatal error
	fetches.EachError(func(t string, part int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		p.log.Warn().Err(err).Str("topic", t).Int32("partition", part).Msg("fetch error")
		if errors.Is(err, kgo.ErrClientClosed) {
			fatal = err
		}
	})
	return fatal
}

// abandon ends Run after a step or a checkpoint failed with err: what was
// not checkpointed is dropped, to be processed again by whoever owns the
// partitions next. A stop (ctx ended) is not an error unless this instance
// was fenced; msg, if set, is logged then.
func (p *Processor) abandon(ctx context.Context, err error, msg string) error {
	p.dropUncommitted()
	p.cl.AllowRebalance()
	if ctx.Err() != nil && !errors.Is(err, errFenced) {
		if msg != "" {
			p.log.Warn().Err(err).Msg(msg)
		}
		return nil
	}
	return err
}

// dropUncommitted forgets every aggregate and position not yet
// checkpointed, after a step failed half way: what was applied but not
// produced must never be committed.
func (p *Processor) dropUncommitted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users.forgetAll()
	clear(p.processed)
}

// pending reports whether anything was processed since the last checkpoint.
func (p *Processor) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.processed) > 0
}

// finalCheckpoint commits what was processed before a graceful stop,
// within ShutdownGrace.
func (p *Processor) finalCheckpoint(ctx context.Context) error {
	if !p.pending() {
		return nil
	}
	cctx, cancel := afterGrace(ctx, p.cfg.ShutdownGrace)
	defer cancel()
	err := p.commitCheckpoint(cctx)
	if err != nil && !errors.Is(err, errFenced) {
		p.log.Warn().Err(err).Msg("stopped without a final checkpoint; the next start re-processes from the previous one")
		return nil
	}
	return err
}

// retry runs op until it succeeds, ctx ends, or it fails with errFenced,
// waiting with capped exponential backoff between attempts. Each attempt
// gets OpTimeout.
func (p *Processor) retry(ctx context.Context, what string, op func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.cfg.OpTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				p.log.Info().Str("op", what).Int("attempts", attempt).Msg("recovered")
			}
			return nil
		}
		if errors.Is(err, errFenced) {
			return fmt.Errorf("processor: %s: %w", what, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("processor: %s: %w", what, ctx.Err())
		}
		p.log.Warn().Err(err).Str("op", what).Int("attempt", attempt).Dur("backoff", backoff).Msg("retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("processor: %s: %w", what, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
}

// afterGrace returns a context that is not canceled with ctx but grace
// after it.
func afterGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(c, func() { t.Stop() })
	})
	return c, func() { stop(); cancel() }
}
