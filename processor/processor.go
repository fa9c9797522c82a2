// Package processor is Vitals' write model. It consumes the raw readings
// topic in a consumer group, so each instance owns a set of partitions and
// hence a set of users, and judges every reading against its user's
// aggregate in event-time order. Accepted readings go to the accepted topic,
// refused ones with a reason to the rejected topic; exact repeats are
// dropped.
//
// # The guarantee
//
// PostgreSQL, not Kafka, holds the processor's position: each batch's
// changed aggregates and the partitions' next offsets are committed in one
// transaction, and on every assignment the processor seeks to the offsets
// stored there, so state and position never disagree. Outputs are produced,
// and acknowledged by the broker, before that transaction commits. A crash
// in between re-processes the batch from the same state and re-emits
// byte-identical outputs with the same event ids, which the projector
// stores once. Nothing is skipped and, in query results, nothing counts
// twice.
package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/schemas"
)

// Config configures a processor instance.
type Config struct {
	Kafka eventlog.Config
	// PostgresURL locates the state database.
	PostgresURL string
	// Group is the Kafka consumer group; instances sharing it share the work.
	Group string
	// InstanceID, if set, makes this instance a static group member: a
	// restarted instance with the same id takes its partitions back at once
	// instead of waiting for the session to time out and a rebalance.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent instance
	// before moving its partitions.
	SessionTimeout time.Duration
	// MaxBatch bounds the records handled per transaction.
	MaxBatch int
	// OpTimeout bounds each PostgreSQL operation and produce attempt.
	OpTimeout time.Duration
	// MaxBackoff caps the wait between retries while PostgreSQL or Kafka is
	// unavailable; the processor retries until it succeeds or is stopped.
	MaxBackoff time.Duration
	// ShutdownGrace is how long a stopping processor may spend finishing
	// the batch it already started producing.
	ShutdownGrace time.Duration
	// Rules are the aggregate's invariants.
	Rules Rules
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Kafka:          eventlog.DefaultConfig(),
		PostgresURL:    "postgres://vitals:vitals@127.0.0.1:15432/vitals?sslmode=disable",
		Group:          "vitals-processor",
		SessionTimeout: 45 * time.Second,
		MaxBatch:       10000,
		OpTimeout:      10 * time.Second,
		MaxBackoff:     5 * time.Second,
		ShutdownGrace:  15 * time.Second,
		Rules:          DefaultRules(),
	}
}

// Processor is one instance of the processor role.
type Processor struct {
	cfg   Config
	log   zerolog.Logger
	pool  *pgxpool.Pool
	store *store
	cl    *kgo.Client

	in       *schemas.Codec
	accepted *schemas.Codec
	rejected *schemas.Codec

	mu  sync.Mutex
	pos map[int32]int64 // next offset stored in PostgreSQL per owned partition; -1: none yet

	stats Stats
}

// Stats are running totals since start.
type Stats struct {
	mu                                    sync.Mutex
	Accepted, Rejected, Duplicates, Batch int64
}

// Snapshot returns a copy of the totals.
func (s *Stats) Snapshot() (accepted, rejected, duplicates, batches int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Accepted, s.Rejected, s.Duplicates, s.Batch
}

// New connects to PostgreSQL and Kafka, creating the state tables and the
// topics if needed.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Processor, error) {
	log = log.With().Str("role", "processor").Logger()
	pool, err := postgres.Open(ctx, cfg.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	p := &Processor{
		cfg:      cfg,
		log:      log,
		pool:     pool,
		store:    &store{pool: pool, group: cfg.Group},
		in:       schemas.MustCodec(schemas.NameReading),
		accepted: schemas.MustCodec(schemas.NameAcceptedReading),
		rejected: schemas.MustCodec(schemas.NameRejectedReading),
		pos:      make(map[int32]int64),
	}
	mctx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
	defer cancel()
	if err := p.store.migrate(mctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("processor: migrate state tables: %w", err)
	}
	if err := eventlog.EnsureTopics(ctx, cfg.Kafka, log); err != nil {
		pool.Close()
		return nil, err
	}
	opts := append(cfg.Kafka.ClientOpts(log),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Kafka.Topics.Readings),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(p.seekToStored),
		kgo.OnPartitionsRevoked(p.forget),
		kgo.OnPartitionsLost(p.forget),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.RecordDeliveryTimeout(cfg.OpTimeout),
	)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("processor: kafka client: %w", err)
	}
	p.cl = cl
	return p, nil
}

// Stats returns the running totals.
func (p *Processor) Stats() *Stats { return &p.stats }

// seekToStored replaces the group's committed offsets with the ones stored
// in PostgreSQL beside the aggregates. Partitions never processed start at
// the beginning of the log.
func (p *Processor) seekToStored(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offsets {
		ids := make([]int32, 0, len(parts))
		for id := range parts {
			ids = append(ids, id)
		}
		stored, err := p.store.offsets(ctx, topic, ids)
		if err != nil {
			p.log.Warn().Err(err).Msg("cannot load offsets; the group will retry the assignment")
			return nil, err
		}
		p.mu.Lock()
		for _, id := range ids {
			if o, ok := stored[id]; ok {
				parts[id] = kgo.NewOffset().At(o).WithEpoch(-1)
				p.pos[id] = o
			} else {
				parts[id] = kgo.NewOffset().AtStart()
				p.pos[id] = -1
			}
		}
		p.mu.Unlock()
		p.log.Info().Str("topic", topic).Interface("assigned", stored).Int("partitions", len(ids)).Msg("seeking to offsets stored with the aggregates")
	}
	return offsets, nil
}

func (p *Processor) forget(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, parts := range lost {
		for _, id := range parts {
			delete(p.pos, id)
		}
	}
}

// Run consumes until ctx ends. A batch already produced when ctx ends is
// still committed, within OpTimeout, before Run returns.
func (p *Processor) Run(ctx context.Context) error {
	p.log.Info().Str("group", p.cfg.Group).Msg("processing")
	for {
		fetches := p.cl.PollRecords(ctx, p.cfg.MaxBatch)
		if ctx.Err() != nil {
			p.cl.AllowRebalance()
			return nil
		}
		var fatal error
		fetches.EachError(func(t string, part int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			p.log.Warn().Err(err).Str("topic", t).Int32("partition", part).Msg("fetch error")
			if errors.Is(err, kgo.ErrClientClosed) {
				fatal = err
			}
		})
		if fatal != nil {
			return fatal
		}
		if fetches.NumRecords() > 0 {
			if err := p.handle(ctx, fetches); err != nil {
				p.cl.AllowRebalance()
				if ctx.Err() != nil && !errors.Is(err, errFenced) {
					p.log.Warn().Err(err).Msg("stopped before the batch committed; it will be processed again")
					return nil
				}
				return err
			}
		}
		p.cl.AllowRebalance()
	}
}

// batch collects one poll's outputs, touched aggregates and offset moves.
type batch struct {
	outputs                        []*kgo.Record
	aggs                           map[UserKey]*Aggregate
	advances                       []partitionAdvance
	accepted, rejected, duplicates int64
}

// handle applies one polled batch, produces its outputs and commits.
func (p *Processor) handle(ctx context.Context, fetches kgo.Fetches) error {
	// Once outputs are being produced the batch is finished even if ctx
	// ends, so that shutdown commits what was processed; a grace period
	// bounds how long that may take.
	detached, cancelDetached := afterGrace(ctx, p.cfg.ShutdownGrace)
	defer cancelDetached()

	// Load every user the batch touches in one query.
	keys := make(map[UserKey]struct{})
	readings := make(map[*kgo.Record]*schemas.Reading, fetches.NumRecords())
	fetches.EachRecord(func(r *kgo.Record) {
		rd := new(schemas.Reading)
		if err := p.in.Decode(r.Value, rd); err != nil {
			readings[r] = nil
			return
		}
		readings[r] = rd
		keys[UserKey{rd.TenantID, rd.UserID}] = struct{}{}
	})
	keyList := make([]UserKey, 0, len(keys))
	for k := range keys {
		keyList = append(keyList, k)
	}
	var aggs map[UserKey]*Aggregate
	if err := p.retry(ctx, "load aggregates", func(ctx context.Context) (err error) {
		aggs, err = p.store.load(ctx, keyList)
		return err
	}); err != nil {
		return err // ctx ended before anything was produced: nothing to finish
	}

	b := batch{aggs: make(map[UserKey]*Aggregate, len(keys))}
	p.mu.Lock()
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		from, owned := p.pos[fp.Partition]
		if !owned {
			return // revoked while polling; the next owner reads it
		}
		for _, r := range fp.Records {
			p.apply(&b, aggs, r, readings[r])
		}
		last := fp.Records[len(fp.Records)-1]
		b.advances = append(b.advances, partitionAdvance{Topic: fp.Topic, Partition: fp.Partition, From: from, To: last.Offset + 1})
	})
	p.mu.Unlock()

	if len(b.outputs) > 0 {
		if err := p.retry(detached, "produce outputs", func(ctx context.Context) error {
			return p.cl.ProduceSync(ctx, b.outputs...).FirstErr()
		}); err != nil {
			return err
		}
	}
	for _, a := range b.aggs {
		a.Compact(p.cfg.Rules)
	}
	err := p.retry(detached, "commit batch", func(ctx context.Context) error {
		return p.store.commit(ctx, b.aggs, b.advances)
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	for _, a := range b.advances {
		if _, owned := p.pos[a.Partition]; owned {
			p.pos[a.Partition] = a.To
		}
	}
	p.mu.Unlock()
	p.stats.mu.Lock()
	p.stats.Accepted += b.accepted
	p.stats.Rejected += b.rejected
	p.stats.Duplicates += b.duplicates
	p.stats.Batch++
	p.stats.mu.Unlock()

	// Kafka's committed offsets are informational (PostgreSQL is the
	// source of truth) but keep the standard tools' lag figures right.
	cctx, cancel := context.WithTimeout(detached, p.cfg.OpTimeout)
	defer cancel()
	if err := p.cl.CommitUncommittedOffsets(cctx); err != nil {
		p.log.Debug().Err(err).Msg("informational kafka offset commit failed")
	}
	p.log.Debug().Int64("accepted", b.accepted).Int64("rejected", b.rejected).Int64("duplicates", b.duplicates).Msg("batch committed")
	return nil
}

// apply judges one record and appends its output to the batch.
func (p *Processor) apply(b *batch, loaded map[UserKey]*Aggregate, r *kgo.Record, rd *schemas.Reading) {
	if rd == nil {
		b.rejected++
		b.outputs = append(b.outputs, p.rejectRecord(r, &schemas.RejectedReading{
			UserID:  string(r.Key),
			Reason:  ReasonMalformedEvent,
			Message: "the log record is not a readable reading message",
		}))
		return
	}
	k := UserKey{rd.TenantID, rd.UserID}
	agg, ok := b.aggs[k]
	if !ok {
		if agg, ok = loaded[k]; !ok {
			agg = new(Aggregate)
		}
		b.aggs[k] = agg
	}
	decision, reason, msg := agg.Apply(rd, p.cfg.Rules)
	switch decision {
	case Duplicate:
		b.duplicates++
	case Reject:
		b.rejected++
		b.outputs = append(b.outputs, p.rejectRecord(r, &schemas.RejectedReading{
			TenantID: rd.TenantID, EventID: rd.EventID, UserID: rd.UserID, DeviceID: rd.DeviceID,
			Metric: rd.Metric, MeasuredAt: rd.MeasuredAt, Reason: reason, Message: msg,
		}))
	case Accept:
		b.accepted++
		m, _ := metric.Lookup(rd.Metric)
		value, _ := m.Canonical(rd.Value, rd.Unit) // ingest admitted only known units
		var second *float64
		if rd.SecondValue != nil {
			v, _ := m.Canonical(*rd.SecondValue, rd.Unit)
			second = &v
		}
		out := schemas.AcceptedReading{
			TenantID: rd.TenantID, EventID: rd.EventID, UserID: rd.UserID, DeviceID: rd.DeviceID,
			GatewayID: rd.GatewayID, Metric: rd.Metric, LOINC: m.LOINC, Value: value, Unit: m.Unit,
			MeasuredAt: rd.MeasuredAt, ReceivedAt: rd.ReceivedAt, IngestedAt: rd.IngestedAt,
			SourcePartition: r.Partition, SourceOffset: r.Offset,
			PeriodEnd: rd.PeriodEnd, SecondValue: second, Stage: rd.Stage, Sequence: rd.Sequence,
		}
		val, err := p.accepted.Encode(&out)
		if err != nil {
			// The schema is ours and the values came from a decoded message;
			// failing here is a defect, and dropping silently would lose data.
			panic(fmt.Sprintf("encode accepted reading: %v", err))
		}
		b.outputs = append(b.outputs, &kgo.Record{Topic: p.cfg.Kafka.Topics.AcceptedReadings, Key: r.Key, Value: val})
	}
}

func (p *Processor) rejectRecord(r *kgo.Record, rj *schemas.RejectedReading) *kgo.Record {
	rj.SourcePartition, rj.SourceOffset, rj.Original = r.Partition, r.Offset, r.Value
	val, err := p.rejected.Encode(rj)
	if err != nil {
		panic(fmt.Sprintf("encode rejected reading: %v", err))
	}
	return &kgo.Record{Topic: p.cfg.Kafka.Topics.RejectedReadings, Key: r.Key, Value: val}
}

// retry runs op until it succeeds, ctx ends, or it fails with errFenced,
// waiting with capped exponential backoff between attempts. Each attempt
// gets OpTimeout.
func (p *Processor) retry(ctx context.Context, what string, op func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.cfg.OpTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				p.log.Info().Str("op", what).Int("attempts", attempt).Msg("recovered")
			}
			return nil
		}
		if errors.Is(err, errFenced) {
			return fmt.Errorf("processor: %s: %w", what, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("processor: %s: %w", what, ctx.Err())
		}
		p.log.Warn().Err(err).Str("op", what).Int("attempt", attempt).Dur("backoff", backoff).Msg("retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("processor: %s: %w", what, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
}

// afterGrace returns a context that is not canceled with ctx but grace
// after it.
func afterGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(c, func() { t.Stop() })
	})
	return c, func() { stop(); cancel() }
}

// Close leaves the group and releases the connections.
func (p *Processor) Close() {
	p.cl.Close()
	p.pool.Close()
}
