// Package eventlog describes Vitals' Kafka topics, which are the system's
// event log, and builds the Kafka clients every role shares.
//
// Raw topics keep their data forever: they are the source every table is
// rebuilt from. All topics read by the processor are keyed by user id and
// have the same partition count, so one partition holds all of a user's
// events and one processor instance owns the whole user.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topics names the topics of one deployment. Names are versioned so that a
// reprocess can write new outputs beside the old ones.
type Topics struct {
	Readings         string // raw readings from ingest; the event log
	DeviceEvents     string // device pairings and status reports; the event log
	ProfileEvents    string // profile changes and erasure requests; the event log
	DeadLetters      string // items ingest refused, with their original bytes
	AcceptedReadings string // the processor's accepted readings
	RejectedReadings string // the processor's rejected readings, with reasons
	Alerts           string // the processor's alerts
	Erasures         string // the processor's erasure decisions, for the read models
}

// TopicsWithPrefix returns the topic names under a prefix, "vitals" by
// default; tests use their own prefix to get fresh topics.
func TopicsWithPrefix(prefix string) Topics {
	return Topics{
		Readings:         prefix + ".readings.v1",
		DeviceEvents:     prefix + ".device-events.v1",
		ProfileEvents:    prefix + ".profile-events.v1",
		DeadLetters:      prefix + ".deadletter.v1",
		AcceptedReadings: prefix + ".readings.accepted.v1",
		RejectedReadings: prefix + ".readings.rejected.v1",
		Alerts:           prefix + ".alerts.v1",
		Erasures:         prefix + ".erasures.v1",
	}
}

// outputVersionRE is what a version of the processor's outputs may be
// called: it becomes part of topic names.
var outputVersionRE = regexp.MustCompile(`^v[0-9]{1,6}$`)

// WithOutputVersion returns t with the processor's output topics
// (accepted, rejected, alerts, erasures) at version v instead of v1, e.g.
// vitals.readings.accepted.v2. A reprocess writes a new version beside the
// old one, so the old outputs stay until they are deleted on purpose; the
// raw topics and dead letters are the same for every version.
func (t Topics) WithOutputVersion(v string) (Topics, error) {
	err := setVersion(v, "output", &t.AcceptedReadings, &t.RejectedReadings, &t.Alerts, &t.Erasures)
	return t, err
}

// WithRawVersion returns t with the raw topics (readings, device and
// profile events, dead letters) at version v instead of v1, e.g.
// vitals.readings.v2: `vitals replay encrypt` copies raw topics written
// in clear by earlier releases into a new version, sealed (see
// docs/privacy.md).
func (t Topics) WithRawVersion(v string) (Topics, error) {
	err := setVersion(v, "raw", &t.Readings, &t.DeviceEvents, &t.ProfileEvents, &t.DeadLetters)
	return t, err
}

// setVersion renames each of the kind (output or raw) topics from its
// .v1 name to version v.
func setVersion(v, kind string, names ...*string) error {
	if !outputVersionRE.MatchString(v) {
		return fmt.Errorf("%s topic version %q: want v followed by digits, e.g. v2", kind, v)
	}
	for _, name := range names {
		base, ok := strings.CutSuffix(*name, ".v1")
		if !ok {
			return fmt.Errorf("%s topic %q does not end in .v1", kind, *name)
		}
		*name = base + "." + v
	}
	return nil
}

// Config is what a role needs to reach Kafka.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topics are the topic names.
	Topics Topics
	// Partitions is the partition count used when a topic is created. It
	// bounds how many processor instances can share the work, and it can
	// never shrink later.
	Partitions int
	// ReplicationFactor for created topics; 1 on a single-node stack.
	ReplicationFactor int
	// DialTimeout bounds each connection attempt.
	DialTimeout time.Duration
	// RequestTimeout bounds each request's time on the wire, on top of
	// any time the broker is asked to wait.
	RequestTimeout time.Duration
	// Security is TLS and SASL (security.go); the zero value is
	// PLAINTEXT.
	Security Security
}

// DefaultConfig is the single-node local stack's configuration.
func DefaultConfig() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:19092"},
		Topics:            TopicsWithPrefix("vitals"),
		Partitions:        6,
		ReplicationFactor: 1,
		DialTimeout:       5 * time.Second,
		RequestTimeout:    10 * time.Second,
	}
}

// Spec is a topic and the settings it is created with.
type Spec struct {
	Name    string
	Configs map[string]*string
	// CoPartitioned topics must all have the same partition count, so a
	// user's events of every kind land in the same partition number and
	// reach the same processor instance.
	CoPartitioned bool
}

func ptr(s string) *string { return &s }

// Specs are the topics Vitals creates. The raw topics (readings, device and
// profile events) are the event log and keep their data forever
// (retention.ms=-1). Outputs are derived and could be reprocessed, but are
// kept too so a projection can be rebuilt without reprocessing. Dead
// letters are kept 30 days: long enough to fix a gateway and re-post.
func (c Config) Specs() []Spec {
	forever := map[string]*string{"retention.ms": ptr("-1"), "cleanup.policy": ptr("delete")}
	month := map[string]*string{"retention.ms": ptr(strconv.FormatInt((30 * 24 * time.Hour).Milliseconds(), 10)), "cleanup.policy": ptr("delete")}
	return []Spec{
		{Name: c.Topics.Readings, Configs: forever, CoPartitioned: true},
		{Name: c.Topics.DeviceEvents, Configs: forever, CoPartitioned: true},
		{Name: c.Topics.ProfileEvents, Configs: forever, CoPartitioned: true},
		{Name: c.Topics.DeadLetters, Configs: month},
		{Name: c.Topics.AcceptedReadings, Configs: forever, CoPartitioned: true},
		{Name: c.Topics.RejectedReadings, Configs: forever, CoPartitioned: true},
		{Name: c.Topics.Alerts, Configs: forever, CoPartitioned: true},
		{Name: c.Topics.Erasures, Configs: forever, CoPartitioned: true},
	}
}

// ClientOpts are the options every Kafka client of ours starts from,
// TLS and SASL included: no client of ours is made without them.
func (c Config) ClientOpts(log zerolog.Logger) []kgo.Opt {
	return append([]kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DialTimeout(c.DialTimeout),
		kgo.RequestTimeoutOverhead(c.RequestTimeout),
		kgo.RetryTimeout(c.RequestTimeout),
		kgo.WithLogger(kgoLogger{log: log.With().Str("component", "kafka").Logger()}),
	}, c.Security.opts()...)
}

// EnsureTopics creates the topics in Specs that do not exist yet. Existing
// topics are left as they are, so it is safe to call from every role.
func EnsureTopics(ctx context.Context, cfg Config, log zerolog.Logger) error {
	cl, err := kgo.NewClient(cfg.ClientOpts(log)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, s := range cfg.Specs() {
		res, err := adm.CreateTopic(ctx, int32(cfg.Partitions), int16(cfg.ReplicationFactor), withMinInsync(s.Configs, cfg.ReplicationFactor), s.Name)
		if err == nil {
			err = res.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
		if err == nil {
			log.Info().Str("topic", s.Name).Int("partitions", cfg.Partitions).Msg("created topic")
		}
	}
	return checkCoPartitioned(ctx, adm, cfg)
}

// withMinInsync adds min.insync.replicas to a replicated topic's configs:
// a majority of its replicas (2 of 3), so that a write the producers'
// acks=all acknowledged survives the loss of any one broker, and writes
// stop, rather than go to one copy, when only one is left.
func withMinInsync(configs map[string]*string, replication int) map[string]*string {
	if replication < 2 {
		return configs
	}
	out := make(map[string]*string, len(configs)+1)
	for k, v := range configs {
		out[k] = v
	}
	out["min.insync.replicas"] = ptr(strconv.Itoa(replication/2 + 1))
	return out
}

// metadataWait bounds the wait for a new topic's metadata.
const metadataWait = 30 * time.Second

// checkCoPartitioned fails if the co-partitioned topics disagree on their
// partition count (possible when they were created by hand).
func checkCoPartitioned(ctx context.Context, adm *kadm.Client, cfg Config) error {
	var names []string
	for _, s := range cfg.Specs() {
		if s.CoPartitioned {
			names = append(names, s.Name)
		}
	}
	// A topic created a moment ago may not be in the metadata yet (on a
	// loaded machine it has taken over 5 s): ask again for up to
	// metadataWait before calling it missing.
	var details kadm.TopicDetails
	deadline := time.Now().Add(metadataWait)
	for {
		var err error
		details, err = adm.ListTopics(ctx, names...)
		if err != nil {
			return fmt.Errorf("describe topics: %w", err)
		}
		missing := details.Error()
		if missing == nil {
			break
		}
		if time.Now().After(deadline) || !errors.Is(missing, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("describe topics: %w", missing)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("describe topics: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	counts := map[int]string{}
	for _, n := range names {
		d, ok := details[n]
		if !ok {
			return fmt.Errorf("describe topic %s: not found", n)
		}
		counts[len(d.Partitions)] = n
	}
	if len(counts) > 1 {
		return fmt.Errorf("topics %v must have the same partition count, found %v: a user's events would reach different processors", names, counts)
	}
	return nil
}

// ParseBrokers splits a comma-separated broker list.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// kgoLogger adapts zerolog to franz-go's logger. franz-go logs at info on
// every rebalance and connection; those are worth keeping at debug.
type kgoLogger struct{ log zerolog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	switch l.log.GetLevel() {
	case zerolog.TraceLevel:
		return kgo.LogLevelDebug
	case zerolog.DebugLevel:
		return kgo.LogLevelInfo
	case zerolog.InfoLevel:
		return kgo.LogLevelWarn
	default:
		return kgo.LogLevelError
	}
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var ev *zerolog.Event
	switch level {
	case kgo.LogLevelError:
		ev = l.log.Error()
	case kgo.LogLevelWarn:
		ev = l.log.Warn()
	case kgo.LogLevelInfo:
		ev = l.log.Debug()
	default:
		ev = l.log.Trace()
	}
	for i := 0; i+1 < len(keyvals); i += 2 {
		k, _ := keyvals[i].(string)
		switch v := keyvals[i+1].(type) {
		case error:
			ev = ev.AnErr(k, v)
		case string:
			ev = ev.Str(k, v)
		case int32:
			ev = ev.Str(k, strconv.Itoa(int(v)))
		default:
			ev = ev.Interface(k, v)
		}
	}
	ev.Msg(msg)
}
