package query

import (
	"context"
	"fmt"
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

// pollInterval is how often positions are read while waiting.
const pollInterval = 50 * time.Millisecond

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
	if err := s.until(wctx, func(ctx context.Context) (bool, error) { return s.processorPast(ctx, tok) }); err != nil {
		s.log.Debug().Err(err).Msg("read-your-writes: processor not past the token in time")
		return true
	}
	ends, err := s.adm.ListEndOffsets(wctx, s.cfg.Kafka.Topics.AcceptedReadings)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("read-your-writes: accepted topic end offsets")
		return true
	}
	err = s.until(wctx, func(ctx context.Context) (bool, error) {
		committed, err := s.adm.FetchOffsets(ctx, s.cfg.ProjectorGroup)
		if err != nil {
			return false, fmt.Errorf("projector offsets: %w", err)
		}
		done := true
		ends.Each(func(lo kadm.ListedOffset) {
			if lo.Offset <= 0 {
				return // empty partition: nothing to store
			}
			c, ok := committed.Lookup(lo.Topic, lo.Partition)
			if !ok || c.Err != nil || c.At < lo.Offset {
				done = false
			}
		})
		return done, nil
	})
	if err != nil {
		s.log.Debug().Err(err).Msg("read-your-writes: projector not at the accepted topic's end in time")
		return true
	}
	return false
}

// processorPast reports whether the processor's stored next offset is
// beyond every position of tok.
func (s *Service) processorPast(ctx context.Context, tok consistency.Token) (bool, error) {
	for topic, ps := range tok {
		rows, err := s.pool.Query(ctx, `SELECT partition, next_offset FROM processor_offsets WHERE group_id = $1 AND topic = $2`,
			s.cfg.ProcessorGroup, topic)
		if err != nil {
			return false, fmt.Errorf("processor offsets: %w", err)
		}
		next := map[int32]int64{}
		for rows.Next() {
			var p int32
			var o int64
			if err := rows.Scan(&p, &o); err != nil {
				rows.Close()
				return false, fmt.Errorf("processor offsets: %w", err)
			}
			next[p] = o
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("processor offsets: %w", err)
		}
		for p, o := range ps {
			if next[p] <= o {
				return false, nil
			}
		}
	}
	return true, nil
}

// until polls cond until it holds, fails, or ctx ends.
func (s *Service) until(ctx context.Context, cond func(context.Context) (bool, error)) error {
	for {
		ok, err := cond(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}
