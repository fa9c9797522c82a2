package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/scratch"
	"github.com/vitalshq/vitals/projector"
)

// benchProjReport is bench projector's result.
type benchProjReport struct {
	runInfo
	TopicPrefix string  `json:"topic_prefix"`
	Database    string  `json:"database"`
	Partitions  int     `json:"partitions"`
	Rows        int     `json:"rows"`
	Users       int     `json:"users"`
	BatchRows   int     `json:"batch_rows"`
	Flush       string  `json:"flush_interval"`
	Instances   int     `json:"instances"`
	FillSeconds float64 `json:"fill_seconds"`
	Sealed      bool    `json:"sealed"`
	Seconds     float64 `json:"seconds"`
	RowsPerSec  float64 `json:"rows_per_sec"`
	RawRows     uint64  `json:"clickhouse_raw_rows"`
	RollupRows  uint64  `json:"clickhouse_rollup_readings"`
	// CPU is over the projection window; CPUSeconds is this process's
	// user+system time in it (the projector, and the little the bench's
	// own polling costs), so CPUMicrosPerRow is the projector's cost per
	// row. ClickHouse's own CPU shows in CPU.Machine only.
	CPU             loadgen.CPUUse `json:"cpu"`
	CPUSeconds      float64        `json:"cpu_seconds"`
	CPUMicrosPerRow float64        `json:"cpu_us_per_row"`
	CPUProfile      string         `json:"cpu_profile,omitempty"`
}

// benchProjector measures the projector's insert throughput on the local
// stack: it fills an accepted-readings topic of its own with --bench-rows
// readings (produced directly, as the processor would have), then runs one
// projector in this process with a fresh group and a fresh ClickHouse
// database, from the start of the log until every record's offset is
// committed, and reports rows per second over that window. It then checks
// that ClickHouse holds every row exactly once, raw and in the rollup.
// Topics, database and group are deleted at the end unless --bench-keep.
func benchProjector(ctx context.Context, args []string, stdout io.Writer) error {
	b, fs, s := newAcceptedBench("projector", "proj", 2_000_000, 10*time.Minute, "project", "the projection window")
	var instances int
	fs.Int(&instances, "bench-instances", 1, "projectors in the group, in this process: several share the partitions, so one decodes while another waits on its insert (as replay rebuild runs them; a deployment runs several vitals projector processes)")
	if err := b.parse(fs, s, args); err != nil {
		return err
	}
	if instances < 1 {
		return errors.New("--bench-instances must be at least 1")
	}
	s.ProjectorGroup = s.KafkaPrefix + "." + scratch.RandomHex(4)
	log, err := s.Logger()
	if err != nil {
		return err
	}
	kcfg := s.Kafka()
	pcfg := s.Projector()
	pcfg.MetricsAddr = "" // no listener: a bench may run beside a live projector
	rep := benchProjReport{runInfo: thisRun(), TopicPrefix: s.KafkaPrefix,
		Database: s.ClickHouseDatabase, Partitions: kcfg.Partitions, Rows: b.rows, Users: b.users, BatchRows: pcfg.MaxRows, Flush: pcfg.FlushInterval.String(), Sealed: b.sealed, Instances: instances}

	runCtx, cancelRun := context.WithTimeout(ctx, b.timeout)
	defer cancelRun()
	defer b.remove(ctx, scratch.Resources{Kafka: kcfg, Topics: scratch.AllTopics(kcfg), Groups: []string{s.ProjectorGroup}, Warehouse: s.Warehouse(), Databases: []string{s.ClickHouseDatabase}}, log)
	cl, err := b.fill(runCtx, s, &rep.FillSeconds, log)
	if err != nil {
		return err
	}
	defer cl.Close()

	g, err := projector.NewGroup(runCtx, pcfg, instances, log)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(b.cpuProfile)
	if err != nil {
		g.Close()
		return err
	}
	pctx, stop := context.WithCancel(runCtx)
	done := make(chan error, 1)
	cpu0 := loadgen.SampleCPU()
	start := time.Now()
	go func() { done <- g.Run(pctx) }()
	stopProgress := loadgen.Periodically(5*time.Second, func() {
		n := g.Committed()
		log.Info().Int64("committed", n).Int("of", b.rows).Float64("rows_per_sec", math.Round(float64(n)/time.Since(start).Seconds())).Msg("projecting")
	})
	var runErr error
	// The counter is exact while every commit succeeds. A commit that
	// failed (the broker busy or failing over) is never counted, though
	// later commits cover its records, so the group's committed offsets
	// are also read once a second.
	adm := kadm.NewClient(cl)
	lastCheck := time.Now()
	for g.Committed() < int64(b.rows) && runErr == nil {
		select {
		case runErr = <-done:
			if runErr == nil {
				runErr = errors.New("projector stopped before committing every record")
			}
		case <-runCtx.Done():
			runErr = fmt.Errorf("projection: %w", runCtx.Err())
		case <-time.After(2 * time.Millisecond):
		}
		if runErr == nil && time.Since(lastCheck) >= time.Second {
			lastCheck = time.Now()
			if n, err := committedRecords(runCtx, adm, s.ProjectorGroup, kcfg.Topics.AcceptedReadings); err == nil && n >= int64(b.rows) {
				log.Warn().Int64("counted", g.Committed()).Msg("every offset is committed, though some commits were not counted (failed, then covered by later ones)")
				break
			}
		}
	}
	elapsed := time.Since(start)
	cpu1 := loadgen.SampleCPU()
	stopProfile()
	rep.CPUProfile = b.cpuProfile
	stopProgress()
	stop()
	if runErr == nil {
		runErr = <-done
	}
	g.Close()
	if runErr != nil {
		return runErr
	}
	rep.Seconds = elapsed.Seconds()
	rep.RowsPerSec = float64(b.rows) / rep.Seconds
	rep.CPU = cpu1.Since(cpu0)
	rep.CPUSeconds = (cpu1.Process - cpu0.Process).Seconds()
	rep.CPUMicrosPerRow = rep.CPUSeconds / float64(b.rows) * 1e6

	if rep.RawRows, rep.RollupRows, err = b.stored(runCtx, s); err != nil {
		return err
	}
	rep.print(stdout)
	return b.save(rep, rep.RawRows, rep.RollupRows)
}

// committedRecords is the sum of the group's committed offsets in the
// topic: the records committed, for a topic whose partitions start at 0.
func committedRecords(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	var n int64
	for _, o := range offs[topic] {
		if o.Err == nil && o.At > 0 {
			n += o.At
		}
	}
	return n, nil
}

func (r benchProjReport) print(w io.Writer) {
	fmt.Fprintf(w, "bench projector: %d accepted readings of %d users, %d partitions, batch %d rows / %s, %d projector(s)\n",
		r.Rows, r.Users, r.Partitions, r.BatchRows, r.Flush, max(r.Instances, 1))
	fmt.Fprintf(w, "machine: %d CPU (%s), %s, load %s at start\n", r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.LoadAvg)
	fmt.Fprintf(w, "fill (not measured): %.1fs, %s\n", r.FillSeconds, sealedText(r.Sealed))
	fmt.Fprintf(w, "projected and committed: %.2fs = %s rows/s\n", r.Seconds, strings.TrimSpace(fmt.Sprintf("%.0f", r.RowsPerSec)))
	fmt.Fprintf(w, "cpu: %.1fs this process = %.2f µs/row (%.2f CPUs), %.2f CPUs whole machine (of %d, broker and ClickHouse included)\n",
		r.CPUSeconds, r.CPUMicrosPerRow, r.CPU.Process, r.CPU.Machine, r.Machine.NumCPU)
	if r.CPUProfile != "" {
		fmt.Fprintf(w, "cpu profile: %s (go tool pprof -top %s)\n", r.CPUProfile, r.CPUProfile)
	}
	fmt.Fprintf(w, "ClickHouse: %d raw rows, %d readings in the rollup (each must equal %d)\n", r.RawRows, r.RollupRows, r.Rows)
}
