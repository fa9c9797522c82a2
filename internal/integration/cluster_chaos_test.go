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
	bin, lab := vitalsBinary(t), labBinary(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
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
	var out bytes.Buffer
	logDir := t.TempDir()
	cmd := exec.CommandContext(ctx, lab, "chaos", "--vitals-binary", bin, "--chaos-cluster", "--simulate-rate", "1000", "--simulate-users", "1000",
		"--chaos-stack-script", filepath.Join(root, "deploy", "stack.sh"), "--chaos-log-dir", logDir, "--chaos-settle", "120s")
	cmd.Env = append(env, "VITALS_LOG_FORMAT=json", "VITALS_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("vitals-lab chaos --chaos-cluster took %s:\n%s", time.Since(start).Round(time.Second), out.String())
	racesInLogs(t, logDir)
	if strings.Contains(out.String(), raceMark) {
		t.Errorf("vitals-lab reported a data race")
	}
	if err != nil {
		t.Fatalf("cluster chaos run failed: %v", err)
	}
	for _, want := range []string{"VERIFIED", "kill -9 processor", "kill -9 projector", "partition leader killed", "clickhouse-s2r1 stopped", "during clickhouse-s2r1 stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
