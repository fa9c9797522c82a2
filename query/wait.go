package query

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/vitalshq/vitals/internal/consistency"
)

// Read-your-writes. A consistency token names the raw-topic positions a
// write reached. The pipeline has stored the write when
//
//  1. the processor's checkpoint (processor_offsets in PostgreSQL, the
//     source of truth for its position) is past every named position, and
//  2. the projector's group has committed, on the accepted-readings topic,
//     the end offsets that topic had once (1) held: the processor produces
//     and awaits its outputs before the checkpoint that covers them, and
//     the projector commits only after ClickHouse accepted the rows.
//
// Waiting is bounded; past the bound the answer is given anyway, marked
// stale. Other writers' records between the token and the end offsets are
// waited for too, which can only make the wait longer, never wrong.
//
// However many requests wait, one watcher reads the positions: every
// pollInterval while anyone waits, and not at all otherwise. Each poll reads
// (1) before (2), so a poll in which the processor is past a token also
// holds end offsets read after that moment, which is all (2) needs.

// pollInterval is how often positions are read while anyone waits.
const pollInterval = 50 * time.Millisecond

// positions is one poll's reading of the pipeline.
type positions struct {
	// processorNext is the processor's stored next offset per raw topic
	// and partition.
	processorNext map[string]map[int32]int64
	// acceptedEnds are the accepted-readings topic's end offsets, read
	// after processorNext; projectorAt is the projector group's committed
	// offsets there, read after acceptedEnds.
	acceptedEnds, projectorAt map[int32]int64
	err                       error
}

// positionSource reads the pipeline's positions (PostgreSQL and Kafka in
// the service; a fake in tests).
type positionSource interface {
	processorNext(ctx context.Context) (map[string]map[int32]int64, error)
	acceptedEnds(ctx context.Context) (map[int32]int64, error)
	projectorCommitted(ctx context.Context) (map[int32]int64, error)
}

// watcher polls a positionSource while anyone waits and hands every poll
// to all of them.
type watcher struct {
	src      positionSource
	interval time.Duration

	mu      sync.Mutex
	waiters int
	latest  *positions    // nil until the first poll of the current wait
	changed chan struct{} // closed and replaced by every poll
	wake    chan struct{} // nudges an idle poller
	polls   int           // for tests: polls made
}

func newWatcher(src positionSource, interval time.Duration) *watcher {
	return &watcher{src: src, interval: interval, changed: make(chan struct{}), wake: make(chan struct{}, 1)}
}

// run polls while anyone waits, until ctx ends.
func (w *watcher) run(ctx context.Context) {
	for {
		w.mu.Lock()
		idle := w.waiters == 0
		if idle {
			w.latest = nil // a later wait must not see an old poll
		}
		w.mu.Unlock()
		if idle {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				continue
			}
		}
		p := w.poll(ctx)
		w.mu.Lock()
		w.latest = &p
		w.polls++
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.interval):
		}
	}
}

func (w *watcher) poll(ctx context.Context) positions {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var p positions
	if p.processorNext, p.err = w.src.processorNext(ctx); p.err != nil {
		return p
	}
	if p.acceptedEnds, p.err = w.src.acceptedEnds(ctx); p.err != nil {
		return p
	}
	p.projectorAt, p.err = w.src.projectorCommitted(ctx)
	return p
}

// await waits until done holds for a poll, or ctx ends; it returns the
// last poll's error if it never held. Any poll may be used, even one taken
// before the wait began: each reads the processor first, so one that saw
// the processor past a write saw everything after it in order, and one
// taken before the write cannot see the processor past it.
func (w *watcher) await(ctx context.Context, done func(*positions) bool) error {
	w.mu.Lock()
	w.waiters++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	defer func() {
		w.mu.Lock()
		w.waiters--
		w.mu.Unlock()
	}()
	var lastErr error
	for {
		w.mu.Lock()
		ch, p := w.changed, w.latest
		w.mu.Unlock()
		if p != nil {
			if p.err != nil {
				lastErr = p.err
			} else if done(p) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return lastErr
			}
			return ctx.Err()
		case <-ch:
		}
	}
}

// checkToken refuses tokens that name topics this deployment's processor
// does not read (another deployment's, or a forged one).
func (s *Service) checkToken(tok consistency.Token) error {
	t := s.cfg.Kafka.Topics
	for topic := range tok {
		if topic != t.Readings && topic != t.DeviceEvents && topic != t.ProfileEvents {
			return badParam("consistency", "the token names positions of another deployment")
		}
	}
	return nil
}

// caughtUp waits until the pipeline stored everything up to tok, for at
// most wait, and reports whether the answer will be stale. A store that
// does not answer makes the answer stale, not failed: the data already
// queryable is still worth returning.
func (s *Service) caughtUp(ctx context.Context, tok consistency.Token, wait time.Duration) (stale bool) {
	if tok == nil {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var ends map[int32]int64 // the accepted topic's ends once the processor was past tok
	err := s.positions.await(wctx, func(p *positions) bool {
		if ends == nil {
			if !processorPast(p.processorNext, tok) {
				return false
			}
			ends = p.acceptedEnds
		}
		return projectorAt(p.projectorAt, ends)
	})
	if err != nil {
		s.log.Debug().Err(err).Bool("processor_past", ends != nil).Msg("read-your-writes: not stored in time")
		return true
	}
	return false
}

// processorPast reports whether the processor's stored next offset is
// beyond every position of tok.
func processorPast(next map[string]map[int32]int64, tok consistency.Token) bool {
	for topic, ps := range tok {
		for p, o := range ps {
			if next[topic][p] <= o {
				return false
			}
		}
	}
	return true
}

// projectorAt reports whether the projector committed every end offset.
func projectorAt(committed, ends map[int32]int64) bool {
	for p, end := range ends {
		if end > 0 && committed[p] < end { // an empty partition has nothing to store
			return false
		}
	}
	return true
}

// pipelinePositions is the service's positionSource: the processor's
// offsets in PostgreSQL, the accepted topic and projector group in Kafka.
type pipelinePositions struct{ s *Service }

func (pp pipelinePositions) processorNext(ctx context.Context) (map[string]map[int32]int64, error) {
	t := pp.s.cfg.Kafka.Topics
	rows, err := pp.s.pool.Query(ctx, `SELECT topic, partition, next_offset FROM processor_offsets
		WHERE group_id = $1 AND topic = ANY($2)`, pp.s.cfg.ProcessorGroup, []string{t.Readings, t.DeviceEvents, t.ProfileEvents})
	if err != nil {
		return nil, fmt.Errorf("processor offsets: %w", err)
	}
	defer rows.Close()
	next := map[string]map[int32]int64{}
	for rows.Next() {
		var topic string
		var p int32
		var o int64
		if err := rows.Scan(&topic, &p, &o); err != nil {
			return nil, fmt.Errorf("processor offsets: %w", err)
		}
		if next[topic] == nil {
			next[topic] = map[int32]int64{}
		}
		next[topic][p] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("processor offsets: %w", err)
	}
	return next, nil
}

func (pp pipelinePositions) acceptedEnds(ctx context.Context) (map[int32]int64, error) {
	topic := pp.s.cfg.Kafka.Topics.AcceptedReadings
	ends, err := pp.s.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("accepted topic end offsets: %w", err)
	}
	out := map[int32]int64{}
	ends.Each(func(lo kadm.ListedOffset) { out[lo.Partition] = lo.Offset })
	return out, nil
}

func (pp pipelinePositions) projectorCommitted(ctx context.Context) (map[int32]int64, error) {
	topic := pp.s.cfg.Kafka.Topics.AcceptedReadings
	committed, err := pp.s.adm.FetchOffsets(ctx, pp.s.cfg.ProjectorGroup)
	if err != nil {
		return nil, fmt.Errorf("projector offsets: %w", err)
	}
	out := map[int32]int64{}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}
