package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// labBinary builds cmd/vitals-lab once per test run, next to the vitals
// binary whose roles it runs.
func labBinary(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(vitalsBinary(t))
	return labBuild.build(t, "github.com/vitalshq/vitals/cmd/vitals-lab", func() (string, error) { return dir, nil })
}

// repoRoot is the repository's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// labChaos runs `vitals-lab chaos` in env with args (run names them in
// the log), against deploy/stack.sh and with a log directory of the
// test's, and fails the test unless the run verified every outcome, no
// process reported a data race and the output names every stage in want.
func labChaos(t *testing.T, ctx context.Context, env []string, run string, args, want []string) {
	t.Helper()
	logDir := t.TempDir()
	args = append([]string{"chaos", "--vitals-binary", vitalsBinary(t),
		"--chaos-stack-script", filepath.Join(repoRoot(t), "deploy", "stack.sh"), "--chaos-log-dir", logDir}, args...)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, labBinary(t), args...)
	cmd.Env = append(env, "VITALS_LOG_FORMAT=json", "VITALS_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("vitals-lab chaos %s took %s:\n%s", run, time.Since(start).Round(time.Second), out.String())
	racesInLogs(t, logDir)
	if strings.Contains(out.String(), raceMark) {
		t.Errorf("vitals-lab reported a data race")
	}
	if err != nil {
		t.Fatalf("chaos run %s failed: %v", run, err)
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

// TestChaosShort is the CI version of make chaos: `vitals-lab chaos
// --chaos-short` streams simulated users with every kind of injected data
// fault (corrections and withdrawals of acknowledged readings among them)
// through a pipeline of child processes while the processor,
// projector and ingest are killed with SIGKILL six times, a second
// processor joins and leaves, and ClickHouse and PostgreSQL are stopped for
// a few seconds. The command exits non-zero unless every event ingest
// acknowledged has exactly the outcome the manifest expects.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack (make up)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	labChaos(t, ctx, os.Environ(), "--chaos-short",
		[]string{"--chaos-short", "--simulate-rate", "1500", "--simulate-users", "1500", "--chaos-settle", "90s"},
		[]string{"VERIFIED", "kill -9 processor", "kill -9 projector", "kill -9 ingest", "clickhouse stopped", "postgres stopped", "second processor joins",
			"correction", "withdrawal", "stale_revision", "conflicting_repeat"})
}

// TestClusterChaos is the CI version of the cluster chaos run: it starts
// the cluster stack (deploy/cluster.sh: ZooKeeper, three Kafka nodes,
// ClickHouse as 2 shards x 2 replicas) unless it is running already, and
// runs `vitals-lab chaos --chaos-cluster` against it: the simulator
// streams while the processor, projector and ingest are killed with
// SIGKILL, the broker leading a partition of the raw readings is killed
// and restarted, and a ClickHouse replica is stopped and restarted while
// a prober asks the query service. The command fails unless every event
// ingest acknowledged has exactly its expected outcome (rollups
// included), every query asked while the replica was down was answered,
// and the replicas of each shard hold the same rows. A cluster this test
// started is stopped again at the end.
func TestClusterChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts the cluster stack")
	}
	labBinary(t) // before the cluster starts: a failed build costs no cluster
	root := repoRoot(t)
	cluster := filepath.Join(root, "deploy", "cluster.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	script := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "bash", append([]string{cluster}, args...)...).CombinedOutput()
		return string(out), err
	}
	if _, err := script("status"); err != nil {
		start := time.Now()
		if out, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "deploy", "stack.sh"), "up", "--cluster").CombinedOutput(); err != nil {
			t.Fatalf("start the cluster stack: %v\n%s", err, out)
		}
		t.Logf("started the cluster stack in %s", time.Since(start).Round(time.Second))
		t.Cleanup(func() {
			start := time.Now()
			out, err := exec.Command("bash", cluster, "down").CombinedOutput()
			if err != nil {
				t.Errorf("stop the cluster stack: %v\n%s", err, out)
			}
			t.Logf("stopped the cluster stack in %s", time.Since(start).Round(time.Second))
		})
	}
	envOut, err := script("env")
	if err != nil {
		t.Fatalf("cluster env: %v\n%s", err, envOut)
	}
	env := os.Environ()
	for _, l := range strings.Split(envOut, "\n") {
		if kv, ok := strings.CutPrefix(l, "export "); ok {
			env = append(env, kv)
		}
	}
	labChaos(t, ctx, env, "--chaos-cluster",
		[]string{"--chaos-cluster", "--simulate-rate", "1000", "--simulate-users", "1000", "--chaos-settle", "120s"},
		[]string{"VERIFIED", "kill -9 processor", "kill -9 projector", "partition leader killed", "clickhouse-s2r1 stopped", "during clickhouse-s2r1 stopped"})
}
