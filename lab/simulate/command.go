package simulate

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

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/scratch"
)

// Flags are the simulator's flags, shared by vitals-lab simulate, chaos
// and bench e2e.
type Flags struct {
	Users, Batch, Clients int
	// PerUser is the consecutive readings of one user in a request
	// (Options.PerUser).
	PerUser         int
	Rate            float64
	Duration, Drain time.Duration
	Manifest        string
	Faults          Faults
	NoFaults        bool
	Seed            int
	// Format is the readings body format, loadgen.FormatJSON or
	// loadgen.FormatAvro; empty means JSON.
	Format string
}

// Register registers the flags with the command's defaults of rate,
// users and duration.
func (m *Flags) Register(fs *envflag.Set, rate float64, users int, d time.Duration) {
	f := DefaultFaults()
	fs.Int(&m.Users, "simulate-users", users, "simulated users (each has a paired watch)")
	fs.Float64Var(&m.Rate, "simulate-rate", rate, "normal readings per second, all clients together (faults come on top)")
	fs.Duration(&m.Duration, "simulate-duration", d, "how long to stream")
	fs.Duration(&m.Drain, "simulate-drain", 3*time.Minute, "how long unanswered items are still retried after the stream")
	fs.Int(&m.Batch, "simulate-batch", 500, "normal readings per request")
	fs.Int(&m.PerUser, "simulate-per-user", 1, "consecutive readings of one user in a request, measured apart over the time since the user's last: 1 spreads a request over as many users as it has readings; a phone app posts its user's readings together")
	fs.Int(&m.Clients, "simulate-clients", 8, "concurrent clients (each owns a share of the users and posts in order)")
	fs.String(&m.Manifest, "simulate-manifest", "", "write the manifest (JSON lines, one per event) to this file")
	fs.Float64Var(&m.Faults.Duplicate, "simulate-duplicates", f.Duplicate, "probability of resending an acknowledged reading after each reading")
	fs.Float64Var(&m.Faults.OutOfOrder, "simulate-out-of-order", f.OutOfOrder, "probability of a reading 3 min behind its stream (accepted)")
	fs.Float64Var(&m.Faults.Late, "simulate-late", f.Late, "probability of a reading 15 min behind an acknowledged one (too_late)")
	fs.Float64Var(&m.Faults.Unpaired, "simulate-unpaired", f.Unpaired, "probability of a reading from an unpaired device (device_not_paired)")
	fs.Float64Var(&m.Faults.Implausible, "simulate-implausible", f.Implausible, "probability of a heart rate of 300/min (implausible_value)")
	fs.Float64Var(&m.Faults.Malformed, "simulate-malformed", f.Malformed, "probability of an item ingest refuses (dead letter)")
	fs.Float64Var(&m.Faults.WrongKey, "simulate-wrong-key", f.WrongKey, "probability per request of an extra request with an unknown API key (401)")
	fs.Float64Var(&m.Faults.Correction, "simulate-corrections", f.Correction, "probability of a correction (revision 2, another value) of an acknowledged reading")
	fs.Float64Var(&m.Faults.Withdrawal, "simulate-withdrawals", f.Withdrawal, "probability of a withdrawal (revision 1) of an acknowledged reading")
	fs.Float64Var(&m.Faults.Stale, "simulate-stale-revisions", f.Stale, "probability, per reading of a user with an acknowledged correction, of its revision 1 after it (stale_revision)")
	fs.Float64Var(&m.Faults.Conflicting, "simulate-conflicting", f.Conflicting, "probability of an acknowledged reading sent again with another value and no revision (conflicting_repeat)")
	fs.Bool(&m.NoFaults, "simulate-no-faults", false, "send normal readings only")
	fs.String(&m.Format, "simulate-format", loadgen.FormatJSON, "readings body format: json, or avro (ReadingBatch, application/vnd.vitals.reading-batch+avro); the malformed items ingest refuses are an unknown unit in both, plus a bad timestamp in json and a NaN value in avro")
	fs.Int(&m.Seed, "simulate-seed", 1, "random seed of the faults")
}

// Options are the simulator's options of the flags, posting to url with
// key; runID names the run's users, devices and events.
func (m *Flags) Options(url, key, runID string, log zerolog.Logger) Options {
	o := Options{URL: url, Key: key, Users: m.Users, Rate: m.Rate, Duration: m.Duration, Batch: m.Batch, Clients: m.Clients, PerUser: m.PerUser,
		Format: m.Format, RunID: runID, Seed: uint64(m.Seed), Faults: m.Faults, Drain: m.Drain, Log: log}
	if m.NoFaults {
		o.Faults = Faults{}
	}
	return o
}

// Command is `vitals-lab simulate`: it streams simulated users to a
// running ingest and writes the manifest; `simulate verify` checks a
// manifest against ClickHouse and the dead-letter topic.
func Command(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "verify" {
		return verifyCommand(ctx, args[1:], stdout)
	}
	fs, s := cmdline.NewFlags("vitals-lab simulate")
	s.PostgresFlags(fs)
	s.TenantFlag(fs)
	var m Flags
	var target, key string
	m.Register(fs, 2000, 1000, time.Minute)
	fs.String(&target, "simulate-target", "http://127.0.0.1:8080", "base URL of the ingest to post to")
	fs.String(&key, "simulate-key", "", "API key to send (default: a temporary key of --tenant, revoked at the end)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := s.Logger()
	if err != nil {
		return err
	}
	key, revoke, err := s.KeyOr(ctx, key, "vitals simulate")
	if err != nil {
		return err
	}
	defer revoke()
	out := io.Discard
	if m.Manifest != "" {
		f, err := os.Create(m.Manifest)
		if err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		defer f.Close()
		out = f
	}
	o := m.Options(strings.TrimRight(target, "/"), key, "sim"+scratch.RandomHex(3), log)
	o.Manifest = out
	res, err := RunWithProgress(ctx, o)
	fmt.Fprintf(stdout, "simulated %d users for %s: %d items in %d requests, %d acknowledged (%.0f/s), %d failed requests, %d unanswered items; manifest %s (%d lines)\n",
		o.Users, o.Duration, res.Items, res.Requests, res.Acked, res.AckedPerSec, res.Failures, res.Unacked, m.Manifest, res.ManifestLines)
	return err
}

// verifyCommand waits until the pipeline holds every acknowledged event of
// a manifest as expected (or --simulate-verify-wait passes) and prints the
// verdicts per fault.
func verifyCommand(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := cmdline.NewFlags("vitals-lab simulate verify")
	s.KafkaFlags(fs)
	s.ClickHouseFlags(fs)
	s.TenantFlag(fs)
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
	log, err := s.Logger()
	if err != nil {
		return err
	}
	f, err := os.Open(manifest)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	entries, err := ReadManifest(f)
	f.Close()
	if err != nil {
		return err
	}
	rep, _, err := VerifyUntil(ctx, s, entries, wait, log)
	if err != nil {
		return err
	}
	rep.Print(stdout)
	if !rep.OK() {
		return errors.New("verification failed")
	}
	return nil
}

// VerifyUntil observes the pipeline of s (its ClickHouse database, tenant
// and dead-letter topic) every few seconds until the report on entries is
// clean or wait has passed, and returns the last report and observation.
func VerifyUntil(ctx context.Context, s *cmdline.Settings, entries []Entry, wait time.Duration, log zerolog.Logger) (*Report, *Observed, error) {
	conn, err := warehouse.Open(ctx, s.Warehouse())
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	// Dead letters of known users are sealed with their data keys.
	keys, closeKeys, err := s.OpenUserKeys(ctx, s.UserKeys(), log)
	if err != nil {
		return nil, nil, err
	}
	defer closeKeys()
	k := s.Kafka()
	deadline := time.Now().Add(wait)
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		// On a cluster, read once every replica holds what its shard has.
		err := warehouse.SyncReplicas(qctx, conn, s.ClickHouseDatabase, warehouse.ReadingsTable, warehouse.RejectedTable, warehouse.DailyRollupTable)
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("verify: %w", err)
		}
		obs, err := Observe(qctx, conn, keys, s.ClickHouseDatabase, s.Tenant, k.ClientOpts(log), k.Topics.DeadLetters)
		cancel()
		if err != nil {
			return nil, nil, err
		}
		rep := Compare(entries, obs)
		if rep.OK() || time.Now().After(deadline) {
			return rep, obs, nil
		}
		pending := 0
		for _, f := range rep.Faults {
			pending += f.Verdicts[VerdictMissing]
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

// RunWithProgress runs the simulator with a progress log every 10 s.
func RunWithProgress(ctx context.Context, o Options) (Result, error) {
	var st Stats
	start := time.Now()
	stop := loadgen.Periodically(10*time.Second, func() {
		o.Log.Info().Int64("items", st.Items.Load()).Int64("acked", st.Acked.Load()).Int64("failed_requests", st.Failures.Load()).
			Float64("acked_per_sec", math.Round(float64(st.Acked.Load())/time.Since(start).Seconds())).Msg("simulate progress")
	})
	defer stop()
	return Run(ctx, o, &st)
}
