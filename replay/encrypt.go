package replay

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/schemas"
)

// Encrypt copies the raw topics (readings, device and profile events,
// dead letters), as written in clear by releases before crypto-shredding,
// into a new version of them with every record of a known user sealed
// with the user's data key (docs/privacy.md): same partitions, keys,
// timestamps and order. Records already sealed are copied as they are;
// records of users erased since (their key is shredded) are left out. Each
// copy carries its source offset (header vitals-source-offset), so a run
// that stopped resumes where it was. The processor's outputs are then
// re-emitted sealed by `vitals replay reprocess` over the new raw topics,
// and the old topics deleted once the roles have moved (docs/replay.md).

// EncryptConfig configures Encrypt.
type EncryptConfig struct {
	// Kafka names the source raw topics (the current version).
	Kafka eventlog.Config
	// Version names the sealed copies, e.g. "v2": vitals.readings.v2.
	Version string
	// PostgresURL and UserKeys reach the users' data keys.
	PostgresURL string
	UserKeys    userkeys.Config
	// ProgressEvery and Progress report progress.
	ProgressEvery time.Duration
	Progress      func(Progress)
}

// EncryptResult is what Encrypt did.
type EncryptResult struct {
	Topics eventlog.Topics
	// Sealed counts the records sealed by this run, Copied those copied
	// as they were (already sealed, or holding no user's data), Shredded
	// those left out because their user was erased.
	Sealed, Copied, Shredded int64
	Took                     time.Duration
}

// sourceOffsetHeader is a copy's offset in its source topic-partition.
const sourceOffsetHeader = "vitals-source-offset"

// Encrypt copies the raw topics into version cfg.Version, sealed, up to
// their end offsets when it starts.
func Encrypt(ctx context.Context, cfg EncryptConfig, log zerolog.Logger) (*EncryptResult, error) {
	log = log.With().Str("role", "replay").Logger()
	start := time.Now()
	to, err := cfg.Kafka.Topics.WithRawVersion(cfg.Version)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	from := cfg.Kafka.Topics
	if to.Readings == from.Readings {
		return nil, fmt.Errorf("encrypt: version %s is the raw topics' own; choose a new one", cfg.Version)
	}
	tcfg := cfg.Kafka
	tcfg.Topics = to
	if err := eventlog.EnsureTopics(ctx, tcfg, log); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	pool, err := postgres.Open(ctx, cfg.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	defer pool.Close()
	keys, err := userkeys.Open(ctx, pool, cfg.UserKeys, log)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	defer keys.Close()
	cl, err := kgo.NewClient(append(cfg.Kafka.ClientOpts(log), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()))...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	pairs := [][2]string{{from.Readings, to.Readings}, {from.DeviceEvents, to.DeviceEvents}, {from.ProfileEvents, to.ProfileEvents}, {from.DeadLetters, to.DeadLetters}}
	res := &EncryptResult{Topics: to}
	c := newCopier(keys, from)
	for _, p := range pairs {
		if err := c.copyTopic(ctx, cfg, adm, p[0], p[1], res, log); err != nil {
			return nil, err
		}
	}
	res.Took = time.Since(start)
	return res, nil
}

// copier seals records of one source topic at a time.
type copier struct {
	keys                                 *userkeys.Store
	from                                 eventlog.Topics
	reading, device, profile, deadLetter *schemas.Codec
}

func newCopier(keys *userkeys.Store, from eventlog.Topics) *copier {
	return &copier{keys: keys, from: from, reading: schemas.MustCodec(schemas.NameReading), device: schemas.MustCodec(schemas.NameDeviceEvent),
		profile: schemas.MustCodec(schemas.NameProfileEvent), deadLetter: schemas.MustCodec(schemas.NameDeadLetter)}
}

// copyTopic copies src to dst from where an earlier run stopped to src's
// end offsets now.
func (c *copier) copyTopic(ctx context.Context, cfg EncryptConfig, adm *kadm.Client, src, dst string, res *EncryptResult, log zerolog.Logger) error {
	ends, err := endOffsets(ctx, adm, src)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	resume, err := copiedUpTo(ctx, cfg, dst, log)
	if err != nil {
		return err
	}
	consume := map[string]map[int32]kgo.Offset{src: {}}
	left := 0
	var total int64
	for part, end := range ends[src] {
		if at := resume[part]; at < end {
			consume[src][part] = kgo.NewOffset().At(at)
			total += end - at
			left++
		}
	}
	log.Info().Str("from", src).Str("to", dst).Int64("records", total).Msg("sealing the raw topic into its new version")
	if left == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(cfg.Kafka.ClientOpts(log), kgo.ConsumePartitions(consume), kgo.FetchMaxBytes(32<<20),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()))...)
	if err != nil {
		return fmt.Errorf("encrypt: kafka client: %w", err)
	}
	defer cl.Close()
	var done int64
	last := time.Now()
	for left > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fetches.Err0(); err != nil {
			return fmt.Errorf("encrypt: read %s: %w", src, err)
		}
		var batch []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[src][r.Partition] {
				batch = append(batch, r)
			}
			if r.Offset == ends[src][r.Partition]-1 {
				left--
			}
		})
		out, err := c.seal(ctx, src, dst, batch, res)
		if err != nil {
			return err
		}
		if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
			return fmt.Errorf("encrypt: write %s: %w", dst, err)
		}
		done += int64(len(batch))
		if cfg.Progress != nil && time.Since(last) >= cfg.ProgressEvery {
			cfg.Progress(Progress{Phase: "encrypt " + src, Done: done, Total: total})
			last = time.Now()
		}
	}
	return nil
}

// copiedUpTo returns, per partition of dst, the source offset to copy
// from: one past the last copy's, 0 for an empty partition.
func copiedUpTo(ctx context.Context, cfg EncryptConfig, dst string, log zerolog.Logger) (map[int32]int64, error) {
	cl, err := kgo.NewClient(cfg.Kafka.ClientOpts(log)...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := startOffsets(ctx, adm, time.Time{}, dst)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	ends, err := endOffsets(ctx, adm, dst)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	out := map[int32]int64{}
	consume := map[string]map[int32]kgo.Offset{dst: {}}
	for part, end := range ends[dst] {
		if end > starts[dst][part] {
			consume[dst][part] = kgo.NewOffset().At(end - 1)
		}
	}
	if len(consume[dst]) == 0 {
		return out, nil
	}
	rd, err := kgo.NewClient(append(cfg.Kafka.ClientOpts(log), kgo.ConsumePartitions(consume))...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: kafka client: %w", err)
	}
	defer rd.Close()
	for len(out) < len(consume[dst]) {
		fetches := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := fetches.Err0(); err != nil {
			return nil, fmt.Errorf("encrypt: read %s: %w", dst, err)
		}
		var bad error
		fetches.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == sourceOffsetHeader {
					n, err := strconv.ParseInt(string(h.Value), 10, 64)
					if err != nil {
						bad = fmt.Errorf("encrypt: %s/%d holds a record with source offset %q", dst, r.Partition, h.Value)
					}
					out[r.Partition] = n + 1
					return
				}
			}
			bad = fmt.Errorf("encrypt: %s/%d holds a record that is not a copy (no %s header): not resuming into it", dst, r.Partition, sourceOffsetHeader)
		})
		if bad != nil {
			return nil, bad
		}
	}
	return out, nil
}

// seal makes the copies of a batch: sealed with their users' keys (one
// key-store round trip per tenant for the keys not cached), or as they
// were, or none for erased users.
func (c *copier) seal(ctx context.Context, src, dst string, batch []*kgo.Record, res *EncryptResult) ([]*kgo.Record, error) {
	type owner struct{ tenant, user string }
	owners := make([]owner, len(batch))
	byTenant := map[string][]string{}
	for i, r := range batch {
		if userkeys.SealedIn(r) {
			continue
		}
		t, u := c.ownerOf(src, r)
		if t != "" && u != "" {
			owners[i] = owner{t, u}
			byTenant[t] = append(byTenant[t], u)
		}
	}
	keysOf := map[string]map[string]*userkeys.Key{}
	for t, users := range byTenant {
		ks, err := c.keys.ForUsers(ctx, t, users)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		keysOf[t] = ks
	}
	out := make([]*kgo.Record, 0, len(batch))
	for i, r := range batch {
		cp := &kgo.Record{Topic: dst, Partition: r.Partition, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp,
			Headers: append(append([]kgo.RecordHeader(nil), r.Headers...), kgo.RecordHeader{Key: sourceOffsetHeader, Value: strconv.AppendInt(nil, r.Offset, 10)})}
		switch o := owners[i]; {
		case o.user == "":
			res.Copied++
		case keysOf[o.tenant][o.user].Shredded():
			res.Shredded++
			continue
		default:
			keysOf[o.tenant][o.user].SealRecord(cp)
			res.Sealed++
		}
		out = append(out, cp)
	}
	return out, nil
}

// ownerOf decodes a clear record of a raw topic for its tenant and user;
// empty if it holds none: a dead letter keyed by its gateway, or a record
// that does not decode (copied as it is; the processor rejects it as
// malformed, as it would have).
func (c *copier) ownerOf(src string, r *kgo.Record) (tenant, user string) {
	var err error
	switch src {
	case c.from.Readings:
		tenant, user, err = decodeOwner(c.reading, r.Value, func(v *schemas.Reading) (string, string) { return v.TenantID, v.UserID })
	case c.from.DeviceEvents:
		tenant, user, err = decodeOwner(c.device, r.Value, func(v *schemas.DeviceEvent) (string, string) { return v.TenantID, v.UserID })
	case c.from.ProfileEvents:
		tenant, user, err = decodeOwner(c.profile, r.Value, func(v *schemas.ProfileEvent) (string, string) { return v.TenantID, v.UserID })
	case c.from.DeadLetters:
		tenant, user, err = decodeOwner(c.deadLetter, r.Value, func(v *schemas.DeadLetter) (string, string) { return v.TenantID, v.UserID })
	}
	if err != nil || user != string(r.Key) {
		return "", ""
	}
	return tenant, user
}

// decodeOwner decodes msg as a T and returns the tenant and user owner
// finds in it.
func decodeOwner[T any](codec *schemas.Codec, msg []byte, owner func(*T) (tenant, user string)) (string, string, error) {
	var v T
	if err := codec.Decode(msg, &v); err != nil {
		return "", "", err
	}
	tenant, user := owner(&v)
	return tenant, user, nil
}
