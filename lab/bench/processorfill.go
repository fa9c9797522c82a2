package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/scratch"
	"github.com/vitalshq/vitals/schemas"
)

// benchFill describes the fill phase (not part of the measurement).
type benchFill struct {
	Reused        bool    `json:"reused,omitempty"`
	Seconds       float64 `json:"seconds,omitempty"`
	RecordsPerSec float64 `json:"records_per_sec,omitempty"`
	Bytes         int64   `json:"value_bytes,omitempty"`
}

// fillProcessorTopics produces the users' pairings and then the readings,
// as ingest would have written them: single-object Avro values keyed by
// user id, record timestamps (ingest's receive time) increasing, every
// pairing stamped before every reading. Reading k belongs to user k mod
// users and is that user's n-th (n = k / users), measured n seconds (plus
// the user's offset within the second) after the start: 100,000 users at
// 1 Hz are 100,000 readings per second of event time.
// With metrics > 1 a user's readings take turns in that many metrics (see
// shapeBenchMetric), so each user has that many streams.
//
// Records are sealed with keys[user], as ingest seals them, unless keys is
// nil.
func fillProcessorTopics(ctx context.Context, cl *kgo.Client, t eventlog.Topics, users, events, metrics int, keys []*userkeys.Key, log zerolog.Logger) (benchFill, error) {
	var f benchFill
	runID := scratch.RandomHex(4)
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	userIDs := make([]string, users)
	for u := range userIDs {
		userIDs[u] = benchUser(u)
	}
	readingCodec, deviceCodec := schemas.MustCodec(schemas.NameReading), schemas.MustCodec(schemas.NameDeviceEvent)

	fl := newFiller(ctx, cl)
	total := int64(users + events)
	start := time.Now()
	stopProgress := loadgen.Periodically(5*time.Second, func() {
		n := fl.acked.Load()
		el := time.Since(start).Seconds()
		log.Info().Int64("acked", n).Int64("of", total).Float64("records_per_sec", math.Round(float64(n)/el)).
			Str("done", fmt.Sprintf("%.0f%%", 100*float64(n)/float64(total))).Msg("filling the bench topics")
	})
	defer stopProgress()
	log.Info().Int("users", users).Int("readings", events).Str("readings_topic", t.Readings).Str("device_topic", t.DeviceEvents).Msg("filling the bench topics")

	// Pairings: stamped over the minute before the first reading, each a
	// pairing 0.5 s before its record's time.
	for u, user := range userIDs {
		if fl.ctx.Err() != nil {
			break
		}
		ts := base - 60_000 + int64(u)*50_000/int64(users)
		model := "bench-tracker"
		val, err := deviceCodec.Encode(&schemas.DeviceEvent{TenantID: "default", EventID: "bench-" + runID + "-pair-" + strconv.Itoa(u),
			UserID: user, DeviceID: user + "-tracker", GatewayID: "bench-gateway", Kind: "paired", Model: &model,
			OccurredAt: ts - 500, ReceivedAt: ts, IngestedAt: ts})
		if err != nil {
			return f, err
		}
		fl.produceRecord(benchRecord(t.DeviceEvents, user, time.UnixMilli(ts), val, keys, u))
	}
	var rd schemas.Reading
	var buf []byte
	for k := 0; k < events && fl.ctx.Err() == nil; k++ {
		u, n := k%users, k/users
		measured := base + int64(n)*1000 + int64(u)*1000/int64(users)
		user := userIDs[u]
		rd = schemas.Reading{TenantID: "default", EventID: "bench-" + runID + "-r-" + strconv.Itoa(k), UserID: user,
			DeviceID: user + "-tracker", GatewayID: "bench-gateway", Metric: "heart_rate", Value: float64(55 + (k*7919)%60),
			Unit: "/min", MeasuredAt: measured, ReceivedAt: measured + 800, IngestedAt: measured + 1000, SourceFormat: "avro"}
		shapeBenchMetric(&rd, n%metrics, k)
		var err error
		if buf, err = readingCodec.Append(buf[:0], &rd); err != nil {
			return f, err
		}
		fl.produceRecord(benchRecord(t.Readings, user, time.UnixMilli(measured+1000), slices.Clone(buf), keys, u))
	}
	err := fl.finish(ctx)
	f.Seconds = time.Since(start).Seconds()
	f.RecordsPerSec = float64(fl.acked.Load()) / f.Seconds
	f.Bytes = fl.valueBytes.Load()
	if err != nil {
		return f, err
	}
	if err := ctx.Err(); err != nil {
		return f, fmt.Errorf("fill: %w", err)
	}
	log.Info().Int64("records", fl.acked.Load()).Float64("seconds", math.Round(f.Seconds*10)/10).
		Float64("records_per_sec", math.Round(f.RecordsPerSec)).Float64("value_mb", float64(f.Bytes)/1e6).Msg("filled the bench topics")
	return f, nil
}

// benchRecord is a fill's record, sealed with keys[u] unless keys is nil.
func benchRecord(topic, user string, ts time.Time, val []byte, keys []*userkeys.Key, u int) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: []byte(user), Value: val, Timestamp: ts}
	if keys != nil {
		keys[u].SealRecord(r)
	}
	return r
}

// benchMetrics is how many metrics --bench-metrics can take turns in.
const benchMetrics = 3

// shapeBenchMetric turns bench reading k (a heart-rate reading when
// filled) into a reading of metric i of those --bench-metrics takes turns
// in: 0 heart rate, 1 SpO2, 2 steps, with plausible values like the
// simulator's.
func shapeBenchMetric(r *schemas.Reading, i, k int) {
	switch i {
	case 1:
		r.Metric, r.Unit, r.Value = "spo2", "%", float64(94+k%6)
	case 2:
		end := r.MeasuredAt + 60_000
		r.Metric, r.Unit, r.Value, r.PeriodEnd = "steps", "{steps}", float64(k%120), &end
	}
}
