// Package processor is Vitals' write model. It consumes the raw readings,
// device-event and profile-event topics in one consumer group; the topics
// are co-partitioned by user id and the group uses the range assignor, so
// each instance owns the same partition numbers of all three, hence a set of
// users with all their events. It judges every event against its user's
// aggregate (see Aggregate) and emits accepted readings in canonical units,
// rejected readings with a reason, alerts, and erasures; exact repeats are
// dropped.
//
// # Order
//
// Per partition number the three topics are merged by record timestamp
// (ingest stamps every record of a request with its receive time), ties
// broken profile, device, reading, then by offset. A record is processed only
// when every other topic of its partition has either a buffered record to
// compare with or nothing more to read, so the merge is the same on every
// replay of the same log: processing it from the beginning with empty state
// yields byte-identical outputs.
//
// # The guarantee
//
// PostgreSQL, not Kafka, holds the processor's position. The aggregates of
// owned users live in memory; every CheckpointInterval (or after MaxDirty
// users changed) the changed ones, encoded compactly, and the partitions'
// next offsets are committed in one transaction, and on every assignment
// the processor seeks to the offsets stored there, so stored state and
// position never disagree. The transaction runs in the background while the
// next records are judged (see checkpoint.go). Outputs are produced without
// waiting and acknowledged by the broker before the checkpoint that covers
// them. Offset updates are conditional on the offset this instance loaded,
// so an instance that lost a partition cannot overwrite the new owner's
// state.
//
// A crash re-processes from the last checkpoint with that checkpoint's
// state, which yields the same outputs in the same order. Outputs are
// numbered per partition (seqHeader) and those already in the output
// topics are not produced again, so the outputs hold every result exactly
// once: nothing is skipped and nothing counts twice, even for a consumer
// such as a rollup that cannot deduplicate by event id.
package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/promreg"
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
	// MaxBatch bounds the records applied per step.
	MaxBatch int
	// CheckpointInterval is how often the changed aggregates and the
	// positions are committed to PostgreSQL. Between checkpoints the
	// aggregates live in memory; a crash re-processes about this much of
	// the log (without emitting its outputs again). Each checkpoint
	// rewrites the row of every user changed since the last one, so longer
	// intervals make that cost per event smaller when many users are busy.
	CheckpointInterval time.Duration
	// MaxDirty forces a checkpoint when this many users changed since the
	// last one.
	MaxDirty int
	// OpTimeout bounds each PostgreSQL operation and produce attempt.
	OpTimeout time.Duration
	// MaxBackoff caps the wait between retries while PostgreSQL or Kafka is
	// unavailable; the processor retries until it succeeds or is stopped.
	MaxBackoff time.Duration
	// ShutdownGrace is how long a stopping processor may spend finishing
	// the batch it already started producing.
	ShutdownGrace time.Duration
	// MetricsAddr, if set, is where Run serves the Prometheus metrics at
	// GET /metrics. Empty (the default, for processors embedded in tests
	// and replays): nowhere. `vitals processor` sets DefaultMetricsAddr.
	MetricsAddr string
	// Registry is where the processor registers its metrics and what
	// MetricsAddr serves: the process's registry, shared by the roles of
	// `vitals run`. Nil (the default): a registry of the processor's own.
	Registry *promreg.Registry
	// Rules are the aggregate's invariants.
	Rules Rules
}

// DefaultMetricsAddr is where `vitals processor` serves /metrics unless
// told otherwise (--processor-metrics-addr).
const DefaultMetricsAddr = "127.0.0.1:8091"

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Kafka:              eventlog.DefaultConfig(),
		PostgresURL:        "postgres://vitals:vitals@127.0.0.1:15432/vitals?sslmode=disable",
		Group:              "vitals-processor",
		SessionTimeout:     45 * time.Second,
		MaxBatch:           10000,
		CheckpointInterval: 5 * time.Second,
		MaxDirty:           250000,
		OpTimeout:          10 * time.Second,
		MaxBackoff:         5 * time.Second,
		ShutdownGrace:      15 * time.Second,
		Rules:              DefaultRules(),
	}
}

// Input kinds, in the order that breaks timestamp ties: a user's profile
// and device changes of the same instant apply before their readings.
const (
	kindProfile = iota
	kindDevice
	kindReading
	kinds
)

// tp names one topic-partition.
type tp struct {
	topic     string
	partition int32
}

// Processor is one instance of the processor role.
type Processor struct {
	cfg   Config
	log   zerolog.Logger
	pool  *pgxpool.Pool
	store *store
	cl    *kgo.Client // consumer group member
	adm   *kadm.Client
	// prod produces the outputs. It is a client of its own so that it can
	// be replaced after a failure without leaving the group (see
	// flushOutputs).
	prod *kgo.Client

	topics [kinds]string
	codecs struct {
		reading, device, profile, accepted, rejected, alert, erasure *schemas.Codec
	}
	accepted acceptedEncoder

	mu     sync.Mutex
	pos    map[tp]int64            // next offset stored in PostgreSQL per owned topic-partition; -1: none yet
	queues map[int32]*[kinds]queue // buffered records per owned partition number
	ends   map[tp]int64            // log-end offsets last seen
	endsAt time.Time

	// The aggregates of owned users, loaded on first use; dirty are those
	// changed since the last checkpoint (each marked so, to be listed
	// once), processed the positions reached. Only the Run goroutine and
	// the rebalance callbacks (which never run while a step is in progress)
	// touch them.
	cache      map[UserKey]*cachedAggregate
	tenants    map[string]string // one copy of each tenant id, shared by the cache's keys
	dirty      []*cachedAggregate
	processed  map[tp]int64
	checkpoint time.Time

	// snapshots holds the encoded aggregates of checkpoints (see
	// snapshotArena).
	snapshots snapshotArena

	// ckMu serialises checkpoints; inflight is the one being written in
	// the background, failed the error that ended one (after which nothing
	// more may be committed).
	ckMu     sync.Mutex
	inflight *pendingCheckpoint
	failed   error

	out outbox

	// seq is the number of the last output emitted per owned partition
	// number; skip is, per output topic-partition, the number of the last
	// output already in the log when this instance took the partition (or
	// after a failed produce): outputs numbered up to it are not produced
	// again. See seqHeader.
	seq  map[int32]int64
	skip map[tp]int64

	step uint64 // steps handled, to mark each touched aggregate once per step
	// in and readings are the decoded records of the step being handled,
	// kept for the next step: allocating them afresh for every step was
	// much of the processor's allocation, hence of its garbage collection.
	in       []decoded
	readings []schemas.Reading

	stats      Stats
	reg        *promreg.Registry
	m          procMetrics
	registered *promreg.Registration
}

// cachedAggregate is an owned user's aggregate and the partition it lives
// in. The aggregate is part of it, not pointed to: every record reads both,
// and with many users each is a cache miss of its own.
type cachedAggregate struct {
	key       UserKey
	step      uint64 // the last step that touched it
	partition int32
	dirty     bool // listed in Processor.dirty
	agg       Aggregate
}

// queue holds the fetched, not yet processed records of one topic-partition.
type queue struct {
	recs   []*kgo.Record
	next   int64 // offset after the last fetched record (or the seek position)
	paused bool
}

// Stats are running totals since start.
type Stats struct {
	mu                                    sync.Mutex
	Accepted, Rejected, Duplicates, Batch int64
	// Events counts device and profile events applied.
	Events int64
	// Alerts counts alerts raised.
	Alerts int64
}

// Snapshot returns a copy of the reading totals.
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
		cfg:       cfg,
		log:       log,
		pool:      pool,
		store:     &store{pool: pool, group: cfg.Group},
		pos:       make(map[tp]int64),
		queues:    make(map[int32]*[kinds]queue),
		ends:      make(map[tp]int64),
		reg:       promreg.OrNew(cfg.Registry),
		m:         newProcMetrics(),
		cache:     make(map[UserKey]*cachedAggregate),
		tenants:   make(map[string]string),
		processed: make(map[tp]int64),
		seq:       make(map[int32]int64),
		skip:      make(map[tp]int64),
	}
	p.topics[kindProfile] = cfg.Kafka.Topics.ProfileEvents
	p.topics[kindDevice] = cfg.Kafka.Topics.DeviceEvents
	p.topics[kindReading] = cfg.Kafka.Topics.Readings
	p.codecs.reading = schemas.MustCodec(schemas.NameReading)
	p.codecs.device = schemas.MustCodec(schemas.NameDeviceEvent)
	p.codecs.profile = schemas.MustCodec(schemas.NameProfileEvent)
	p.codecs.accepted = schemas.MustCodec(schemas.NameAcceptedReading)
	p.codecs.rejected = schemas.MustCodec(schemas.NameRejectedReading)
	p.codecs.alert = schemas.MustCodec(schemas.NameAlert)
	p.codecs.erasure = schemas.MustCodec(schemas.NameErasure)
	p.accepted = newAcceptedEncoder(p.codecs.accepted)
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
		kgo.ConsumeTopics(p.topics[:]...),
		kgo.SessionTimeout(cfg.SessionTimeout),
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
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("processor: kafka client: %w", err)
	}
	p.cl, p.adm = cl, kadm.NewClient(cl)
	if p.prod, err = p.newProducer(); err != nil {
		cl.Close()
		pool.Close()
		return nil, err
	}
	if p.registered, err = promreg.Register(p.reg, p.m.collectors()...); err != nil {
		p.prod.Close()
		cl.Close()
		pool.Close()
		return nil, fmt.Errorf("processor: %w", err)
	}
	return p, nil
}

// Stats returns the running totals.
func (p *Processor) Stats() *Stats { return &p.stats }

// Metrics returns the registry the processor's metrics are in.
func (p *Processor) Metrics() *promreg.Registry { return p.reg }

// kindOf maps a topic to its input kind.
func (p *Processor) kindOf(topic string) int {
	for k, t := range p.topics {
		if t == topic {
			return k
		}
	}
	return -1
}

// seekToStored replaces the group's committed offsets with the ones stored
// in PostgreSQL beside the aggregates. Partitions never processed start at
// the beginning of the log.
func (p *Processor) seekToStored(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	seqs := map[int32]int64{}
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
		k := p.kindOf(topic)
		p.mu.Lock()
		for _, id := range ids {
			st, ok := stored[id]
			o := st.Next
			seqs[id] = max(seqs[id], st.OutSeq)
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
	}
	// Outputs emitted after the stored checkpoint (by a crashed run or the
	// previous owner) are already in the output topics: learn how far.
	ids := make([]int32, 0, len(seqs))
	for id := range seqs {
		ids = append(ids, id)
	}
	tails, err := p.lastSeqs(ctx, ids)
	if err != nil {
		p.log.Warn().Err(err).Msg("cannot read the output topics' tails; the group will retry the assignment")
		return nil, err
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
	return offsets, nil
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
	for k, c := range p.cache {
		if gone[c.partition] {
			delete(p.cache, k)
		}
	}
	kept := p.dirty[:0]
	for _, c := range p.dirty {
		if gone[c.partition] {
			c.dirty = false
		} else {
			kept = append(kept, c)
		}
	}
	clear(p.dirty[len(kept):])
	p.dirty = kept
}

// dropUncommitted forgets every aggregate and position not yet
// checkpointed, after a step failed half way: what was applied but not
// produced must never be committed.
func (p *Processor) dropUncommitted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.cache)
	for _, c := range p.dirty {
		c.dirty = false
	}
	clear(p.dirty)
	p.dirty = p.dirty[:0]
	clear(p.processed)
}

// Run consumes until ctx ends. A batch already produced when ctx ends is
// still committed, within ShutdownGrace, before Run returns.
func (p *Processor) Run(ctx context.Context) error {
	p.log.Info().Str("group", p.cfg.Group).Msg("processing")
	if p.cfg.MetricsAddr != "" {
		if err := p.reg.ServeMetrics(ctx, p.log, p.cfg.MetricsAddr); err != nil {
			return fmt.Errorf("processor: %w", err)
		}
	}
	blocked := false
	p.checkpoint = time.Now()
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		switch {
		case blocked: // wake up to look at the log ends again
			pctx, cancel = context.WithTimeout(ctx, 250*time.Millisecond)
		case p.pending():
			pctx, cancel = context.WithDeadline(ctx, p.checkpoint.Add(p.cfg.CheckpointInterval))
		}
		fetches := p.cl.PollRecords(pctx, p.cfg.MaxBatch)
		cancel()
		if ctx.Err() != nil {
			err := p.finalCheckpoint(ctx)
			p.cl.AllowRebalance()
			return err
		}
		var fatal error
		fetches.EachError(func(t string, part int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
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
		batch := p.take(ctx, fetches)
		// While records wait in the merge, polls must time out so the log
		// ends are looked at again: an empty topic never wakes a poll.
		blocked = p.buffered() > 0
		if len(batch) > 0 {
			if err := p.handle(ctx, batch); err != nil {
				p.dropUncommitted()
				p.cl.AllowRebalance()
				if ctx.Err() != nil && !errors.Is(err, errFenced) {
					p.log.Warn().Err(err).Msg("stopped before the step finished; it will be processed again")
					return nil
				}
				return err
			}
		}
		if err := p.checkpointIfDue(ctx); err != nil {
			p.dropUncommitted()
			p.cl.AllowRebalance()
			if ctx.Err() != nil && !errors.Is(err, errFenced) {
				return nil
			}
			return err
		}
		p.cl.AllowRebalance()
	}
}

// pending reports whether anything was processed since the last checkpoint.
func (p *Processor) pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.processed) > 0
}

// finalCheckpoint commits what was processed before a graceful stop,
// within ShutdownGrace.
func (p *Processor) finalCheckpoint(ctx context.Context) error {
	if !p.pending() {
		return nil
	}
	cctx, cancel := afterGrace(ctx, p.cfg.ShutdownGrace)
	defer cancel()
	err := p.commitCheckpoint(cctx)
	if err != nil && !errors.Is(err, errFenced) {
		p.log.Warn().Err(err).Msg("stopped without a final checkpoint; the next start re-processes from the previous one")
		return nil
	}
	return err
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
	p.mu.Lock()
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
	p.mu.Unlock()

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

// batch collects one step's outputs and touched aggregates.
type batch struct {
	outputs []*kgo.Record
	touched []*cachedAggregate // users whose aggregate the step applied events to
	// counts counts the rarer outcomes by kind, outcome and reason; the
	// common ones (accepted, duplicate, held readings) have counters of
	// their own, so most records hash no strings for their metrics.
	counts                                               map[[3]string]int64
	accepted, rejected, duplicates, held, events, alerts int64

	outs []Outcome               // one record's outcomes, reused
	acc  schemas.AcceptedReading // the accepted reading being encoded, reused
	mem  outputMemory
}

func (b *batch) count(kind, outcome, reason string) { b.counts[[3]string{kind, outcome, reason}]++ }

// outputMemory hands out the records, headers and bytes of a step's
// outputs from chunks holding many of them, instead of allocating several
// objects per output. An output lives until the broker acknowledged it,
// about as long as the others of its step, so chunks are not held on to
// much longer than their outputs would be.
type outputMemory struct {
	recs []kgo.Record
	hdrs []kgo.RecordHeader
	buf  []byte
}

const (
	outputChunkRecords = 256
	outputChunkBytes   = 64 << 10
)

// record returns a zero record.
func (m *outputMemory) record() *kgo.Record {
	if len(m.recs) == cap(m.recs) {
		m.recs = make([]kgo.Record, 0, outputChunkRecords)
	}
	m.recs = m.recs[:len(m.recs)+1]
	return &m.recs[len(m.recs)-1]
}

// header returns a one-header list holding h.
func (m *outputMemory) header(h kgo.RecordHeader) []kgo.RecordHeader {
	if len(m.hdrs) == cap(m.hdrs) {
		m.hdrs = make([]kgo.RecordHeader, 0, outputChunkRecords)
	}
	m.hdrs = append(m.hdrs, h)
	n := len(m.hdrs)
	return m.hdrs[n-1 : n : n]
}

// room returns the byte chunk being filled with at least n bytes of
// capacity left; append to it, then pass the result to take.
func (m *outputMemory) room(n int) []byte {
	if cap(m.buf)-len(m.buf) < n {
		m.buf = make([]byte, 0, max(outputChunkBytes, n))
	}
	return m.buf
}

// take keeps what was appended to the chunk room returned and returns it.
// (Had an append outgrown the chunk, the result is a new array holding the
// chunk's bytes too, at the same positions: it becomes the chunk, and the
// slice returned is still right.)
func (m *outputMemory) take(b []byte) []byte {
	start := len(m.buf)
	m.buf = b
	return b[start:len(b):len(b)]
}

// bytes returns a copy of s in the chunk.
func (m *outputMemory) bytes(s string) []byte {
	return m.take(append(m.room(len(s)), s...))
}

// decoded is one input record, decoded.
type decoded struct {
	rec     *kgo.Record
	kind    int
	reading *schemas.Reading
	device  *schemas.DeviceEvent
	profile *schemas.ProfileEvent
	key     UserKey
	user    *cachedAggregate // the user's aggregate, if decoded
}

// handle applies records in merge order and sends their outputs; the next
// checkpoint waits for the outputs' acks before it commits the step.
func (p *Processor) handle(ctx context.Context, records []*kgo.Record) error {
	p.step++
	if cap(p.in) < len(records) {
		p.in = make([]decoded, len(records))
	}
	in := p.in[:len(records)]
	n := 0
	for i, r := range records {
		if in[i].kind = p.kindOf(r.Topic); in[i].kind == kindReading {
			n++
		}
	}
	// Nothing keeps a pointer to a decoded reading past the step (a held
	// reading is copied into its aggregate), so the step's readings take
	// turns in one slice.
	if cap(p.readings) < n {
		p.readings = make([]schemas.Reading, n)
	}
	readings := p.readings[:n]
	defer func() {
		// Let what the step decoded go, even if no step follows soon.
		clear(in)
		clear(p.readings[:n])
	}()
	missing := make(map[UserKey]struct{})
	for i, r := range records {
		d := &in[i]
		d.rec = r
		var err error
		switch d.kind {
		case kindReading:
			d.reading, readings = &readings[0], readings[1:]
			*d.reading = schemas.Reading{} // decoding may leave fields the writer's schema lacks
			if err = p.codecs.reading.Decode(r.Value, d.reading); err == nil {
				d.key = UserKey{d.reading.TenantID, d.reading.UserID}
			} else {
				d.reading = nil
			}
		case kindDevice:
			d.device = new(schemas.DeviceEvent)
			if err = p.codecs.device.Decode(r.Value, d.device); err == nil {
				d.key = UserKey{d.device.TenantID, d.device.UserID}
			} else {
				d.device = nil
			}
		case kindProfile:
			d.profile = new(schemas.ProfileEvent)
			if err = p.codecs.profile.Decode(r.Value, d.profile); err == nil {
				d.key = UserKey{d.profile.TenantID, d.profile.UserID}
			} else {
				d.profile = nil
			}
		}
		if err == nil {
			if d.user = p.cache[d.key]; d.user == nil {
				missing[d.key] = struct{}{}
			}
		}
	}
	// Users not in memory yet are loaded from their last checkpoint.
	if len(missing) > 0 {
		keys := make([]UserKey, 0, len(missing))
		for k := range missing {
			keys = append(keys, k)
		}
		var loaded map[UserKey]*Aggregate
		if err := p.retry(ctx, "load aggregates", func(ctx context.Context) (err error) {
			loaded, err = p.store.load(ctx, keys)
			return err
		}); err != nil {
			return err // ctx ended before anything was applied: nothing to finish
		}
		for _, k := range keys {
			// The key's strings are copied for the same reason as the ids
			// an aggregate remembers (see judge); the few tenant ids once
			// each, so that comparing a key's tenant on every lookup reads
			// memory that is in cache.
			tenant, ok := p.tenants[k.Tenant]
			if !ok {
				tenant = strings.Clone(k.Tenant)
				p.tenants[tenant] = tenant
			}
			k := UserKey{tenant, strings.Clone(k.User)}
			c := &cachedAggregate{key: k}
			if agg := loaded[k]; agg != nil {
				c.agg = *agg
			}
			p.cache[k] = c
		}
		for i := range in {
			if d := &in[i]; d.user == nil && (d.reading != nil || d.device != nil || d.profile != nil) {
				d.user = p.cache[d.key]
			}
		}
	}

	b := batch{counts: make(map[[3]string]int64)}
	// The last offset applied per partition number and input kind, -1 for
	// none. A step's records come partition by partition (see take), so
	// the map is consulted about once per partition.
	last := map[int32]*[kinds]int64{}
	lastPart, lastOffs := int32(-1), (*[kinds]int64)(nil)
	for i := range in {
		d := &in[i]
		from := len(b.outputs)
		if c := d.user; c != nil {
			c.partition = d.rec.Partition
			if c.step != p.step {
				c.step = p.step
				b.touched = append(b.touched, c)
			}
		}
		p.apply(&b, d)
		part := d.rec.Partition
		if len(b.outputs) > from {
			seq := p.seq[part]
			for _, o := range b.outputs[from:] {
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
		if lastOffs == nil || part != lastPart {
			if lastOffs = last[part]; lastOffs == nil {
				lastOffs = &[kinds]int64{-1, -1, -1}
				last[part] = lastOffs
			}
			lastPart = part
		}
		if d.kind >= 0 {
			lastOffs[d.kind] = d.rec.Offset
		}
	}
	p.send(b.outputs)
	// Outputs are acknowledged: the step's effects may now be checkpointed.
	p.mu.Lock()
	for part, offs := range last {
		for k, off := range offs {
			if off < 0 {
				continue
			}
			t := tp{p.topics[k], part}
			if _, owned := p.pos[t]; owned {
				p.processed[t] = off + 1
			}
		}
	}
	for _, c := range b.touched {
		if !c.dirty {
			c.dirty = true
			p.dirty = append(p.dirty, c)
		}
	}
	p.mu.Unlock()
	p.m.batchSize.Observe(float64(len(records)))
	for _, c := range []struct {
		outcome string
		n       int64
	}{{"accepted", b.accepted}, {"duplicate", b.duplicates}, {"held", b.held}} {
		if c.n > 0 {
			p.m.events.WithLabelValues("reading", c.outcome, "").Add(float64(c.n))
		}
	}
	for k, n := range b.counts {
		p.m.events.WithLabelValues(k[0], k[1], k[2]).Add(float64(n))
	}
	p.stats.mu.Lock()
	p.stats.Accepted += b.accepted
	p.stats.Rejected += b.rejected
	p.stats.Duplicates += b.duplicates
	p.stats.Events += b.events
	p.stats.Alerts += b.alerts
	p.stats.Batch++
	p.stats.mu.Unlock()
	p.log.Debug().Int64("accepted", b.accepted).Int64("rejected", b.rejected).Int64("duplicates", b.duplicates).Int64("events", b.events).Msg("step applied")
	return nil
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

// apply judges one decoded record and appends its outputs to the batch.
func (p *Processor) apply(b *batch, d *decoded) {
	r := d.rec
	switch {
	case d.reading != nil:
		agg := &d.user.agg
		src := Held{Partition: r.Partition, Offset: r.Offset, Original: r.Value}
		b.outs = agg.appendReading(b.outs[:0], d.reading, &src, p.cfg.Rules)
		held := true
		for i := range b.outs {
			if b.outs[i].Held == nil {
				held = false
			}
			p.emit(b, &b.outs[i], r)
		}
		if held {
			b.held++
		}
	case d.device != nil:
		b.events++
		b.count("device", "applied", d.device.Kind)
		agg := &d.user.agg
		outs := agg.ApplyDevice(d.device, p.cfg.Rules)
		for i := range outs {
			p.emit(b, &outs[i], r)
		}
	case d.profile != nil:
		b.events++
		b.count("profile", "applied", d.profile.Kind)
		agg := &d.user.agg
		outs, erased := agg.ApplyProfile(d.profile)
		for i := range outs {
			p.emit(b, &outs[i], r)
		}
		if erased {
			ev := d.profile
			val, err := p.codecs.erasure.Encode(&schemas.Erasure{TenantID: ev.TenantID, EventID: ev.EventID, UserID: ev.UserID,
				GatewayID: ev.GatewayID, RequestedAt: ev.OccurredAt, ReceivedAt: ev.ReceivedAt})
			if err != nil {
				panic(fmt.Sprintf("encode erasure: %v", err))
			}
			b.outputs = append(b.outputs, &kgo.Record{Topic: p.cfg.Kafka.Topics.Erasures, Key: r.Key, Value: val})
		}
	default:
		kind := []string{"profile", "device", "reading"}[max(d.kind, 0)]
		b.rejected++
		b.count(kind, "rejected", ReasonMalformedEvent)
		b.outputs = append(b.outputs, p.rejectRecord(r.Key, r.Partition, r.Offset, r.Value, &schemas.RejectedReading{
			UserID:  string(r.Key),
			Reason:  ReasonMalformedEvent,
			Message: "the log record is not a readable " + kind + " message",
		}))
	}
}

// emit turns one outcome into output records. src is the record being
// applied; a released held reading carries its own source position.
func (p *Processor) emit(b *batch, o *Outcome, src *kgo.Record) {
	partition, offset, original := src.Partition, src.Offset, src.Value
	if o.Held != nil {
		partition, offset, original = o.Held.Partition, o.Held.Offset, o.Held.Original
	}
	rd := o.Reading
	switch o.Decision {
	case Duplicate:
		b.duplicates++
	case Reject:
		b.rejected++
		b.count("reading", "rejected", o.Reason)
		b.outputs = append(b.outputs, p.rejectRecord([]byte(rd.UserID), partition, offset, original, &schemas.RejectedReading{
			TenantID: rd.TenantID, EventID: rd.EventID, UserID: rd.UserID, DeviceID: rd.DeviceID,
			Metric: rd.Metric, MeasuredAt: rd.MeasuredAt, Reason: o.Reason, Message: o.Message,
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
		b.acc = schemas.AcceptedReading{
			TenantID: rd.TenantID, EventID: rd.EventID, UserID: rd.UserID, DeviceID: rd.DeviceID,
			GatewayID: rd.GatewayID, Metric: rd.Metric, LOINC: m.LOINC, Value: value, Unit: m.Unit,
			MeasuredAt: rd.MeasuredAt, ReceivedAt: rd.ReceivedAt, IngestedAt: rd.IngestedAt,
			SourcePartition: partition, SourceOffset: offset,
			PeriodEnd: rd.PeriodEnd, SecondValue: second, Stage: rd.Stage, Sequence: rd.Sequence,
		}
		buf, err := p.accepted.append(b.mem.room(p.accepted.bound(&b.acc)), &b.acc)
		if err != nil {
			// The schema is ours and the values came from a decoded message;
			// failing here is a defect, and dropping silently would lose data.
			panic(fmt.Sprintf("encode accepted reading: %v", err))
		}
		val := b.mem.take(buf)
		key := b.mem.bytes(rd.UserID)
		out := b.mem.record()
		out.Topic, out.Key, out.Value = p.cfg.Kafka.Topics.AcceptedReadings, key, val
		b.outputs = append(b.outputs, out)
		if o.Alert != nil {
			b.alerts++
			b.count("alert", o.Alert.Rule, "")
			av, err := p.codecs.alert.Encode(o.Alert)
			if err != nil {
				panic(fmt.Sprintf("encode alert: %v", err))
			}
			b.outputs = append(b.outputs, &kgo.Record{Topic: p.cfg.Kafka.Topics.Alerts, Key: key, Value: av})
		}
	}
}

func (p *Processor) rejectRecord(key []byte, partition int32, offset int64, original []byte, rj *schemas.RejectedReading) *kgo.Record {
	rj.SourcePartition, rj.SourceOffset, rj.Original = partition, offset, original
	val, err := p.codecs.rejected.Encode(rj)
	if err != nil {
		panic(fmt.Sprintf("encode rejected reading: %v", err))
	}
	return &kgo.Record{Topic: p.cfg.Kafka.Topics.RejectedReadings, Key: key, Value: val}
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

// Close leaves the group, releases the connections and withdraws the
// processor's metrics from the registry.
func (p *Processor) Close() {
	p.registered.Unregister()
	p.cl.Close()
	p.out.mu.Lock()
	p.prod.Close()
	p.out.mu.Unlock()
	p.pool.Close()
}
