package replay

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// positions are offsets per topic and partition.
type positions map[string]map[int32]int64

func (p positions) set(topic string, part int32, off int64) {
	if p[topic] == nil {
		p[topic] = map[int32]int64{}
	}
	p[topic][part] = off
}

// raise moves p up to q wherever q is later.
func (p positions) raise(q positions) {
	for t, parts := range q {
		for part, off := range parts {
			if cur, ok := p[t][part]; !ok || off > cur {
				p.set(t, part, off)
			}
		}
	}
}

// span counts the offsets from p up to end, partition by partition.
func (p positions) span(end positions) int64 {
	var n int64
	for t, parts := range end {
		for part, e := range parts {
			n += max(e-p[t][part], 0)
		}
	}
	return n
}

// done counts the offsets from start up to p, capped at end.
func (p positions) done(start, end positions) int64 {
	var n int64
	for t, parts := range end {
		for part, e := range parts {
			s := start[t][part]
			at, ok := p[t][part]
			if !ok {
				at = s
			}
			n += min(max(at, s), e) - s
		}
	}
	return n
}

// reached reports whether p is at or past want in every partition of want,
// a partition without a position being at target's start (zero) offset.
func (p positions) reached(want positions) bool {
	for t, parts := range want {
		for part, w := range parts {
			if p[t][part] < w {
				return false
			}
		}
	}
	return true
}

// sortedParts returns a topic's partitions in order.
func (p positions) sortedParts(topic string) []int32 {
	var out []int32
	for part := range p[topic] {
		out = append(out, part)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// endOffsets returns the topics' log-end offsets.
func endOffsets(ctx context.Context, adm *kadm.Client, topics ...string) (positions, error) {
	l, err := adm.ListEndOffsets(ctx, topics...)
	return listed(l, err, nil)
}

// startOffsets returns where the topics start, or the first offsets at or
// after from if it is not zero (the end offset where no record is that
// late).
func startOffsets(ctx context.Context, adm *kadm.Client, from time.Time, topics ...string) (positions, error) {
	if from.IsZero() {
		l, err := adm.ListStartOffsets(ctx, topics...)
		return listed(l, err, nil)
	}
	ends, err := endOffsets(ctx, adm, topics...)
	if err != nil {
		return nil, err
	}
	l, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topics...)
	return listed(l, err, ends)
}

func listed(l kadm.ListedOffsets, err error, ends positions) (positions, error) {
	if err == nil {
		err = l.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	out := positions{}
	l.Each(func(o kadm.ListedOffset) {
		off := o.Offset
		if off < 0 && ends != nil {
			off = ends[o.Topic][o.Partition]
		}
		out.set(o.Topic, o.Partition, off)
	})
	return out, nil
}

// committedOffsets returns a group's committed offsets of the topics (none
// for a group that does not exist).
func committedOffsets(ctx context.Context, adm *kadm.Client, group string, topics ...string) (positions, error) {
	resp, err := adm.FetchOffsetsForTopics(ctx, group, topics...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	out := positions{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.At >= 0 {
			out.set(o.Topic, o.Partition, o.At)
		}
	})
	return out, nil
}

// tracker turns positions into Progress reports.
type tracker struct {
	phase      string
	start, end positions
	began      time.Time
	first      int64 // done at the first report, so the rate counts this run only
	seen       bool
}

func newTracker(phase string, start, end positions) *tracker {
	return &tracker{phase: phase, start: start, end: end, began: time.Now()}
}

func (t *tracker) at(committed positions) Progress {
	done := committed.done(t.start, t.end)
	if !t.seen {
		t.first, t.seen, t.began = done, true, time.Now()
	}
	p := Progress{Phase: t.phase, Done: done, Total: t.start.span(t.end)}
	if el := time.Since(t.began).Seconds(); el > 0 {
		p.Rate = float64(done-t.first) / el
	}
	if p.Rate > 0 {
		p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
	}
	return p
}

// watch calls poll every interval until ctx ends or poll returns true,
// reporting progress. Errors of poll are returned.
func watch(ctx context.Context, every time.Duration, report func(Progress), t *tracker, poll func(context.Context) (positions, error), doneWhen func(positions) bool) error {
	tick := time.NewTicker(min(every, 200*time.Millisecond))
	defer tick.Stop()
	lastReport := time.Time{}
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		pos, err := poll(pctx)
		cancel()
		if err != nil {
			return err
		}
		finished := doneWhen(pos)
		if report != nil && (finished || time.Since(lastReport) >= every) {
			report(t.at(pos))
			lastReport = time.Now()
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
