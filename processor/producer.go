package processor

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// outbox holds the outputs sent since the last flush until the broker has
// acknowledged all of them. Outputs are produced without waiting, so the
// next records are judged while the broker stores the last ones; the
// checkpoint that covers them waits for the acks first (flushOutputs).
type outbox struct {
	mu     sync.Mutex
	recs   []*kgo.Record
	failed error
}

// send produces the outputs not yet in the log, in order, without waiting.
func (p *Processor) send(outputs []*kgo.Record) {
	pending := p.unsent(outputs)
	if len(pending) == 0 {
		return
	}
	p.out.mu.Lock()
	p.out.recs = append(p.out.recs, pending...)
	prod := p.prod
	p.out.mu.Unlock()
	for _, r := range pending {
		// Not the step's context: a produced output must reach the log or
		// fail by the delivery timeout, never be abandoned half way.
		prod.Produce(context.Background(), r, p.acked)
	}
}

func (p *Processor) acked(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	p.out.mu.Lock()
	if p.out.failed == nil {
		p.out.failed = err
	}
	p.out.mu.Unlock()
}

// flushOutputs returns once every output sent is in the log. If some
// failed (a timed-out request may still have been written), it reads how
// far each output topic-partition got and produces only the rest, retrying
// while Kafka is unavailable: the log never holds an output twice.
func (p *Processor) flushOutputs(ctx context.Context) error {
	if err := p.producer().Flush(ctx); err != nil {
		return fmt.Errorf("processor: waiting for output acks: %w", err)
	}
	p.out.mu.Lock()
	recs, failed := p.out.recs, p.out.failed
	p.out.recs, p.out.failed = nil, nil
	p.out.mu.Unlock()
	if failed == nil {
		return nil
	}
	p.log.Warn().Err(failed).Int("outputs", len(recs)).Msg("some outputs were not acknowledged; sending what the log does not hold")
	pending := recs
	return p.retry(ctx, "produce outputs", func(ctx context.Context) (err error) {
		pending, err = p.resend(ctx, pending)
		return err
	})
}

// resend produces again those of pending the log does not hold, through a
// new producer, and returns them.
func (p *Processor) resend(ctx context.Context, pending []*kgo.Record) ([]*kgo.Record, error) {
	// A producer whose requests went unanswered (a broker restart) can
	// stay unable to produce to those partitions: its idempotence
	// sequence no longer knows what the broker holds. Start afresh
	// with a new producer id; the tails say what is already written.
	if err := p.replaceProducer(); err != nil {
		return pending, err
	}
	parts := map[int32]bool{}
	for _, r := range pending {
		parts[r.Partition] = true
	}
	ids := make([]int32, 0, len(parts))
	for id := range parts {
		ids = append(ids, id)
	}
	tails, err := p.lastSeqs(ctx, ids)
	if err != nil {
		return pending, err
	}
	p.mu.Lock()
	for t, n := range tails {
		p.skip[t] = max(p.skip[t], n)
	}
	p.mu.Unlock()
	if pending = p.unsent(pending); len(pending) == 0 {
		return pending, nil
	}
	// Fresh records: the client stamps a record's Timestamp when it is
	// first produced and fails it once that is older than the delivery
	// timeout, so re-producing the same ones would fail at once, for
	// ever: the cause of the stalls once seen after a broker restart.
	again := make([]*kgo.Record, len(pending))
	for i, r := range pending {
		again[i] = &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers}
	}
	if err := p.producer().ProduceSync(ctx, again...).FirstErr(); err != nil {
		return pending, err
	}
	p.m.resent.Add(float64(len(again)))
	return pending, nil
}

// newProducer returns a client that produces outputs.
func (p *Processor) newProducer() (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(p.cfg.Kafka.ClientOpts(p.log),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Outputs are sealed (docs/privacy.md): ciphertext does not
		// compress, so compressing would cost CPU here, in the broker's
		// validation and in every consumer for nothing.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// Outputs go to the input's partition number (the topics are
		// co-partitioned), which is what numbering them per partition needs.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(p.cfg.OpTimeout),
		// Outputs are acknowledged in the background until the next
		// checkpoint: room for a few steps' worth.
		kgo.MaxBufferedRecords(max(4*p.cfg.MaxBatch, 10000)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("processor: kafka producer: %w", err)
	}
	return cl, nil
}

// producer returns the current output producer (replaceProducer swaps it).
func (p *Processor) producer() *kgo.Client {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return p.prod
}

// replaceProducer closes the output producer and starts a new one.
func (p *Processor) replaceProducer() error {
	cl, err := p.newProducer()
	if err != nil {
		return err
	}
	p.out.mu.Lock()
	old := p.prod
	p.prod = cl
	p.out.mu.Unlock()
	old.Close()
	return nil
}
