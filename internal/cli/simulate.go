package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/chaos"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/simulate"
)

// simSettings are the simulator's flags, shared by simulate, chaos and
// bench e2e.
type simSettings struct {
	users, batch, clients int
	rate                  float64
	duration, drain       time.Duration
	manifest              string
	faults                simulate.Faults
	noFaults              bool
	seed                  uint64
	// format is the readings body format, loadgen.FormatJSON or
	// loadgen.FormatAvro; empty means JSON.
	format                    string
	target, key               string
	verifyWait                time.Duration
	verify                    bool
	keep                      bool
	logDir                    string
	short                     bool
	kills                     int
	chStop, pgStop, secondFor time.Duration
	kafkaRestart              bool
}

func (m *simSettings) flags(fs *envflag.Set, rate float64, users int, d time.Duration) {
	f := simulate.DefaultFaults()
	fs.Int(&m.users, "simulate-users", users, "simulated users (each has a paired watch)")
	fs.Float64Var(&m.rate, "simulate-rate", rate, "normal readings per second, all clients together (faults come on top)")
	fs.Duration(&m.duration, "simulate-duration", d, "how long to stream")
	fs.Duration(&m.drain, "simulate-drain", 3*time.Minute, "how long unanswered items are still retried after the stream")
	fs.Int(&m.batch, "simulate-batch", 500, "normal readings per request")
	fs.Int(&m.clients, "simulate-clients", 8, "concurrent clients (each owns a share of the users and posts in order)")
	fs.String(&m.manifest, "simulate-manifest", "", "write the manifest (JSON lines, one per event) to this file")
	fs.Float64Var(&m.faults.Duplicate, "simulate-duplicates", f.Duplicate, "probability of resending an acknowledged reading after each reading")
	fs.Float64Var(&m.faults.OutOfOrder, "simulate-out-of-order", f.OutOfOrder, "probability of a reading 3 min behind its stream (accepted)")
	fs.Float64Var(&m.faults.Late, "simulate-late", f.Late, "probability of a reading 15 min behind an acknowledged one (too_late)")
	fs.Float64Var(&m.faults.Unpaired, "simulate-unpaired", f.Unpaired, "probability of a reading from an unpaired device (device_not_paired)")
	fs.Float64Var(&m.faults.Implausible, "simulate-implausible", f.Implausible, "probability of a heart rate of 300/min (implausible_value)")
	fs.Float64Var(&m.faults.Malformed, "simulate-malformed", f.Malformed, "probability of an item ingest refuses (dead letter)")
	fs.Float64Var(&m.faults.WrongKey, "simulate-wrong-key", f.WrongKey, "probability per request of an extra request with an unknown API key (401)")
	fs.Bool(&m.noFaults, "simulate-no-faults", false, "send normal readings only")
	fs.String(&m.format, "simulate-format", loadgen.FormatJSON, "readings body format: json, or avro (ReadingBatch, application/vnd.vitals.reading-batch+avro); the malformed items ingest refuses are an unknown unit in both, plus a bad timestamp in json and a NaN value in avro")
	var seed int
	fs.Int(&seed, "simulate-seed", 1, "random seed of the faults")
	m.seed = uint64(seed)
}

func (m *simSettings) options(url, key, runID string, log zerolog.Logger) simulate.Options {
	o := simulate.Options{URL: url, Key: key, Users: m.users, Rate: m.rate, Duration: m.duration, Batch: m.batch, Clients: m.clients,
		Format: m.format, RunID: runID, Seed: m.seed, Faults: m.faults, Drain: m.drain, Log: log}
	if m.noFaults {
		o.Faults = simulate.Faults{}
	}
	return o
}

// cmdSimulate streams simulated users to a running ingest and writes the
// manifest; `simulate verify` checks a manifest against ClickHouse and the
// dead-letter topic.
func cmdSimulate(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "verify" {
		return simulateVerify(ctx, args[1:], stdout)
	}
	fs, s := newFlags("simulate")
	s.pgFlags(fs)
	s.tenantFlag(fs)
	var m simSettings
	m.flags(fs, 2000, 1000, time.Minute)
	fs.String(&m.target, "simulate-target", "http://127.0.0.1:8080", "base URL of the ingest to post to")
	fs.String(&m.key, "simulate-key", "", "API key to send (default: a temporary key of --tenant, revoked at the end)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	key := m.key
	if key == "" {
		k, revoke, err := tempKey(ctx, s, "vitals simulate")
		if err != nil {
			return err
		}
		defer revoke()
		key = k
	}
	out := io.Discard
	if m.manifest != "" {
		f, err := os.Create(m.manifest)
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		defer f.Close()
		out = f
	}
	o := m.options(strings.TrimRight(m.target, "/"), key, "sim"+randomHex(3), log)
	o.Manifest = out
	res, err := runSimulation(ctx, o)
	fmt.Fprintf(stdout, "simulated %d users for %s: %d items in %d requests, %d acknowledged (%.0f/s), %d failed requests, %d unanswered items; manifest %s (%d lines)\n",
		o.Users, o.Duration, res.Items, res.Requests, res.Acked, res.AckedPerSec, res.Failures, res.Unacked, m.manifest, res.ManifestLines)
	return err
}

// simulateVerify waits until the pipeline holds every acknowledged event of
// a manifest as expected (or --simulate-verify-wait passes) and prints the
// verdicts per fault.
func simulateVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := newFlags("simulate verify")
	s.kafkaFlags(fs)
	s.chFlags(fs)
	s.tenantFlag(fs)
	var manifest string
	var wait time.Duration
	fs.String(&manifest, "simulate-manifest", "", "the manifest simulate wrote")
	fs.Duration(&wait, "simulate-verify-wait", 2*time.Minute, "how long to wait for the pipeline to catch up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if manifest == "" {
		return errors.New("--simulate-manifest is required")
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	f, err := os.Open(manifest)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	entries, err := simulate.ReadManifest(f)
	f.Close()
	if err != nil {
		return err
	}
	rep, _, err := verifyUntil(ctx, s, entries, wait, log)
	if err != nil {
		return err
	}
	rep.Print(stdout)
	if !rep.OK() {
		return errors.New("verification failed")
	}
	return nil
}

// verifyUntil observes the pipeline every few seconds until the report is
// clean or wait has passed, and returns the last report and observation.
func verifyUntil(ctx context.Context, s *settings, entries []simulate.Entry, wait time.Duration, log zerolog.Logger) (*simulate.Report, *simulate.Observed, error) {
	conn, err := warehouse.Open(ctx, s.warehouse())
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	k := s.kafka()
	deadline := time.Now().Add(wait)
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		obs, err := simulate.Observe(qctx, conn, s.chDatabase, s.tenant, k.ClientOpts(log), k.Topics.DeadLetters)
		cancel()
		if err != nil {
			return nil, nil, err
		}
		rep := simulate.Compare(entries, obs)
		if rep.OK() || time.Now().After(deadline) {
			return rep, obs, nil
		}
		pending := 0
		for _, f := range rep.Faults {
			pending += f.Verdicts[simulate.VerdictMissing]
		}
		log.Info().Uint64("raw_rows", rep.RawRows).Int("acked_not_yet_stored", pending).Uint64("rollup_readings", rep.RollupReadings).
			Msg("waiting for the pipeline to catch up")
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// cmdChaos runs a pipeline of its own as child processes, streams the
// simulator through it while the plan's faults are injected, and verifies
// the outcome against the manifest.
func cmdChaos(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := allFlags("chaos")
	var m simSettings
	m.flags(fs, 2000, 2000, 0)
	full := chaos.Full()
	var script string
	fs.Bool(&m.short, "chaos-short", false, "the CI plan: 35 s, 6 kills, short ClickHouse and PostgreSQL stops, no broker restart")
	fs.Int(&m.kills, "chaos-kills", full.Kills, "SIGKILLs spread over processor, projector and ingest")
	fs.Bool(&m.kafkaRestart, "chaos-kafka-restart", full.KafkaRestart, "restart the Kafka broker once")
	fs.Duration(&m.chStop, "chaos-clickhouse-stop", full.ClickHouseStop, "stop ClickHouse this long (0: never)")
	fs.Duration(&m.pgStop, "chaos-postgres-stop", full.PostgresStop, "stop PostgreSQL this long (0: never)")
	fs.Duration(&m.secondFor, "chaos-second-processor", full.SecondProcessor, "a second processor instance runs this long (0: never)")
	fs.Duration(&m.verifyWait, "chaos-settle", 5*time.Minute, "how long to wait for the pipeline to hold everything after the stream")
	fs.String(&script, "chaos-stack-script", "deploy/stack.sh", "script that stops and starts the shared services")
	fs.String(&m.logDir, "chaos-log-dir", "bench/results/logs", "directory of the roles' logs")
	fs.Bool(&m.keep, "chaos-keep", false, "keep the run's topics, database and state")
	if err := fs.Parse(args); err != nil {
		return err
	}
	plan := chaos.Plan{Duration: m.duration, Kills: m.kills, KafkaRestart: m.kafkaRestart, ClickHouseStop: m.chStop,
		PostgresStop: m.pgStop, SecondProcessor: m.secondFor, Seed: m.seed}
	if m.short {
		plan = chaos.Short()
		plan.Seed = m.seed
		m.drain = time.Minute
	}
	if m.duration == 0 {
		m.duration = full.Duration
		if m.short {
			m.duration = chaos.Short().Duration
		}
	}
	plan.Duration = m.duration
	log, err := s.logger()
	if err != nil {
		return err
	}
	b, err := newSandbox(ctx, s, "chaos", m.logDir, log)
	if err != nil {
		return err
	}
	defer func() { b.close(m.keep) }()
	roles := chaos.Roles{
		Ingest:          b.role("ingest", "ingest"),
		Processor:       b.role("processor", "processor", "VITALS_PROCESSOR_INSTANCE_ID="+b.id+"-p1"),
		Projector:       b.role("projector", "projector", "VITALS_PROJECTOR_INSTANCE_ID="+b.id+"-j1"),
		SecondProcessor: b.role("processor-2", "processor", "VITALS_PROCESSOR_INSTANCE_ID="+b.id+"-p2"),
	}
	rctx, stopRoles := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRoles()
	for _, p := range []interface{ Supervise(context.Context) error }{roles.Ingest, roles.Processor, roles.Projector} {
		if err := p.Supervise(rctx); err != nil {
			return err
		}
	}
	if err := waitHealthy(ctx, b.ingestURL); err != nil {
		return err
	}
	var manifest strings.Builder
	o := m.options(b.ingestURL, b.key, b.id, log)
	o.Manifest = &manifest
	faultsDone := make(chan []chaos.Fault, 1)
	started := time.Now()
	go func() {
		faultsDone <- chaos.Inject(ctx, plan, roles, chaos.ScriptStack(script), log)
	}()
	res, simErr := runSimulation(ctx, o)
	faults := <-faultsDone
	if simErr != nil {
		return simErr
	}
	entries, err := simulate.ReadManifest(strings.NewReader(manifest.String()))
	if err != nil {
		return err
	}
	if m.manifest != "" {
		if err := os.WriteFile(m.manifest, []byte(manifest.String()), 0o644); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
	}
	rep, obs, err := verifyUntil(ctx, s, entries, m.verifyWait, log)
	if err != nil {
		return err
	}
	caughtUp := time.Since(started)
	fmt.Fprintf(stdout, "\nVitals chaos: %s (%s)\n", b.id, commandLine())
	fmt.Fprintf(stdout, "stream: %d users, %.0f readings/s for %s; %d items in %d requests, %d acknowledged, %d failed requests (retried), %d never answered; verified after %s\n\n",
		o.Users, o.Rate, o.Duration, res.Items, res.Requests, res.Acked, res.Failures, res.Unacked, caughtUp.Round(time.Second))
	chaos.PrintFaults(stdout, faults, entries, obs)
	for _, p := range []*struct {
		name string
		pr   interface{ Counts() (int, int) }
	}{{"ingest", roles.Ingest}, {"processor", roles.Processor}, {"projector", roles.Projector}, {"processor-2", roles.SecondProcessor}} {
		starts, crashes := p.pr.Counts()
		fmt.Fprintf(stdout, "%s: started %d times, exited by itself %d times\n", p.name, starts, crashes)
	}
	fmt.Fprintln(stdout)
	rep.Print(stdout)
	var injectErrs int
	for _, f := range faults {
		if f.Err != "" {
			injectErrs++
		}
	}
	if !rep.OK() {
		return errors.New("chaos: the pipeline's outcome differs from the manifest")
	}
	if injectErrs > 0 {
		return fmt.Errorf("chaos: %d faults could not be injected", injectErrs)
	}
	return nil
}

// runSimulation runs the simulator with a progress log every 10 s.
func runSimulation(ctx context.Context, o simulate.Options) (simulate.Result, error) {
	var st simulate.Stats
	start := time.Now()
	stop := progressEvery(10*time.Second, func() {
		o.Log.Info().Int64("items", st.Items.Load()).Int64("acked", st.Acked.Load()).Int64("failed_requests", st.Failures.Load()).
			Float64("acked_per_sec", math.Round(float64(st.Acked.Load())/time.Since(start).Seconds())).Msg("simulate progress")
	})
	defer stop()
	return simulate.Run(ctx, o, &st)
}
