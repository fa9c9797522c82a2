package userkeys

import (
	"context"
	"encoding/hex"
	"time"
)

// listen drops every key shredded by any process from this process's
// cache, on PostgreSQL's notification. While it is not listening (the
// connection was lost) it may have missed some, so it empties the cache
// then, and again once it listens: every key is then read again from the
// store, where a shredded key has no material.
func (s *Store) listen(ctx context.Context) {
	defer close(s.done)
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		s.cache.reset()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn().Err(err).Dur("retry_in", listenRetry).Msg("not listening for shredded keys; the key cache was emptied")
		select {
		case <-ctx.Done():
			return
		case <-time.After(listenRetry):
		}
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	pc := conn.Hijack() // a listening connection must not go back to the pool
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	// Keys cached before LISTEN took effect may have been shredded since.
	s.cache.reset()
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var id ID
		if b, err := hex.DecodeString(n.Payload); err == nil && len(b) == IDLen {
			copy(id[:], b)
			s.cache.shred(id)
		}
	}
}
