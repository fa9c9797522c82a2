package eventlog

import (
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadToEnd calls fn for every record of topic, in offset order within
// each partition, from the start of the log to the end offsets it has
// when ReadToEnd is called: a bounded read of a topic that may still be
// written (a verification, a scan, a copy). opts are the client's (brokers,
// TLS, SASL); fn's error ends the read and is returned.
func ReadToEnd(ctx context.Context, kopts []kgo.Opt, topic string, fn func(*kgo.Record) error) error {
	adm, err := kgo.NewClient(kopts...)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	adm.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("read %s: end offsets: %w", topic, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	if len(left) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(kopts), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("read %s: %w", topic, ferr)
		}
		for _, r := range fs.Records() {
			if end, ok := left[r.Partition]; ok && r.Offset < end {
				if err := fn(r); err != nil {
					return err
				}
				if r.Offset+1 >= end {
					delete(left, r.Partition)
				}
			}
		}
	}
	return nil
}
