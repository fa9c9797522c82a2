package processor

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// seqHeader is the record header that numbers the outputs of one partition
// number: 1, 2, 3, ... across all output topics, in the order the processor
// emits them. Because processing is deterministic, re-processing from a
// checkpoint numbers its outputs exactly as the first run did, so an output
// whose number is already in its topic-partition was emitted before and is
// not produced again. This is what lets the projector's rollups count every
// accepted reading once without Kafka transactions: a crash or a rebalance
// between produce and checkpoint no longer re-emits anything.
const seqHeader = "vitals-seq"

// outputTopics are the topics the processor writes, all co-partitioned with
// its inputs: an output goes to the partition number of the input it came
// from.
func (p *Processor) outputTopics() []string {
	t := p.cfg.Kafka.Topics
	return []string{t.AcceptedReadings, t.RejectedReadings, t.Alerts, t.Erasures}
}

// number gives outs, the outputs of one input record of partition number
// part, the partition's next output numbers, and sends them to that
// partition number of their topics.
func (p *Processor) number(b *batch, outs []*kgo.Record, part int32) {
	if len(outs) == 0 {
		return
	}
	seq := p.seq[part]
	for _, o := range outs {
		seq++
		o.Partition = part
		h := kgo.RecordHeader{Key: seqHeader, Value: b.mem.take(strconv.AppendInt(b.mem.room(20), seq, 10))}
		if len(o.Headers) == 0 {
			o.Headers = b.mem.header(h)
		} else {
			o.Headers = append(o.Headers, h)
		}
	}
	p.seq[part] = seq
}

// unsent returns the records whose output number is beyond what their
// topic-partition already holds.
func (p *Processor) unsent(recs []*kgo.Record) []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.skip) == 0 {
		return recs
	}
	out := recs[:0:0]
	for _, r := range recs {
		if seqOf(r) > p.skip[tp{r.Topic, r.Partition}] {
			out = append(out, r)
		}
	}
	return out
}

// seqOf returns the output number a record carries, or 0.
func seqOf(r *kgo.Record) int64 {
	for _, h := range r.Headers {
		if h.Key == seqHeader {
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// lastSeqs reads the last record of every output topic's given partitions
// and returns the output number each carries; partitions that are empty, or
// whose last record has no number (written before numbering), are absent.
func (p *Processor) lastSeqs(ctx context.Context, partitions []int32) (map[tp]int64, error) {
	out := make(map[tp]int64)
	if len(partitions) == 0 {
		return out, nil
	}
	last, err := p.lastOffsets(ctx, partitions)
	if err != nil {
		return nil, err
	}
	if len(last) == 0 {
		return out, nil
	}
	want := map[string]map[int32]kgo.Offset{}
	for t, o := range last {
		if want[t.topic] == nil {
			want[t.topic] = map[int32]kgo.Offset{}
		}
		want[t.topic][t.partition] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(append(p.cfg.Kafka.ClientOpts(p.log), kgo.ConsumePartitions(want))...)
	if err != nil {
		return nil, fmt.Errorf("output tail reader: %w", err)
	}
	defer cl.Close()
	seen := map[tp]bool{}
	for len(seen) < len(last) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read output tails (%d of %d read): %w", len(seen), len(last), ctx.Err())
		}
		if err := fetches.Err0(); err != nil {
			return nil, fmt.Errorf("read output tails: %w", err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			t := tp{r.Topic, r.Partition}
			if r.Offset != last[t] {
				return
			}
			seen[t] = true
			if s := seqOf(r); s > 0 {
				out[t] = s
			}
		})
	}
	return out, nil
}

// lastOffsets returns the offset of the last record of every output
// topic's given partitions that holds any.
func (p *Processor) lastOffsets(ctx context.Context, partitions []int32) (map[tp]int64, error) {
	topics := p.outputTopics()
	starts, err := p.adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("output log starts: %w", err)
	}
	ends, err := p.adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("output log ends: %w", err)
	}
	last := map[tp]int64{}
	for _, topic := range topics {
		for _, part := range partitions {
			s, _ := starts.Lookup(topic, part)
			e, ok := ends.Lookup(topic, part)
			if !ok {
				return nil, fmt.Errorf("output topic %s has no partition %d: outputs must be co-partitioned with the inputs", topic, part)
			}
			if e.Offset > s.Offset {
				last[tp{topic, part}] = e.Offset - 1
			}
		}
	}
	return last, nil
}
