package processor

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The merge: per partition number the three input topics are merged by
// record timestamp, ties broken profile, device, reading, then by offset,
// and a record is taken only when every other topic of its partition has a
// buffered record to compare with or nothing more to read. The order is
// therefore a function of the log alone, the same on every replay (see the
// package documentation).

// queue holds the fetched, not yet processed records of one topic-partition.
type queue struct {
	recs   []*kgo.Record
	next   int64 // offset after the last fetched record (or the seek position)
	paused bool
}

// kindOf maps a topic to its input kind.
func (p *Processor) kindOf(topic string) int {
	for k, t := range p.topics {
		if t == topic {
			return k
		}
	}
	return -1
}

// buffered counts records waiting in the merge queues.
func (p *Processor) buffered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, qs := range p.queues {
		for _, q := range qs {
			n += len(q.recs)
		}
	}
	return n
}

// take adds fetched records to the merge queues and removes, in merge order,
// the records that can be processed now (at most MaxBatch).
func (p *Processor) take(ctx context.Context, fetches kgo.Fetches) []*kgo.Record {
	p.enqueue(fetches)
	var out []*kgo.Record
	for attempt := 0; attempt < 2; attempt++ {
		p.mu.Lock()
		var stuck bool
		for part, qs := range p.queues {
			for len(out) < p.cfg.MaxBatch {
				k, ok, wait := p.nextOf(part, qs)
				if !ok {
					stuck = stuck || wait
					break
				}
				out = append(out, qs[k].recs[0])
				qs[k].recs = qs[k].recs[1:]
			}
		}
		p.flowControl()
		p.mu.Unlock()
		// Records of some partition wait on a topic that may have more to
		// read (or that is empty and never answered a fetch): ask the
		// broker where the logs end (at most four times a second), then
		// try once more, whatever other partitions delivered.
		if !stuck || len(out) >= p.cfg.MaxBatch || time.Since(p.endsAt) < 250*time.Millisecond || p.refreshEnds(ctx) != nil {
			break
		}
	}
	return out
}

// enqueue adds fetched records to the merge queues of owned partitions,
// skipping any the queue already holds, and notes the log ends the fetches
// reported.
func (p *Processor) enqueue(fetches kgo.Fetches) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		qs := p.queues[fp.Partition]
		k := p.kindOf(fp.Topic)
		if qs == nil || k < 0 {
			return // revoked while polling; the next owner reads it
		}
		if fp.HighWatermark > 0 {
			p.ends[tp{fp.Topic, fp.Partition}] = fp.HighWatermark
		}
		for _, r := range fp.Records {
			if r.Offset >= qs[k].next {
				qs[k].recs = append(qs[k].recs, r)
				qs[k].next = r.Offset + 1
			}
		}
	})
}

// nextOf picks the next record of partition part in merge order. wait
// reports that records are buffered but one topic may still have an earlier
// one to deliver.
func (p *Processor) nextOf(part int32, qs *[kinds]queue) (k int, ok, wait bool) {
	best := -1
	for i := range qs {
		if len(qs[i].recs) == 0 {
			continue
		}
		if best < 0 || before(qs[i].recs[0], i, qs[best].recs[0], best) {
			best = i
		}
	}
	if best < 0 {
		return 0, false, false
	}
	for i := range qs {
		if len(qs[i].recs) > 0 {
			continue
		}
		end, known := p.ends[tp{p.topics[i], part}]
		if !known || qs[i].next < end {
			return 0, false, true // this topic may hold an earlier event: wait for it
		}
	}
	return best, true, false
}

// before orders records of different topics: timestamp, then kind, then
// offset.
func before(a *kgo.Record, ka int, b *kgo.Record, kb int) bool {
	if !a.Timestamp.Equal(b.Timestamp) {
		return a.Timestamp.Before(b.Timestamp)
	}
	if ka != kb {
		return ka < kb
	}
	return a.Offset < b.Offset
}

// flowControl pauses fetching a topic-partition whose queue has grown past
// two batches (it waits on another topic) and resumes it below one batch,
// so memory stays bounded however the topics' lags differ.
func (p *Processor) flowControl() {
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for part, qs := range p.queues {
		for k := range qs {
			q := &qs[k]
			switch {
			case !q.paused && len(q.recs) > 2*p.cfg.MaxBatch:
				q.paused = true
				pause[p.topics[k]] = append(pause[p.topics[k]], part)
			case q.paused && len(q.recs) < p.cfg.MaxBatch:
				q.paused = false
				resume[p.topics[k]] = append(resume[p.topics[k]], part)
			}
		}
	}
	if len(pause) > 0 {
		p.cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		p.cl.ResumeFetchPartitions(resume)
	}
}

// refreshEnds asks the broker for the log-end offsets of the owned topics.
func (p *Processor) refreshEnds(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.OpTimeout)
	defer cancel()
	ends, err := p.adm.ListEndOffsets(ctx, p.topics[:]...)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endsAt = time.Now()
	if err != nil {
		p.log.Debug().Err(err).Msg("list end offsets")
		return err
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			p.ends[tp{o.Topic, o.Partition}] = o.Offset
		}
	})
	return nil
}
