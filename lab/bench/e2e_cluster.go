package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/lab/procs"
)

// The end-to-end benchmark on the cluster stack
//
// bench e2e --bench-cluster runs the same runs a second time on the
// cluster stack (deploy/cluster.sh: three Kafka nodes with topics of
// replication 3, ClickHouse as 2 shards x 2 replicas), whose settings it
// takes from `deploy/stack.sh env --cluster`, and prints the two side by
// side. On one machine the cluster costs more than it gives: every record
// is written to three brokers, every part to two replicas, and four
// ClickHouse servers and ZooKeeper share the cores with the single-node
// stack's idle services. The comparison records that cost. The Kafka
// engine comparison is left out on the cluster (its tables would need a
// Kafka engine table per shard).

// stackDir is the directory of the local stacks' state (deploy/lib.sh:
// VITALS_STACK_DIR, else .stack under the working directory), whose
// services' CPU the benchmark counts; "" (every such process on the
// machine) if there is none.
func stackDir() string {
	d := os.Getenv("VITALS_STACK_DIR")
	if d == "" {
		d = ".stack"
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return ""
	}
	return abs + "/"
}

// clusterSettings returns s with the cluster stack's connection settings,
// read from script env --cluster.
func clusterSettings(s *cmdline.Settings, script string) (*cmdline.Settings, error) {
	out, err := exec.Command("bash", script, "env", "--cluster").Output()
	if err != nil {
		return nil, fmt.Errorf("cluster settings (%s env --cluster): %w", script, err)
	}
	c := *s
	for _, l := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(l, "export "), "=")
		if !ok {
			continue
		}
		switch k {
		case "VITALS_KAFKA_BROKERS":
			c.KafkaBrokers = v
		case "VITALS_KAFKA_REPLICATION":
			if c.KafkaReplication, err = strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("cluster settings: %s=%q", k, v)
			}
		case "VITALS_CLICKHOUSE_ADDR":
			c.ClickHouseAddr = v
		case "VITALS_CLICKHOUSE_CLUSTER":
			c.ClickHouseCluster = v
		}
	}
	if c.ClickHouseCluster == "" {
		return nil, fmt.Errorf("cluster settings: %s env --cluster names no ClickHouse cluster", script)
	}
	return &c, nil
}

// printSideBySide prints the medians of the single-node and cluster runs.
func printSideBySide(w io.Writer, single, cluster []e2eRun) {
	med := func(runs []e2eRun, f func(e2eRun) float64) string {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return fmt.Sprintf("%.4g", v[len(v)/2])
	}
	rows := []struct {
		name string
		f    func(e2eRun) float64
	}{
		{"ingest acked readings/s", func(r e2eRun) float64 { return r.IngestAckPerSec }},
		{"end-to-end readings/s", func(r e2eRun) float64 { return r.EndToEndPerSec }},
		{"all queryable after s", func(r e2eRun) float64 { return r.AllQueryableSecs }},
		{"freshness p50 ms", func(r e2eRun) float64 { return r.Fresh.P50Ms }},
		{"freshness p99 ms", func(r e2eRun) float64 { return r.Fresh.P99Ms }},
		{"ingest CPU s/M", func(r e2eRun) float64 { return r.Roles["ingest"].CPUPerMillion }},
		{"processor CPU s/M", func(r e2eRun) float64 { return r.Roles["processor"].CPUPerMillion }},
		{"projector CPU s/M", func(r e2eRun) float64 { return r.Roles["projector"].CPUPerMillion }},
		{"kafka CPU s/M (all brokers)", func(r e2eRun) float64 { return r.Services[procs.ServiceKafka] }},
		{"clickhouse CPU s/M (all servers)", func(r e2eRun) float64 { return r.Services[procs.ServiceClickHouse] }},
		{"zookeeper CPU s/M", func(r e2eRun) float64 { return r.Services[procs.ServiceZooKeeper] }},
		{"postgres CPU s/M", func(r e2eRun) float64 { return r.Services[procs.ServicePostgres] }},
		{"machine CPU s/M (every process, other sessions' too)", func(r e2eRun) float64 { return r.MachineCPU }},
	}
	fmt.Fprintf(w, "\nsingle node vs cluster (medians of %d and %d runs; CPU s/M = CPU seconds per million readings)\n", len(single), len(cluster))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tsingle node\tcluster (3 brokers, 2x2 ClickHouse)\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", r.name, med(single, r.f), med(cluster, r.f))
	}
	tw.Flush()
}
