// Package scratch names and removes what a lab run makes of its own on the
// shared stack: topics under a prefix of its own, consumer groups,
// ClickHouse databases and the processor's PostgreSQL state rows. The
// benchmarks and chaos never touch the real event log or tables, and leave
// nothing behind unless asked to keep it.
package scratch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// RealPrefix is the real event log's topic prefix, which no lab run may
// fill or delete.
const RealPrefix = "vitals"

// Names gives a command that fills and deletes topics and a database of
// its own fresh defaults: the prefixes followed by the start time. The
// database default is replaced even when VITALS_CLICKHOUSE_DATABASE is set
// (deploy/stack.sh env sets it to the real one); only an explicit flag
// chooses another.
func Names(fs *envflag.Set, topicPrefix, databasePrefix string) {
	started := time.Now().UTC().Format("20060102_150405")
	cmdline.SetDefault(fs, "kafka-topic-prefix", topicPrefix+started, false)
	cmdline.SetDefault(fs, "clickhouse-database", databasePrefix+started, true)
}

// RandomHex is n random bytes in hex: a suffix that keeps one run's names
// (groups, event ids) apart from another's.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AllTopics are the names of every topic of k (k.Specs()).
func AllTopics(k eventlog.Config) []string {
	var names []string
	for _, sp := range k.Specs() {
		names = append(names, sp.Name)
	}
	return names
}

// Resources are a run's own resources. The zero value of a field removes
// nothing of its kind.
type Resources struct {
	// Kafka is the connection. Topics are deleted, with every topic whose
	// name starts with TopicPrefix.
	Kafka       eventlog.Config
	Topics      []string
	TopicPrefix string
	// Groups are Kafka consumer groups.
	Groups []string
	// Databases are dropped from Warehouse.
	Warehouse warehouse.Config
	Databases []string
	// StateGroups are processor groups whose aggregates and offsets are
	// deleted from PostgresURL.
	PostgresURL string
	StateGroups []string
	// Tenants are scratch tenants whose users' data keys are deleted from
	// PostgresURL: a run that makes a tenant of its own would otherwise
	// leave its users' keys behind, and every later run would pay for a
	// larger key table.
	Tenants []string
}

// Remove deletes the resources, logging what it cannot delete; it runs
// within a minute even after ctx has ended.
func (r Resources) Remove(ctx context.Context, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if len(r.Topics) > 0 || r.TopicPrefix != "" || len(r.Groups) > 0 {
		r.removeKafka(ctx, log)
	}
	if len(r.Databases) > 0 {
		if conn, err := warehouse.Open(ctx, r.Warehouse); err != nil {
			log.Warn().Err(err).Msg("drop the run's databases")
		} else {
			for _, db := range r.Databases {
				if err := warehouse.ExecEverywhere(ctx, conn, "DROP DATABASE IF EXISTS "+db); err != nil {
					log.Warn().Err(err).Str("database", db).Msg("drop a run's database")
				}
			}
			conn.Close()
		}
	}
	if len(r.StateGroups) > 0 || len(r.Tenants) > 0 {
		r.removePostgres(ctx, log)
	}
}

func (r Resources) removePostgres(ctx context.Context, log zerolog.Logger) {
	pool, err := postgres.Open(ctx, r.PostgresURL)
	if err != nil {
		log.Warn().Err(err).Msg("delete the run's PostgreSQL rows")
		return
	}
	defer pool.Close()
	for _, g := range r.StateGroups {
		for _, table := range []string{"processor_aggregates", "processor_offsets"} {
			if ct, err := pool.Exec(ctx, `DELETE FROM `+table+` WHERE group_id = $1`, g); err != nil {
				log.Warn().Err(err).Str("table", table).Msg("delete the run's processor state")
			} else {
				log.Info().Str("table", table).Int64("rows", ct.RowsAffected()).Str("group", g).Msg("deleted the run's processor state")
			}
		}
	}
	for _, t := range r.Tenants {
		if n, err := userkeys.DropTenant(ctx, pool, t); err != nil {
			log.Warn().Err(err).Msg("delete the run's data keys")
		} else {
			log.Info().Int64("keys", n).Str("tenant", t).Msg("deleted the run's data keys")
		}
	}
}

func (r Resources) removeKafka(ctx context.Context, log zerolog.Logger) {
	cl, err := kgo.NewClient(r.Kafka.ClientOpts(log)...)
	if err != nil {
		log.Warn().Err(err).Msg("delete the run's topics")
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	names := slices.Clone(r.Topics)
	if r.TopicPrefix != "" {
		topics, _ := adm.ListTopics(ctx)
		for _, t := range topics.Names() {
			if strings.HasPrefix(t, r.TopicPrefix) && !slices.Contains(names, t) {
				names = append(names, t)
			}
		}
	}
	if len(names) > 0 {
		if _, err := adm.DeleteTopics(ctx, names...); err != nil {
			log.Warn().Err(err).Strs("topics", names).Msg("delete the run's topics")
		} else {
			log.Info().Strs("topics", names).Msg("deleted the run's topics")
		}
	}
	for _, g := range r.Groups {
		if _, err := adm.DeleteGroup(ctx, g); err != nil {
			log.Warn().Err(err).Str("group", g).Msg("delete the run's consumer group")
		}
	}
}
