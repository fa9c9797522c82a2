// Package procs runs Vitals roles (vitals ingest|processor|projector) as
// supervised child processes, for benchmarks that measure each role's CPU
// and memory from /proc and for fault injection that kills them with
// SIGKILL. A supervised process that exits is started again, whether it
// was killed on purpose or died by itself; the latter is counted, because
// a role should ride out an outage of its dependencies rather than exit.
package procs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Proc is one supervised role process.
type Proc struct {
	Name string
	bin  string
	args []string
	env  []string
	out  io.Writer
	log  zerolog.Logger

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	killing  bool
	stopping bool
	starts   int
	crashes  int
	done     chan struct{}
	// cpu accumulates the CPU time of instances that have exited, so CPU
	// covers every incarnation.
	cpu time.Duration
}

// New describes a process; Supervise starts it. env is added to the
// current environment; the child's stderr and stdout go to out.
func New(name, bin string, args, env []string, out io.Writer, log zerolog.Logger) *Proc {
	if out == nil {
		out = io.Discard
	}
	return &Proc{Name: name, bin: bin, args: args, env: env, out: out, log: log.With().Str("role", name).Logger(), done: make(chan struct{})}
}

// Supervise starts the process and restarts it whenever it exits, until
// Stop or ctx ends. It returns once the first start succeeded.
func (p *Proc) Supervise(ctx context.Context) error {
	if err := p.start(); err != nil {
		return err
	}
	go func() {
		defer close(p.done)
		for {
			p.mu.Lock()
			ex := p.exited
			p.mu.Unlock()
			select {
			case <-ex:
			case <-ctx.Done():
				_ = p.Stop(15 * time.Second)
				return
			}
			p.mu.Lock()
			stopping, killed := p.stopping, p.killing
			p.killing = false
			if !stopping && !killed {
				p.crashes++
			}
			p.mu.Unlock()
			if stopping {
				return
			}
			if !killed {
				p.log.Warn().Msg("role exited by itself; restarting")
			}
			for {
				select {
				case <-time.After(500 * time.Millisecond):
				case <-ctx.Done():
					return
				}
				if err := p.start(); err == nil {
					break
				} else {
					p.log.Error().Err(err).Msg("restart failed; retrying")
				}
			}
		}
	}()
	return nil
}

func (p *Proc) start() error {
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// A role must not outlive its supervisor, even one that crashed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	ex := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, ex
	p.starts++
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.mu.Lock()
			p.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			p.mu.Unlock()
		}
		close(ex)
	}()
	return nil
}

// Kill9 sends SIGKILL to the running instance and waits until it is gone;
// the supervisor then starts a new one.
func (p *Proc) Kill9() error {
	p.mu.Lock()
	cmd, ex := p.cmd, p.exited
	p.killing = true
	p.mu.Unlock()
	if cmd == nil {
		return errors.New("kill " + p.Name + ": not running")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	<-ex
	return nil
}

// Stop ends supervision and sends SIGTERM, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) error {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return nil
	}
	p.stopping = true
	cmd, ex := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ex:
	case <-time.After(grace):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-ex
		return fmt.Errorf("stop %s: no exit within %s after SIGTERM", p.Name, grace)
	}
	if st := cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("stop %s: %s", p.Name, st)
	}
	return nil
}

// Pid is the running instance's process id (0 if none).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Counts returns how often the process was started and how often it
// exited without being asked to.
func (p *Proc) Counts() (starts, crashes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts, p.crashes
}

// Usage is a role's resource use.
type Usage struct {
	// CPUSeconds is user+system time of every instance so far.
	CPUSeconds float64 `json:"cpu_seconds"`
	// PeakRSSBytes is the running instance's VmHWM.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// Usage reads the running instance's /proc/<pid>/stat and status and adds
// the CPU time of the instances that exited.
func (p *Proc) Usage() Usage {
	p.mu.Lock()
	u := Usage{CPUSeconds: p.cpu.Seconds()}
	p.mu.Unlock()
	pid := p.Pid()
	if pid == 0 {
		return u
	}
	if sec, ok := statCPU("/proc/" + strconv.Itoa(pid) + "/stat"); ok {
		u.CPUSeconds += sec
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				u.PeakRSSBytes = kb * 1024
			}
		}
	}
	return u
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100
