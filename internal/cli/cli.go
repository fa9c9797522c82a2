// Package cli is the vitals command line: one binary, a subcommand per role,
// and `run` to start every role in one process for local use. Each flag has
// an environment variable VITALS_<FLAG> that sets its default; `vitals
// <command> -h` lists both.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/logging"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/projector"
	"github.com/vitalshq/vitals/query"
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run every role (ingest, processor, projector, query) in one process", cmdRun},
		{"ingest", "run the gateways' HTTP ingest service", cmdIngest},
		{"processor", "run a processor instance (per-user invariants, state in PostgreSQL)", cmdProcessor},
		{"projector", "run a projector instance (the processor's outputs and device/profile events into ClickHouse)", cmdProjector},
		{"query", "run the analysts' HTTP query service, or ask it: query percentiles|distribution|compare|cohorts|trends|summary", cmdQuery},
		{"migrate", "create the Kafka topics and the ClickHouse tables, then exit", cmdMigrate},
		{"keys", "manage gateway API keys: keys create|list|revoke", cmdKeys},
		{"tokens", "manage analyst query tokens: tokens create|list|revoke", cmdTokens},
		{"demo", "run the pipeline on the bundled Fitbit sample and print per-user percentiles", cmdDemo},
		{"replay", "rebuild tables from the log into shadow tables and swap them in (replay rebuild|rollback), or reprocess the raw log into new output topics (replay reprocess)", cmdReplay},
		{"bench", "benchmarks: bench ingest (readings/s over HTTP), bench processor, bench projector (rows/s into ClickHouse)", cmdBench},
		{"simulate", "stream simulated users with injected faults to ingest and write the expected outcomes; simulate verify checks them", cmdSimulate},
		{"chaos", "kill and stop parts of a pipeline of its own while simulate streams, then verify nothing was lost or doubled", cmdChaos},
		{"version", "print the version", func(_ context.Context, _ []string, w io.Writer) error {
			_, err := fmt.Fprintln(w, "vitals", Version)
			return err
		}},
	}
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) < 1 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// Stopped by a signal while starting: nothing was half done.
			fmt.Fprintf(stderr, "vitals %s: stopped before it was running\n", c.name)
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "vitals %s: %v\n", c.name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "vitals: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vitals <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set by the environment variable VITALS_<FLAG>, e.g. VITALS_KAFKA_BROKERS.")
}

// settings are all the knobs; each command registers the ones it uses.
type settings struct {
	logLevel, logFormat string
	startTimeout        time.Duration

	kafkaBrokers     string
	kafkaPrefix      string
	kafkaPartitions  int
	kafkaReplication int
	// kafkaOutputVersion is the version of the processor's output topics
	// (v1, or v2... after a reprocess; see vitals replay reprocess).
	kafkaOutputVersion string

	pgURL string

	chAddr, chDatabase, chUser, chPassword string
	chCompression, chProtocol              string

	tenant string

	ingestAddr       string
	ingestMaxItems   int
	ingestMaxBytes   int
	ingestTimeout    time.Duration
	ingestFutureSkew time.Duration
	ingestMaxAge     time.Duration

	processorGroup    string
	processorInstance string
	processorSession  time.Duration
	processorBatch    int
	processorLateness time.Duration
	processorPairing  bool
	processorCkpt     time.Duration
	processorCkptMax  int
	processorMetrics  string

	projectorGroup   string
	projectorInst    string
	projectorRows    int
	projectorFlush   time.Duration
	projectorTimeout time.Duration
	projectorBackoff time.Duration
	queryAddr        string
	queryTimeout     time.Duration
	queryMinCohort   int
	queryMaxWait     time.Duration
	queryRollup      bool
}

func newFlags(name string) (*envflag.Set, *settings) {
	fs := envflag.New("vitals "+name, "VITALS")
	s := &settings{}
	fs.String(&s.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.String(&s.logFormat, "log-format", logging.DefaultFormat(), "log format: json or console")
	return fs, s
}

func (s *settings) kafkaFlags(fs *envflag.Set) {
	d := eventlog.DefaultConfig()
	fs.String(&s.kafkaBrokers, "kafka-brokers", strings.Join(d.Brokers, ","), "Kafka seed brokers, comma-separated")
	fs.String(&s.kafkaPrefix, "kafka-topic-prefix", "vitals", "prefix of every topic name, e.g. vitals.readings.v1")
	fs.Int(&s.kafkaPartitions, "kafka-partitions", d.Partitions, "partitions of topics Vitals creates (cannot shrink later)")
	fs.Int(&s.kafkaReplication, "kafka-replication", d.ReplicationFactor, "replication factor of topics Vitals creates")
	fs.String(&s.kafkaOutputVersion, "kafka-output-version", "v1", "version of the processor's output topics (e.g. v2 after vitals replay reprocess --version v2)")
}

func (s *settings) pgFlags(fs *envflag.Set) {
	fs.String(&s.pgURL, "pg-url", processor.DefaultConfig().PostgresURL, "PostgreSQL URL of the processor's state and the API keys")
}

func (s *settings) chFlags(fs *envflag.Set) {
	d := warehouse.DefaultConfig()
	fs.String(&s.chAddr, "clickhouse-addr", d.Addr, "ClickHouse address: the native protocol's port, or the HTTP interface's with --clickhouse-protocol http")
	fs.String(&s.chProtocol, "clickhouse-protocol", d.Protocol, "native, or http for a current server that exposes only its HTTP interface")
	fs.String(&s.chDatabase, "clickhouse-database", d.Database, "ClickHouse database")
	fs.String(&s.chUser, "clickhouse-user", d.User, "ClickHouse user")
	fs.String(&s.chPassword, "clickhouse-password", "", "ClickHouse password")
	fs.String(&s.chCompression, "clickhouse-compression", d.Compression, "native protocol compression: auto (none on a loopback address, lz4 otherwise), lz4 or none")
}

func (s *settings) tenantFlag(fs *envflag.Set) {
	fs.String(&s.tenant, "tenant", "default", "tenant of the temporary gateway key and analyst token that demo and bench make")
}

func (s *settings) ingestFlags(fs *envflag.Set) {
	d := ingest.DefaultConfig()
	fs.String(&s.ingestAddr, "ingest-addr", d.Addr, "ingest HTTP listen address")
	fs.Int(&s.ingestMaxItems, "ingest-max-items", d.MaxBatchItems, "most readings in one batch")
	fs.Int(&s.ingestMaxBytes, "ingest-max-bytes", int(d.MaxBodyBytes), "largest request body in bytes")
	fs.Duration(&s.ingestTimeout, "ingest-produce-timeout", d.ProduceTimeout, "wait for the broker's ack before answering 503")
	fs.Duration(&s.ingestFutureSkew, "ingest-max-future-skew", d.Limits.MaxFutureSkew, "how far ahead of the server clock a timestamp may be")
	fs.Duration(&s.ingestMaxAge, "ingest-max-age", d.Limits.MaxAge, "reject readings measured longer ago than this (0: any age)")
}

func (s *settings) processorFlags(fs *envflag.Set) {
	d := processor.DefaultConfig()
	fs.String(&s.processorGroup, "processor-group", d.Group, "processor consumer group")
	fs.String(&s.processorInstance, "processor-instance-id", "", "static group membership id: a restart with the same id resumes its partitions without a rebalance")
	fs.Duration(&s.processorSession, "processor-session-timeout", d.SessionTimeout, "how long the group waits for a silent instance")
	fs.Int(&s.processorBatch, "processor-batch", d.MaxBatch, "most records per state transaction")
	fs.Duration(&s.processorLateness, "processor-allowed-lateness", d.Rules.AllowedLateness, "how far behind its stream's newest reading a reading is still accepted")
	fs.Duration(&s.processorCkpt, "processor-checkpoint-interval", d.CheckpointInterval, "how often changed aggregates and offsets are committed to PostgreSQL (a crash re-processes at most this much)")
	fs.Int(&s.processorCkptMax, "processor-checkpoint-max-users", d.MaxDirty, "checkpoint early once this many users changed (bounds a checkpoint's transaction)")
	fs.Bool(&s.processorPairing, "processor-require-pairing", d.Rules.RequirePairing, "accept a reading only from a device paired to the user at its measurement time")
	fs.String(&s.processorMetrics, "processor-metrics-addr", "127.0.0.1:8091", "where the processor serves /metrics (empty: nowhere)")
}

func (s *settings) projectorFlags(fs *envflag.Set) {
	d := projector.DefaultConfig()
	fs.String(&s.projectorGroup, "projector-group", d.Group, "projector consumer group")
	fs.String(&s.projectorInst, "projector-instance-id", "", "static group membership id: a restart with the same id resumes its partitions without a rebalance")
	fs.Int(&s.projectorRows, "projector-batch-rows", d.MaxRows, "rows per ClickHouse insert at most")
	fs.Duration(&s.projectorFlush, "projector-flush-interval", d.FlushInterval, "longest a row waits before its insert")
	fs.Duration(&s.projectorTimeout, "projector-insert-timeout", d.InsertTimeout, "bound on each ClickHouse insert or statement")
	fs.Duration(&s.projectorBackoff, "projector-max-backoff", d.MaxBackoff, "longest wait between retries while ClickHouse is unavailable (jittered, doubling from 100ms)")
}

func (s *settings) logger() (zerolog.Logger, error) {
	return logging.New(os.Stderr, s.logLevel, s.logFormat)
}

// kafka is the Kafka configuration of the flags. checkKafka has validated
// the output version of every command that registers kafkaFlags; an
// unchecked, invalid one leaves the v1 topics.
func (s *settings) kafka() eventlog.Config {
	c := eventlog.DefaultConfig()
	c.Brokers = eventlog.ParseBrokers(s.kafkaBrokers)
	c.Topics = eventlog.TopicsWithPrefix(s.kafkaPrefix)
	if t, err := c.Topics.WithOutputVersion(s.kafkaOutputVersion); err == nil {
		c.Topics = t
	}
	c.Partitions = s.kafkaPartitions
	c.ReplicationFactor = s.kafkaReplication
	return c
}

// checkKafka validates the Kafka flags that kafka cannot report on.
func (s *settings) checkKafka() error {
	if s.kafkaOutputVersion == "" {
		s.kafkaOutputVersion = "v1"
	}
	_, err := eventlog.TopicsWithPrefix(s.kafkaPrefix).WithOutputVersion(s.kafkaOutputVersion)
	return err
}

func (s *settings) warehouse() warehouse.Config {
	c := warehouse.DefaultConfig()
	c.Addr, c.Database, c.User, c.Password = s.chAddr, s.chDatabase, s.chUser, s.chPassword
	c.Compression, c.Protocol = s.chCompression, s.chProtocol
	return c
}

func (s *settings) ingest() ingest.Config {
	c := ingest.DefaultConfig()
	c.Addr, c.Kafka, c.PostgresURL = s.ingestAddr, s.kafka(), s.pgURL
	c.MaxBatchItems, c.MaxBodyBytes, c.ProduceTimeout = s.ingestMaxItems, int64(s.ingestMaxBytes), s.ingestTimeout
	c.Limits = ingest.Limits{MaxFutureSkew: s.ingestFutureSkew, MaxAge: s.ingestMaxAge}
	return c
}

func (s *settings) processor() processor.Config {
	c := processor.DefaultConfig()
	c.Kafka, c.PostgresURL, c.Group, c.MaxBatch = s.kafka(), s.pgURL, s.processorGroup, s.processorBatch
	c.Rules.AllowedLateness = s.processorLateness
	c.Rules.RequirePairing = s.processorPairing
	c.MetricsAddr = s.processorMetrics
	c.CheckpointInterval, c.MaxDirty = s.processorCkpt, s.processorCkptMax
	c.InstanceID, c.SessionTimeout = s.processorInstance, s.processorSession
	return c
}

func (s *settings) projector() projector.Config {
	c := projector.DefaultConfig()
	c.Kafka, c.Warehouse, c.Group = s.kafka(), s.warehouse(), s.projectorGroup
	c.MaxRows, c.FlushInterval = s.projectorRows, s.projectorFlush
	c.InsertTimeout, c.MaxBackoff = s.projectorTimeout, s.projectorBackoff
	c.InstanceID = s.projectorInst
	return c
}

// role is the lifecycle every role shares.
type role interface {
	Run(ctx context.Context) error
	Close()
}

// runRoles runs roles until ctx ends or one fails, then closes them all.
func runRoles(ctx context.Context, log zerolog.Logger, roles ...role) error {
	defer func() {
		for _, r := range roles {
			r.Close()
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range roles {
		g.Go(func() error { return r.Run(gctx) })
	}
	err := g.Wait()
	log.Info().Msg("shut down")
	return err
}

func cmdIngest(ctx context.Context, args []string, _ io.Writer) error {
	fs, s := newFlags("ingest")
	s.kafkaFlags(fs)
	s.pgFlags(fs)
	s.ingestFlags(fs)
	s.startFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	srv, err := construct(ctx, log, "ingest", s.startTimeout, func(ctx context.Context) (*ingest.Server, error) { return ingest.New(ctx, s.ingest(), log) })
	if err != nil {
		return err
	}
	return runRoles(ctx, log, srv)
}

func cmdProcessor(ctx context.Context, args []string, _ io.Writer) error {
	fs, s := newFlags("processor")
	s.kafkaFlags(fs)
	s.pgFlags(fs)
	s.processorFlags(fs)
	s.startFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.checkKafka(); err != nil {
		return err
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	p, err := construct(ctx, log, "processor", s.startTimeout, func(ctx context.Context) (*processor.Processor, error) { return processor.New(ctx, s.processor(), log) })
	if err != nil {
		return err
	}
	return runRoles(ctx, log, p)
}

func cmdProjector(ctx context.Context, args []string, _ io.Writer) error {
	fs, s := newFlags("projector")
	s.kafkaFlags(fs)
	s.chFlags(fs)
	s.projectorFlags(fs)
	s.startFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.checkKafka(); err != nil {
		return err
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	p, err := construct(ctx, log, "projector", s.startTimeout, func(ctx context.Context) (*projector.Projector, error) { return projector.New(ctx, s.projector(), log) })
	if err != nil {
		return err
	}
	return runRoles(ctx, log, p)
}

// allFlags registers every role's flags, for run and demo.
func allFlags(name string) (*envflag.Set, *settings) {
	fs, s := newFlags(name)
	s.kafkaFlags(fs)
	s.pgFlags(fs)
	s.chFlags(fs)
	s.tenantFlag(fs)
	s.ingestFlags(fs)
	s.processorFlags(fs)
	s.projectorFlags(fs)
	s.queryFlags(fs)
	s.startFlags(fs)
	return fs, s
}

// startAll constructs every role; on error it closes the ones already made.
func startAll(ctx context.Context, s *settings, log zerolog.Logger) ([]role, error) {
	var roles []role
	fail := func(err error) ([]role, error) {
		for _, r := range roles {
			r.Close()
		}
		return nil, err
	}
	in, err := construct(ctx, log, "ingest", s.startTimeout, func(ctx context.Context) (*ingest.Server, error) { return ingest.New(ctx, s.ingest(), log) })
	if err != nil {
		return fail(err)
	}
	roles = append(roles, in)
	pr, err := construct(ctx, log, "processor", s.startTimeout, func(ctx context.Context) (*processor.Processor, error) { return processor.New(ctx, s.processor(), log) })
	if err != nil {
		return fail(err)
	}
	roles = append(roles, pr)
	pj, err := construct(ctx, log, "projector", s.startTimeout, func(ctx context.Context) (*projector.Projector, error) { return projector.New(ctx, s.projector(), log) })
	if err != nil {
		return fail(err)
	}
	roles = append(roles, pj)
	q, err := construct(ctx, log, "query", s.startTimeout, func(ctx context.Context) (*query.Service, error) { return query.New(ctx, s.query(), log) })
	if err != nil {
		return fail(err)
	}
	return append(roles, q), nil
}

func cmdRun(ctx context.Context, args []string, _ io.Writer) error {
	fs, s := allFlags("run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.checkKafka(); err != nil {
		return err
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	roles, err := startAll(ctx, s, log)
	if err != nil {
		return err
	}
	return runRoles(ctx, log, roles...)
}

func cmdMigrate(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := newFlags("migrate")
	s.kafkaFlags(fs)
	s.chFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	if err := eventlog.EnsureTopics(ctx, s.kafka(), log); err != nil {
		return err
	}
	conn, err := warehouse.Open(ctx, s.warehouse())
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := warehouse.Migrate(ctx, conn, s.chDatabase); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, "migrated: topics and ClickHouse tables are in place")
	return err
}
