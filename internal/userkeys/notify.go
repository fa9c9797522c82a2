package userkeys

import (
	"context"
	"encoding/hex"
	"time"
)

// listen marks every key shredded by any process shredded in this
// process's cache, on PostgreSQL's notification; holders of the key see it
// too. While it is not listening (the connection was lost) it may miss
// some, so each time it listens again it asks the store which of the
// cached keys were shredded meanwhile.
func (s *Store) listen(ctx context.Context) {
	defer close(s.done)
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn().Err(err).Dur("retry_in", listenRetry).Msg("not listening for shredded keys; the cached keys are checked against the store once listening again")
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
	ids := s.cache.idList()
	rows, err := pc.Query(ctx, `SELECT key_id FROM user_data_keys WHERE key_id = ANY($1) AND wrapped IS NULL`, ids)
	if err != nil {
		return err
	}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return err
		}
		var id ID
		copy(id[:], b)
		s.cache.shred(id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	s.listening.Store(true)
	defer s.listening.Store(false)
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
