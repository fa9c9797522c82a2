package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/lab/scratch"
	"github.com/vitalshq/vitals/schemas"
)

// filler produces a fill's records, counting acknowledgements; the first
// failure cancels its context, which ends the fill's loop.
type filler struct {
	cl                        *kgo.Client
	ctx                       context.Context
	cancel                    context.CancelFunc
	acked, failed, valueBytes atomic.Int64
	errOnce                   sync.Once
	firstErr                  error
}

func newFiller(ctx context.Context, cl *kgo.Client) *filler {
	f := &filler{cl: cl}
	f.ctx, f.cancel = context.WithCancel(ctx)
	return f
}

// produce sends one record; a zero ts is the time of sending.
func (f *filler) produce(topic, key string, ts time.Time, val []byte) {
	f.valueBytes.Add(int64(len(val)))
	f.cl.Produce(f.ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: val, Timestamp: ts}, func(_ *kgo.Record, err error) {
		if err != nil {
			f.failed.Add(1)
			f.errOnce.Do(func() { f.firstErr = err; f.cancel() })
			return
		}
		f.acked.Add(1)
	})
}

// finish waits for every record's acknowledgement (ctx bounds the wait)
// and reports the first failure.
func (f *filler) finish(ctx context.Context) error {
	defer f.cancel()
	if err := f.cl.Flush(ctx); err != nil && f.firstErr == nil {
		f.firstErr = err
	}
	if f.firstErr != nil {
		return fmt.Errorf("fill: %d records failed, e.g. %w", f.failed.Load(), f.firstErr)
	}
	return nil
}

// fillAcceptedTopic produces rows accepted heart-rate readings, as the
// processor writes them: single-object Avro keyed by user id, spread round
// robin over users, 1 s apart per user.
func fillAcceptedTopic(ctx context.Context, cl *kgo.Client, t eventlog.Topics, users, rows int, log zerolog.Logger) error {
	codec := schemas.MustCodec(schemas.NameAcceptedReading)
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second).UnixMilli()
	f := newFiller(ctx, cl)
	runID := scratch.RandomHex(4)
	var buf []byte
	for k := 0; k < rows && f.ctx.Err() == nil; k++ {
		u, n := k%users, k/users
		measured := base + int64(n)*1000 + int64(u)*1000/int64(users)
		user := "bench-user-" + strconv.Itoa(u)
		r := schemas.AcceptedReading{TenantID: "default", EventID: "bench-" + runID + "-" + strconv.Itoa(k), UserID: user,
			DeviceID: user + "-tracker", GatewayID: "bench-gateway", Metric: "heart_rate", LOINC: "8867-4",
			Value: float64(55 + (k*7919)%60), Unit: "/min", MeasuredAt: measured, ReceivedAt: measured + 800, IngestedAt: measured + 1000,
			SourcePartition: int32(u % 6), SourceOffset: int64(k)}
		var err error
		if buf, err = codec.Append(buf[:0], &r); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		f.produce(t.AcceptedReadings, user, time.Time{}, slices.Clone(buf))
	}
	if err := f.finish(ctx); err != nil {
		return err
	}
	log.Info().Int("rows", rows).Str("topic", t.AcceptedReadings).Msg("filled the bench topic")
	return ctx.Err()
}
