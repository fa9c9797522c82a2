package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/procs"
	"github.com/vitalshq/vitals/lab/simulate"
	"github.com/vitalshq/vitals/schemas"
)

// e2eSettings are bench e2e's own flags.
type e2eSettings struct {
	runs               int
	users              int
	maxRate, freshRate float64
	maxFor, freshFor   time.Duration
	engineRate         float64
	engineFor, catchUp time.Duration
	results, logDir    string
	keep               bool
	format             string
}

// e2eRun is one run's result, one JSON line in bench/results/e2e.jsonl.
type e2eRun struct {
	Date    string          `json:"date"`
	Commit  string          `json:"commit"`
	Command string          `json:"command"`
	Machine loadgen.Machine `json:"machine"`
	Run     string          `json:"run"`
	Format  string          `json:"format"`

	// Throughput: readings posted at MaxRate until every one is queryable.
	MaxRate          float64 `json:"offered_rate"`
	Readings         int64   `json:"readings"`
	IngestAckPerSec  float64 `json:"ingest_acked_per_sec"`
	AllQueryableSecs float64 `json:"all_queryable_seconds"`
	EndToEndPerSec   float64 `json:"end_to_end_per_sec"`
	// Roles: CPU seconds per million readings and peak RSS over the
	// throughput phase.
	Roles map[string]roleUse `json:"roles"`
	// The rest of the machine over the same phase, in CPU seconds per
	// million readings: the shared services, the simulator (this
	// process, probes and polls included) and every process together.
	// Their sum is the budget a 2-core machine must fit: 20 CPU s per
	// million at 100,000 readings/s.
	Services     map[string]float64 `json:"services_cpu_seconds_per_million"`
	SimulatorCPU float64            `json:"simulator_cpu_seconds_per_million"`
	MachineCPU   float64            `json:"machine_cpu_seconds_per_million"`

	// Freshness at a fixed rate: ingest's answer to the row visible.
	FreshRate float64   `json:"fresh_rate"`
	FreshAcks float64   `json:"fresh_acked_per_sec"`
	Fresh     freshness `json:"freshness"`
	FreshLost int       `json:"fresh_probes_not_seen"`

	// The projector against ClickHouse's Kafka engine on the same records.
	EngineRows       int64     `json:"engine_rows"`
	OursPerSec       float64   `json:"projector_rows_per_sec"`
	EnginePerSec     float64   `json:"kafka_engine_rows_per_sec"`
	Ratio            float64   `json:"projector_to_engine_ratio"`
	EngineFreshRate  float64   `json:"engine_fresh_rate"`
	OursFresh        freshness `json:"projector_freshness"`
	EngineFresh      freshness `json:"kafka_engine_freshness"`
	EngineFreshRatio float64   `json:"engine_to_projector_p99_ratio"`
}

type roleUse struct {
	CPUPerMillion float64 `json:"cpu_seconds_per_million"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
}

// benchE2E measures the whole pipeline on the local stack; see the
// bench target in the Makefile and README's Performance section.
func benchE2E(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := allFlags("bench e2e")
	var b e2eSettings
	fs.Int(&b.runs, "bench-runs", 3, "runs; medians are printed at the end")
	fs.Int(&b.users, "bench-users", 50000, "simulated users")
	fs.Float64Var(&b.maxRate, "bench-rate", 100000, "offered readings/s of the throughput phase")
	fs.Duration(&b.maxFor, "bench-duration", 15*time.Second, "length of the throughput phase's stream")
	fs.Float64Var(&b.freshRate, "bench-fresh-rate", 50000, "readings/s of the freshness phase")
	fs.Duration(&b.freshFor, "bench-fresh-duration", 20*time.Second, "length of the freshness phase")
	fs.Float64Var(&b.engineRate, "bench-engine-fresh-rate", 20000, "records/s produced straight into both topics to compare freshness with the Kafka engine")
	fs.Duration(&b.engineFor, "bench-engine-fresh-duration", 15*time.Second, "length of that comparison")
	fs.Duration(&b.catchUp, "bench-timeout", 10*time.Minute, "longest wait for rows to become queryable in each phase")
	fs.String(&b.results, "bench-results", "bench/results/e2e.jsonl", "append each run's JSON line to this file")
	fs.String(&b.logDir, "bench-log-dir", "bench/results/logs", "directory of the roles' logs")
	fs.Bool(&b.keep, "bench-keep", false, "keep each run's topics, databases and state")
	fs.String(&b.format, "bench-format", loadgen.FormatJSON, "the simulator's request bodies: json or avro")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if b.format != loadgen.FormatJSON && b.format != loadgen.FormatAvro {
		return fmt.Errorf("--bench-format %q: want json or avro", b.format)
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	var runs []e2eRun
	for i := range b.runs {
		log.Info().Int("run", i+1).Int("of", b.runs).Msg("bench e2e")
		s2 := *s
		r, err := benchE2EOnce(ctx, &s2, b, log)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		r.print(stdout)
		if err := appendJSONLine(b.results, r); err != nil {
			return err
		}
		runs = append(runs, r)
	}
	if len(runs) > 1 {
		printMedians(stdout, runs)
	}
	return nil
}

func benchE2EOnce(ctx context.Context, s *settings, b e2eSettings, log zerolog.Logger) (e2eRun, error) {
	r := e2eRun{Date: time.Now().UTC().Format(time.RFC3339), Commit: gitCommit(), Command: commandLine(), Machine: loadgen.ThisMachine(),
		MaxRate: b.maxRate, FreshRate: b.freshRate, EngineFreshRate: b.engineRate, Roles: map[string]roleUse{}}
	box, err := newSandbox(ctx, s, "bench", b.logDir, log)
	if err != nil {
		return r, err
	}
	defer func() { box.close(b.keep) }()
	r.Run, r.Format = box.id, b.format
	conn, err := warehouse.Open(ctx, s.warehouse())
	if err != nil {
		return r, err
	}
	defer conn.Close()
	rctx, stopRoles := context.WithCancel(ctx)
	defer stopRoles()
	roles := []*procs.Proc{box.role("ingest", "ingest"), box.role("processor", "processor"), box.role("projector", "projector")}
	for _, p := range roles {
		if err := p.Supervise(rctx); err != nil {
			return r, err
		}
	}
	if err := waitHealthy(ctx, box.ingestURL); err != nil {
		return r, err
	}
	m := simSettings{users: b.users, batch: 500, clients: 8, drain: time.Minute, format: b.format}
	m.noFaults = true

	// Throughput: offer maxRate for maxFor, then wait until every
	// acknowledged reading is queryable.
	var total int64
	countRows := func(qctx context.Context) (int64, error) {
		var n uint64
		err := conn.QueryRow(qctx, fmt.Sprintf("SELECT count() FROM %s.readings WHERE tenant_id = ?", s.chDatabase), s.tenant).Scan(&n)
		return int64(n), err
	}
	before, svcBefore, selfBefore, machBefore := usages(roles), procs.ServiceCPU(), selfCPU(), procs.MachineCPU()
	m.rate, m.duration = b.maxRate, b.maxFor
	start := time.Now()
	res, err := runSimulation(ctx, m.options(box.ingestURL, box.key, box.id+"a", log))
	if err != nil {
		return r, err
	}
	total = res.Acked
	if err := waitRows(ctx, countRows, total, b.catchUp, "throughput phase", log); err != nil {
		return r, err
	}
	took := time.Since(start)
	after, svcAfter, selfAfter, machAfter := usages(roles), procs.ServiceCPU(), selfCPU(), procs.MachineCPU()
	perM := func(a, b float64) float64 { return (b - a) / float64(total) * 1e6 }
	r.Services = map[string]float64{}
	for name, sec := range svcAfter.Since(svcBefore) {
		r.Services[name] = perM(0, sec)
	}
	r.SimulatorCPU, r.MachineCPU = perM(selfBefore, selfAfter), perM(machBefore, machAfter)
	r.Readings, r.IngestAckPerSec = total, res.AckedPerSec
	r.AllQueryableSecs, r.EndToEndPerSec = took.Seconds(), float64(total)/took.Seconds()
	for i, p := range roles {
		r.Roles[p.Name] = roleUse{CPUPerMillion: (after[i].CPUSeconds - before[i].CPUSeconds) / float64(total) * 1e6, PeakRSSMB: float64(after[i].PeakRSSBytes) / (1 << 20)}
	}

	// Freshness at a fixed rate: probe readings' ingest answer to the
	// moment a poll of ClickHouse first returns them.
	m.rate, m.duration = b.freshRate, b.freshFor
	o := m.options(box.ingestURL, box.key, box.id+"b", log)
	var probes []string
	for c := range o.Clients {
		probes = append(probes, simulate.ProbeUser(o.RunID, c))
	}
	w := newProbeWatch(conn, s.chDatabase, s.tenant, probes)
	o.OnProbe = w.acked
	wctx, stopWatch := context.WithCancel(ctx)
	go w.run(wctx)
	res, err = runSimulation(ctx, o)
	if err != nil {
		stopWatch()
		return r, err
	}
	total += res.Acked
	r.FreshAcks = res.AckedPerSec
	err = waitRows(ctx, countRows, total, b.catchUp, "freshness phase", log)
	stopWatch()
	if err != nil {
		return r, err
	}
	w.poll(ctx)
	r.Fresh, r.FreshLost = w.latency()
	for _, p := range roles {
		if err := p.Stop(20 * time.Second); err != nil {
			log.Warn().Err(err).Str("role", p.Name).Msg("stop")
		}
	}
	if err := compareEngine(ctx, s, box, conn, b, &r, log); err != nil {
		return r, err
	}
	return r, nil
}

// compareEngine runs the projector and ClickHouse's Kafka engine one after
// the other over the same accepted readings: the engine reads a
// JSONEachRow copy (18.16's engine cannot parse Avro single-object
// messages), made here beforehand with the same record count. Both feed
// the same table definitions (readings and its rollup view). Then both run
// together while records are produced into both topics at a fixed rate,
// and probe records give each one's freshness.
func compareEngine(ctx context.Context, s *settings, box *sandbox, conn driver.Conn, b e2eSettings, r *e2eRun, log zerolog.Logger) error {
	k := s.kafka()
	jsonTopic := box.id + ".accepted-json"
	cl, err := kgo.NewClient(append(k.ClientOpts(log), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, int32(k.Partitions), int16(k.ReplicationFactor), nil, jsonTopic); err != nil {
		return fmt.Errorf("create %s: %w", jsonTopic, err)
	}
	codec := schemas.MustCodec(schemas.NameAcceptedReading)
	var n int64
	var perr atomic.Value
	err = simulate.ReadTopic(ctx, k.ClientOpts(log), k.Topics.AcceptedReadings, func(rec *kgo.Record) error {
		var a schemas.AcceptedReading
		if err := codec.Decode(rec.Value, &a); err != nil {
			return fmt.Errorf("decode accepted reading: %w", err)
		}
		n++
		cl.Produce(ctx, &kgo.Record{Topic: jsonTopic, Key: rec.Key, Value: engineJSON(&a)}, func(_ *kgo.Record, err error) {
			if err != nil {
				perr.Store(err)
			}
		})
		return nil
	})
	if err == nil {
		err = cl.Flush(ctx)
	}
	if e, ok := perr.Load().(error); ok && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("copy to %s: %w", jsonTopic, err)
	}
	r.EngineRows = n
	log.Info().Int64("records", n).Str("topic", jsonTopic).Msg("JSONEachRow copy of the accepted readings made")

	oursDB, engineDB := s.chDatabase+"_p", s.chDatabase+"_k"
	defer func() {
		if b.keep {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, db := range []string{oursDB, engineDB} {
			if err := conn.Exec(cctx, "DROP DATABASE IF EXISTS "+db); err != nil {
				log.Warn().Err(err).Msg("drop bench database")
			}
		}
		_, _ = adm.DeleteGroups(cctx, box.id+".projector2", box.id+".engine")
	}()
	count := func(db string) func(context.Context) (int64, error) {
		return func(qctx context.Context) (int64, error) {
			var c uint64
			err := conn.QueryRow(qctx, fmt.Sprintf("SELECT count() FROM %s.readings", db)).Scan(&c)
			return int64(c), err
		}
	}

	// Ours: a second projector, fresh group and database.
	pctx, stopProj := context.WithCancel(ctx)
	defer stopProj()
	proj := box.role("projector-2", "projector", "VITALS_CLICKHOUSE_DATABASE="+oursDB, "VITALS_PROJECTOR_GROUP="+box.id+".projector2")
	start := time.Now()
	if err := proj.Supervise(pctx); err != nil {
		return err
	}
	if err := waitRows(ctx, count(oursDB), n, b.catchUp, "projector", log); err != nil {
		return err
	}
	r.OursPerSec = float64(n) / time.Since(start).Seconds()

	// The engine: the same tables, fed by a Kafka table and a view. Its
	// group's offsets are committed at 0 first, because 18.16's consumer
	// starts a new group at the end of the log.
	if err := warehouse.Migrate(ctx, conn, engineDB); err != nil {
		return err
	}
	group := box.id + ".engine"
	offs := kadm.Offsets{}
	for p := range int32(k.Partitions) {
		offs.Add(kadm.Offset{Topic: jsonTopic, Partition: p, At: 0, LeaderEpoch: -1})
	}
	if _, err := adm.CommitOffsets(ctx, group, offs); err != nil {
		return fmt.Errorf("commit the engine group's start: %w", err)
	}
	ddl := []string{
		fmt.Sprintf(`CREATE TABLE %s.readings_kafka (tenant_id String, user_id String, device_id String, gateway_id String, metric String,
			loinc String, value Float64, unit String, measured_at_ms Int64, received_at_ms Int64, ingested_at_ms Int64, event_id String,
			source_partition Int32, source_offset Int64) ENGINE = Kafka('%s', '%s', '%s', 'JSONEachRow')`,
			engineDB, strings.Join(k.Brokers, ","), jsonTopic, group),
		fmt.Sprintf(`CREATE MATERIALIZED VIEW %s.readings_kafka_mv TO %s.readings AS SELECT tenant_id, user_id, device_id, gateway_id,
			metric, loinc, value, unit, toDateTime(intDiv(measured_at_ms, 1000)) AS measured_at, measured_at_ms, received_at_ms,
			ingested_at_ms, event_id, '' AS source_topic, source_partition, source_offset, now() AS inserted_at,
			toInt64(0) AS period_end_ms, CAST(NULL AS Nullable(Float64)) AS second_value, '' AS stage,
			CAST(NULL AS Nullable(Int64)) AS sequence, toInt32(-1) AS log_partition, toInt64(-1) AS log_offset
			FROM %s.readings_kafka`, engineDB, engineDB, engineDB),
	}
	start = time.Now()
	for _, q := range ddl {
		if err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("kafka engine: %w", err)
		}
	}
	if err := waitRows(ctx, count(engineDB), n, b.catchUp, "kafka engine", log); err != nil {
		return err
	}
	r.EnginePerSec = float64(n) / time.Since(start).Seconds()
	r.Ratio = r.OursPerSec / r.EnginePerSec

	// Freshness of both at once on the same new records.
	probe := box.id + "-kprobe"
	wOurs := newProbeWatch(conn, oursDB, s.tenant, []string{probe})
	wEng := newProbeWatch(conn, engineDB, s.tenant, []string{probe})
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go wOurs.run(wctx)
	go wEng.run(wctx)
	produced, err := produceBoth(ctx, cl, k.Topics.AcceptedReadings, jsonTopic, s.tenant, probe, b.engineRate, b.engineFor, wOurs, wEng)
	if err != nil {
		return err
	}
	if err := waitRows(ctx, count(engineDB), n+produced, b.catchUp, "kafka engine freshness", log); err != nil {
		log.Warn().Err(err).Msg("engine did not catch up")
	}
	if err := waitRows(ctx, count(oursDB), n+produced, b.catchUp, "projector freshness", log); err != nil {
		log.Warn().Err(err).Msg("projector did not catch up")
	}
	stopWatch()
	wOurs.poll(ctx)
	wEng.poll(ctx)
	r.OursFresh, _ = wOurs.latency()
	r.EngineFresh, _ = wEng.latency()
	if r.OursFresh.P99Ms > 0 {
		r.EngineFreshRatio = r.EngineFresh.P99Ms / r.OursFresh.P99Ms
	}
	_ = conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.readings_kafka_mv", engineDB))
	_ = conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.readings_kafka", engineDB))
	return proj.Stop(20 * time.Second)
}

// engineJSON is an accepted reading as a JSONEachRow line of the engine's
// Kafka table.
func engineJSON(a *schemas.AcceptedReading) []byte {
	js, _ := json.Marshal(map[string]any{"tenant_id": a.TenantID, "user_id": a.UserID, "device_id": a.DeviceID, "gateway_id": a.GatewayID,
		"metric": a.Metric, "loinc": a.LOINC, "value": a.Value, "unit": a.Unit, "measured_at_ms": a.MeasuredAt, "received_at_ms": a.ReceivedAt,
		"ingested_at_ms": a.IngestedAt, "event_id": a.EventID, "source_partition": a.SourcePartition, "source_offset": a.SourceOffset})
	return js
}

// produceBoth produces rate heart-rate records per second for d into both
// topics (Avro single-object and JSONEachRow), one in every 200 for the
// probe user, whose acknowledgements start the freshness clocks. It
// returns the number of records produced into each topic.
func produceBoth(ctx context.Context, cl *kgo.Client, avroTopic, jsonTopic, tenant, probe string, rate float64, d time.Duration, wAvro, wJSON *probeWatch) (int64, error) {
	codec := schemas.MustCodec(schemas.NameAcceptedReading)
	tick := 10 * time.Millisecond
	per := max(1, int(rate*tick.Seconds()))
	t := time.NewTicker(tick)
	defer t.Stop()
	end := time.Now().Add(d)
	var perr atomic.Value
	k := 0
	for time.Now().Before(end) {
		select {
		case <-t.C:
		case <-ctx.Done():
			return int64(k), ctx.Err()
		}
		now := time.Now().UnixMilli()
		for range per {
			k++
			user := fmt.Sprintf("%s-u%d", probe, k%5000)
			if k%200 == 0 {
				user = probe
			}
			a := schemas.AcceptedReading{TenantID: tenant, EventID: fmt.Sprintf("%s-%d", probe, k), UserID: user, DeviceID: user + "-watch",
				GatewayID: "bench", Metric: "heart_rate", LOINC: "8867-4", Value: 70, Unit: "/min", MeasuredAt: now, ReceivedAt: now, IngestedAt: now}
			val, err := codec.Encode(&a)
			if err != nil {
				return int64(k), fmt.Errorf("encode: %w", err)
			}
			id := a.EventID
			promise := func(w *probeWatch) func(*kgo.Record, error) {
				return func(_ *kgo.Record, err error) {
					if err != nil {
						perr.Store(err)
					} else if user == probe {
						w.acked(id, time.Now())
					}
				}
			}
			cl.Produce(ctx, &kgo.Record{Topic: avroTopic, Key: []byte(user), Value: val}, promise(wAvro))
			cl.Produce(ctx, &kgo.Record{Topic: jsonTopic, Key: []byte(user), Value: engineJSON(&a)}, promise(wJSON))
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return int64(k), fmt.Errorf("produce: %w", err)
	}
	if e, ok := perr.Load().(error); ok {
		return int64(k), fmt.Errorf("produce: %w", e)
	}
	return int64(k), nil
}

// probeWatch polls ClickHouse for probe users' rows and times each from
// its acknowledgement to the first poll that returns it.
type probeWatch struct {
	conn          driver.Conn
	db, tenant    string
	users         []string
	mu            sync.Mutex
	ackedAt, seen map[string]time.Time
}

func newProbeWatch(conn driver.Conn, db, tenant string, users []string) *probeWatch {
	return &probeWatch{conn: conn, db: db, tenant: tenant, users: users, ackedAt: map[string]time.Time{}, seen: map[string]time.Time{}}
}

func (w *probeWatch) acked(id string, at time.Time) {
	w.mu.Lock()
	w.ackedAt[id] = at
	w.mu.Unlock()
}

// run polls every 50 ms until ctx ends; the probe users are a prefix of
// the table's sorting key, so each poll reads little.
func (w *probeWatch) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.poll(ctx)
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// poll records the first time each probe row is returned. Callers poll
// once more after run ended, so the last rows to arrive, the slowest, are
// not left out.
func (w *probeWatch) poll(ctx context.Context) {
	quoted := make([]string, len(w.users))
	for i, u := range w.users {
		quoted[i] = "'" + u + "'" // the bench's own ids: [A-Za-z0-9-] only
	}
	q := fmt.Sprintf("SELECT event_id FROM %s.readings WHERE tenant_id = ? AND user_id IN (%s)", w.db, strings.Join(quoted, ", "))
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := w.conn.Query(qctx, q, w.tenant)
	if err != nil {
		return // the next poll tries again; a lost probe is reported
	}
	defer rows.Close()
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			if _, ok := w.seen[id]; !ok {
				w.seen[id] = now
			}
		}
	}
}

// latency summarizes ack-to-visible over the probes seen, and counts the
// acknowledged ones never seen.
func (w *probeWatch) latency() (freshness, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ds []time.Duration
	lost := 0
	for id, at := range w.ackedAt {
		if seen, ok := w.seen[id]; ok {
			ds = append(ds, max(0, seen.Sub(at)))
		} else {
			lost++
		}
	}
	slices.Sort(ds)
	ms := func(p float64) float64 { return float64(loadgen.Percentile(ds, p)) / 1e6 }
	return freshness{Count: len(ds), P50Ms: ms(50), P95Ms: ms(95), P99Ms: ms(99), MaxMs: ms(100)}, lost
}

// freshness is ack-to-visible latency: nearest-rank percentiles in ms.
type freshness struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// waitRows waits until count reports at least want rows.
func waitRows(ctx context.Context, count func(context.Context) (int64, error), want int64, timeout time.Duration, what string, log zerolog.Logger) error {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := count(qctx)
		cancel()
		if err == nil && n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d rows queryable after %s (last error: %v)", what, n, want, timeout, err)
		}
		if time.Since(last) > 5*time.Second {
			log.Info().Str("phase", what).Int64("rows", n).Int64("of", want).Msg("waiting for rows")
			last = time.Now()
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func usages(ps []*procs.Proc) []procs.Usage {
	out := make([]procs.Usage, len(ps))
	for i, p := range ps {
		out[i] = p.Usage()
	}
	return out
}

// selfCPU is this process's user+system CPU seconds so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// gitCommit is the checkout's commit, "-dirty" when the tree has changes.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		c += "-dirty"
	}
	return c
}

func appendJSONLine(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	js, err := json.Marshal(v)
	if err == nil {
		_, err = f.Write(append(js, '\n'))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("results %s: %w", path, err)
	}
	return nil
}

func (r e2eRun) print(w io.Writer) {
	fmt.Fprintf(w, "\nVitals end-to-end benchmark %s (%s, commit %s)\n", r.Run, r.Date, r.Commit)
	fmt.Fprintf(w, "command: %s\nmachine: %d CPUs, %s, %s, load %s at start\n", r.Command, r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.LoadAvg)
	fmt.Fprintf(w, "simulator bodies: %s\n", r.Format)
	fmt.Fprintf(w, "throughput: %d readings offered at %.0f/s (ingest acked %.0f/s), all queryable after %.1fs: %.0f readings/s end to end\n",
		r.Readings, r.MaxRate, r.IngestAckPerSec, r.AllQueryableSecs, r.EndToEndPerSec)
	for _, name := range slices.Sorted(maps.Keys(r.Roles)) {
		u := r.Roles[name]
		fmt.Fprintf(w, "  %-10s %.1f CPU s per million readings, peak RSS %.0f MB\n", name, u.CPUPerMillion, u.PeakRSSMB)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Services)) {
		fmt.Fprintf(w, "  %-10s %.1f CPU s per million readings (shared service)\n", name, r.Services[name])
	}
	fmt.Fprintf(w, "  %-10s %.1f CPU s per million readings (this process)\n", "simulator", r.SimulatorCPU)
	fmt.Fprintf(w, "  %-10s %.1f CPU s per million readings (every process; 2 cores at 100,000/s allow 20)\n", "machine", r.MachineCPU)
	f := r.Fresh
	fmt.Fprintf(w, "freshness at %.0f/s (acked %.0f/s): p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms (%d probes, %d not seen)\n",
		r.FreshRate, r.FreshAcks, f.P50Ms, f.P95Ms, f.P99Ms, f.MaxMs, f.Count, r.FreshLost)
	fmt.Fprintf(w, "projector vs ClickHouse Kafka engine (JSONEachRow copy), %d pre-filled records: %.0f vs %.0f rows/s = %.2fx\n",
		r.EngineRows, r.OursPerSec, r.EnginePerSec, r.Ratio)
	fmt.Fprintf(w, "  freshness at %.0f records/s: projector p50/p95/p99 %.0f/%.0f/%.0f ms, engine %.0f/%.0f/%.0f ms (engine p99 / projector p99 = %.2f)\n",
		r.EngineFreshRate, r.OursFresh.P50Ms, r.OursFresh.P95Ms, r.OursFresh.P99Ms, r.EngineFresh.P50Ms, r.EngineFresh.P95Ms, r.EngineFresh.P99Ms, r.EngineFreshRatio)
}

// printMedians prints the median of each headline figure over the runs.
func printMedians(w io.Writer, runs []e2eRun) {
	med := func(f func(e2eRun) float64) string {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		parts := make([]string, len(runs))
		for i, r := range runs {
			parts[i] = fmt.Sprintf("%.4g", f(r))
		}
		return fmt.Sprintf("%.4g (runs %s)", v[len(v)/2], strings.Join(parts, " / "))
	}
	fmt.Fprintf(w, "\nmedians of %d runs\n", len(runs))
	fmt.Fprintf(w, "  end-to-end readings/s      %s\n", med(func(r e2eRun) float64 { return r.EndToEndPerSec }))
	fmt.Fprintf(w, "  freshness p50 / p99 ms     %s / %s\n", med(func(r e2eRun) float64 { return r.Fresh.P50Ms }), med(func(r e2eRun) float64 { return r.Fresh.P99Ms }))
	for _, name := range []string{"ingest", "processor", "projector"} {
		fmt.Fprintf(w, "  %-10s CPU s/M, MB   %s, %s\n", name, med(func(r e2eRun) float64 { return r.Roles[name].CPUPerMillion }), med(func(r e2eRun) float64 { return r.Roles[name].PeakRSSMB }))
	}
	for _, name := range []string{procs.ServiceKafka, procs.ServiceClickHouse, procs.ServicePostgres} {
		fmt.Fprintf(w, "  %-10s CPU s/M       %s\n", name, med(func(r e2eRun) float64 { return r.Services[name] }))
	}
	fmt.Fprintf(w, "  simulator  CPU s/M       %s\n", med(func(r e2eRun) float64 { return r.SimulatorCPU }))
	fmt.Fprintf(w, "  machine    CPU s/M       %s\n", med(func(r e2eRun) float64 { return r.MachineCPU }))
	fmt.Fprintf(w, "  projector rows/s           %s\n", med(func(r e2eRun) float64 { return r.OursPerSec }))
	fmt.Fprintf(w, "  kafka engine rows/s        %s\n", med(func(r e2eRun) float64 { return r.EnginePerSec }))
	fmt.Fprintf(w, "  projector / engine         %s\n", med(func(r e2eRun) float64 { return r.Ratio }))
	fmt.Fprintf(w, "  projector / engine p99 ms  %s / %s\n", med(func(r e2eRun) float64 { return r.OursFresh.P99Ms }), med(func(r e2eRun) float64 { return r.EngineFresh.P99Ms }))
}
