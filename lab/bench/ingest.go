package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/lab/scratch"
)

// benchTopicPrefix keeps benchmark traffic out of the real event log: the
// raw topics keep data forever and the processor would judge it all.
const benchTopicPrefix = "vitals-bench"

// benchSettings are bench ingest's own flags.
type benchSettings struct {
	target, key, format, jsonOut, cpuProfile string
	batch, users, clients, bodies            int
	duration, warmup, timeout                time.Duration
	keepTopics                               bool
}

// ingestFlags parses bench ingest's flags and makes the logger. The
// in-process ingest listens on a free port and writes to topics of its
// own, unless the flags or their environment variables say otherwise.
func ingestFlags(args []string) (*cmdline.Settings, benchSettings, zerolog.Logger, error) {
	fs, s := cmdline.NewFlags("vitals-lab bench ingest")
	s.KafkaFlags(fs)
	s.PostgresFlags(fs)
	s.TenantFlag(fs)
	s.IngestFlags(fs)
	cmdline.SetDefault(fs, "ingest-addr", "127.0.0.1:0", false)
	cmdline.SetDefault(fs, "kafka-topic-prefix", benchTopicPrefix, false)
	var b benchSettings
	fs.String(&b.target, "bench-target", "", "base URL of a running ingest to load, e.g. http://127.0.0.1:8080 (default: start ingest in this process)")
	fs.String(&b.key, "bench-key", "", "API key to send (default: create one in PostgreSQL for --tenant and revoke it at the end)")
	fs.String(&b.format, "bench-format", loadgen.FormatJSON, "request body format: json or avro")
	fs.Int(&b.batch, "bench-batch", 500, "readings per request")
	fs.Int(&b.users, "bench-users", 10000, "distinct user ids the readings are spread over (so keys spread over partitions)")
	fs.Int(&b.clients, "bench-clients", 8, "concurrent closed-loop clients, each with its own keep-alive connection")
	fs.Int(&b.bodies, "bench-bodies", 64, "distinct pre-encoded request bodies (raised to --bench-clients if lower); event ids are renewed on every resend")
	fs.Duration(&b.warmup, "bench-warmup", 3*time.Second, "warm-up before the measured window (not counted)")
	fs.Duration(&b.duration, "bench-duration", 20*time.Second, "measured window")
	fs.Duration(&b.timeout, "bench-timeout", 30*time.Second, "bound on each request")
	fs.String(&b.jsonOut, "bench-json", "", "also write the result as JSON to this file")
	fs.String(&b.cpuProfile, "bench-cpuprofile", "", "write a CPU profile of this process (ingest and load generator) over the measured window to this file")
	fs.BoolVar(&b.keepTopics, "bench-keep-topics", false, "keep the in-process ingest's topics at the end (by default they are deleted unless the prefix is \"vitals\")")
	nop := zerolog.Nop()
	if err := fs.Parse(args); err != nil {
		return nil, b, nop, err
	}
	if fs.NArg() > 0 {
		return nil, b, nop, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if b.clients < 1 || b.batch < 1 || b.users < 1 || b.duration <= 0 || b.warmup < 0 {
		return nil, b, nop, errors.New("--bench-clients, --bench-batch, --bench-users and --bench-duration must be positive")
	}
	if b.format != loadgen.FormatJSON && b.format != loadgen.FormatAvro {
		return nil, b, nop, fmt.Errorf("--bench-format %q: want json or avro", b.format)
	}
	b.bodies = max(b.bodies, b.clients)
	log, err := s.Logger()
	return s, b, log, err
}

// benchIngest load-tests the ingest HTTP path on loopback: it starts ingest
// in this process (or hits --bench-target), posts pre-encoded batches of
// Fitbit readings from concurrent keep-alive clients for a warm-up and a
// measured window, and reports accepted readings/s, requests/s and latency
// percentiles. Ingest answers only after the broker acknowledged every
// record, so the latency includes the broker's ack.
func benchIngest(ctx context.Context, args []string, stdout io.Writer) error {
	s, b, log, err := ingestFlags(args)
	if err != nil {
		return err
	}
	run := thisRun()

	// Build the bodies first: it is the slow part of the set-up, and the
	// sample parse should not overlap the measurement.
	bodies, meanBytes, err := ingestBodies(b)
	if err != nil {
		return err
	}

	target := strings.TrimRight(b.target, "/")
	inProcess := target == ""
	var stopIngest func() error
	if inProcess {
		target, stopIngest, err = startBenchIngest(ctx, s, log)
		if err != nil {
			return err
		}
		defer func() {
			if stopIngest != nil {
				_ = stopIngest()
			}
		}()
	}
	key, revoke, err := s.KeyOr(ctx, b.key, "vitals bench gateway")
	if err != nil {
		return err
	}
	defer revoke()
	if err := cmdline.WaitHealthy(ctx, target); err != nil {
		return err
	}

	m := &windowMeter{target: target, profile: b.cpuProfile, log: log}
	log.Info().Str("target", target).Int("clients", b.clients).Int("batch", b.batch).Str("format", b.format).
		Dur("warmup", b.warmup).Dur("duration", b.duration).Msg("bench ingest starting")
	res, runErr := loadgen.Run(ctx, loadgen.Config{
		URL: target + "/v1/readings",
		Header: http.Header{
			"Authorization": {"Bearer " + key},
			"Content-Type":  {loadgen.ContentType(b.format)},
		},
		Bodies: bodies, Clients: b.clients, Warmup: b.warmup, Duration: b.duration, Timeout: b.timeout,
		Progress: 5 * time.Second, OnWindow: m.window, Log: log,
	})
	if inProcess {
		serr := stopIngest()
		stopIngest = nil
		if serr != nil {
			log.Warn().Err(serr).Msg("ingest shutdown")
		}
		if !b.keepTopics && s.KafkaPrefix != scratch.RealPrefix {
			scratch.Resources{Kafka: s.Kafka(), Topics: scratch.AllTopics(s.Kafka())}.Remove(ctx, log)
		}
	}
	if runErr != nil {
		return runErr
	}

	rep := benchReport{
		runInfo: run,
		Target:  target + "/v1/readings", InProcess: inProcess, Format: b.format,
		Batch: b.batch, MeanBodyBytes: meanBytes, Users: b.users, Clients: b.clients, Bodies: len(bodies),
		Warmup: b.warmup.String(), Duration: b.duration.String(), Result: res, CPU: m.cpu1.Since(m.cpu0),
	}
	if inProcess {
		rep.Broker, rep.TopicPrefix = s.KafkaBrokers, s.KafkaPrefix
	}
	if n := m.prod1.count - m.prod0.count; n > 0 {
		rep.ProduceMeanMs = (m.prod1.sum - m.prod0.sum) / n * 1000
	}
	if res.AcceptedReadings > 0 {
		rep.CPUPerMillion = rep.CPU.Process * res.WindowSeconds / float64(res.AcceptedReadings) * 1e6
	}
	if b.cpuProfile != "" {
		rep.CPUProfile = b.cpuProfile
	}
	rep.print(stdout)
	if err := writeJSON(b.jsonOut, rep); err != nil {
		return err
	}
	if res.Errors > 0 {
		return fmt.Errorf("%d requests failed in the measured window", res.Errors)
	}
	return nil
}

// ingestBodies builds the request bodies and their mean size. It is the
// slow part of the set-up, done first so that the sample's parse does not
// overlap the measurement.
func ingestBodies(b benchSettings) ([]loadgen.Body, int, error) {
	rows, err := sample.HeartRates()
	if err != nil {
		return nil, 0, err
	}
	bodies, err := loadgen.ReadingBodies(rows, loadgen.ReadingsOptions{
		Bodies: b.bodies, Batch: b.batch, Users: b.users, Format: b.format, RunID: scratch.RandomHex(4), Now: time.Now(),
	})
	if err != nil {
		return nil, 0, err
	}
	n := 0
	for _, x := range bodies {
		n += len(x.Data)
	}
	return bodies, n / len(bodies), nil
}

// windowMeter samples CPU and ingest's produce histogram when the
// measured window opens and closes, and profiles the window.
type windowMeter struct {
	target, profile string
	log             zerolog.Logger
	stopProfile     func()
	cpu0, cpu1      loadgen.CPUSample
	prod0, prod1    produceStats
}

// window is loadgen's OnWindow.
func (m *windowMeter) window(open bool) {
	if open {
		m.prod0 = scrapeProduce(m.target)
		m.cpu0 = loadgen.SampleCPU()
		var err error
		if m.stopProfile, err = startCPUProfile(m.profile); err != nil {
			m.log.Error().Err(err).Msg("cpu profile")
		}
		return
	}
	if m.stopProfile != nil {
		m.stopProfile()
	}
	m.cpu1 = loadgen.SampleCPU()
	m.prod1 = scrapeProduce(m.target)
}

// startBenchIngest starts only the ingest role in this process and
// returns its base URL and a function that stops it.
func startBenchIngest(ctx context.Context, s *cmdline.Settings, log zerolog.Logger) (string, func() error, error) {
	cfg := s.Ingest()
	srv, err := ingest.New(ctx, cfg, log)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		srv.Close()
		return "", nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(rctx, ln) }()
	return "http://" + ln.Addr().String(), func() error {
		cancel()
		err := <-done
		srv.Close()
		return err
	}, nil
}

// produceStats is ingest's produce-time histogram for the readings
// endpoint, read from /metrics.
type produceStats struct{ sum, count float64 }

func scrapeProduce(base string) produceStats {
	var p produceStats
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return p
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for suffix, dst := range map[string]*float64{"_sum": &p.sum, "_count": &p.count} {
			if rest, ok := strings.CutPrefix(line, "vitals_ingest_produce_seconds"+suffix+`{endpoint="readings"} `); ok {
				*dst, _ = strconv.ParseFloat(strings.TrimSpace(rest), 64)
			}
		}
	}
	return p
}

type benchReport struct {
	runInfo
	Target        string         `json:"target"`
	InProcess     bool           `json:"in_process_ingest"`
	Broker        string         `json:"broker,omitempty"`
	TopicPrefix   string         `json:"topic_prefix,omitempty"`
	Format        string         `json:"format"`
	Batch         int            `json:"batch"`
	MeanBodyBytes int            `json:"mean_body_bytes"`
	Users         int            `json:"users"`
	Clients       int            `json:"clients"`
	Bodies        int            `json:"distinct_bodies"`
	Warmup        string         `json:"warmup"`
	Duration      string         `json:"duration"`
	Result        loadgen.Result `json:"result"`
	// CPU is over the measured window; the process is ingest plus the load
	// generator when ingest runs in-process.
	CPU loadgen.CPUUse `json:"cpu"`
	// CPUPerMillion is this process's CPU seconds per million accepted
	// readings in the window: the cost of a reading, which (unlike
	// readings/s) hardly depends on what else the machine runs.
	CPUPerMillion float64 `json:"cpu_seconds_per_million_readings,omitempty"`
	// ProduceMeanMs is ingest's mean wait for the broker's ack per request
	// in the window (from its /metrics), the part of latency spent in Kafka.
	ProduceMeanMs float64 `json:"ingest_produce_mean_ms,omitempty"`
	CPUProfile    string  `json:"cpu_profile,omitempty"`
}

func (r benchReport) print(w io.Writer) {
	res := r.Result
	mode := "external ingest"
	if r.InProcess {
		mode = fmt.Sprintf("in-process ingest; broker %s, topics %s.*", r.Broker, r.TopicPrefix)
	}
	t := newTable(w, "Vitals ingest benchmark", r.runInfo)
	row := t.row
	m := r.Machine
	row("target", "POST %s (%s)", r.Target, mode)
	row("load", "%d clients, %d readings/request (%s, %.1f KB), %d users, %d distinct bodies", r.Clients, r.Batch, r.Format, float64(r.MeanBodyBytes)/1024, r.Users, r.Bodies)
	row("window", "%s measured (%.2fs) after %s warm-up (%d requests, %d readings, %d errors)", r.Duration, res.WindowSeconds, r.Warmup, res.WarmupRequests, res.WarmupReadings, res.WarmupErrors)
	row("", "")
	row("accepted readings/s", "%.0f", res.ReadingsPerSec)
	row("requests/s", "%.1f", res.RequestsPerSec)
	row("accepted readings", "%d in %d requests (%.1f MB sent)", res.AcceptedReadings, res.Requests, float64(res.BytesSent)/1e6)
	l := res.Latency
	row("latency ms", "p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  (mean %.1f, %d samples)", l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs, l.MeanMs, l.Count)
	if r.ProduceMeanMs > 0 {
		row("broker ack wait ms", "mean %.1f per request (ingest's produce histogram)", r.ProduceMeanMs)
	}
	row("cpu", "%.2f CPUs this process, %.2f CPUs whole machine (of %d)", r.CPU.Process, r.CPU.Machine, m.NumCPU)
	if r.CPUPerMillion > 0 {
		what := "this process: the load generator only"
		if r.InProcess {
			what = "this process: ingest and the load generator"
		}
		row("cpu per reading", "%.2f CPU s per million accepted readings (%s)", r.CPUPerMillion, what)
	}
	row("errors", "%d", res.Errors)
	for _, k := range res.Kinds() {
		row("", "%s: %d", k, res.ErrorKinds[k])
	}
	for _, e := range res.ErrorExamples {
		row("", "e.g. %s", e)
	}
	if res.Drained+res.CutOff > 0 {
		row("after the window", "%d requests answered, %d cut off after the grace period (not counted)", res.Drained, res.CutOff)
	}
	if r.CPUProfile != "" {
		row("cpu profile", "%s (go tool pprof -top %s)", r.CPUProfile, r.CPUProfile)
	}
	t.flush()
}
