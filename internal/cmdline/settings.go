package cmdline

import (
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/logging"
	"github.com/vitalshq/vitals/internal/quota"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/projector"
	"github.com/vitalshq/vitals/query"
)

// Settings are all the knobs of the roles and of the commands that talk to
// them. Each command registers the groups of flags it uses (KafkaFlags,
// PostgresFlags...); the defaults come from the packages' DefaultConfig, so
// they are stated once. Fields are set by flag parsing; commands that run a
// pipeline of their own (bench, chaos) overwrite some before building the
// roles' configurations.
type Settings struct {
	LogLevel, LogFormat string
	StartTimeout        time.Duration

	KafkaBrokers     string
	KafkaPrefix      string
	KafkaPartitions  int
	KafkaReplication int
	// KafkaOutputVersion is the version of the processor's output topics
	// (v1, or v2... after a reprocess; see vitals replay reprocess).
	KafkaOutputVersion string

	PostgresURL string

	ClickHouseAddr, ClickHouseDatabase, ClickHouseUser, ClickHousePassword string
	ClickHouseCompression                                                  string
	// ClickHouseCluster names the cluster of a sharded, replicated
	// ClickHouse (empty: one server).
	ClickHouseCluster string

	Tenant string

	IngestAddr       string
	IngestMaxItems   int
	IngestMaxBytes   int
	IngestTimeout    time.Duration
	IngestFutureSkew time.Duration
	IngestMaxAge     time.Duration
	IngestMinTime    time.Time

	ProcessorGroup      string
	ProcessorInstance   string
	ProcessorSession    time.Duration
	ProcessorBatch      int
	ProcessorLateness   time.Duration
	ProcessorPairing    bool
	ProcessorCheckpoint time.Duration
	ProcessorMaxDirty   int
	ProcessorMetrics    string

	ProjectorGroup    string
	ProjectorInstance string
	ProjectorMetrics  string
	ProjectorRows     int
	ProjectorFlush    time.Duration
	ProjectorTimeout  time.Duration
	ProjectorBackoff  time.Duration

	QueryAddr      string
	QueryTimeout   time.Duration
	QueryMinCohort int
	QueryMaxWait   time.Duration
	QueryRollup    bool
	// QueryConcurrent bounds the service's requests at once; QueryToken*
	// are each analyst token's share.
	QueryConcurrent      int
	QueryTokenRate       int
	QueryTokenBurst      int
	QueryTokenConcurrent int
}

// NewFlags returns the flag set of command name (e.g. "vitals ingest")
// with the log flags every command has; its environment variables start
// with VITALS_.
func NewFlags(name string) (*envflag.Set, *Settings) {
	fs := envflag.New(name, "VITALS")
	s := &Settings{}
	fs.String(&s.LogLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.String(&s.LogFormat, "log-format", logging.DefaultFormat(), "log format: json or console")
	return fs, s
}

// AllFlags registers every role's flags, for commands that run a whole
// pipeline (vitals run and demo, vitals-lab chaos and bench e2e).
func AllFlags(name string) (*envflag.Set, *Settings) {
	fs, s := NewFlags(name)
	s.KafkaFlags(fs)
	s.PostgresFlags(fs)
	s.ClickHouseFlags(fs)
	s.TenantFlag(fs)
	s.IngestFlags(fs)
	s.ProcessorFlags(fs)
	s.ProjectorFlags(fs)
	s.QueryFlags(fs)
	s.StartFlags(fs)
	return fs, s
}

// SetDefault replaces flag name's default with def unless its
// environment variable is set (or always, with evenOverEnv): commands
// that make resources of their own use it to keep off the real ones.
// An explicit flag still wins.
func SetDefault(fs *envflag.Set, name, def string, evenOverEnv bool) {
	if _, ok := os.LookupEnv(fs.EnvName(name)); ok && !evenOverEnv {
		return
	}
	f := fs.Lookup(name)
	_ = f.Value.Set(def)
	f.DefValue = def
}

// KafkaFlags registers the event log's flags.
func (s *Settings) KafkaFlags(fs *envflag.Set) {
	d := eventlog.DefaultConfig()
	fs.String(&s.KafkaBrokers, "kafka-brokers", strings.Join(d.Brokers, ","), "Kafka seed brokers, comma-separated")
	fs.String(&s.KafkaPrefix, "kafka-topic-prefix", "vitals", "prefix of every topic name, e.g. vitals.readings.v1")
	fs.Int(&s.KafkaPartitions, "kafka-partitions", d.Partitions, "partitions of topics Vitals creates (cannot shrink later)")
	fs.Int(&s.KafkaReplication, "kafka-replication", d.ReplicationFactor, "replication factor of topics Vitals creates")
	fs.String(&s.KafkaOutputVersion, "kafka-output-version", "v1", "version of the processor's output topics (e.g. v2 after vitals replay reprocess --version v2)")
}

// PostgresFlags registers the PostgreSQL URL.
func (s *Settings) PostgresFlags(fs *envflag.Set) {
	fs.String(&s.PostgresURL, "pg-url", processor.DefaultConfig().PostgresURL, "PostgreSQL URL of the processor's state and the API keys")
}

// ClickHouseFlags registers the warehouse's flags.
func (s *Settings) ClickHouseFlags(fs *envflag.Set) {
	d := warehouse.DefaultConfig()
	fs.String(&s.ClickHouseAddr, "clickhouse-addr", d.Addr, "ClickHouse native protocol address")
	fs.String(&s.ClickHouseDatabase, "clickhouse-database", d.Database, "ClickHouse database")
	fs.String(&s.ClickHouseUser, "clickhouse-user", d.User, "ClickHouse user")
	fs.String(&s.ClickHousePassword, "clickhouse-password", "", "ClickHouse password")
	fs.String(&s.ClickHouseCompression, "clickhouse-compression", d.Compression, "native protocol compression: auto (none on a loopback address, lz4 otherwise), lz4 or none")
	fs.String(&s.ClickHouseCluster, "clickhouse-cluster", "", "cluster name in the servers' remote_servers: sharded, replicated tables (--clickhouse-addr may then list several servers, comma-separated); empty: one server")
}

// TenantFlag registers the tenant of the temporary credentials a command
// makes (TempKey).
func (s *Settings) TenantFlag(fs *envflag.Set) {
	fs.String(&s.Tenant, "tenant", "default", "tenant of the temporary gateway key and analyst token that demo and bench make")
}

// IngestFlags registers the ingest role's flags.
func (s *Settings) IngestFlags(fs *envflag.Set) {
	d := ingest.DefaultConfig()
	fs.String(&s.IngestAddr, "ingest-addr", d.Addr, "ingest HTTP listen address")
	fs.Int(&s.IngestMaxItems, "ingest-max-items", d.MaxBatchItems, "most readings in one batch")
	fs.Int(&s.IngestMaxBytes, "ingest-max-bytes", int(d.MaxBodyBytes), "largest request body in bytes")
	fs.Duration(&s.IngestTimeout, "ingest-produce-timeout", d.ProduceTimeout, "wait for the broker's ack before answering 503")
	fs.Duration(&s.IngestFutureSkew, "ingest-max-future-skew", d.Limits.MaxFutureSkew, "how far ahead of the server clock a timestamp may be")
	fs.Duration(&s.IngestMaxAge, "ingest-max-age", d.Limits.MaxAge, "reject readings measured longer ago than this (0: any age)")
	fs.Time(&s.IngestMinTime, "ingest-min-time", ingest.DefaultMinTime, "reject events whose timestamps lie before this time (RFC 3339)")
}

// ProcessorFlags registers the processor role's flags.
func (s *Settings) ProcessorFlags(fs *envflag.Set) {
	d := processor.DefaultConfig()
	fs.String(&s.ProcessorGroup, "processor-group", d.Group, "processor consumer group")
	fs.String(&s.ProcessorInstance, "processor-instance-id", "", "static group membership id: a restart with the same id resumes its partitions without a rebalance")
	fs.Duration(&s.ProcessorSession, "processor-session-timeout", d.SessionTimeout, "how long the group waits for a silent instance")
	fs.Int(&s.ProcessorBatch, "processor-batch", d.MaxBatch, "most records per state transaction")
	fs.Duration(&s.ProcessorLateness, "processor-allowed-lateness", d.Rules.AllowedLateness, "how far behind its stream's newest reading a reading is still accepted")
	fs.Duration(&s.ProcessorCheckpoint, "processor-checkpoint-interval", d.CheckpointInterval, "how often changed aggregates and offsets are committed to PostgreSQL (a crash re-processes at most this much)")
	fs.Int(&s.ProcessorMaxDirty, "processor-checkpoint-max-users", d.MaxDirty, "checkpoint early once this many users changed (bounds a checkpoint's transaction)")
	fs.Bool(&s.ProcessorPairing, "processor-require-pairing", d.Rules.RequirePairing, "accept a reading only from a device paired to the user at its measurement time")
	fs.String(&s.ProcessorMetrics, "processor-metrics-addr", processor.DefaultMetricsAddr, "where the processor serves /metrics (empty: nowhere)")
}

// ProjectorFlags registers the projector role's flags.
func (s *Settings) ProjectorFlags(fs *envflag.Set) {
	d := projector.DefaultConfig()
	fs.String(&s.ProjectorGroup, "projector-group", d.Group, "projector consumer group")
	fs.String(&s.ProjectorInstance, "projector-instance-id", "", "static group membership id: a restart with the same id resumes its partitions without a rebalance")
	fs.String(&s.ProjectorMetrics, "projector-metrics-addr", projector.DefaultMetricsAddr, "where the projector serves /metrics (empty: nowhere)")
	fs.Int(&s.ProjectorRows, "projector-batch-rows", d.MaxRows, "rows per ClickHouse insert at most")
	fs.Duration(&s.ProjectorFlush, "projector-flush-interval", d.FlushInterval, "longest a row waits before its insert")
	fs.Duration(&s.ProjectorTimeout, "projector-insert-timeout", d.InsertTimeout, "bound on each ClickHouse insert or statement")
	fs.Duration(&s.ProjectorBackoff, "projector-max-backoff", d.MaxBackoff, "longest wait between retries while ClickHouse is unavailable (jittered, doubling from 100ms)")
}

// QueryFlags registers the query service's flags.
func (s *Settings) QueryFlags(fs *envflag.Set) {
	d := query.DefaultConfig()
	fs.String(&s.QueryAddr, "query-addr", d.Addr, "query HTTP listen address")
	fs.Duration(&s.QueryTimeout, "query-timeout", d.QueryTimeout, "bound on each request's ClickHouse work")
	fs.Int(&s.QueryMinCohort, "query-min-cohort-users", d.MinCohortUsers, "smallest cohort whose figures are shown; smaller ones are suppressed")
	fs.Duration(&s.QueryMaxWait, "query-max-wait", d.MaxWait, "longest a request with a consistency token may wait for the pipeline")
	fs.BoolVar(&s.QueryRollup, "query-values-from-rollup", d.ValuesFromRollup, "read the whole days of cohort- and tenant-wide ranges from the value rollup (false: only the readings table)")
	fs.Int(&s.QueryConcurrent, "query-max-concurrent", d.MaxConcurrent, "requests worked on at once; more are answered 503 overloaded")
	fs.Int(&s.QueryTokenRate, "query-token-rate", int(d.PerToken.Rate), "requests per second one analyst token may make (0: no limit); more are answered 429")
	fs.Int(&s.QueryTokenBurst, "query-token-burst", d.PerToken.Burst, "requests one analyst token may make at once after being idle")
	fs.Int(&s.QueryTokenConcurrent, "query-token-concurrent", d.PerToken.Concurrent, "requests of one analyst token in flight at once (0: no limit); more are answered 429")
}

// StartFlags registers how long a role keeps trying to start while what
// it depends on (Kafka, PostgreSQL, ClickHouse) is unreachable.
func (s *Settings) StartFlags(fs *envflag.Set) {
	fs.Duration(&s.StartTimeout, "start-timeout", 2*time.Minute, "how long a role retries its start while Kafka, PostgreSQL or ClickHouse is unreachable (0: try once)")
}

// Logger is the command's one logger, on stderr.
func (s *Settings) Logger() (zerolog.Logger, error) {
	return logging.New(os.Stderr, s.LogLevel, s.LogFormat)
}

// Kafka is the Kafka configuration of the flags. CheckKafka has validated
// the output version of every command that registers KafkaFlags; an
// unchecked, invalid one leaves the v1 topics.
func (s *Settings) Kafka() eventlog.Config {
	c := eventlog.DefaultConfig()
	c.Brokers = eventlog.ParseBrokers(s.KafkaBrokers)
	c.Topics = eventlog.TopicsWithPrefix(s.KafkaPrefix)
	if t, err := c.Topics.WithOutputVersion(s.KafkaOutputVersion); err == nil {
		c.Topics = t
	}
	c.Partitions = s.KafkaPartitions
	c.ReplicationFactor = s.KafkaReplication
	return c
}

// CheckKafka validates the Kafka flags that Kafka cannot report on.
func (s *Settings) CheckKafka() error {
	if s.KafkaOutputVersion == "" {
		s.KafkaOutputVersion = "v1"
	}
	_, err := eventlog.TopicsWithPrefix(s.KafkaPrefix).WithOutputVersion(s.KafkaOutputVersion)
	return err
}

// Warehouse is the ClickHouse configuration of the flags.
func (s *Settings) Warehouse() warehouse.Config {
	c := warehouse.DefaultConfig()
	c.Addr, c.Database, c.User, c.Password = s.ClickHouseAddr, s.ClickHouseDatabase, s.ClickHouseUser, s.ClickHousePassword
	c.Compression = s.ClickHouseCompression
	c.Cluster = s.ClickHouseCluster
	return c
}

// Ingest is the ingest role's configuration of the flags.
func (s *Settings) Ingest() ingest.Config {
	c := ingest.DefaultConfig()
	c.Addr, c.Kafka, c.PostgresURL = s.IngestAddr, s.Kafka(), s.PostgresURL
	c.MaxBatchItems, c.MaxBodyBytes, c.ProduceTimeout = s.IngestMaxItems, int64(s.IngestMaxBytes), s.IngestTimeout
	c.Limits = ingest.Limits{MaxFutureSkew: s.IngestFutureSkew, MaxAge: s.IngestMaxAge, MinTime: s.IngestMinTime}
	return c
}

// Processor is the processor role's configuration of the flags.
func (s *Settings) Processor() processor.Config {
	c := processor.DefaultConfig()
	c.Kafka, c.PostgresURL, c.Group, c.MaxBatch = s.Kafka(), s.PostgresURL, s.ProcessorGroup, s.ProcessorBatch
	c.Rules.AllowedLateness = s.ProcessorLateness
	c.Rules.RequirePairing = s.ProcessorPairing
	c.MetricsAddr = s.ProcessorMetrics
	c.CheckpointInterval, c.MaxDirty = s.ProcessorCheckpoint, s.ProcessorMaxDirty
	c.InstanceID, c.SessionTimeout = s.ProcessorInstance, s.ProcessorSession
	return c
}

// Projector is the projector role's configuration of the flags.
func (s *Settings) Projector() projector.Config {
	c := projector.DefaultConfig()
	c.Kafka, c.Warehouse, c.Group = s.Kafka(), s.Warehouse(), s.ProjectorGroup
	c.MaxRows, c.FlushInterval = s.ProjectorRows, s.ProjectorFlush
	c.InsertTimeout, c.MaxBackoff = s.ProjectorTimeout, s.ProjectorBackoff
	c.InstanceID, c.MetricsAddr = s.ProjectorInstance, s.ProjectorMetrics
	return c
}

// Query is the query service's configuration of the flags.
func (s *Settings) Query() query.Config {
	c := query.DefaultConfig()
	c.Addr, c.Warehouse, c.QueryTimeout = s.QueryAddr, s.Warehouse(), s.QueryTimeout
	c.PostgresURL, c.Kafka = s.PostgresURL, s.Kafka()
	c.ProcessorGroup, c.ProjectorGroup = s.ProcessorGroup, s.ProjectorGroup
	c.MinCohortUsers, c.MaxWait, c.ValuesFromRollup = s.QueryMinCohort, s.QueryMaxWait, s.QueryRollup
	c.DefaultWait = min(c.DefaultWait, c.MaxWait)
	c.MaxConcurrent = s.QueryConcurrent
	c.PerToken = quota.Limits{Rate: float64(s.QueryTokenRate), Burst: s.QueryTokenBurst, Concurrent: s.QueryTokenConcurrent}
	return c
}
