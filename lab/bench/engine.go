package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/sandbox"
	"github.com/vitalshq/vitals/lab/scratch"
	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

// compareEngine runs the projector and ClickHouse's Kafka engine one after
// the other over the same accepted readings: the engine reads a
// JSONEachRow copy (18.16's engine cannot parse Avro single-object
// messages), made here beforehand with the same record count. Both feed
// the same table definitions (readings and its rollup view). Then both run
// together while records are produced into both topics at a fixed rate,
// and probe records give each one's freshness.
func compareEngine(ctx context.Context, s *cmdline.Settings, box *sandbox.Sandbox, conn driver.Conn, b e2eSettings, r *e2eRun, log zerolog.Logger) error {
	k := s.Kafka()
	jsonTopic := box.ID + ".accepted-json"
	cl, err := kgo.NewClient(append(k.ClientOpts(log), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	n, err := copyAsJSON(ctx, s, cl, adm, k, jsonTopic, log)
	if err != nil {
		return err
	}
	r.EngineRows = n
	log.Info().Int64("records", n).Str("topic", jsonTopic).Msg("JSONEachRow copy of the accepted readings made")

	oursDB, engineDB := s.ClickHouseDatabase+"_p", s.ClickHouseDatabase+"_k"
	defer func() {
		if !b.keep {
			scratch.Resources{Kafka: k, Groups: []string{box.ID + ".projector2", box.ID + ".engine"},
				Warehouse: s.Warehouse(), Databases: []string{oursDB, engineDB}}.Remove(ctx, log)
		}
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
	proj := box.Role("projector-2", "projector", "VITALS_CLICKHOUSE_DATABASE="+oursDB, "VITALS_PROJECTOR_GROUP="+box.ID+".projector2")
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
	group := box.ID + ".engine"
	ddl, err := engineTables(ctx, adm, k, engineDB, jsonTopic, group)
	if err != nil {
		return err
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
	probe := box.ID + "-kprobe"
	wOurs := newProbeWatch(conn, oursDB, s.Tenant, []string{probe})
	wEng := newProbeWatch(conn, engineDB, s.Tenant, []string{probe})
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go wOurs.run(wctx)
	go wEng.run(wctx)
	produced, err := produceBoth(ctx, cl, k.Topics.AcceptedReadings, jsonTopic, s.Tenant, probe, b.engineRate, b.engineFor, wOurs, wEng)
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

// copyAsJSON copies the accepted readings into jsonTopic as JSONEachRow
// lines (18.16's Kafka engine cannot parse Avro single-object messages)
// and returns how many it copied.
func copyAsJSON(ctx context.Context, s *cmdline.Settings, cl *kgo.Client, adm *kadm.Client, k eventlog.Config, jsonTopic string, log zerolog.Logger) (int64, error) {
	if _, err := adm.CreateTopic(ctx, int32(k.Partitions), int16(k.ReplicationFactor), nil, jsonTopic); err != nil {
		return 0, fmt.Errorf("create %s: %w", jsonTopic, err)
	}
	// The accepted readings are sealed with their users' data keys.
	keys, closeKeys, err := s.OpenUserKeys(ctx, s.UserKeys(), log)
	if err != nil {
		return 0, err
	}
	defer closeKeys()
	codec, readingCodec := schemas.MustCodec(schemas.NameAcceptedReading), schemas.MustCodec(schemas.NameReading)
	var n int64
	var perr atomic.Value
	err = eventlog.ReadToEnd(ctx, k.ClientOpts(log), k.Topics.AcceptedReadings, func(rec *kgo.Record) error {
		if err := keys.LoadRecordKeys(ctx, []*kgo.Record{rec}); err != nil {
			return err
		}
		value, _, err := keys.OpenRecord(nil, rec)
		if err != nil {
			return fmt.Errorf("open accepted reading: %w", err)
		}
		var src []byte // a forwarded reading's source (rules.HeaderSource)
		for _, h := range rec.Headers {
			if h.Key == rules.HeaderSource {
				src = append([]byte{}, h.Value...)
			}
		}
		var a schemas.FlatAcceptedReading
		if err := rules.DecodeAccepted(codec, readingCodec, value, src, &a); err != nil {
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
		return 0, fmt.Errorf("copy to %s: %w", jsonTopic, err)
	}
	return n, nil
}

// engineTables commits the engine group's offsets at 0 (18.16's consumer
// starts a new group at the end of the log) and returns the statements
// that create the engine's Kafka table and the view feeding db.readings.
func engineTables(ctx context.Context, adm *kadm.Client, k eventlog.Config, engineDB, jsonTopic, group string) ([]string, error) {
	offs := kadm.Offsets{}
	for p := range int32(k.Partitions) {
		offs.Add(kadm.Offset{Topic: jsonTopic, Partition: p, At: 0, LeaderEpoch: -1})
	}
	if _, err := adm.CommitOffsets(ctx, group, offs); err != nil {
		return nil, fmt.Errorf("commit the engine group's start: %w", err)
	}
	return []string{
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
	}, nil
}

// engineJSON is an accepted reading as a JSONEachRow line of the engine's
// Kafka table.
func engineJSON(a *schemas.FlatAcceptedReading) []byte {
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
			var flat schemas.FlatAcceptedReading
			schemas.FlattenAccepted(&a, &flat)
			cl.Produce(ctx, &kgo.Record{Topic: jsonTopic, Key: []byte(user), Value: engineJSON(&flat)}, promise(wJSON))
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
