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
	"github.com/vitalshq/vitals/internal/metrics"
	"github.com/vitalshq/vitals/internal/postgres"
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
	// OpTimeout bounds each PostgreSQL operation and produce attempt.
	OpTimeout time.Duration
	// MaxBackoff caps the wait between retries while PostgreSQL or Kafka is
	// unavailable; the processor retries until it succeeds or is stopped.
	MaxBackoff time.Duration
	// ShutdownGrace is how long a stopping processor may spend finishing
	// the batch it already started producing.
	ShutdownGrace time.Duration
	// MetricsAddr, if set, serves Prometheus metrics at /metrics.
	MetricsAddr string
	// Rules are the aggregate's invariants.
	Rules rules.Config
}

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
		Rules:              rules.DefaultConfig(),
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
	users      users
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

	stats Stats
	m     procMetrics
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

// procMetrics are what the processor exports at /metrics.
type procMetrics struct {
	reg       *metrics.Registry
	events    *metrics.CounterVec   // kind, outcome, reason
	commit    *metrics.HistogramVec // (none)
	batchSize *metrics.HistogramVec
	lag       *metrics.GaugeVec // topic, partition
	// checkpointUsers counts aggregates written per checkpoint.
	checkpointUsers *metrics.HistogramVec
	// resent counts outputs produced again after unacknowledged sends.
	resent *metrics.CounterVec
}

func newProcMetrics() procMetrics {
	r := metrics.NewRegistry()
	return procMetrics{
		reg:             r,
		events:          r.Counter("vitals_processor_events_total", "Events judged, by kind (reading, device, profile), outcome (accepted, rejected, duplicate, held, applied) and reason.", "kind", "outcome", "reason"),
		commit:          r.Histogram("vitals_processor_commit_seconds", "Time to commit a checkpoint (changed aggregates and offsets) to PostgreSQL.", []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}),
		batchSize:       r.Histogram("vitals_processor_batch_records", "Records per applied step.", []float64{1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000}),
		checkpointUsers: r.Histogram("vitals_processor_checkpoint_users", "Aggregates written per checkpoint.", []float64{1, 10, 100, 1000, 10000, 50000, 100000, 250000}),
		resent:          r.Counter("vitals_processor_outputs_resent_total", "Outputs produced again because their first send was not acknowledged (only those the output topics did not already hold)."),
		lag:             r.Gauge("vitals_processor_lag_records", "Records between the stored position and the log end, per owned topic-partition.", "topic", "partition"),
	}
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
		m:         newProcMetrics(),
		users:     newUsers(),
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
	if err := eventlog.EnsureTopics(ctx, cfg.Kafka, log); err != nil {
		pool.Close()
		return nil, err
	}
	cl, err := kgo.NewClient(p.groupOpts()...)
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

// Metrics returns the processor's metrics registry.
func (p *Processor) Metrics() *metrics.Registry { return p.m.reg }

// Close leaves the group and releases the connections.
func (p *Processor) Close() {
	p.cl.Close()
	p.out.mu.Lock()
	p.prod.Close()
	p.out.mu.Unlock()
	p.pool.Close()
}
