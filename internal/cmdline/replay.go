package cmdline

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/replay"
)

// ReplayTuning are the flags of vitals replay that vitals-lab bench
// replay shares, so the benchmark measures what the command runs.
type ReplayTuning struct {
	ProgressEvery time.Duration
	GCPercent     int
	BatchRows     int
	Instances     int
}

// Flags registers the flags every replay subcommand shares.
func (r *ReplayTuning) Flags(fs *envflag.Set) {
	fs.Duration(&r.ProgressEvery, "replay-progress-interval", 2*time.Second, "how often progress is shown (a bar on a terminal, a log line otherwise)")
	fs.Int(&r.GCPercent, "replay-gc-percent", 400, "Go GC target of this process: a replay allocates large insert blocks, and collecting less often saves CPU for ClickHouse on a small machine")
}

// RebuildFlags registers the shadow projection's tuning flags.
func (r *ReplayTuning) RebuildFlags(fs *envflag.Set) {
	d := replay.DefaultConfig()
	fs.Int(&r.BatchRows, "replay-batch-rows", 200000, "rows per ClickHouse insert of the shadow projection (larger than the live projector's: throughput, not latency)")
	fs.Int(&r.Instances, "replay-instances", d.Instances, "shadow projectors sharing the partitions in this process")
}

// Apply sets the process-wide GC target for the replay.
func (r *ReplayTuning) Apply() {
	if r.GCPercent > 0 {
		debug.SetGCPercent(r.GCPercent)
	}
}

// Progress shows replay progress: a bar redrawn in place on a terminal, a
// structured log line per report otherwise.
type Progress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	log      zerolog.Logger
	drawn    bool
}

// NewProgress shows progress on f (a bar if f is a terminal) or in log.
func NewProgress(f *os.File, log zerolog.Logger) *Progress {
	st, err := f.Stat()
	return &Progress{w: f, terminal: err == nil && st.Mode()&os.ModeCharDevice != 0, log: log}
}

// Show reports p; it is a replay.Config's Progress.
func (o *Progress) Show(p replay.Progress) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.terminal {
		o.log.Info().Str("phase", p.Phase).Int64("done", p.Done).Int64("total", p.Total).Float64("records_per_sec", math.Round(p.Rate)).
			Dur("eta", p.ETA.Round(time.Second)).Msg("replay progress")
		return
	}
	fmt.Fprint(o.w, "\r"+progressBar(p, 30))
	o.drawn = true
}

// End finishes the bar's line.
func (o *Progress) End() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.drawn {
		fmt.Fprintln(o.w)
		o.drawn = false
	}
}

// progressBar renders p in one line: phase, bar of width cells, done and
// total, rate and ETA.
func progressBar(p replay.Progress, width int) string {
	frac := 1.0
	if p.Total > 0 {
		frac = math.Min(float64(p.Done)/float64(p.Total), 1)
	}
	full := int(frac * float64(width))
	eta := "--"
	if p.ETA > 0 {
		eta = p.ETA.Round(time.Second).String()
	} else if p.Done >= p.Total {
		eta = "0s"
	}
	return fmt.Sprintf("%-9s [%s%s] %5.1f%% %d/%d %.0f rec/s ETA %s ",
		p.Phase, strings.Repeat("#", full), strings.Repeat(".", width-full), 100*frac, p.Done, p.Total, p.Rate, eta)
}
