package processor

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Group membership: the consumer group assigns partition numbers (the same
// of every input topic, by the range assignor) and takes them away. On an
// assignment the processor seeks to the positions stored in PostgreSQL and
// learns which outputs the log already holds; on a revocation it
// checkpoints first; on either loss it forgets the partitions' state.

// groupOpts are the options of the consumer group member: the processor
// keeps its positions in PostgreSQL, so the callbacks seek to them on an
// assignment and checkpoint before a revocation.
func (p *Processor) groupOpts() []kgo.Opt {
	opts := append(p.cfg.Kafka.ClientOpts(p.log),
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.topics[:]...),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		// The range assignor gives an instance the same partition numbers of
		// every co-partitioned topic; the sticky assignors do not promise
		// that, and a user's readings and pairings must meet in one place.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(p.seekToStored),
		kgo.OnPartitionsRevoked(p.revoked),
		kgo.OnPartitionsLost(p.forget),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if p.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(p.cfg.InstanceID))
	}
	return opts
}

// seekToStored replaces the group's committed offsets with the ones stored
// in PostgreSQL beside the aggregates. Partitions never processed start at
// the beginning of the log.
func (p *Processor) seekToStored(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	select { // the client may join the group before New has finished
	case <-p.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	seqs, clocks := map[int32]int64{}, map[int32]int64{}
	for topic, parts := range offsets {
		if err := p.seekTopic(ctx, topic, parts, seqs, clocks); err != nil {
			p.log.Warn().Err(err).Msg("cannot load offsets; the group will retry the assignment")
			return nil, err
		}
	}
	if err := p.restoreTimers(ctx, clocks); err != nil {
		p.log.Warn().Err(err).Msg("cannot load the held readings' deadlines; the group will retry the assignment")
		return nil, err
	}
	if err := p.skipEmitted(ctx, seqs); err != nil {
		p.log.Warn().Err(err).Msg("cannot read the output topics' tails; the group will retry the assignment")
		return nil, err
	}
	return offsets, nil
}

// seekTopic sets the offsets of topic's assigned partitions to the stored
// positions, empties their merge queues, and notes in seqs and clocks the
// output numbers and times stored per partition number.
func (p *Processor) seekTopic(ctx context.Context, topic string, parts map[int32]kgo.Offset, seqs, clocks map[int32]int64) error {
	ids := make([]int32, 0, len(parts))
	for id := range parts {
		ids = append(ids, id)
	}
	stored, err := p.store.offsets(ctx, topic, ids)
	if err != nil {
		return err
	}
	k := p.kindOf(topic)
	p.mu.Lock()
	for _, id := range ids {
		st, ok := stored[id]
		o := st.Next
		seqs[id] = max(seqs[id], st.OutSeq)
		clocks[id] = max(clocks[id], st.PartTime)
		if ok {
			parts[id] = kgo.NewOffset().At(o).WithEpoch(-1)
		} else {
			parts[id] = kgo.NewOffset().AtStart()
			o = -1
		}
		p.pos[tp{topic, id}] = o
		q := p.queues[id]
		if q == nil {
			q = new([kinds]queue)
			p.queues[id] = q
		}
		q[k] = queue{next: max(o, 0)}
	}
	p.mu.Unlock()
	p.log.Info().Str("topic", topic).Interface("stored_offsets", stored).Int("partitions", len(ids)).Msg("seeking to offsets stored with the aggregates")
	return nil
}

// skipEmitted starts the output numbering of the assigned partition
// numbers at the stored counts (seqs). Outputs emitted after the stored
// checkpoint (by a crashed run or the previous owner) are already in the
// output topics: it learns how far, so that they are not produced again.
func (p *Processor) skipEmitted(ctx context.Context, seqs map[int32]int64) error {
	ids := make([]int32, 0, len(seqs))
	for id := range seqs {
		ids = append(ids, id)
	}
	tails, err := p.lastSeqs(ctx, ids)
	if err != nil {
		return err
	}
	p.mu.Lock()
	for id, n := range seqs {
		p.seq[id] = n
		for _, t := range p.outputTopics() {
			delete(p.skip, tp{t, id})
		}
	}
	for t, n := range tails {
		if n > seqs[t.partition] {
			p.skip[t] = n
		}
	}
	p.mu.Unlock()
	if len(tails) > 0 {
		p.log.Info().Int("output_partitions", len(tails)).Msg("outputs past the checkpoint are in the log already; re-processing will not emit them again")
	}
	return nil
}

// revoked checkpoints before partitions move away, so the next owner
// starts where this one stopped; if that fails, the next owner re-processes
// from the last checkpoint, which re-emits identical outputs.
func (p *Processor) revoked(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	cctx, cancel := context.WithTimeout(ctx, p.cfg.OpTimeout)
	defer cancel()
	if err := p.commitCheckpoint(cctx); err != nil {
		p.log.Warn().Err(err).Msg("checkpoint before revocation failed; the next owner re-processes from the previous one")
	}
	p.forget(ctx, cl, lost)
}

// forget drops everything about partitions this instance no longer owns.
func (p *Processor) forget(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gone := map[int32]bool{}
	for topic, parts := range lost {
		for _, id := range parts {
			t := tp{topic, id}
			delete(p.pos, t)
			delete(p.processed, t)
			delete(p.queues, id) // the partition numbers move together
			delete(p.seq, id)
			for _, ot := range p.outputTopics() {
				delete(p.skip, tp{ot, id})
			}
			gone[id] = true
			p.m.lag.WithLabelValues(topic, strconv.Itoa(int(id))).Set(0)
		}
	}
	p.users.forget(gone)
	p.timers.forget(gone)
}
