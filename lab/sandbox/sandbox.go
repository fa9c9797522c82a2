// Package sandbox runs a pipeline of its own on the shared stack, for
// vitals-lab chaos and bench e2e: topics, consumer groups, ClickHouse
// database and tenant named after the run, the product's roles as child
// processes of the vitals binary (lab/procs), and everything removed at
// the end unless kept.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/procs"
	"github.com/vitalshq/vitals/lab/scratch"
)

// DefaultLogDir is where the roles' logs go by default: under bench/out/,
// which git ignores, so runs never dirty the checkout.
const DefaultLogDir = "bench/out/logs"

// ParseWithBinary registers --vitals-binary, the product binary whose
// roles the sandbox runs, parses args and resolves that binary (see
// Binary): the lab commands that start roles all need the three steps in
// this order.
func ParseWithBinary(fs *envflag.Set, args []string) (string, error) {
	var flag string
	fs.String(&flag, "vitals-binary", "", "the vitals binary whose roles run as child processes (default: vitals next to this binary, else bin/vitals)")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	return Binary(flag)
}

func Binary(flag string) (string, error) {
	if flag != "" {
		return exists(flag)
	}
	if self, err := os.Executable(); err == nil {
		if p, err := exists(filepath.Join(filepath.Dir(self), "vitals")); err == nil {
			return p, nil
		}
	}
	p, err := exists(filepath.Join("bin", "vitals"))
	if err != nil {
		return "", errors.New("no vitals binary next to this one or in bin/: run make build or pass --vitals-binary")
	}
	return p, nil
}

func exists(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("vitals binary: %w", err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("vitals binary %s is not an executable file", abs)
	}
	return abs, nil
}

// Sandbox is a run's pipeline of its own.
type Sandbox struct {
	// ID names the run's topics (ID.*), groups, database (vitals_ID)
	// and tenant.
	ID string
	// Key is an API key of the run's tenant, revoked by Close.
	Key string
	// IngestURL is where the ingest child listens.
	IngestURL string
	// QueryURL and Token are where a query child listens and an analyst
	// token of the run's tenant, once PrepareQuery has made them.
	QueryURL, Token string

	s       *cmdline.Settings
	log     zerolog.Logger
	revoke  func()
	revokeQ func()
	logFile *os.File
	bin     string
}

// New names the run's resources (in s), creates the topics and tables and
// an API key of the run's tenant, and picks a free port for ingest. The
// roles are children of bin (see Binary); their output goes to
// logDir/<ID>.log.
func New(ctx context.Context, s *cmdline.Settings, kind, logDir, bin string, log zerolog.Logger) (*Sandbox, error) {
	id := kind + time.Now().UTC().Format("0102150405")
	s.KafkaPrefix, s.ClickHouseDatabase, s.Tenant = id, "vitals_"+id, id
	s.ProcessorGroup, s.ProjectorGroup = id+".processor", id+".projector"
	b := &Sandbox{ID: id, s: s, log: log, bin: bin}
	// The roles refuse to start without the key-encryption key and would
	// only retry until the health wait ran out: say why here instead.
	if s.KEKFile == "" && os.Getenv("VITALS_KEK_FILE") == "" && os.Getenv("VITALS_KEK") == "" {
		return nil, fmt.Errorf("%s: no key-encryption key for the roles: set VITALS_KEK_FILE (eval \"$(bash deploy/stack.sh env)\" does) or pass --kek-file", kind)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	var err error
	if b.logFile, err = os.Create(filepath.Join(logDir, id+".log")); err != nil {
		return nil, fmt.Errorf("%s: role log: %w", kind, err)
	}
	if err := eventlog.EnsureTopics(ctx, s.Kafka(), log); err != nil {
		return nil, err
	}
	conn, err := warehouse.Open(ctx, s.Warehouse())
	if err != nil {
		return nil, err
	}
	err = warehouse.Migrate(ctx, conn, s.ClickHouseDatabase)
	conn.Close()
	if err != nil {
		return nil, err
	}
	if b.Key, b.revoke, err = s.TempKey(ctx, id+" gateway"); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: free port: %w", kind, err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s.IngestAddr, b.IngestURL = addr, "http://"+addr
	log.Info().Str("run", id).Str("role_log", b.logFile.Name()).Str("vitals", bin).Msg("sandbox ready")
	return b, nil
}

// Role describes `vitals <name>` as a supervised child with the sandbox's
// settings; extra are more VITALS_* assignments.
func (b *Sandbox) Role(label, name string, extra ...string) *procs.Proc {
	s := b.s
	env := []string{
		"VITALS_KAFKA_BROKERS=" + s.KafkaBrokers, "VITALS_KAFKA_TOPIC_PREFIX=" + s.KafkaPrefix,
		"VITALS_KAFKA_PARTITIONS=" + strconv.Itoa(s.KafkaPartitions), "VITALS_PG_URL=" + s.PostgresURL,
		"VITALS_CLICKHOUSE_ADDR=" + s.ClickHouseAddr, "VITALS_CLICKHOUSE_DATABASE=" + s.ClickHouseDatabase,
		"VITALS_PROCESSOR_GROUP=" + s.ProcessorGroup, "VITALS_PROJECTOR_GROUP=" + s.ProjectorGroup,
		"VITALS_INGEST_ADDR=" + s.IngestAddr, "VITALS_PROCESSOR_METRICS_ADDR=", "VITALS_PROJECTOR_METRICS_ADDR=",
		"VITALS_QUERY_ADDR=" + s.QueryAddr, "VITALS_CLICKHOUSE_CLUSTER=" + s.ClickHouseCluster,
		"VITALS_KAFKA_REPLICATION=" + strconv.Itoa(s.KafkaReplication),
		"VITALS_LOG_FORMAT=json", "VITALS_LOG_LEVEL=warn",
	}
	if s.KEKFile != "" {
		env = append(env, "VITALS_KEK_FILE="+s.KEKFile)
	}
	return procs.New(label, b.bin, []string{name}, append(env, extra...), b.logFile, b.log)
}

// PrepareQuery makes an analyst token of the run's tenant and picks a
// free port for a query child (Role("query", "query")).
func (b *Sandbox) PrepareQuery(ctx context.Context) error {
	var err error
	if b.Token, b.revokeQ, err = b.s.TempCredential(ctx, credential.AnalystTokens, b.ID+" analyst"); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("query: free port: %w", err)
	}
	b.s.QueryAddr = ln.Addr().String()
	ln.Close()
	b.QueryURL = "http://" + b.s.QueryAddr
	return nil
}

// Close revokes the key and, unless keep, deletes the run's topics (every
// topic named ID.*), groups, database, processor state and its tenant's
// data keys.
func (b *Sandbox) Close(keep bool) {
	if b.revoke != nil {
		b.revoke()
	}
	if b.revokeQ != nil {
		b.revokeQ()
	}
	if b.logFile != nil {
		b.logFile.Close()
	}
	if keep {
		b.log.Info().Str("run", b.ID).Msg("kept the run's topics, database and state")
		return
	}
	s := b.s
	scratch.Resources{Kafka: s.Kafka(), Topics: scratch.AllTopics(s.Kafka()), TopicPrefix: b.ID + ".", Groups: []string{s.ProcessorGroup, s.ProjectorGroup},
		Warehouse: s.Warehouse(), Databases: []string{s.ClickHouseDatabase},
		PostgresURL: s.PostgresURL, StateGroups: []string{s.ProcessorGroup}, Tenants: []string{s.Tenant}}.Remove(context.Background(), b.log)
}
