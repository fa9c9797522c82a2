// Package projector streams the processor's outputs (accepted and rejected
// readings, alerts, erasures) and the raw device and profile events into
// ClickHouse. It batches by size and time, inserts, and only then commits
// the batch's Kafka offsets.
//
// # Every record inserted once
//
// The daily rollup (warehouse.DailyRollupTable) is fed by a materialized
// view that counts every row inserted into the readings table, so a
// redelivered record inserted twice would be counted twice there, whatever
// the raw table's ReplacingMergeTree later collapses. ClickHouse 18.16 (the
// server Debian ships) has no insert deduplication tokens for
// non-replicated tables, so the projector itself makes inserts idempotent:
//
//   - every row stores the position of its record (log_partition,
//     log_offset), in the same insert as the row itself;
//   - when a partition is assigned, the projector starts after
//     max(log_offset)+1 stored in that topic's table, or at the Kafka
//     committed offset, whichever is later. Erasure deletes rows, so the
//     stored maximum can fall behind; the committed offset covers that,
//     and records of erased users are never inserted again anyway;
//   - when an insert attempt fails, the retry first reads which positions
//     of the batch are already stored (a timeout may hide a success) and
//     inserts only the rest; tables already stored are not retried.
//
// The processor never re-emits an output after a crash or rebalance, and
// the readings table remains a ReplacingMergeTree read through
// warehouse.DedupReadings, as a second line of defence.
//
// Residual risk: an insert is written as one part per month partition
// (and the view's part) without a transaction. A ClickHouse server crash
// in the middle of one insert can leave some of its parts stored and others
// not; if the projector also restarts before its retry, it resumes after
// the highest stored offset and the missing rows are lost from that table,
// and a crash between the readings part and the view's part leaves the
// rollup short. Replicated tables with insert deduplication, on a current
// release, would close this.
//
// # Erasure
//
// An erasure record is stored in warehouse.ErasedUsersTable first (queries
// anti-join it, so the user disappears from answers at once), then every
// table's rows of the user are deleted with ALTER TABLE ... DELETE (an
// asynchronous mutation). Rows of erased users are filtered out of every
// later insert, including records of other topics that the projector
// reaches later, so the mutations never miss rows inserted after them; a
// projector that inserted rows of a user another instance erased in the
// meantime deletes them itself. Erasures are handled at least once: their
// records are not skipped by position, and both steps are idempotent.
//
// # Replay swaps
//
// Before every insert (and about once a second while idle) the projector
// looks for a pause asked by `vitals replay rebuild` in
// warehouse.ReplayPausesTable; it then acknowledges, drops its batch, waits
// while the rebuilt tables are swapped in, and resumes after the positions
// stored in them (pause.go). Config.Tables limits a projector to some
// tables, for the rebuild's own shadow projector.
//
// # ClickHouse unavailable
//
// The projector stops polling and retries the pending batch with capped,
// jittered exponential backoff, logging each failure; Kafka keeps the data,
// offsets are not committed, and memory stays bounded by the batch in hand
// plus one fetch per broker (FetchMaxBytes), because franz-go does not
// fetch again until the buffered fetch is polled.
package projector

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/promreg"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// Config configures a projector instance.
type Config struct {
	Kafka     eventlog.Config
	Warehouse warehouse.Config
	// Group is the Kafka consumer group of the projectors.
	Group string
	// InstanceID, if set, makes the instance a static group member: a
	// restarted instance with the same id takes its partitions back at
	// once instead of after the dead member's session timeout.
	InstanceID string
	// MaxRows and FlushInterval bound a batch: it is inserted when either
	// is reached.
	MaxRows       int
	FlushInterval time.Duration
	// InsertTimeout bounds one insert attempt (and every other ClickHouse
	// statement); MinBackoff and MaxBackoff bound the wait between attempts
	// while ClickHouse is unavailable.
	InsertTimeout time.Duration
	MinBackoff    time.Duration
	MaxBackoff    time.Duration
	// ShutdownGrace is how long a stopping projector may spend inserting
	// and committing the batch it holds.
	ShutdownGrace time.Duration
	// FetchMaxBytes bounds one fetch response, and so the memory buffered
	// per broker while a batch is being inserted.
	FetchMaxBytes int32
	// Tables, if not empty, limits the projector to the topics of these
	// tables (warehouse table names); `vitals replay rebuild` uses it to
	// rebuild some tables only. warehouse.ErasedUsersTable must be among
	// them: without the erasures, rows of erased users would come back.
	Tables []string
	// MetricsAddr, if set, is where Run serves the Prometheus metrics at
	// GET /metrics. Empty (the default, for projectors embedded in tests
	// and replays): nowhere. `vitals projector` sets DefaultMetricsAddr.
	MetricsAddr string
	// Registry is where the projector registers its metrics and what
	// MetricsAddr serves: the process's registry, shared by the roles of
	// `vitals run`. Nil (the default): a registry of the projector's own.
	Registry *promreg.Registry
	// PostgresURL locates the users' data keys, which open the records.
	PostgresURL string
	// UserKeys configures the data keys (docs/privacy.md).
	UserKeys userkeys.Config
	// Shred makes this projector finish erasures: once ClickHouse has
	// deleted an erased user everywhere (this database, its rebuild's
	// shadow and the old tables a swap kept), it shreds the user's data
	// key. The live projectors do; a rebuild's shadow projector does not.
	Shred bool
}

// DefaultMetricsAddr is where `vitals projector` serves /metrics unless
// told otherwise (--projector-metrics-addr).
const DefaultMetricsAddr = "127.0.0.1:8092"

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Kafka:         eventlog.DefaultConfig(),
		Warehouse:     warehouse.DefaultConfig(),
		Group:         "vitals-projector",
		MaxRows:       50000,
		FlushInterval: time.Second,
		InsertTimeout: 30 * time.Second,
		MinBackoff:    100 * time.Millisecond,
		MaxBackoff:    5 * time.Second,
		ShutdownGrace: 15 * time.Second,
		FetchMaxBytes: 16 << 20,
		PostgresURL:   postgres.DefaultURL,
		UserKeys:      userkeys.DefaultConfig(),
		Shred:         true,
	}
}

// Stats counts what a projector did, for tests and benchmarks.
type Stats struct {
	// Inserted is the rows inserted, over all tables.
	Inserted atomic.Int64
	// Erased is the rows left out because their user is erased.
	Erased atomic.Int64
	// Undecodable is the records skipped because they could not be read.
	Undecodable atomic.Int64
	// Shredded is the records skipped because their user's data key was
	// shredded (the user was erased).
	Shredded atomic.Int64
	// Committed is the records whose offsets were committed.
	Committed atomic.Int64
	// Failures is the failed attempts to store a batch (ClickHouse
	// unavailable or refusing).
	Failures atomic.Int64
}

// Projector is one instance of the projector role.
type Projector struct {
	cfg    Config
	log    zerolog.Logger
	conn   driver.Conn
	cl     *kgo.Client
	db     string
	sinks  map[string]*sink    // by topic
	bufs   map[string]*pending // by table, reused batch after batch
	erased *erasedSet
	keys   *userkeys.Store // nil only in tests that build a projector by hand
	// recKeys is the memory of openRecords' per-record keys.
	recKeys []*userkeys.Key
	pool    *pgxpool.Pool
	stats   Stats
	reg     *promreg.Registry
	m       projMetrics
	// registered are the metrics New registered; Close withdraws them.
	registered *promreg.Registration
	lostGen    atomic.Int64 // bumped when the group session is lost
	// owned and floor serve the pause for a replay swap (pause.go).
	owned owned
	floor map[floorKey]int64
	// verify marks records that may be stored already (resume.go).
	verify verifyMarks
	// shards routes rows on a ClickHouse cluster (shards.go); nil on a
	// single server.
	shards *shardRouter
}

// New connects to ClickHouse (creating or upgrading the tables) and Kafka.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Projector, error) {
	if cfg.MaxRows <= 0 || cfg.FlushInterval <= 0 {
		return nil, fmt.Errorf("projector: batch rows (%d) and flush interval (%s) must be positive", cfg.MaxRows, cfg.FlushInterval)
	}
	log = log.With().Str("role", "projector").Logger()
	conn, err := warehouse.Open(ctx, cfg.Warehouse)
	if err != nil {
		return nil, fmt.Errorf("projector: %w", err)
	}
	mctx, cancel := context.WithTimeout(ctx, 2*cfg.InsertTimeout)
	defer cancel()
	if err := warehouse.Migrate(mctx, conn, cfg.Warehouse.Database); err != nil {
		conn.Close()
		return nil, fmt.Errorf("projector: %w", err)
	}
	if err := eventlog.EnsureTopics(ctx, cfg.Kafka, log); err != nil {
		conn.Close()
		return nil, fmt.Errorf("projector: %w", err)
	}
	pool, err := postgres.Open(ctx, cfg.PostgresURL)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("projector: %w", err)
	}
	keys, err := userkeys.Open(mctx, pool, cfg.UserKeys, log)
	if err != nil {
		pool.Close()
		conn.Close()
		return nil, fmt.Errorf("projector: %w", err)
	}
	conn = closing{conn, func() { keys.Close(); pool.Close() }}
	p := &Projector{
		cfg:   cfg,
		log:   log,
		conn:  conn,
		db:    cfg.Warehouse.Database,
		sinks: map[string]*sink{},
		bufs:  map[string]*pending{},
		floor: map[floorKey]int64{},
		reg:   promreg.OrNew(cfg.Registry),
		keys:  keys,
		pool:  pool,
	}
	p.m = newProjMetrics(&p.stats)
	if c := warehouse.ClusterOf(conn); c != nil {
		p.shards = newShardRouter(c)
	}
	p.erased = newErasedSet(conn, p.db)
	chosen, err := chooseSinks(sinks(cfg.Kafka.Topics), cfg.Tables)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("projector: %w", err)
	}
	var topics []string
	for _, s := range chosen {
		p.sinks[s.topic] = s
		topics = append(topics, s.topic)
		p.m.rows.WithLabelValues(s.table) // exported as 0 from the start
	}
	opts := cfg.Kafka.ClientOpts(log)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(cfg.FetchMaxBytes),
		kgo.AdjustFetchOffsetsFn(p.resumeOffsets),
		kgo.OnPartitionsAssigned(p.owned.assigned),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
			p.owned.removed(ctx, cl, revoked)
			p.m.forget(revoked)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
			p.lostGen.Add(1)
			p.owned.removed(ctx, cl, lost)
			p.m.forget(lost)
		}),
	)...)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("projector: kafka client: %w", err)
	}
	if p.registered, err = promreg.Register(p.reg, p.m.collectors()...); err != nil {
		cl.Close()
		conn.Close()
		return nil, fmt.Errorf("projector: %w", err)
	}
	p.cl = cl
	return p, nil
}

// Stats returns the projector's counters.
func (p *Projector) Stats() *Stats { return &p.stats }

// Metrics returns the registry the projector's metrics are in.
func (p *Projector) Metrics() *promreg.Registry { return p.reg }

// Run projects until ctx ends; the batch held at that moment is still
// inserted and committed within ShutdownGrace.
func (p *Projector) Run(ctx context.Context) error {
	p.log.Info().Str("group", p.cfg.Group).Int("batch_rows", p.cfg.MaxRows).Dur("flush_interval", p.cfg.FlushInterval).Msg("projecting")
	if p.cfg.MetricsAddr != "" {
		if err := p.reg.ServeMetrics(ctx, p.log, p.cfg.MetricsAddr); err != nil {
			return fmt.Errorf("projector: %w", err)
		}
	}
	if p.cfg.Shred && p.keys != nil {
		done := make(chan struct{})
		sctx, stop := context.WithCancel(ctx)
		go func() { defer close(done); p.shredLoop(sctx) }()
		defer func() { stop(); <-done }()
	}
	for ctx.Err() == nil {
		gen := p.lostGen.Load()
		records := p.aboveFloor(p.collect(ctx))
		if len(records) == 0 {
			// Idle: acknowledge a pause now rather than at the next batch,
			// so that a swap need not wait for traffic. An error here is
			// harmless: flush checks again before inserting anything.
			if _, err := p.honourPause(ctx); err != nil && ctx.Err() == nil {
				p.log.Debug().Err(err).Msg("cannot check for a replay pause while idle")
			}
			p.cl.AllowRebalance()
			continue
		}
		err := p.flush(ctx, records, gen)
		p.cl.AllowRebalance()
		if errors.Is(err, errPaused) {
			continue // the batch was dropped; the partitions were re-sought
		}
		if err != nil {
			if ctx.Err() != nil {
				p.log.Warn().Err(err).Int("records", len(records)).Msg("stopped before the batch was stored; it will be redelivered")
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
		// While idle, return now and then so that Run looks for a replay
		// pause.
		pctx, cancel := context.WithTimeout(ctx, pauseCheckEvery)
		if !deadline.IsZero() {
			cancel()
			pctx, cancel = context.WithDeadline(ctx, deadline)
		}
		fetches := p.cl.PollRecords(pctx, p.cfg.MaxRows-len(records))
		cancel()
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn().Err(err).Str("topic", t).Int32("partition", part).Msg("fetch error")
			}
		})
		p.m.noteEnds(fetches)
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

// pending is one table's share of a batch and how far storing it got.
// Each projector keeps one per table and reuses its column slices batch
// after batch (flush resets them when it is done with the batch).
type pending struct {
	sink *sink
	buf  tableBuf
	cols []namedColumn // buf's columns, in INSERT order
	rows []row         // row i's key; its values are at index i of every column
	keep []int         // scratch for retain
	// stored: the table has the rows; retries skip it.
	stored bool
	// uncertain: an attempt failed, possibly after the server stored some
	// of the rows; the next attempt reads what is stored first.
	uncertain bool
	// groups are the rows split by shard on a cluster (shards.go), once
	// per batch (split).
	groups []shardGroup
	split  bool
}

func newPending(s *sink) *pending {
	b := s.newBuf()
	return &pending{sink: s, buf: b, cols: b.columns()}
}

// add decodes a record into the table's columns.
func (t *pending) add(rec *kgo.Record) (row, error) {
	r, err := t.buf.add(rec)
	if err != nil {
		return row{}, err
	}
	t.rows = append(t.rows, r)
	return r, nil
}

// retain keeps the rows for which keep is true, in every column, and
// returns how many it dropped.
func (t *pending) retain(keep func(r row) bool) int {
	t.keep = t.keep[:0]
	for i, r := range t.rows {
		if keep(r) {
			t.keep = append(t.keep, i)
		}
	}
	dropped := len(t.rows) - len(t.keep)
	if dropped == 0 {
		return 0
	}
	t.rows = retain(t.rows, t.keep)
	for _, c := range t.cols {
		c.col.retain(t.keep)
	}
	return dropped
}

// reset empties the table for the next batch; the references to this
// batch's records go with it.
func (t *pending) reset() {
	clear(t.rows)
	t.rows = t.rows[:0]
	for _, c := range t.cols {
		c.col.reset()
	}
	if rb, ok := t.buf.(*revisionsBuf); ok {
		clear(rb.records)
		rb.records = rb.records[:0]
	}
	t.stored, t.uncertain = false, false
	for _, g := range t.groups {
		g.t.reset()
	}
	t.groups, t.split = t.groups[:0], false
}

// batch is a decoded batch of records, table by table.
type batch struct {
	tables   []*pending // erased_users first, so erasures are stored before any other row
	erasures []row
	deleted  bool // the erasures' deletes were issued
	// accepted lists the accepted readings' records in order, and
	// readings and revisions are their tables' shares, for resolve
	// (revisions.go); resolved says it has made the revision rows.
	accepted            []acceptedRef
	readings, revisions *pending
	resolved            bool
}

// release resets the batch's tables for reuse by the next batch.
func (b *batch) release() {
	for _, t := range b.tables {
		t.reset()
	}
}

// decode sorts records into their tables. Undecodable records are logged
// (position only) and skipped: only Vitals writes these topics, so such a
// record is a defect upstream, and it must not stop the projection.
func (p *Projector) decode(records []*kgo.Record, o opened) *batch {
	b := &batch{}
	var byTable [8]*pending // the batch's tables so far; there are seven
	inBatch := byTable[:0]
	for _, rec := range records {
		s, ok := p.sinks[rec.Topic]
		if !ok || o.skip[rec] {
			continue
		}
		t := p.pendingOf(s)
		first := !slices.Contains(inBatch, t)
		if first {
			t.reset() // empty already, unless a batch was not released
		}
		r, err := t.add(rec)
		if errors.Is(err, errRevision) {
			// A revision: the revisions table's rows, made when the batch
			// is stored (resolve).
			s, first, t = s.revisions, false, p.pendingOf(s.revisions)
			if !slices.Contains(inBatch, t) {
				t.reset()
				first = true
			}
			r, err = t.buf.add(rec)
			if err == nil {
				b.accepted = append(b.accepted, acceptedRef{revision: true, i: len(t.buf.(*revisionsBuf).records) - 1})
				b.revisions = t
			}
		} else if err == nil && s.revisions != nil {
			b.accepted = append(b.accepted, acceptedRef{i: len(t.rows) - 1})
			b.readings = t
		}
		if err == nil && p.verifying(rec) {
			t.uncertain = true // stored before a crash, perhaps: insert checks (resume.go)
		}
		if err != nil {
			p.stats.Undecodable.Add(1)
			p.log.Error().Err(err).Str("topic", rec.Topic).Int32("partition", rec.Partition).Int64("offset", rec.Offset).Msg("undecodable record skipped")
			continue
		}
		if first {
			inBatch = append(inBatch, t)
			if s.erasure {
				b.tables = append([]*pending{t}, b.tables...)
			} else {
				b.tables = append(b.tables, t)
			}
		}
		if s.erasure {
			b.erasures = append(b.erasures, r)
		}
	}
	p.eraseShredded(b, o.shredded)
	return b
}

// pendingOf is the projector's share of a batch for sink s's table.
func (p *Projector) pendingOf(s *sink) *pending {
	t := p.bufs[s.table]
	if t == nil {
		t = newPending(s)
		p.bufs[s.table] = t
	}
	return t
}

// errLost means the group session was lost while the batch was pending:
// another instance may own its partitions now, so it must not be stored.
var errLost = errors.New("partitions lost while the batch was pending")

// flush stores the batch, retrying until ClickHouse accepts it, then
// commits the records' offsets.
func (p *Projector) flush(ctx context.Context, records []*kgo.Record, gen int64) error {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(p.cfg.ShutdownGrace, cancel) })
	defer stop()

	o, err := p.openWithRetry(fctx, records)
	if err != nil {
		return fmt.Errorf("projector: open records: %w", err)
	}
	b := p.decode(records, o)
	defer b.release()
	start := time.Now()
	backoff := p.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		if p.lostGen.Load() != gen {
			p.log.Warn().Int("records", len(records)).Msg("group session lost; dropping the batch, the partitions' new owner stores it")
			return nil
		}
		// No insert while a replay swaps tables (pause.go); a failed check
		// counts as a failed attempt.
		paused, err := p.honourPause(fctx)
		if err == nil && paused {
			return errPaused
		}
		if err == nil {
			err = p.store(fctx, b)
		}
		if err == nil {
			if attempt > 1 {
				p.log.Info().Int("attempts", attempt).Dur("outage", time.Since(start)).Msg("clickhouse insert recovered")
			}
			break
		}
		p.stats.Failures.Add(1)
		if fctx.Err() != nil {
			return fmt.Errorf("projector: store batch: %w", err)
		}
		// Equal jitter: half the backoff fixed, half random, so projectors
		// that failed together do not retry together.
		wait := backoff/2 + rand.N(backoff/2+1)
		p.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", wait).Int("records", len(records)).Msg("clickhouse unavailable; offsets not committed, retrying")
		select {
		case <-fctx.Done():
			return fmt.Errorf("projector: store batch: %w (after %d attempts)", fctx.Err(), attempt)
		case <-time.After(wait):
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
	stored := time.Since(start)
	p.m.batch.Observe(float64(len(records)))
	cctx, ccancel := context.WithTimeout(fctx, p.cfg.InsertTimeout)
	defer ccancel()
	if err := p.cl.CommitRecords(cctx, records...); err != nil {
		// The rows are stored with their positions; whoever consumes the
		// partitions next resumes after them.
		p.log.Warn().Err(err).Msg("offset commit failed; the next owner resumes from the positions stored in ClickHouse")
	} else {
		p.stats.Committed.Add(int64(len(records)))
		p.m.committed(records)
	}
	p.log.Debug().Int("records", len(records)).Dur("store", stored).Msg("batch stored")
	return nil
}

// store inserts what is not stored yet. It is called again after a
// failure, so every step is idempotent: stored tables are skipped, an
// uncertain table is first checked for rows already there, and erasure
// steps can be repeated.
func (p *Projector) store(ctx context.Context, b *batch) error {
	sctx, cancel := context.WithTimeout(ctx, p.cfg.InsertTimeout)
	defer cancel()
	// The revisions' rows, from the versions stored before the batch and
	// the batch's own, before any of its rows is dropped or stored.
	if b.revisions != nil && !b.resolved {
		if err := resolve(b.accepted, b.readings, b.revisions, func(keys []eventKey) (map[eventKey][]version, error) {
			return p.heldVersions(sctx, keys)
		}); err != nil {
			return err
		}
		b.resolved = true
	}
	// Erasures first: once stored, queries hide the user and every later
	// insert (ours or another instance's) leaves the user out.
	if len(b.erasures) > 0 && !b.tables[0].stored {
		if err := p.insert(sctx, b.tables[0]); err != nil {
			return err
		}
	}
	before, err := p.erased.refresh(sctx)
	if err != nil {
		return err
	}
	p.erased.add(b.erasures)
	for _, t := range b.tables {
		if t.stored {
			continue
		}
		p.erased.filter(t, &p.stats.Erased)
		if err := p.insert(sctx, t); err != nil {
			return err
		}
	}
	// Another instance may have stored an erasure of one of this batch's
	// users after our filter and issued its deletes before our insert;
	// those rows would survive its mutation, so delete them here.
	after, err := p.erased.refresh(sctx)
	if err != nil {
		return err
	}
	targets := append([]row(nil), b.erasures...)
	if after != before {
		targets = append(targets, p.erased.erasedIn(b.tables)...)
	}
	if len(targets) > 0 && !b.deleted {
		if err := p.deleteUsers(sctx, targets); err != nil {
			return err
		}
		if err := p.notePending(sctx, targets); err != nil {
			return err
		}
		b.deleted = true
	}
	return nil
}

// insert stores one table's rows in one INSERT.
func (p *Projector) insert(ctx context.Context, t *pending) error {
	if p.shards != nil {
		return p.insertSharded(ctx, t)
	}
	if t.uncertain && t.sink.resume {
		if err := p.dropStored(ctx, t); err != nil {
			return err
		}
	}
	if len(t.rows) == 0 {
		t.stored = true
		return nil
	}
	t.uncertain = true
	start := time.Now()
	b, err := p.conn.PrepareBatch(ctx, t.sink.insertSQL(p.db))
	if err != nil {
		return fmt.Errorf("insert into %s: prepare: %w", t.sink.table, err)
	}
	defer b.Abort()
	// Column by column: the slices go to clickhouse-go whole, and t keeps
	// them for a retry.
	if err := sendColumns(b, t); err != nil {
		return fmt.Errorf("insert into %s: append: %w", t.sink.table, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", t.sink.table, err)
	}
	t.stored, t.uncertain = true, false
	p.stats.Inserted.Add(int64(len(t.rows)))
	p.m.insert.WithLabelValues(t.sink.table).Observe(time.Since(start).Seconds())
	p.m.rows.WithLabelValues(t.sink.table).Add(float64(len(t.rows)))
	return nil
}

// dropStored drops the rows of t whose positions the table holds, after a
// failed attempt that may have stored some of them.
func (p *Projector) dropStored(ctx context.Context, t *pending) error {
	type span struct{ lo, hi int64 }
	spans := map[int32]span{}
	for _, r := range t.rows {
		s, ok := spans[r.partition]
		if !ok {
			s = span{r.offset, r.offset}
		}
		spans[r.partition] = span{min(s.lo, r.offset), max(s.hi, r.offset)}
	}
	type pos struct {
		part int32
		off  int64
	}
	have := map[pos]bool{}
	for part, s := range spans {
		q := fmt.Sprintf("SELECT log_offset FROM %s.%s WHERE log_partition = ? AND log_offset >= ? AND log_offset <= ?", p.db, t.sink.table)
		offs, err := warehouse.ScanSet[int64](p.conn.Query(ctx, q, part, s.lo, s.hi))
		if err != nil {
			return fmt.Errorf("check stored rows of %s: %w", t.sink.table, err)
		}
		for off := range offs {
			have[pos{part, off}] = true
		}
	}
	if skipped := t.retain(func(r row) bool { return !have[pos{r.partition, r.offset}] }); skipped > 0 {
		p.log.Info().Str("table", t.sink.table).Int("already_stored", skipped).Msg("a failed insert had stored some rows; inserting the rest")
	}
	return nil
}

// Close leaves the group, closes the connections and withdraws the
// projector's metrics from the registry.
func (p *Projector) Close() {
	p.registered.Unregister()
	p.cl.Close()
	p.conn.Close()
}
