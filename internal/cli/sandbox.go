package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/procs"
)

// sandbox is a pipeline of its own on the shared stack, for chaos and the
// end-to-end benchmark: topics, consumer groups, ClickHouse database and
// tenant named after the run, the roles as child processes of this binary,
// and everything removed at the end unless kept.
type sandbox struct {
	s         *settings
	log       zerolog.Logger
	id        string
	key       string
	revoke    func()
	ingestURL string
	logFile   *os.File
	bin       string
}

// newSandbox names the run's resources (in s), creates the topics and
// tables and an API key of the run's tenant, and picks a free port for
// ingest. Role output goes to logDir/<id>.log.
func newSandbox(ctx context.Context, s *settings, kind, logDir string, log zerolog.Logger) (*sandbox, error) {
	id := kind + time.Now().UTC().Format("0102150405")
	s.kafkaPrefix, s.chDatabase, s.tenant = id, "vitals_"+id, id
	s.processorGroup, s.projectorGroup = id+".processor", id+".projector"
	b := &sandbox{s: s, log: log, id: id}
	var err error
	if b.bin, err = os.Executable(); err != nil {
		return nil, fmt.Errorf("%s: find this binary: %w", kind, err)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if b.logFile, err = os.Create(filepath.Join(logDir, id+".log")); err != nil {
		return nil, fmt.Errorf("%s: role log: %w", kind, err)
	}
	if err := eventlog.EnsureTopics(ctx, s.kafka(), log); err != nil {
		return nil, err
	}
	conn, err := warehouse.Open(ctx, s.warehouse())
	if err != nil {
		return nil, err
	}
	err = warehouse.Migrate(ctx, conn, s.chDatabase)
	conn.Close()
	if err != nil {
		return nil, err
	}
	if b.key, b.revoke, err = tempKey(ctx, s, id+" gateway"); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: free port: %w", kind, err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s.ingestAddr, b.ingestURL = addr, "http://"+addr
	log.Info().Str("run", id).Str("role_log", b.logFile.Name()).Msg("sandbox ready")
	return b, nil
}

// role describes `vitals <name>` as a supervised child with the sandbox's
// settings; extra are more VITALS_* assignments.
func (b *sandbox) role(label, name string, extra ...string) *procs.Proc {
	s := b.s
	env := []string{
		"VITALS_KAFKA_BROKERS=" + s.kafkaBrokers, "VITALS_KAFKA_TOPIC_PREFIX=" + s.kafkaPrefix,
		"VITALS_KAFKA_PARTITIONS=" + strconv.Itoa(s.kafkaPartitions), "VITALS_PG_URL=" + s.pgURL,
		"VITALS_CLICKHOUSE_ADDR=" + s.chAddr, "VITALS_CLICKHOUSE_DATABASE=" + s.chDatabase,
		"VITALS_PROCESSOR_GROUP=" + s.processorGroup, "VITALS_PROJECTOR_GROUP=" + s.projectorGroup,
		"VITALS_INGEST_ADDR=" + s.ingestAddr, "VITALS_PROCESSOR_METRICS_ADDR=",
		"VITALS_LOG_FORMAT=json", "VITALS_LOG_LEVEL=warn",
	}
	return procs.New(label, b.bin, []string{name}, append(env, extra...), b.logFile, b.log)
}

// close revokes the key and, unless keep, deletes the topics, groups,
// database and processor state.
func (b *sandbox) close(keep bool) {
	if b.revoke != nil {
		b.revoke()
	}
	if b.logFile != nil {
		b.logFile.Close()
	}
	if keep {
		b.log.Info().Str("run", b.id).Msg("kept the run's topics, database and state")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := b.s.kafka()
	if cl, err := kgo.NewClient(k.ClientOpts(b.log)...); err == nil {
		adm := kadm.NewClient(cl)
		var names []string
		for _, sp := range k.Specs() {
			names = append(names, sp.Name)
		}
		topics, _ := adm.ListTopics(ctx)
		for _, t := range topics.Names() {
			if strings.HasPrefix(t, b.id+".") && !strings.HasSuffix(t, ".v1") {
				names = append(names, t) // the bench's JSON copy
			}
		}
		if _, err := adm.DeleteTopics(ctx, names...); err != nil {
			b.log.Warn().Err(err).Msg("delete the run's topics")
		}
		_, _ = adm.DeleteGroups(ctx, b.s.processorGroup, b.s.projectorGroup)
		cl.Close()
	}
	if conn, err := warehouse.Open(ctx, b.s.warehouse()); err == nil {
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+b.s.chDatabase); err != nil {
			b.log.Warn().Err(err).Msg("drop the run's database")
		}
		conn.Close()
	}
	if pool, err := postgres.Open(ctx, b.s.pgURL); err == nil {
		for _, q := range []string{`DELETE FROM processor_aggregates WHERE group_id = $1`, `DELETE FROM processor_offsets WHERE group_id = $1`} {
			if _, err := pool.Exec(ctx, q, b.s.processorGroup); err != nil {
				b.log.Warn().Err(err).Msg("delete the run's processor state")
			}
		}
		pool.Close()
	}
}
