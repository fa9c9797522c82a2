package loadgen

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine describes where a run ran.
type Machine struct {
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	GoVersion  string `json:"go_version"`
	OSArch     string `json:"os_arch"`
	// LoadAvg is /proc/loadavg's 1-minute figure when the run started:
	// other work on the machine skews a benchmark.
	LoadAvg string `json:"load_avg_1m_at_start,omitempty"`
}

// ThisMachine describes the running machine.
func ThisMachine() Machine {
	m := Machine{
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH,
		CPUModel: cpuModel(),
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.LoadAvg = f[0]
		}
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// CPUSample is a point-in-time reading of CPU time spent, to subtract from
// a later one.
type CPUSample struct {
	At           time.Time
	Process      time.Duration // user+system time of this process
	MachineBusy  uint64        // /proc/stat jiffies not idle or iowait, all CPUs
	MachineTotal uint64        // all /proc/stat jiffies, all CPUs
}

// SampleCPU reads this process's and the machine's CPU time.
func SampleCPU() CPUSample {
	s := CPUSample{At: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.Process = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) > 5 && f[0] == "cpu" {
			for i, v := range f[1:] {
				n, _ := strconv.ParseUint(v, 10, 64)
				if i >= 8 { // guest time is already in user and nice
					break
				}
				s.MachineTotal += n
				if i != 3 && i != 4 { // idle, iowait
					s.MachineBusy += n
				}
			}
		}
	}
	return s
}

// CPUUse is CPU use between two samples, in CPUs (1.0 = one core busy).
type CPUUse struct {
	Process float64 `json:"process_cpus"`
	// Machine counts every process, the broker's and other work's too.
	Machine float64 `json:"machine_cpus"`
}

// Since is the CPU use from earlier to s.
func (s CPUSample) Since(earlier CPUSample) CPUUse {
	wall := s.At.Sub(earlier.At).Seconds()
	if wall <= 0 {
		return CPUUse{}
	}
	u := CPUUse{Process: (s.Process - earlier.Process).Seconds() / wall}
	if total := s.MachineTotal - earlier.MachineTotal; total > 0 {
		u.Machine = float64(s.MachineBusy-earlier.MachineBusy) / float64(total) * float64(runtime.NumCPU())
	}
	return u
}
