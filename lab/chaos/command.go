package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/lab/sandbox"
	"github.com/vitalshq/vitals/lab/simulate"
)

// settings are chaos's own flags.
type settings struct {
	sim                       simulate.Flags
	short, kafkaRestart, keep bool
	cluster                   bool
	kills                     int
	chStop, pgStop, secondFor time.Duration
	settle                    time.Duration
	script, logDir            string
}

// plan is the fault plan the flags ask for; --chaos-short replaces it by
// the CI plan (and a one-minute drain).
func (c *settings) plan() Plan {
	full := Full()
	p := Plan{Duration: c.sim.Duration, Kills: c.kills, KafkaRestart: c.kafkaRestart, ClickHouseStop: c.chStop,
		PostgresStop: c.pgStop, SecondProcessor: c.secondFor, Seed: uint64(c.sim.Seed)}
	if c.short {
		p = Short()
		p.Seed = uint64(c.sim.Seed)
		c.sim.Drain = time.Minute
	}
	if c.cluster {
		p = ClusterShort()
		p.Seed = uint64(c.sim.Seed)
		c.sim.Drain = time.Minute
	}
	if c.sim.Duration == 0 {
		c.sim.Duration = full.Duration
		if c.short {
			c.sim.Duration = Short().Duration
		}
		if c.cluster {
			c.sim.Duration = ClusterShort().Duration
		}
	}
	p.Duration = c.sim.Duration
	return p
}

// Command is `vitals-lab chaos`: it runs a pipeline of its own as child
// processes of the vitals binary, streams the simulator through it while
// the plan's faults are injected, and verifies the outcome against the
// manifest.
func Command(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := cmdline.AllFlags("vitals-lab chaos")
	var c settings
	c.sim.Register(fs, 2000, 2000, 0)
	full := Full()
	fs.Bool(&c.short, "chaos-short", false, "the CI plan: 35 s, 6 kills, short ClickHouse and PostgreSQL stops, no broker restart")
	fs.Bool(&c.cluster, "chaos-cluster", false, "the cluster plan, on the cluster stack (eval \"$(deploy/stack.sh env --cluster)\"): 60 s, 6 kills, the partition leader broker killed 12 s, ClickHouse replica clickhouse-s2r1 stopped 20 s, the query service probed throughout")
	fs.Int(&c.kills, "chaos-kills", full.Kills, "SIGKILLs spread over processor, projector and ingest")
	fs.Bool(&c.kafkaRestart, "chaos-kafka-restart", full.KafkaRestart, "restart the Kafka broker once")
	fs.Duration(&c.chStop, "chaos-clickhouse-stop", full.ClickHouseStop, "stop ClickHouse this long (0: never)")
	fs.Duration(&c.pgStop, "chaos-postgres-stop", full.PostgresStop, "stop PostgreSQL this long (0: never)")
	fs.Duration(&c.secondFor, "chaos-second-processor", full.SecondProcessor, "a second processor instance runs this long (0: never)")
	fs.Duration(&c.settle, "chaos-settle", 5*time.Minute, "how long to wait for the pipeline to hold everything after the stream")
	fs.String(&c.script, "chaos-stack-script", "deploy/stack.sh", "script that stops and starts the shared services")
	fs.String(&c.logDir, "chaos-log-dir", sandbox.DefaultLogDir, "directory of the roles' logs")
	fs.Bool(&c.keep, "chaos-keep", false, "keep the run's topics, database and state")
	bin, err := sandbox.ParseWithBinary(fs, args)
	if err != nil {
		return err
	}
	plan := c.plan()
	log, err := s.Logger()
	if err != nil {
		return err
	}
	b, err := sandbox.New(ctx, s, "chaos", c.logDir, bin, log)
	if err != nil {
		return err
	}
	defer func() { b.Close(c.keep) }()
	roles := Roles{
		Ingest:          b.Role("ingest", "ingest"),
		Processor:       b.Role("processor", "processor", "VITALS_PROCESSOR_INSTANCE_ID="+b.ID+"-p1"),
		Projector:       b.Role("projector", "projector", "VITALS_PROJECTOR_INSTANCE_ID="+b.ID+"-j1"),
		SecondProcessor: b.Role("processor-2", "processor", "VITALS_PROCESSOR_INSTANCE_ID="+b.ID+"-p2"),
		Leader:          leaderNode(s.Kafka(), s.Kafka().Topics.Readings),
	}
	rctx, stopRoles := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRoles()
	for _, p := range []interface{ Supervise(context.Context) error }{roles.Ingest, roles.Processor, roles.Projector} {
		if err := p.Supervise(rctx); err != nil {
			return err
		}
	}
	if err := cmdline.WaitHealthy(ctx, b.IngestURL); err != nil {
		return err
	}
	var probes *prober
	if c.cluster {
		if probes, err = startProber(ctx, rctx, b); err != nil {
			return err
		}
	}
	var manifest strings.Builder
	o := c.sim.Options(b.IngestURL, b.Key, b.ID, log)
	o.Manifest = &manifest
	faultsDone := make(chan []Fault, 1)
	started := time.Now()
	go func() {
		faultsDone <- Inject(ctx, plan, roles, ScriptStack(c.script), log)
	}()
	res, simErr := simulate.RunWithProgress(ctx, o)
	faults := <-faultsDone
	if simErr != nil {
		return simErr
	}
	entries, err := simulate.ReadManifest(strings.NewReader(manifest.String()))
	if err != nil {
		return err
	}
	if c.sim.Manifest != "" {
		if err := os.WriteFile(c.sim.Manifest, []byte(manifest.String()), 0o644); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
	}
	rep, obs, err := simulate.VerifyUntil(ctx, s, entries, c.settle, log)
	if err != nil {
		return err
	}
	stopRoles() // and the prober
	err = report(stdout, b.ID, o, res, time.Since(started), faults, roles, entries, obs, rep)
	if c.cluster {
		fmt.Fprintln(stdout)
		qerr := probes.print(stdout, faults, plan.Replica)
		fmt.Fprintln(stdout)
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if rerr := printReplicas(rctx, stdout, s.Warehouse()); rerr != nil && err == nil {
			err = rerr
		}
		if qerr != nil && err == nil {
			err = qerr
		}
	}
	return err
}

// startProber starts the query role (a child, supervised until rctx
// ends) and a prober asking it twice a second until rctx ends.
func startProber(ctx, rctx context.Context, b *sandbox.Sandbox) (*prober, error) {
	if err := b.PrepareQuery(ctx); err != nil {
		return nil, err
	}
	q := b.Role("query", "query")
	if err := q.Supervise(rctx); err != nil {
		return nil, err
	}
	if err := cmdline.WaitHealthy(ctx, b.QueryURL); err != nil {
		return nil, err
	}
	p := &prober{}
	go p.run(rctx, b.QueryURL, b.Token, 500*time.Millisecond)
	return p, nil
}

// report prints the run's stream, faults, role restarts and the
// verifier's report, and fails unless the outcome matches the manifest and
// every fault was injected.
func report(stdout io.Writer, id string, o simulate.Options, res simulate.Result, caughtUp time.Duration, faults []Fault, roles Roles,
	entries []simulate.Entry, obs *simulate.Observed, rep *simulate.Report) error {
	fmt.Fprintf(stdout, "\nVitals chaos: %s (%s)\n", id, cmdline.Invocation())
	fmt.Fprintf(stdout, "stream: %d users, %.0f readings/s for %s; %d items in %d requests, %d acknowledged, %d failed requests (retried), %d never answered; verified after %s\n\n",
		o.Users, o.Rate, o.Duration, res.Items, res.Requests, res.Acked, res.Failures, res.Unacked, caughtUp.Round(time.Second))
	PrintFaults(stdout, faults, entries, obs)
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
