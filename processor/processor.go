// Package processor is Vitals' write model. It consumes the raw readings,
// device-event and profile-event topics in one consumer group; the topics
// are co-partitioned by user id and the group uses the range assignor, so
// each instance owns the same partition numbers of all three, hence a set of
// users with all their events. It judges every event against its user's
// aggregate and emits accepted readings in canonical units, rejected
// readings with a reason, alerts, and erasures; exact repeats are dropped.
// What is judged how is package rules (plain functions of the aggregate
// and the event); this package is the engine around it.
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
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/promreg"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/processor/rules"
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
	// MaxUsers bounds the aggregates kept in memory (default 200,000; 0:
	// no bound). Past it, after a checkpoint, the least recently used users
	// whose state is committed are dropped and loaded again from their
	// checkpoint on their next event; decisions and outputs are the same.
	MaxUsers int
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
	Rules rules.Config
	// UserKeys configures the users' data keys: they open the records
	// read and seal the outputs and snapshots written (docs/privacy.md).
	UserKeys userkeys.Config
}

// DefaultMetricsAddr is where `vitals processor` serves /metrics unless
// told otherwise (--processor-metrics-addr).
const DefaultMetricsAddr = "127.0.0.1:8091"

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Kafka:              eventlog.DefaultConfig(),
		PostgresURL:        postgres.DefaultURL,
		Group:              "vitals-processor",
		SessionTimeout:     45 * time.Second,
		MaxBatch:           10000,
		CheckpointInterval: 5 * time.Second,
		MaxDirty:           250000,
		MaxUsers:           200000,
		OpTimeout:          10 * time.Second,
		MaxBackoff:         5 * time.Second,
		ShutdownGrace:      15 * time.Second,
		Rules:              rules.DefaultConfig(),
		UserKeys:           userkeys.DefaultConfig(),
	}
}

// Reason codes of rejected readings, as package rules gives them.
const (
	ReasonTooLate          = rules.ReasonTooLate
	ReasonFutureTimestamp  = rules.ReasonFutureTimestamp
	ReasonDeviceNotPaired  = rules.ReasonDeviceNotPaired
	ReasonImplausibleValue = rules.ReasonImplausibleValue
	ReasonRateExceeded     = rules.ReasonRateExceeded
	ReasonUserErased       = rules.ReasonUserErased
	ReasonMalformedEvent   = rules.ReasonMalformedEvent
)

// Input kinds, in the order that breaks timestamp ties: a user's profile
// and device changes of the same instant apply before their readings.
const (
	kindProfile = iota
	kindDevice
	kindReading
	kinds
)

// kindNames name the input kinds in metrics and messages.
var kindNames = [kinds]string{"profile", "device", "reading"}

// tp names one topic-partition.
type tp struct {
	topic     string
	partition int32
}

// Processor is one instance of the processor role. Its methods are spread
// over files by concern: the loop (run.go), group membership (group.go),
// the merge of the input topics (merge.go), the step that judges a batch
// (handle.go), the outputs it emits (emit.go) and their delivery
// (outputs.go), the owned users' aggregates (users.go) and checkpoints
// (checkpoint.go, store.go).
type Processor struct {
	cfg   Config
	log   zerolog.Logger
	pool  *pgxpool.Pool
	store *store
	keys  *userkeys.Store
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

	// users are the aggregates of owned users, processed the positions
	// reached since the last checkpoint. Only the Run goroutine and the
	// rebalance callbacks (which never run while a step is in progress)
	// touch them.
	users     users
	processed map[tp]int64
	// plain holds the step's opened record values, recKeys the data key
	// of each of the step's records (see sealing.go).
	plain      []byte
	recKeys    []*userkeys.Key
	checkpoint time.Time
	// timers are the partitions' clocks and held readings' deadlines
	// (timers.go); touched like users.
	timers timers

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
	// ready is closed once New has set every field: the group's callbacks
	// run on the client's goroutines from the moment it exists.
	ready chan struct{}
}

// Stats are running totals since start.
type Stats struct {
	mu                                    sync.Mutex
	Accepted, Rejected, Duplicates, Batch int64
	// Events counts device and profile events applied.
	Events int64
	// Alerts counts alerts raised.
	Alerts int64
	// Shredded counts records of erased users, whose data key is gone:
	// skipped, not rejected (docs/privacy.md).
	Shredded int64
}

// ShreddedCount returns Shredded.
func (s *Stats) ShreddedCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Shredded
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
		ready:     make(chan struct{}),
		users:     newUsers(),
		timers:    newTimers(),
		processed: make(map[tp]int64),
		seq:       make(map[int32]int64),
		skip:      make(map[tp]int64),
	}
	p.setTopics()
	mctx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
	defer cancel()
	if err := p.store.migrate(mctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("processor: migrate state tables: %w", err)
	}
	if p.keys, err = userkeys.Open(mctx, pool, cfg.UserKeys, log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("processor: %w", err)
	}
	if err := eventlog.EnsureTopics(ctx, cfg.Kafka, log); err != nil {
		p.keys.Close()
		pool.Close()
		return nil, err
	}
	cl, err := kgo.NewClient(p.groupOpts()...)
	if err != nil {
		p.keys.Close()
		pool.Close()
		return nil, fmt.Errorf("processor: kafka client: %w", err)
	}
	p.cl, p.adm = cl, kadm.NewClient(cl)
	fail := func(err error) (*Processor, error) {
		close(p.ready) // the callbacks of a closing client must not wait
		if p.prod != nil {
			p.prod.Close()
		}
		cl.Close()
		p.keys.Close()
		pool.Close()
		return nil, err
	}
	if p.prod, err = p.newProducer(); err != nil {
		return fail(err)
	}
	if p.registered, err = promreg.Register(p.reg, p.m.collectors()...); err != nil {
		return fail(fmt.Errorf("processor: %w", err))
	}
	close(p.ready)
	return p, nil
}

// setTopics names the input topics by kind and makes the codecs of the
// messages read and written.
func (p *Processor) setTopics() {
	p.topics[kindProfile] = p.cfg.Kafka.Topics.ProfileEvents
	p.topics[kindDevice] = p.cfg.Kafka.Topics.DeviceEvents
	p.topics[kindReading] = p.cfg.Kafka.Topics.Readings
	p.codecs.reading = schemas.MustCodec(schemas.NameReading)
	p.codecs.device = schemas.MustCodec(schemas.NameDeviceEvent)
	p.codecs.profile = schemas.MustCodec(schemas.NameProfileEvent)
	p.codecs.accepted = schemas.MustCodec(schemas.NameAcceptedReading)
	p.codecs.rejected = schemas.MustCodec(schemas.NameRejectedReading)
	p.codecs.alert = schemas.MustCodec(schemas.NameAlert)
	p.codecs.erasure = schemas.MustCodec(schemas.NameErasure)
	p.accepted = newAcceptedEncoder(p.codecs.accepted)
}

// Stats returns the running totals.
func (p *Processor) Stats() *Stats { return &p.stats }

// Metrics returns the registry the processor's metrics are in.
func (p *Processor) Metrics() *promreg.Registry { return p.reg }

// Close leaves the group, releases the connections and withdraws the
// processor's metrics from the registry.
func (p *Processor) Close() {
	p.registered.Unregister()
	p.cl.Close()
	p.out.mu.Lock()
	p.prod.Close()
	p.out.mu.Unlock()
	p.keys.Close()
	p.pool.Close()
}
