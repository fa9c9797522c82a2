// Package projector streams the processor's accepted readings into
// ClickHouse. It batches by size and time, inserts, and only then commits the
// batch's Kafka offsets, so a crash at any point redelivers rather than
// loses; the warehouse's ReplacingMergeTree and dedup-aware queries make the
// redelivered copies invisible in answers (see package warehouse).
//
// While ClickHouse is down the projector stops polling and retries the
// pending batch with backoff: Kafka keeps the data and memory stays bounded
// by one batch.
package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/schemas"
)

// Config configures a projector instance.
type Config struct {
	Kafka     eventlog.Config
	Warehouse warehouse.Config
	// Group is the Kafka consumer group of the projectors.
	Group string
	// MaxRows and FlushInterval bound a batch: it is inserted when either
	// is reached.
	MaxRows       int
	FlushInterval time.Duration
	// InsertTimeout bounds one insert attempt; MaxBackoff caps the wait
	// between attempts while ClickHouse is unavailable.
	InsertTimeout time.Duration
	MaxBackoff    time.Duration
	// ShutdownGrace is how long a stopping projector may spend inserting
	// and committing the batch it holds.
	ShutdownGrace time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Kafka:         eventlog.DefaultConfig(),
		Warehouse:     warehouse.DefaultConfig(),
		Group:         "vitals-projector",
		MaxRows:       50000,
		FlushInterval: time.Second,
		InsertTimeout: 30 * time.Second,
		MaxBackoff:    5 * time.Second,
		ShutdownGrace: 15 * time.Second,
	}
}

// Projector is one instance of the projector role.
type Projector struct {
	cfg   Config
	log   zerolog.Logger
	conn  driver.Conn
	cl    *kgo.Client
	codec *schemas.Codec
	sql   string
}

// New connects to ClickHouse (creating the tables if needed) and Kafka.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Projector, error) {
	log = log.With().Str("role", "projector").Logger()
	conn, err := warehouse.Open(ctx, cfg.Warehouse)
	if err != nil {
		return nil, fmt.Errorf("projector: %w", err)
	}
	mctx, cancel := context.WithTimeout(ctx, cfg.InsertTimeout)
	defer cancel()
	if err := warehouse.Migrate(mctx, conn, cfg.Warehouse.Database); err != nil {
		conn.Close()
		return nil, fmt.Errorf("projector: %w", err)
	}
	if err := eventlog.EnsureTopics(ctx, cfg.Kafka, log); err != nil {
		conn.Close()
		return nil, err
	}
	cl, err := kgo.NewClient(append(cfg.Kafka.ClientOpts(log),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Kafka.Topics.AcceptedReadings),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
	)...)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("projector: kafka client: %w", err)
	}
	return &Projector{
		cfg:   cfg,
		log:   log,
		conn:  conn,
		cl:    cl,
		codec: schemas.MustCodec(schemas.NameAcceptedReading),
		sql:   insertSQL(cfg.Warehouse.Database),
	}, nil
}

func insertSQL(db string) string {
	cols := ""
	for i, c := range warehouse.ReadingsColumns {
		if i > 0 {
			cols += ", "
		}
		cols += c
	}
	return fmt.Sprintf("INSERT INTO %s.%s (%s)", db, warehouse.ReadingsTable, cols)
}

// Run projects until ctx ends; the batch held at that moment is still
// inserted and committed within ShutdownGrace.
func (p *Projector) Run(ctx context.Context) error {
	p.log.Info().Str("group", p.cfg.Group).Msg("projecting")
	for ctx.Err() == nil {
		records := p.collect(ctx)
		if len(records) == 0 {
			p.cl.AllowRebalance()
			continue
		}
		err := p.flush(ctx, records)
		p.cl.AllowRebalance()
		if err != nil {
			if ctx.Err() != nil {
				p.log.Warn().Err(err).Int("rows", len(records)).Msg("stopped before the batch was stored; it will be redelivered")
				return nil
			}
			return err
		}
	}
	return nil
}

// collect polls until MaxRows records are held or FlushInterval has passed
// since the first one arrived.
func (p *Projector) collect(ctx context.Context) []*kgo.Record {
	var records []*kgo.Record
	var deadline time.Time
	for len(records) < p.cfg.MaxRows {
		pctx := ctx
		var cancel context.CancelFunc = func() {}
		if !deadline.IsZero() {
			pctx, cancel = context.WithDeadline(ctx, deadline)
		}
		fetches := p.cl.PollRecords(pctx, p.cfg.MaxRows-len(records))
		cancel()
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn().Err(err).Str("topic", t).Int32("partition", part).Msg("fetch error")
			}
		})
		if n := fetches.NumRecords(); n > 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(p.cfg.FlushInterval)
			}
			records = append(records, fetches.Records()...)
		} else if len(records) == 0 {
			// Nothing held: return so Run allows the rebalance that a
			// rejoin (after a broker restart, say) may be waiting for;
			// polling again here would block it forever.
			return nil
		}
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			break
		}
	}
	return records
}

// flush inserts the records, retrying until ClickHouse accepts them, then
// commits their offsets.
func (p *Projector) flush(ctx context.Context, records []*kgo.Record) error {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(p.cfg.ShutdownGrace, cancel) })
	defer stop()

	start := time.Now()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.insert(fctx, records)
		if err == nil {
			if attempt > 1 {
				p.log.Info().Int("attempts", attempt).Msg("clickhouse insert recovered")
			}
			break
		}
		if fctx.Err() != nil {
			return fmt.Errorf("projector: insert: %w", err)
		}
		p.log.Warn().Err(err).Int("attempt", attempt).Dur("backoff", backoff).Int("rows", len(records)).Msg("clickhouse insert failed; retrying")
		select {
		case <-fctx.Done():
			return fmt.Errorf("projector: insert: %w", fctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
	inserted := time.Since(start)
	cctx, ccancel := context.WithTimeout(fctx, p.cfg.InsertTimeout)
	defer ccancel()
	if err := p.cl.CommitRecords(cctx, records...); err != nil {
		// The rows are stored; an uncommitted offset only means they will
		// be delivered again and collapsed by event id.
		p.log.Warn().Err(err).Msg("offset commit failed; the batch will be redelivered")
	}
	p.log.Debug().Int("rows", len(records)).Dur("insert", inserted).Msg("batch stored")
	return nil
}

func (p *Projector) insert(ctx context.Context, records []*kgo.Record) error {
	ictx, cancel := context.WithTimeout(ctx, p.cfg.InsertTimeout)
	defer cancel()
	b, err := p.conn.PrepareBatch(ictx, p.sql)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer b.Abort()
	var r schemas.AcceptedReading
	skipped := 0
	for _, rec := range records {
		if err := p.codec.Decode(rec.Value, &r); err != nil {
			// Only the processor writes this topic; an unreadable record is
			// a defect upstream. Counted and logged, never fatal to the
			// rest of the batch.
			skipped++
			p.log.Error().Err(err).Int32("partition", rec.Partition).Int64("offset", rec.Offset).Msg("undecodable accepted reading")
			continue
		}
		if err := b.Append(r.TenantID, r.UserID, r.DeviceID, r.GatewayID, r.Metric, r.LOINC,
			r.Value, r.Unit, time.UnixMilli(r.MeasuredAt).UTC(), r.MeasuredAt, r.ReceivedAt, r.IngestedAt,
			r.EventID, rec.Topic, rec.Partition, rec.Offset); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// Close leaves the group and closes the connections.
func (p *Projector) Close() {
	p.cl.Close()
	p.conn.Close()
}
