// Package chaos injects faults into a running pipeline while the fleet
// simulator streams, then proves with the simulator's manifest that
// nothing acknowledged was lost or stored twice. The roles run as child
// processes (package procs) so they can be killed with SIGKILL; the shared
// services are stopped and started with deploy/stack.sh.
package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"slices"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/lab/procs"
	"github.com/vitalshq/vitals/lab/simulate"
)

// Plan says which faults to inject during a run of length Duration.
type Plan struct {
	Duration        time.Duration
	Kills           int           // SIGKILLs spread over processor, projector and ingest
	KafkaRestart    bool          // restart the broker once
	ClickHouseStop  time.Duration // stop ClickHouse this long (0: never)
	PostgresStop    time.Duration // stop PostgreSQL this long (0: never)
	SecondProcessor time.Duration // a second processor instance runs this long (0: never)
	Seed            uint64
	// On the cluster stack (cluster.go): the broker leading partition 0
	// of the raw readings is killed (SIGKILL) for LeaderKill, and the
	// ClickHouse server Replica (a node of deploy/cluster.sh) is stopped
	// for ReplicaStop.
	LeaderKill  time.Duration
	ReplicaStop time.Duration
	Replica     string
}

// Full is the plan of make chaos.
func Full() Plan {
	return Plan{Duration: 6 * time.Minute, Kills: 12, KafkaRestart: true, ClickHouseStop: 60 * time.Second,
		PostgresStop: 30 * time.Second, SecondProcessor: 45 * time.Second}
}

// Short is the plan of the CI test: fewer kills, short outages, no broker
// restart (the outage tests cover that).
func Short() Plan {
	return Plan{Duration: 35 * time.Second, Kills: 6, ClickHouseStop: 6 * time.Second, PostgresStop: 4 * time.Second,
		SecondProcessor: 10 * time.Second}
}

// Roles are the supervised role processes faults act on.
type Roles struct {
	Ingest, Processor, Projector *procs.Proc
	// SecondProcessor is started and stopped by the plan.
	SecondProcessor *procs.Proc
	// Leader names the cluster node leading the partition whose leader
	// the plan kills (cluster.go).
	Leader func(ctx context.Context) (string, error)
}

// Stack stops and starts a shared service (deploy/stack.sh stop|start NAME).
type Stack func(ctx context.Context, action, service string) error

// ScriptStack runs script (deploy/stack.sh) with bash.
func ScriptStack(script string) Stack {
	return func(ctx context.Context, action, service string) error {
		out, err := exec.CommandContext(ctx, "bash", script, action, service).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s %s: %w: %s", script, action, service, err, out)
		}
		return nil
	}
}

// Fault is one injected fault, as it happened.
type Fault struct {
	Name  string        `json:"name"`
	At    time.Duration `json:"at"` // since the start
	Took  time.Duration `json:"took"`
	Start time.Time     `json:"-"`
	End   time.Time     `json:"-"`
	Err   string        `json:"error,omitempty"`
	// Down and Up bound the outage of a stopped service: from the end of
	// its stop to the start of its restart.
	Down time.Time `json:"-"`
	Up   time.Time `json:"-"`
}

type step struct {
	at   time.Duration
	name string
	do   func(ctx context.Context) error
	win  *window // set by outages
}

// window is when a service was down, and which (a leader is found when
// the fault starts).
type window struct {
	down, up time.Time
	node     string
}

// hold takes service down (how: the stack script's stop or kill), keeps it
// down for d or until ctx ends, and starts it again even then, so that a
// run cut short leaves the stack whole; w records when it was down.
func hold(ctx context.Context, stack Stack, how, service string, d time.Duration, w *window) error {
	if err := stack(ctx, how, service); err != nil {
		return err
	}
	w.down = time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	w.up = time.Now()
	return stack(context.WithoutCancel(ctx), "start", service)
}

// schedule turns the plan into timed steps: kills at random moments in the
// middle of the run (each role at least twice when there are six or more),
// the outages at fixed fractions so they do not overlap one another.
func (p Plan) schedule(r Roles, stack Stack, log zerolog.Logger) []step {
	rng := rand.New(rand.NewPCG(p.Seed, 7))
	var steps []step
	targets := []*procs.Proc{r.Processor, r.Projector, r.Ingest}
	from, span := p.Duration/10, p.Duration*8/10
	for i := range p.Kills {
		t := targets[i%len(targets)]
		steps = append(steps, step{at: from + time.Duration(rng.Int64N(int64(span))), name: "kill -9 " + t.Name, do: func(context.Context) error { return t.Kill9() }})
	}
	outage := func(at, d time.Duration, service string) {
		w := &window{}
		steps = append(steps, step{at: at, name: fmt.Sprintf("%s stopped %s", service, d), win: w, do: func(ctx context.Context) error {
			return hold(ctx, stack, "stop", service, d, w)
		}})
	}
	if p.LeaderKill > 0 && r.Leader != nil {
		w, d := &window{}, p.LeaderKill
		steps = append(steps, step{at: p.Duration * 2 / 10, name: fmt.Sprintf("partition leader killed %s", d), win: w, do: func(ctx context.Context) error {
			node, err := r.Leader(ctx)
			if err != nil {
				return err
			}
			w.node = node
			return hold(ctx, stack, "kill", node, d, w)
		}})
	}
	if p.ReplicaStop > 0 && p.Replica != "" {
		outage(p.Duration*5/10, p.ReplicaStop, p.Replica)
	}
	if p.SecondProcessor > 0 && r.SecondProcessor != nil {
		sp, d := r.SecondProcessor, p.SecondProcessor
		steps = append(steps, step{at: p.Duration / 8, name: fmt.Sprintf("second processor joins for %s", d), do: func(ctx context.Context) error {
			pctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if err := sp.Supervise(pctx); err != nil {
				return err
			}
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
			return sp.Stop(20 * time.Second)
		}})
	}
	if p.KafkaRestart {
		steps = append(steps, step{at: p.Duration * 3 / 10, name: "kafka restarted", do: func(ctx context.Context) error { return stack(ctx, "restart", "kafka") }})
	}
	if p.ClickHouseStop > 0 {
		outage(p.Duration*5/10, p.ClickHouseStop, "clickhouse")
	}
	if p.PostgresStop > 0 {
		outage(p.Duration*7/10, p.PostgresStop, "postgres")
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	return steps
}

// Inject runs the plan's steps at their times, each in its own goroutine
// (an outage does not hold back the kills around it), and returns what
// happened once all are done.
func Inject(ctx context.Context, p Plan, r Roles, stack Stack, log zerolog.Logger) []Fault {
	steps := p.schedule(r, stack, log)
	start := time.Now()
	out := make([]Fault, len(steps))
	done := make(chan struct{}, len(steps))
	for i, s := range steps {
		go func() {
			defer func() { done <- struct{}{} }()
			select {
			case <-time.After(time.Until(start.Add(s.at))):
			case <-ctx.Done():
				out[i] = Fault{Name: s.name, Err: "not injected: " + ctx.Err().Error()}
				return
			}
			f := Fault{Name: s.name, Start: time.Now(), At: time.Since(start).Round(time.Second)}
			log.Info().Str("fault", s.name).Msg("injecting")
			if err := s.do(ctx); err != nil {
				f.Err = err.Error()
				log.Error().Err(err).Str("fault", s.name).Msg("fault injection failed")
			}
			f.End = time.Now()
			f.Took = f.End.Sub(f.Start).Round(100 * time.Millisecond)
			if s.win != nil {
				f.Down, f.Up = s.win.down, s.win.up
				if s.win.node != "" {
					f.Name += " (" + s.win.node + ")"
				}
			}
			out[i] = f
		}()
	}
	for range steps {
		<-done
	}
	return out
}

// settle is how long after a fault's end its effects (a restart, a
// rebalance, a catch-up) are still counted against it.
const settle = 15 * time.Second

// PrintFaults writes one row per fault: when, how long, and the verdicts of
// the readings ingest acknowledged from its start until settle after its
// end.
func PrintFaults(w io.Writer, faults []Fault, entries []simulate.Entry, o *simulate.Observed) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\tat\ttook\tacked in window\texactly as expected\tnot as expected\terror")
	sorted := slices.Clone(faults)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At < sorted[j].At })
	for _, f := range sorted {
		var acked, good int
		from, to := f.Start.UnixMilli(), f.End.Add(settle).UnixMilli()
		for _, e := range entries {
			if !e.Acked || e.AckedAt < from || e.AckedAt > to || e.Expect == simulate.ExpectRefused {
				continue
			}
			acked++
			if o.Verdict(e) == simulate.VerdictOK {
				good++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", f.Name, f.At, f.Took, acked, good, acked-good, f.Err)
	}
	tw.Flush()
}
