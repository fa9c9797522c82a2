package procs

import (
	"os"
	"strconv"
	"strings"
)

// Service names ServiceCPU reports: the stack's shared services, found by
// their command lines, so that a benchmark can put the whole machine's
// CPU budget next to its own roles'.
const (
	ServiceKafka      = "kafka"
	ServiceClickHouse = "clickhouse"
	ServicePostgres   = "postgres"
	// ServiceZooKeeper is the cluster stack's ZooKeeper (deploy/cluster.sh).
	ServiceZooKeeper = "zookeeper"
)

// ServiceSample is the CPU seconds (user+system) each running process of
// the shared services had used when ServiceCPU read them, by service and
// pid.
type ServiceSample map[string]map[int]float64

// Since returns each service's CPU seconds between before and s. A
// process counts from zero if it started in between; one that exited in
// between (a PostgreSQL backend of a closed connection) is missing from s
// and counts nothing, so the figure is a slight underestimate.
func (s ServiceSample) Since(before ServiceSample) map[string]float64 {
	out := map[string]float64{}
	for name, pids := range s {
		out[name] = 0
		for pid, sec := range pids {
			out[name] += sec - before[name][pid]
		}
	}
	return out
}

// ServiceCPU reads the CPU seconds used so far by the running processes of
// each shared service: the Kafka brokers (JVMs whose command line names
// kafka.Kafka), ZooKeeper (QuorumPeerMain), clickhouse-server, and every
// postgres process (postmaster and backends). With dir set, only the
// processes of the stack whose state lives in dir count: those whose
// command line names dir, and the postgres backends of such a
// postmaster; other stacks on a shared machine are left out.
func ServiceCPU(dir string) ServiceSample {
	out := ServiceSample{ServiceKafka: {}, ServiceClickHouse: {}, ServicePostgres: {}, ServiceZooKeeper: {}}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	type proc struct {
		name     string
		ppid     int
		inDir    bool
		cpu      float64
		cpuKnown bool
	}
	all := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(cmd) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		name := ""
		switch base := args[0][strings.LastIndexByte(args[0], '/')+1:]; {
		case strings.HasPrefix(base, "clickhouse"):
			name = ServiceClickHouse
		case base == "postgres" || strings.HasPrefix(base, "postgres:"):
			name = ServicePostgres
		case base == "java" && strings.Contains(string(cmd), "kafka.Kafka"):
			name = ServiceKafka
		case base == "java" && strings.Contains(string(cmd), "QuorumPeerMain"):
			name = ServiceZooKeeper
		default:
			continue
		}
		pr := proc{name: name, inDir: dir == "" || strings.Contains(string(cmd), dir), ppid: parentPID("/proc/" + e.Name() + "/stat")}
		pr.cpu, pr.cpuKnown = statCPU("/proc/" + e.Name() + "/stat")
		all[pid] = pr
	}
	for pid, pr := range all {
		keep := pr.inDir
		if parent, ok := all[pr.ppid]; !keep && ok && pr.name == ServicePostgres && parent.name == ServicePostgres && parent.inDir {
			keep = true // a backend of our postmaster
		}
		if keep && pr.cpuKnown {
			out[pr.name][pid] = pr.cpu
		}
	}
	return out
}

// parentPID reads the parent's pid (field 4) from a /proc/<pid>/stat file.
func parentPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// MachineCPU returns the CPU seconds all processors spent busy (everything
// but idle and iowait) since boot, from /proc/stat.
func MachineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user time
			break
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / clockTicks
}

// statCPU reads utime+stime of a /proc/<pid>/stat file in seconds.
func statCPU(path string) (float64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	// Fields after the command name (which may hold spaces) start at the
	// state, field 3; utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) <= 12 {
		return 0, false
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks, true
}
