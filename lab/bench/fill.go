package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/scratch"
	"github.com/vitalshq/vitals/processor/rules"
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
	f.produceRecord(&kgo.Record{Topic: topic, Key: []byte(key), Value: val, Timestamp: ts})
}

// produceRecord sends r as it is (sealed, say).
func (f *filler) produceRecord(r *kgo.Record) {
	f.valueBytes.Add(int64(len(r.Value)))
	f.cl.Produce(f.ctx, r, func(_ *kgo.Record, err error) {
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

// acceptedBench is what the projector and replay benchmarks share: their
// flags, and topics of their own with an accepted-readings topic filled
// before the measurement.
type acceptedBench struct {
	name                string
	rows, users         int
	keep, sealed        bool
	timeout             time.Duration
	jsonOut, cpuProfile string
}

// newAcceptedBench makes the flag set of bench name: a projector's flags,
// scratch names from short (bench-<short>-..., vitals_bench_<short>_...)
// and the shared bench flags with the benchmark's default row count and
// timeout; verb and window name what it measures in the usage texts.
func newAcceptedBench(name, short string, rows int, timeout time.Duration, verb, window string) (*acceptedBench, *envflag.Set, *cmdline.Settings) {
	fs, s := cmdline.NewFlags("vitals-lab bench " + name)
	s.KafkaFlags(fs)
	s.PostgresFlags(fs)
	s.ClickHouseFlags(fs)
	s.ProjectorFlags(fs)
	scratch.Names(fs, "bench-"+short+"-", "vitals_bench_"+short+"_")
	b := &acceptedBench{name: name}
	fs.Int(&b.rows, "bench-rows", rows, "accepted heart-rate readings to "+verb)
	fs.Int(&b.users, "bench-users", 10000, "distinct users the readings are spread over (round robin, 1 s apart per user)")
	fs.Bool(&b.keep, "bench-keep", false, "keep the topics, the ClickHouse databases and the Kafka groups")
	fs.Bool(&b.sealed, "bench-sealed", true, "seal each record with its user's data key, as the processor does (false: in clear, as releases before encryption wrote); needs --pg-url and the key-encryption key")
	fs.Duration(&b.timeout, "bench-timeout", timeout, "bound on the whole run (fill and "+window+"); clean-up comes after it")
	fs.String(&b.jsonOut, "bench-json", "", "also write the result as JSON to this file")
	fs.String(&b.cpuProfile, "bench-cpuprofile", "", "write a CPU profile of this process over "+window+" to this file")
	return b, fs, s
}

// parse parses args and refuses flags that make no sense or point at the
// real event log or database.
func (b *acceptedBench) parse(fs *envflag.Set, s *cmdline.Settings, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if b.rows < 1 || b.users < 1 || b.timeout <= 0 {
		return errors.New("--bench-rows, --bench-users and --bench-timeout must be positive")
	}
	if s.KafkaPrefix == scratch.RealPrefix || s.ClickHouseDatabase == scratch.RealPrefix {
		return fmt.Errorf("bench %s fills and deletes topics and databases of its own; do not point it at %s", b.name, scratch.RealPrefix)
	}
	return nil
}

// remove deletes the run's resources unless --bench-keep; it is deferred,
// so it runs after the run's timeout too.
func (b *acceptedBench) remove(ctx context.Context, r scratch.Resources, log zerolog.Logger) {
	if !b.keep {
		r.Remove(ctx, log)
	}
}

// stored counts the readings s's database holds, raw and in the rollup.
func (b *acceptedBench) stored(ctx context.Context, s *cmdline.Settings) (raw, rollup uint64, err error) {
	conn, err := warehouse.Open(ctx, s.Warehouse())
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	return countStored(ctx, conn, s.ClickHouseDatabase)
}

// save writes rep to --bench-json, if set, then fails unless ClickHouse
// held every row exactly once (raw and rollup as stored counted them).
func (b *acceptedBench) save(rep any, raw, rollup uint64) error {
	if err := writeJSON(b.jsonOut, rep); err != nil {
		return err
	}
	if raw != uint64(b.rows) || rollup != uint64(b.rows) {
		return fmt.Errorf("ClickHouse holds %d raw rows and %d rollup readings, want %d of each", raw, rollup, b.rows)
	}
	return nil
}

// fill creates k's topics and fills the accepted one, timing the fill
// into seconds (the data keys' creation, if sealed, not included); the
// producer client (with opts) is the caller's to close.
func (b *acceptedBench) fill(ctx context.Context, s *cmdline.Settings, seconds *float64, log zerolog.Logger, opts ...kgo.Opt) (*kgo.Client, error) {
	k := s.Kafka()
	if err := eventlog.EnsureTopics(ctx, k, log); err != nil {
		return nil, err
	}
	var keys []*userkeys.Key
	if b.sealed {
		var err error
		if keys, err = benchUserKeys(ctx, s, b.users, log); err != nil {
			return nil, err
		}
	}
	cl, err := kgo.NewClient(append(append(k.ClientOpts(log), kgo.ProducerLinger(5*time.Millisecond)), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	start := time.Now()
	if err := fillAcceptedTopic(ctx, cl, k.Topics, b.users, b.rows, keys, log); err != nil {
		cl.Close()
		return nil, err
	}
	*seconds = time.Since(start).Seconds()
	return cl, nil
}

// benchUserKeys returns the data keys of the fill's users (tenant
// "default", users bench-user-0 ... n-1), creating those that have none.
func benchUserKeys(ctx context.Context, s *cmdline.Settings, n int, log zerolog.Logger) ([]*userkeys.Key, error) {
	store, closeStore, err := s.OpenUserKeys(ctx, s.UserKeys(), log)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	out := make([]*userkeys.Key, n)
	for lo := 0; lo < n; lo += 5000 {
		users := make([]string, 0, 5000)
		for u := lo; u < min(n, lo+5000); u++ {
			users = append(users, benchUser(u))
		}
		got, err := store.ForUsers(ctx, "default", users)
		if err != nil {
			return nil, err
		}
		for i, u := range users {
			out[lo+i] = got[u]
		}
	}
	return out, nil
}

// sealedText says how a fill's records were written.
func sealedText(sealed bool) string {
	if sealed {
		return "records sealed with their users' data keys"
	}
	return "records in clear (--bench-sealed=false)"
}

func benchUser(u int) string { return "bench-user-" + strconv.Itoa(u) }

// fillAcceptedTopic produces rows accepted heart-rate readings, as the
// processor writes them: single-object Avro keyed by user id, spread round
// robin over users, 1 s apart per user. Sealed with keys[user], each is a
// logged reading forwarded (rules.HeaderSource), as the processor writes
// nearly every accepted reading; in clear (keys nil), an accepted_reading
// message, as it writes those of a log in clear.
func fillAcceptedTopic(ctx context.Context, cl *kgo.Client, t eventlog.Topics, users, rows int, keys []*userkeys.Key, log zerolog.Logger) error {
	codec, readingCodec := schemas.MustCodec(schemas.NameAcceptedReading), schemas.MustCodec(schemas.NameReading)
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second).UnixMilli()
	f := newFiller(ctx, cl)
	runID := scratch.RandomHex(4)
	var buf []byte
	for k := 0; k < rows && f.ctx.Err() == nil; k++ {
		u, n := k%users, k/users
		measured := base + int64(n)*1000 + int64(u)*1000/int64(users)
		user := benchUser(u)
		r := schemas.AcceptedReading{TenantID: "default", EventID: "bench-" + runID + "-" + strconv.Itoa(k), UserID: user,
			DeviceID: user + "-tracker", GatewayID: "bench-gateway", Metric: "heart_rate", LOINC: "8867-4",
			Value: float64(55 + (k*7919)%60), Unit: "/min", MeasuredAt: measured, ReceivedAt: measured + 800, IngestedAt: measured + 1000,
			SourcePartition: int32(u % 6), SourceOffset: int64(k)}
		var err error
		if keys == nil {
			buf, err = codec.Append(buf[:0], &r)
		} else {
			buf, err = schemas.AppendReading(readingCodec, buf[:0], &schemas.Reading{TenantID: r.TenantID, EventID: r.EventID,
				UserID: r.UserID, DeviceID: r.DeviceID, GatewayID: r.GatewayID, Metric: r.Metric, Value: r.Value, Unit: r.Unit,
				MeasuredAt: r.MeasuredAt, ReceivedAt: r.ReceivedAt, IngestedAt: r.IngestedAt, SourceFormat: "json"})
		}
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		rec := &kgo.Record{Topic: t.AcceptedReadings, Key: []byte(user), Value: slices.Clone(buf)}
		if keys != nil {
			rec.Headers = []kgo.RecordHeader{{Key: rules.HeaderSource, Value: rules.AppendSource(nil, r.SourcePartition, r.SourceOffset)}}
			keys[u].SealRecord(rec)
		}
		f.produceRecord(rec)
	}
	if err := f.finish(ctx); err != nil {
		return err
	}
	log.Info().Int("rows", rows).Str("topic", t.AcceptedReadings).Msg("filled the bench topic")
	return ctx.Err()
}
