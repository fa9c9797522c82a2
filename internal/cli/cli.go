// Package cli is the vitals command line: a subcommand per role (ingest,
// processor, projector, query), `run` to start every role in one process
// for local use, and the operator's commands (migrate, keys, tokens,
// replay, the query client, demo). The flags and their VITALS_*
// environment variables are internal/cmdline's, shared with vitals-lab;
// `vitals <command> -h` lists both.
package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/promreg"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/projector"
	"github.com/vitalshq/vitals/query"
)

// Main runs the vitals command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return cmdline.Main("vitals", []cmdline.Command{
		{Name: "run", Summary: "run every role (ingest, processor, projector, query) in one process", Run: cmdRun},
		{Name: "ingest", Summary: "run the gateways' HTTP ingest service", Run: ingestRole.command},
		{Name: "processor", Summary: "run a processor instance (per-user invariants, state in PostgreSQL)", Run: processorRole.command},
		{Name: "projector", Summary: "run a projector instance (the processor's outputs and device/profile events into ClickHouse)", Run: projectorRole.command},
		{Name: "query", Summary: "run the analysts' HTTP query service, or ask it: query percentiles|distribution|compare|cohorts|trends|summary", Run: cmdQuery},
		{Name: "migrate", Summary: "create the Kafka topics and the ClickHouse tables, then exit", Run: cmdMigrate},
		{Name: "keys", Summary: "manage gateway API keys: keys create|list|revoke", Run: cmdKeys},
		{Name: "tokens", Summary: "manage analyst query tokens: tokens create|list|revoke", Run: cmdTokens},
		{Name: "datakeys", Summary: "the users' data keys: datakeys status|rewrap (a new key-encryption key)", Run: cmdDataKeys},
		{Name: "export", Summary: "write everything held about a user as a FHIR R4 Bundle (export --tenant T --user U)", Run: cmdExport},
		{Name: "sql-users", Summary: "give a tenant's analysts direct read-only ClickHouse SQL over their tenant's rows only: sql-users grant|revoke|resync|list", Run: cmdSQLUsers},
		{Name: "audit", Summary: "list the access audit trail (audit --tenant T [--user U]) or check its hash chains (audit verify)", Run: cmdAudit},
		{Name: "demo", Summary: "run the pipeline on the bundled Fitbit sample and print per-user percentiles", Run: cmdDemo},
		{Name: "replay", Summary: "rebuild tables from the log into shadow tables and swap them in (replay rebuild|rollback), or reprocess the raw log into new output topics (replay reprocess)", Run: cmdReplay},
	}, args, stdout, stderr)
}

// roleSpec is one role: the flags it needs and how to make it.
type roleSpec struct {
	name string
	// checkKafka validates the output topics' version before the start
	// (the roles that read or write the output topics).
	checkKafka bool
	// flags registers the role's own flags; command adds Kafka's and
	// PostgreSQL's, which every role has (the log, and the keys there).
	flags func(s *cmdline.Settings, fs *envflag.Set)
	// tune, if set, tunes the process for the role when it runs alone
	// (vitals <role>, not vitals run).
	tune func(s *cmdline.Settings, log zerolog.Logger)
	// build makes the role, registering its metrics on s.Registry.
	build func(ctx context.Context, s *cmdline.Settings, log zerolog.Logger) (role, error)
}

var (
	ingestRole    = roleSpec{name: "ingest", flags: (*cmdline.Settings).IngestFlags, build: builds((*cmdline.Settings).Ingest, ingest.New)}
	processorRole = roleSpec{name: "processor", checkKafka: true, flags: (*cmdline.Settings).ProcessorFlags, build: builds((*cmdline.Settings).Processor, processor.New)}
	projectorRole = roleSpec{name: "projector", checkKafka: true,
		flags: func(s *cmdline.Settings, fs *envflag.Set) { s.ClickHouseFlags(fs); s.ProjectorFlags(fs) },
		tune: func(s *cmdline.Settings, log zerolog.Logger) {
			if pct := s.ApplyProjectorGC(); pct > 0 {
				log.Info().Int("gc_percent", pct).Msg("go gc target set (--projector-gc-percent)")
			}
		},
		build: builds((*cmdline.Settings).Projector, projector.New)}
	queryRole = roleSpec{name: "query", flags: queryServiceFlags, build: builds((*cmdline.Settings).Query, query.New)}
)

// builds is a roleSpec's build from the role's configuration of the
// settings and its constructor.
func builds[C any, R role](config func(*cmdline.Settings) C, newRole func(context.Context, C, zerolog.Logger) (R, error)) func(context.Context, *cmdline.Settings, zerolog.Logger) (role, error) {
	return func(ctx context.Context, s *cmdline.Settings, log zerolog.Logger) (role, error) {
		r, err := newRole(ctx, config(s), log)
		if err != nil {
			return nil, err // not r: a nil pointer in an interface is not nil
		}
		return r, nil
	}
}

// command is `vitals <role>`: it starts the role (retrying while what it
// depends on is down) and runs it until a signal.
func (r roleSpec) command(ctx context.Context, args []string, _ io.Writer) error {
	fs, s := cmdline.NewFlags("vitals " + r.name)
	s.KafkaFlags(fs)
	s.PostgresFlags(fs)
	r.flags(s, fs)
	s.StartFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if r.checkKafka {
		if err := s.CheckKafka(); err != nil {
			return err
		}
	}
	if err := s.CheckSecurity(); err != nil {
		return err
	}
	log, err := s.Logger()
	if err != nil {
		return err
	}
	if r.tune != nil {
		r.tune(s, log)
	}
	x, err := r.start(ctx, s, log)
	if err != nil {
		return err
	}
	return runRoles(ctx, log, x)
}

// start constructs the role, retrying for s.StartTimeout.
func (r roleSpec) start(ctx context.Context, s *cmdline.Settings, log zerolog.Logger) (role, error) {
	return construct(ctx, log, r.name, s.StartTimeout, func(ctx context.Context) (role, error) { return r.build(ctx, s, log) })
}

// startAll constructs every role; on error it closes the ones already made.
// The roles share one metrics registry, as one process has: each role's
// /metrics serves all of it.
func startAll(ctx context.Context, s *cmdline.Settings, log zerolog.Logger) ([]role, error) {
	s.Registry = promreg.New()
	var roles []role
	for _, r := range []roleSpec{ingestRole, processorRole, projectorRole, queryRole} {
		x, err := r.start(ctx, s, log)
		if err != nil {
			for _, made := range roles {
				made.Close()
			}
			return nil, err
		}
		roles = append(roles, x)
	}
	return roles, nil
}

func cmdRun(ctx context.Context, args []string, _ io.Writer) error {
	fs, s := cmdline.AllFlags("vitals run")
	log, roles, err := parseAndStartAll(ctx, fs, s, args)
	if err != nil {
		return err
	}
	return runRoles(ctx, log, roles...)
}

// parseAndStartAll parses the flags of a command that runs every role
// (cmdline.AllFlags and its own) and starts the roles.
func parseAndStartAll(ctx context.Context, fs *envflag.Set, s *cmdline.Settings, args []string) (zerolog.Logger, []role, error) {
	if err := fs.Parse(args); err != nil {
		return zerolog.Nop(), nil, err
	}
	if err := s.CheckKafka(); err != nil {
		return zerolog.Nop(), nil, err
	}
	if err := s.CheckSecurity(); err != nil {
		return zerolog.Nop(), nil, err
	}
	log, err := s.Logger()
	if err != nil {
		return log, nil, err
	}
	roles, err := startAll(ctx, s, log)
	return log, roles, err
}

func cmdMigrate(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := cmdline.NewFlags("vitals migrate")
	s.KafkaFlags(fs)
	s.ClickHouseFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := s.Logger()
	if err != nil {
		return err
	}
	if err := eventlog.EnsureTopics(ctx, s.Kafka(), log); err != nil {
		return err
	}
	conn, err := warehouse.Open(ctx, s.Warehouse())
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := warehouse.Migrate(ctx, conn, s.ClickHouseDatabase); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, "migrated: topics and ClickHouse tables are in place")
	return err
}
