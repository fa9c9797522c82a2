package cmdline

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/logging"
	"github.com/vitalshq/vitals/internal/promreg"
	"github.com/vitalshq/vitals/internal/quota"
	"github.com/vitalshq/vitals/internal/userkeys"
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
	// KafkaRawVersion is the version of the raw topics (v1, or v2... after
	// vitals replay encrypt copied a clear log into sealed topics).
	KafkaRawVersion string

	PostgresURL string
	// KEKFile holds the key-encryption key of the users' data keys
	// (docs/privacy.md); empty: VITALS_KEK_FILE or VITALS_KEK.
	KEKFile string

	ClickHouseAddr, ClickHouseDatabase, ClickHouseUser, ClickHousePassword string
	ClickHouseCompression, ClickHouseProtocol                              string
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
	ProcessorCorrection time.Duration
	ProcessorPairing    bool
	ProcessorCheckpoint time.Duration
	ProcessorMaxDirty   int
	ProcessorMaxUsers   int
	ProcessorMetrics    string

	ProjectorGroup    string
	ProjectorInstance string
	ProjectorMetrics  string
	ProjectorRows     int
	ProjectorFlush    time.Duration
	ProjectorTimeout  time.Duration
	ProjectorBackoff  time.Duration
	// ProjectorGCPercent is the Go GC target of a projector process.
	ProjectorGCPercent int

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

	// Transport security (docs/security.md): Kafka's security protocol,
	// SASL credentials and CA; ClickHouse over TLS; certificates of the
	// ingest and query listeners.
	KafkaSecurity                   eventlog.Security
	ClickHouseTLS                   bool
	ClickHouseTLSCA, ClickHouseName string
	IngestTLSCert, IngestTLSKey     string
	QueryTLSCert, QueryTLSKey       string

	// Registry is where the roles configured by Ingest, Processor,
	// Projector and Query register their metrics (nil: a registry of
	// each role's own); vitals run's roles share one, as one process has.
	Registry *promreg.Registry
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
	fs.String(&s.KafkaRawVersion, "kafka-raw-version", "v1", "version of the raw topics: readings, device and profile events, dead letters (e.g. v2 after vitals replay encrypt --version v2)")
	k := &s.KafkaSecurity
	fs.String(&k.Protocol, "kafka-security-protocol", eventlog.Plaintext, "PLAINTEXT, SSL (TLS) or SASL_SSL (TLS and SCRAM); TLS or SASL settings under PLAINTEXT are refused")
	fs.String(&k.Mechanism, "kafka-sasl-mechanism", eventlog.ScramSHA512, "SASL mechanism of SASL_SSL: SCRAM-SHA-512 or SCRAM-SHA-256")
	fs.String(&k.Username, "kafka-sasl-username", "", "SASL user of SASL_SSL")
	fs.String(&k.Password, "kafka-sasl-password", "", "SASL password of SASL_SSL (prefer the environment variable to the flag)")
	fs.String(&k.CAFile, "kafka-tls-ca", "", "PEM file of the certificate authorities the brokers' certificates must chain to (empty: the system's)")
	fs.String(&k.ServerName, "kafka-tls-server-name", "", "name to check in the brokers' certificates instead of the host dialled")
}

// PostgresFlags registers the PostgreSQL URL.
func (s *Settings) PostgresFlags(fs *envflag.Set) {
	fs.String(&s.PostgresURL, "pg-url", processor.DefaultConfig().PostgresURL, "PostgreSQL URL of the processor's state, the API keys and the users' data keys")
	fs.String(&s.KEKFile, "kek-file", "", "file holding the key-encryption key that wraps the users' data keys: the base64 of 32 random bytes (or VITALS_KEK with the key itself); see docs/privacy.md")
}

// UserKeys is the users' data keys' configuration of the flags.
func (s *Settings) UserKeys() userkeys.Config {
	c := userkeys.DefaultConfig()
	c.Keyring.KEKFile = s.KEKFile
	return c
}

// ClickHouseFlags registers the warehouse's flags.
func (s *Settings) ClickHouseFlags(fs *envflag.Set) {
	d := warehouse.DefaultConfig()
	fs.String(&s.ClickHouseAddr, "clickhouse-addr", d.Addr, "ClickHouse address: the native protocol's port, or the HTTP interface's with --clickhouse-protocol http")
	fs.String(&s.ClickHouseProtocol, "clickhouse-protocol", d.Protocol, "native, or http for a current server that exposes only its HTTP interface")
	fs.String(&s.ClickHouseDatabase, "clickhouse-database", d.Database, "ClickHouse database")
	fs.String(&s.ClickHouseUser, "clickhouse-user", d.User, "ClickHouse user")
	fs.String(&s.ClickHousePassword, "clickhouse-password", "", "ClickHouse password")
	fs.String(&s.ClickHouseCompression, "clickhouse-compression", d.Compression, "native protocol compression: auto (none on a loopback address, lz4 otherwise), lz4 or none")
	fs.Bool(&s.ClickHouseTLS, "clickhouse-tls", false, "connect over TLS (ClickHouse's secure native port, tcp_port_secure)")
	fs.String(&s.ClickHouseTLSCA, "clickhouse-tls-ca", "", "PEM file of the certificate authorities ClickHouse's certificate must chain to (empty: the system's)")
	fs.String(&s.ClickHouseName, "clickhouse-tls-server-name", "", "name to check in ClickHouse's certificate instead of the host of --clickhouse-addr")
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
	fs.String(&s.IngestTLSCert, "ingest-tls-cert", "", "PEM certificate chain: with --ingest-tls-key, ingest serves HTTPS only (TLS 1.2+, re-read when renewed)")
	fs.String(&s.IngestTLSKey, "ingest-tls-key", "", "PEM private key of --ingest-tls-cert")
}

// ProcessorFlags registers the processor role's flags.
func (s *Settings) ProcessorFlags(fs *envflag.Set) {
	d := processor.DefaultConfig()
	fs.String(&s.ProcessorGroup, "processor-group", d.Group, "processor consumer group")
	fs.String(&s.ProcessorInstance, "processor-instance-id", "", "static group membership id: a restart with the same id resumes its partitions without a rebalance")
	fs.Duration(&s.ProcessorSession, "processor-session-timeout", d.SessionTimeout, "how long the group waits for a silent instance")
	fs.Int(&s.ProcessorBatch, "processor-batch", d.MaxBatch, "most records per state transaction")
	fs.Duration(&s.ProcessorLateness, "processor-allowed-lateness", d.Rules.AllowedLateness, "how far behind its stream's newest reading a reading is still accepted")
	fs.Duration(&s.ProcessorCorrection, "processor-correction-window", d.Rules.CorrectionWindow, "how far back a revision (correction or withdrawal) may reach: one of a reading measured longer before the user's newest reading arrived is rejected correction_window_passed")
	fs.Duration(&s.ProcessorCheckpoint, "processor-checkpoint-interval", d.CheckpointInterval, "how often changed aggregates and offsets are committed to PostgreSQL (a crash re-processes at most this much)")
	fs.Int(&s.ProcessorMaxDirty, "processor-checkpoint-max-users", d.MaxDirty, "checkpoint early once this many users changed (bounds a checkpoint's transaction)")
	fs.Int(&s.ProcessorMaxUsers, "processor-max-users", d.MaxUsers, "aggregates kept in memory; idle users beyond it are dropped after a checkpoint and loaded again when they return (0: no bound)")
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
	fs.Int(&s.ProjectorGCPercent, "projector-gc-percent", 400, "Go GC target of a vitals projector process (GOGC, if set, wins; 0: Go's default of 100): a projector makes each batch's records and columns anew, and collecting a quarter as often saves about a fifth of its CPU for a larger heap (docs/performance.md; GOMEMLIMIT bounds it)")
}

// ApplyProjectorGC sets the GC target of a process that runs only a
// projector (vitals projector, not vitals run, whose other roles did not
// ask for it) and reports what it set: 0 when GOGC or the flag's 0 leaves
// Go's own.
func (s *Settings) ApplyProjectorGC() int {
	if os.Getenv("GOGC") != "" || s.ProjectorGCPercent <= 0 {
		return 0
	}
	debug.SetGCPercent(s.ProjectorGCPercent)
	return s.ProjectorGCPercent
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
	fs.String(&s.QueryTLSCert, "query-tls-cert", "", "PEM certificate chain: with --query-tls-key, the query service serves HTTPS only (TLS 1.2+, re-read when renewed)")
	fs.String(&s.QueryTLSKey, "query-tls-key", "", "PEM private key of --query-tls-cert")
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
	if s.KafkaRawVersion != "" && s.KafkaRawVersion != "v1" {
		if t, err := c.Topics.WithRawVersion(s.KafkaRawVersion); err == nil {
			c.Topics = t
		}
	}
	c.Partitions = s.KafkaPartitions
	c.ReplicationFactor = s.KafkaReplication
	c.Security = s.kafkaSecurity()
	return c
}

// kafkaSecurity is the Kafka security of the flags, with the SASL
// mechanism's default dropped when SASL is not in use (it is a flag
// default, not a setting).
func (s *Settings) kafkaSecurity() eventlog.Security {
	k := s.KafkaSecurity
	if !strings.EqualFold(k.Protocol, eventlog.SASLSSL) && strings.EqualFold(k.Mechanism, eventlog.ScramSHA512) {
		k.Mechanism = ""
	}
	return k
}

// CheckKafka validates the Kafka flags that Kafka cannot report on.
func (s *Settings) CheckKafka() error {
	if s.KafkaOutputVersion == "" {
		s.KafkaOutputVersion = "v1"
	}
	t, err := eventlog.TopicsWithPrefix(s.KafkaPrefix).WithOutputVersion(s.KafkaOutputVersion)
	if err == nil && s.KafkaRawVersion != "" && s.KafkaRawVersion != "v1" {
		_, err = t.WithRawVersion(s.KafkaRawVersion)
	}
	if err != nil {
		return err
	}
	return s.kafkaSecurity().Validate()
}

// CheckSecurity validates the transport security flags before a role
// starts, so a contradiction (a CA without TLS, SASL without TLS, half a
// certificate pair) fails at once instead of in every connection attempt.
func (s *Settings) CheckSecurity() error {
	if err := s.kafkaSecurity().Validate(); err != nil {
		return err
	}
	if !s.ClickHouseTLS && (s.ClickHouseTLSCA != "" || s.ClickHouseName != "") {
		return errors.New("clickhouse: --clickhouse-tls-ca or --clickhouse-tls-server-name is set without --clickhouse-tls: the connection would be unencrypted")
	}
	for _, p := range [][3]string{{"ingest", s.IngestTLSCert, s.IngestTLSKey}, {"query", s.QueryTLSCert, s.QueryTLSKey}} {
		if (p[1] == "") != (p[2] == "") {
			return fmt.Errorf("%[1]s: --%[1]s-tls-cert and --%[1]s-tls-key go together", p[0])
		}
	}
	return nil
}

// Warehouse is the ClickHouse configuration of the flags.
func (s *Settings) Warehouse() warehouse.Config {
	c := warehouse.DefaultConfig()
	c.Addr, c.Database, c.User, c.Password = s.ClickHouseAddr, s.ClickHouseDatabase, s.ClickHouseUser, s.ClickHousePassword
	c.Compression, c.Protocol = s.ClickHouseCompression, s.ClickHouseProtocol
	c.TLS, c.TLSCA, c.TLSServerName = s.ClickHouseTLS, s.ClickHouseTLSCA, s.ClickHouseName
	c.Cluster = s.ClickHouseCluster
	return c
}

// Ingest is the ingest role's configuration of the flags.
func (s *Settings) Ingest() ingest.Config {
	c := ingest.DefaultConfig()
	c.Addr, c.Kafka, c.PostgresURL = s.IngestAddr, s.Kafka(), s.PostgresURL
	c.MaxBatchItems, c.MaxBodyBytes, c.ProduceTimeout = s.IngestMaxItems, int64(s.IngestMaxBytes), s.IngestTimeout
	c.Limits = ingest.Limits{MaxFutureSkew: s.IngestFutureSkew, MaxAge: s.IngestMaxAge, MinTime: s.IngestMinTime}
	c.UserKeys = s.UserKeys()
	c.TLSCertFile, c.TLSKeyFile = s.IngestTLSCert, s.IngestTLSKey
	c.Registry = s.Registry
	return c
}

// Processor is the processor role's configuration of the flags.
func (s *Settings) Processor() processor.Config {
	c := processor.DefaultConfig()
	c.Kafka, c.PostgresURL, c.Group, c.MaxBatch = s.Kafka(), s.PostgresURL, s.ProcessorGroup, s.ProcessorBatch
	c.Rules.AllowedLateness = s.ProcessorLateness
	c.Rules.CorrectionWindow = s.ProcessorCorrection
	c.Rules.RequirePairing = s.ProcessorPairing
	c.MetricsAddr = s.ProcessorMetrics
	c.CheckpointInterval, c.MaxDirty, c.MaxUsers = s.ProcessorCheckpoint, s.ProcessorMaxDirty, s.ProcessorMaxUsers
	c.InstanceID, c.SessionTimeout = s.ProcessorInstance, s.ProcessorSession
	c.UserKeys, c.Registry = s.UserKeys(), s.Registry
	return c
}

// Projector is the projector role's configuration of the flags.
func (s *Settings) Projector() projector.Config {
	c := projector.DefaultConfig()
	c.Kafka, c.Warehouse, c.Group = s.Kafka(), s.Warehouse(), s.ProjectorGroup
	c.MaxRows, c.FlushInterval = s.ProjectorRows, s.ProjectorFlush
	c.InsertTimeout, c.MaxBackoff = s.ProjectorTimeout, s.ProjectorBackoff
	c.InstanceID, c.MetricsAddr = s.ProjectorInstance, s.ProjectorMetrics
	c.PostgresURL, c.UserKeys, c.Registry = s.PostgresURL, s.UserKeys(), s.Registry
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
	c.TLSCertFile, c.TLSKeyFile = s.QueryTLSCert, s.QueryTLSKey
	c.Registry = s.Registry
	return c
}
