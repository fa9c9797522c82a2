package processor

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/processor/rules"
)

// A checkpoint is prepared by the Run goroutine, which encodes the changed
// aggregates and notes the positions they correspond to, and written to
// PostgreSQL by a goroutine of its own, so that the transaction (most of a
// checkpoint's time, spent in PostgreSQL) overlaps the processing of the
// next records instead of stopping it. Only one is written at a time: the
// next waits for it, which bounds both memory and how much a crash
// re-processes. The positions it commits are those reached when it was
// prepared, never later ones, so state and position still agree.

// pendingCheckpoint is one prepared checkpoint.
type pendingCheckpoint struct {
	rows     snapshotRows
	advances []partitionAdvance
	chunks   [][]byte // the snapshotArena chunks rows.states lie in
	done     chan struct{}
	err      error
	took     time.Duration
}

// snapshotArena holds the encoded aggregates of a checkpoint in a few
// large chunks, encoded through one scratch buffer and copied at their
// exact size, instead of one growing allocation per user. A checkpoint
// rewrites every user changed since the last one (tens of megabytes with
// many busy users), so allocating that afresh each time would drive the
// garbage collector; instead the chunks of a written checkpoint are reused
// by the next (checkpoints are written one at a time).
type snapshotArena struct {
	scratch []byte
	sealed  []byte   // the other scratch buffer, for sealing
	chunks  [][]byte // in use by the checkpoint being prepared; the last is being filled
	free    [][]byte // emptied chunks of the last written checkpoint
}

const snapshotChunk = 1 << 20

// encode returns a's snapshot in the arena, sealed with the user's data
// key k unless a is a tombstone (which holds nothing of the user, and
// must stay readable once the key is shredded) or k is nil (only in tests
// without a key store).
func (ar *snapshotArena) encode(a *rules.Aggregate, k *userkeys.Key) []byte {
	if k != nil && k.Shredded() && a.ErasedAt == 0 {
		// Erased meanwhile: what is left of the user is a tombstone.
		a = &rules.Aggregate{Version: a.Version, ErasedAt: 1}
	}
	ar.scratch, _ = a.AppendBinary(ar.scratch[:0]) // it never fails
	if k != nil && a.ErasedAt == 0 {
		ar.sealed = k.SealBlob(ar.sealed[:0], ar.scratch)
		ar.scratch, ar.sealed = ar.sealed, ar.scratch
	}
	n := len(ar.scratch)
	if k := len(ar.chunks); k == 0 || cap(ar.chunks[k-1])-len(ar.chunks[k-1]) < n {
		var c []byte
		if f := len(ar.free); f > 0 && cap(ar.free[f-1]) >= n {
			c, ar.free = ar.free[f-1][:0], ar.free[:f-1]
		} else {
			c = make([]byte, 0, max(snapshotChunk, n))
		}
		ar.chunks = append(ar.chunks, c)
	}
	c := &ar.chunks[len(ar.chunks)-1]
	start := len(*c)
	*c = append(*c, ar.scratch...)
	return (*c)[start:len(*c):len(*c)]
}

// take hands the chunks in use to a checkpoint.
func (ar *snapshotArena) take() [][]byte {
	c := ar.chunks
	ar.chunks = nil
	return c
}

// recycle makes the chunks of a written checkpoint, which nothing reads
// any more, the ones the next checkpoint fills. Earlier free chunks are
// dropped, so the arena holds about one checkpoint's worth.
func (ar *snapshotArena) recycle(chunks [][]byte) {
	ar.free = chunks
}

// snapshotRows are encoded aggregates, column by column as the store
// writes them.
type snapshotRows struct {
	tenants, users []string
	versions       []int64
	states         [][]byte
	// heldParts and heldUntil are a user's held readings' partition number
	// and deadline (see timers.go), -1 when nothing is held.
	heldParts []int32
	heldUntil []int64
}

// checkpointIfDue starts a background checkpoint when the interval has
// passed or too many users changed, after the previous one has finished.
// It returns the error of a failed checkpoint.
func (p *Processor) checkpointIfDue(ctx context.Context) error {
	p.ckMu.Lock()
	defer p.ckMu.Unlock()
	if err := p.reapLocked(ctx, false); err != nil {
		return err
	}
	if !p.pending() || (time.Since(p.checkpoint) < p.cfg.CheckpointInterval && len(p.users.dirty) < p.cfg.MaxDirty) {
		return nil
	}
	c, err := p.nextLocked(ctx)
	if c == nil {
		return err
	}
	// The write may outlive ctx by ShutdownGrace, so a stopping processor
	// still commits what it prepared.
	wctx, cancel := afterGrace(ctx, p.cfg.ShutdownGrace)
	go func() {
		defer cancel()
		p.write(wctx, c)
	}()
	return nil
}

// commitCheckpoint waits for the background checkpoint, then prepares and
// writes one more with everything processed since, before returning. It is
// what a revocation and a graceful stop use.
func (p *Processor) commitCheckpoint(ctx context.Context) error {
	p.ckMu.Lock()
	defer p.ckMu.Unlock()
	c, err := p.nextLocked(ctx)
	if c == nil {
		return err
	}
	p.write(ctx, c)
	return p.reapLocked(ctx, true)
}

// nextLocked waits for the checkpoint in flight and for the outputs sent
// since, then prepares the next checkpoint and makes it the one in flight.
// It returns nil when there is nothing to commit or on error.
func (p *Processor) nextLocked(ctx context.Context) (*pendingCheckpoint, error) {
	if err := p.reapLocked(ctx, true); err != nil {
		return nil, err
	}
	if err := p.flushOutputs(ctx); err != nil {
		return nil, err
	}
	c := p.prepare()
	p.inflight = c
	return c, nil
}

// reapLocked finishes the background checkpoint if it is done (or waits for
// it, if wait): on success the positions it committed become the stored
// ones. After a failure nothing more may be committed (the aggregates it
// carried are no longer marked changed), so the error sticks.
func (p *Processor) reapLocked(ctx context.Context, wait bool) error {
	if p.failed != nil {
		return p.failed
	}
	c := p.inflight
	if c == nil {
		return nil
	}
	if wait {
		select {
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("processor: waiting for a checkpoint: %w", ctx.Err())
		}
	} else {
		select {
		case <-c.done:
		default:
			return nil
		}
	}
	p.inflight = nil
	if c.err != nil {
		p.failed = c.err
		return c.err
	}
	p.snapshots.recycle(c.chunks)
	p.m.commit.Observe(c.took.Seconds())
	p.m.checkpointUsers.Observe(float64(len(c.rows.users)))
	p.advance(ctx, c.advances)
	// Every user not changed since is committed now, and no checkpoint is
	// being written: idle ones may go.
	if n := p.users.evict(p.cfg.MaxUsers); n > 0 {
		p.m.evicted.Add(float64(n))
		p.m.users.Set(float64(len(p.users.byKey)))
	}
	return nil
}

// advance takes the positions a written checkpoint committed as the stored
// ones, and commits them to Kafka as well.
func (p *Processor) advance(ctx context.Context, advances []partitionAdvance) {
	commits := map[string]map[int32]kgo.EpochOffset{}
	p.mu.Lock()
	for _, a := range advances {
		t := tp{a.Topic, a.Partition}
		if _, owned := p.pos[t]; owned {
			p.pos[t] = a.To
		}
		if p.processed[t] == a.To {
			delete(p.processed, t)
		}
		if commits[a.Topic] == nil {
			commits[a.Topic] = map[int32]kgo.EpochOffset{}
		}
		commits[a.Topic][a.Partition] = kgo.EpochOffset{Epoch: -1, Offset: a.To}
		if end, ok := p.ends[t]; ok {
			p.m.lag.WithLabelValues(a.Topic, strconv.Itoa(int(a.Partition))).Set(float64(max(end-a.To, 0)))
		}
	}
	p.mu.Unlock()
	// Kafka's committed offsets are informational (PostgreSQL is the
	// source of truth) but keep the standard tools' lag figures right.
	p.cl.CommitOffsets(ctx, commits, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			p.log.Debug().Err(err).Msg("informational kafka offset commit failed")
		}
	})
}

// prepare encodes the changed aggregates and notes the positions reached,
// or returns nil if nothing changed. The aggregates are compacted first so
// the rows stay small.
func (p *Processor) prepare() *pendingCheckpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &pendingCheckpoint{done: make(chan struct{})}
	for t, to := range p.processed {
		if from, owned := p.pos[t]; owned {
			c.advances = append(c.advances, partitionAdvance{Topic: t.topic, Partition: t.partition, From: from, To: to,
				OutSeq: p.seq[t.partition], PartTime: p.timers.clock[t.partition]})
		}
	}
	n := len(p.users.dirty)
	r := snapshotRows{tenants: make([]string, 0, n), users: make([]string, 0, n), versions: make([]int64, 0, n), states: make([][]byte, 0, n),
		heldParts: make([]int32, 0, n), heldUntil: make([]int64, 0, n)}
	p.users.takeDirty(func(ca *cachedAggregate) {
		ca.agg.Compact(p.cfg.Rules)
		r.tenants, r.users = append(r.tenants, ca.key.Tenant), append(r.users, ca.key.User)
		r.versions, r.states = append(r.versions, ca.agg.Version), append(r.states, p.snapshots.encode(&ca.agg, ca.dk))
		part, until := int32(-1), int64(-1)
		if d, ok := ca.agg.HeldDeadline(p.cfg.Rules); ok {
			part, until = ca.partition, d
		}
		r.heldParts, r.heldUntil = append(r.heldParts, part), append(r.heldUntil, until)
	})
	p.checkpoint = time.Now()
	c.chunks = p.snapshots.take()
	if len(c.advances) == 0 && len(r.users) == 0 {
		return nil
	}
	c.rows = r
	sort.Slice(c.advances, func(i, j int) bool {
		if c.advances[i].Topic != c.advances[j].Topic {
			return c.advances[i].Topic < c.advances[j].Topic
		}
		return c.advances[i].Partition < c.advances[j].Partition
	})
	return c
}

// write commits c, retrying while PostgreSQL is unavailable, and marks it
// done.
func (p *Processor) write(ctx context.Context, c *pendingCheckpoint) {
	defer close(c.done)
	start := time.Now()
	c.err = p.retry(ctx, "checkpoint", func(ctx context.Context) error {
		return p.store.commit(ctx, c.rows, c.advances)
	})
	c.took = time.Since(start)
}
