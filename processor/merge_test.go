package processor

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// mergeProcessor is a Processor with only what the merge needs.
func mergeProcessor() *Processor {
	p := &Processor{cfg: Config{MaxBatch: 100}, queues: map[int32]*[kinds]queue{}, ends: map[tp]int64{}, pos: map[tp]int64{}}
	p.topics = [kinds]string{"profiles", "devices", "readings"}
	p.endsAt = time.Now() // no broker here: never refresh
	return p
}

func rec(topic string, off int64, ms int64) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: 0, Offset: off, Timestamp: time.UnixMilli(ms)}
}

func fetch(rs ...*kgo.Record) kgo.Fetches {
	byTopic := map[string][]*kgo.Record{}
	var order []string
	for _, r := range rs {
		if _, ok := byTopic[r.Topic]; !ok {
			order = append(order, r.Topic)
		}
		byTopic[r.Topic] = append(byTopic[r.Topic], r)
	}
	var f kgo.Fetch
	for _, t := range order {
		f.Topics = append(f.Topics, kgo.FetchTopic{Topic: t, Partitions: []kgo.FetchPartition{{Partition: 0, Records: byTopic[t]}}})
	}
	return kgo.Fetches{f}
}

func names(rs []*kgo.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Topic[:1]+string(rune('0'+r.Offset)))
	}
	return out
}

func TestMergeOrdersByTimeThenKind(t *testing.T) {
	p := mergeProcessor()
	p.queues[0] = &[kinds]queue{}
	p.ends = map[tp]int64{{"profiles", 0}: 1, {"devices", 0}: 2, {"readings", 0}: 3}
	got := names(p.take(context.Background(), fetch(
		rec("readings", 0, 100), rec("readings", 1, 300), rec("readings", 2, 300),
		rec("devices", 0, 100), rec("devices", 1, 200),
		rec("profiles", 0, 300),
	)))
	want := []string{"d0", "r0", "d1", "p0", "r1", "r2"} // at 100 the device event first, at 300 the profile first
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// A record waits while another topic of its partition may still deliver
// an earlier one, and goes once that topic is known to be exhausted.
func TestMergeWaitsForALaggingTopic(t *testing.T) {
	p := mergeProcessor()
	p.queues[0] = &[kinds]queue{}
	p.ends = map[tp]int64{{"profiles", 0}: 0, {"devices", 0}: 1, {"readings", 0}: 1}
	if got := p.take(context.Background(), fetch(rec("readings", 0, 500))); len(got) != 0 {
		t.Fatalf("processed %v while the device topic still had a record to deliver", names(got))
	}
	got := names(p.take(context.Background(), fetch(rec("devices", 0, 400))))
	if len(got) != 2 || got[0] != "d0" || got[1] != "r0" {
		t.Fatalf("got %v, want [d0 r0]", got)
	}
}

func TestMergeBoundsTheBatch(t *testing.T) {
	p := mergeProcessor()
	p.cfg.MaxBatch = 2
	p.queues[0] = &[kinds]queue{}
	p.ends = map[tp]int64{{"profiles", 0}: 0, {"devices", 0}: 0, {"readings", 0}: 3}
	first := p.take(context.Background(), fetch(rec("readings", 0, 1), rec("readings", 1, 2), rec("readings", 2, 3)))
	second := p.take(context.Background(), kgo.Fetches{})
	if len(first) != 2 || len(second) != 1 || second[0].Offset != 2 {
		t.Fatalf("batches %v then %v", names(first), names(second))
	}
}
