package projector

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// resumeOffsets is franz-go's AdjustFetchOffsetsFn: for newly assigned
// partitions of topics whose table stores positions, it starts after the
// highest offset stored in ClickHouse when that is later than the Kafka
// committed offset (a crash between an insert and its commit). While
// ClickHouse is unreachable it retries with backoff: fetching from a
// guessed position could insert a record twice. ctx ends when the group
// session is revoked, and the next assignment tries again.
func (p *Projector) resumeOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	backoff := p.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := p.adjust(ctx, offsets)
		if err == nil {
			return offsets, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("projector: resume positions: %w", err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		p.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", wait).Msg("cannot read resume positions from clickhouse; retrying before fetching")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("projector: resume positions: %w", ctx.Err())
		case <-time.After(wait):
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
}

// adjust moves each newly assigned partition's start past the rows its
// table already stores (see adjustOne, adjustTwoTables, adjustSharded).
func (p *Projector) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) error {
	qctx, cancel := context.WithTimeout(ctx, p.cfg.InsertTimeout)
	defer cancel()
	for topic, parts := range offsets {
		s, ok := p.sinks[topic]
		if !ok || !s.resume || len(parts) == 0 {
			continue
		}
		ids := slices.Collect(maps.Keys(parts))
		var err error
		switch {
		case p.shards != nil:
			err = p.adjustSharded(qctx, s, parts, ids)
		case s.revisions != nil:
			err = p.adjustTwoTables(qctx, s, parts, ids)
		default:
			err = p.adjustOne(qctx, s, parts, ids)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// adjustOne starts each partition of a topic stored in one table after
// the highest offset the table holds, if that is past the committed one.
func (p *Projector) adjustOne(ctx context.Context, s *sink, parts map[int32]kgo.Offset, ids []int32) error {
	stored, err := p.storedMax(ctx, s.table, ids)
	if err != nil {
		return err
	}
	for part, o := range parts {
		m, ok := stored[part]
		if !ok {
			continue
		}
		if next := resumeAt(o.EpochOffset().Offset, m); next >= 0 {
			p.log.Info().Str("topic", s.topic).Int32("partition", part).Int64("committed", o.EpochOffset().Offset).Int64("resume_at", next).
				Msg("resuming after the rows stored in clickhouse, past the committed offset")
			parts[part] = kgo.NewOffset().At(next)
		}
	}
	return nil
}

// adjustTwoTables resumes the partitions of a topic whose records go to
// two tables (accepted readings: readings, and revisions). A batch's two
// inserts are not one, so after a crash between them one table can hold
// later offsets than the other: starting after the highest would skip the
// other's missing rows. Such a partition starts at its committed offset
// instead, and the records up to the highest stored offset are checked
// against both tables before they are inserted (verifying).
func (p *Projector) adjustTwoTables(ctx context.Context, s *sink, parts map[int32]kgo.Offset, ids []int32) error {
	high := map[int32]int64{}
	for _, table := range []string{s.table, s.revisions.table} {
		stored, err := p.storedMax(ctx, table, ids)
		if err != nil {
			return err
		}
		for part, m := range stored {
			if h, ok := high[part]; !ok || m > h {
				high[part] = m
			}
		}
	}
	p.verify.mu.Lock()
	defer p.verify.mu.Unlock()
	if p.verify.upTo == nil {
		p.verify.upTo = map[floorKey]int64{}
	}
	for part, o := range parts {
		m, ok := high[part]
		if !ok || resumeAt(o.EpochOffset().Offset, m) < 0 {
			delete(p.verify.upTo, floorKey{s.topic, part})
			continue
		}
		p.verify.upTo[floorKey{s.topic, part}] = m
		p.verify.any.Store(true)
		p.log.Info().Str("topic", s.topic).Int32("partition", part).Int64("committed", o.EpochOffset().Offset).Int64("verify_to", m).
			Msg("rows stored past the committed offset: resuming at the committed offset, skipping what is stored")
	}
	return nil
}

// verifyMarks are the partitions whose records up to an offset may be
// stored already (adjustTwoTables); set while partitions are assigned,
// read by decode.
type verifyMarks struct {
	mu   sync.Mutex
	upTo map[floorKey]int64
	any  atomic.Bool // upTo has marks: the common case, none, costs no lock
}

// verifying reports whether rec may be stored already.
func (p *Projector) verifying(rec *kgo.Record) bool {
	if !p.verify.any.Load() {
		return false
	}
	p.verify.mu.Lock()
	defer p.verify.mu.Unlock()
	m, ok := p.verify.upTo[floorKey{rec.Topic, rec.Partition}]
	return ok && rec.Offset <= m
}

// resumeAt returns where to start a partition whose committed offset is
// committed (negative: none) and whose highest stored offset is stored, or
// -1 to keep the committed offset.
func resumeAt(committed, stored int64) int64 {
	if stored < 0 || stored+1 <= committed {
		return -1
	}
	return stored + 1
}

// storedMax returns the highest stored log_offset per partition of table,
// read once the inserts into it that the server is running have finished
// (awaitInserts).
func (p *Projector) storedMax(ctx context.Context, table string, parts []int32) (map[int32]int64, error) {
	if err := p.awaitInserts(ctx, table); err != nil {
		return nil, err
	}
	return warehouse.MaxPositions(ctx, p.conn, p.db, table, parts...)
}

// awaitInserts waits until the INSERTs into table that the server is
// running now have finished. A projector killed right after sending an
// insert leaves the server completing it on its own; reading the stored
// positions before that insert lands would start the partition before its
// rows and insert them a second time.
func (p *Projector) awaitInserts(ctx context.Context, table string) error {
	return awaitInsertsOn(ctx, p.conn, p.db, table)
}

// awaitInsertsOn is awaitInserts on the server conn talks to.
func awaitInsertsOn(ctx context.Context, conn driver.Conn, db, table string) error {
	q := `SELECT query_id FROM system.processes WHERE query LIKE ? AND query NOT LIKE '%system.processes%'`
	pattern := fmt.Sprintf("INSERT INTO %s.%s %%", db, table)
	running := func() (map[string]bool, error) {
		ids, err := warehouse.ScanSet[string](conn.Query(ctx, q, pattern))
		if err != nil {
			return nil, fmt.Errorf("list running inserts into %s: %w", table, err)
		}
		return ids, nil
	}
	waitFor, err := running()
	if err != nil {
		return err
	}
	for len(waitFor) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d running inserts into %s: %w", len(waitFor), table, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		now, err := running()
		if err != nil {
			return err
		}
		for id := range waitFor {
			if !now[id] {
				delete(waitFor, id)
			}
		}
	}
	return nil
}
