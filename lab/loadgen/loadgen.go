// Package loadgen is a closed-loop HTTP load generator for Vitals' batch
// endpoints: a fixed number of clients each post pre-encoded bodies back to
// back over keep-alive connections for a warm-up and then a measured
// window, record each request's latency and count the items the server
// reports accepted. It is bounded in time (warm-up + window, then in-flight
// requests are cut off) and in memory (bodies are built once; latency
// samples are capped).
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// RoundWidth is the width of the hex round counter each body carries in
// every event id (see Body.Patch).
const RoundWidth = 8

// Body is one pre-encoded request body.
type Body struct {
	Data []byte
	// Items is how many items the body holds: what a 200 answer's
	// "accepted" must say.
	Items int
	// Patch lists the offsets in Data of RoundWidth hex digits inside each
	// item's event id. Before a body is sent again the generator writes the
	// round number there, so a resent body carries new event ids and no
	// item is ever a duplicate of an earlier one.
	Patch []int
}

// Config configures a run.
type Config struct {
	// URL is the endpoint every request posts to.
	URL string
	// Header is sent with every request (Authorization, Content-Type).
	Header http.Header
	// Bodies are shared out among the clients: client c owns the bodies
	// whose index is c modulo Clients and sends them in turn, so there must
	// be at least one per client.
	Bodies []Body
	// Clients is the number of concurrent closed-loop clients.
	Clients int
	// Warmup runs before the measured window; its requests are counted
	// apart.
	Warmup time.Duration
	// Duration is the measured window.
	Duration time.Duration
	// Timeout bounds each request.
	Timeout time.Duration
	// Grace is how long requests in flight when the window closes may
	// take to finish (uncounted) before they are cancelled; cancelling
	// them at once would make the server log failures. Default 5s.
	Grace time.Duration
	// Progress is the interval of the progress log line; zero disables it.
	Progress time.Duration
	// MaxSamples caps the stored latency samples (default 4M).
	MaxSamples int
	// OnWindow, if set, is called with true when the measured window opens
	// and with false when it closes (before in-flight requests are cut off),
	// e.g. to start and stop a CPU profile.
	OnWindow func(open bool)
	Log      zerolog.Logger
}

// Result is what a run measured. Counts are of the measured window unless
// they say otherwise; a request counts in the window its answer arrived in.
type Result struct {
	Window           time.Duration  `json:"-"`
	WindowSeconds    float64        `json:"window_seconds"`
	Requests         int64          `json:"requests"`
	AcceptedReadings int64          `json:"accepted_readings"`
	ReadingsPerSec   float64        `json:"accepted_readings_per_second"`
	RequestsPerSec   float64        `json:"requests_per_second"`
	BytesSent        int64          `json:"bytes_sent"`
	Latency          Latency        `json:"latency"`
	DroppedSamples   int            `json:"dropped_latency_samples,omitempty"`
	Errors           int64          `json:"errors"`
	ErrorKinds       map[string]int `json:"error_kinds,omitempty"`
	ErrorExamples    []string       `json:"error_examples,omitempty"`
	WarmupRequests   int64          `json:"warmup_requests"`
	WarmupReadings   int64          `json:"warmup_accepted_readings"`
	WarmupErrors     int64          `json:"warmup_errors"`
	// Drained counts requests answered after the window closed and
	// CutOff those still in flight after Grace, which were cancelled;
	// neither counts as answered or as an error.
	Drained int64 `json:"answered_after_window"`
	CutOff  int64 `json:"cut_off_after_grace"`
}

// NewTransport is a keep-alive transport for clients concurrent
// connections to one host.
func NewTransport(clients int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * clients,
		MaxIdleConnsPerHost: 2 * clients,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// errorSleep keeps a client that gets errors (a refused connection, a 503)
// from spinning.
const errorSleep = 50 * time.Millisecond

// phase of the run as clients see it.
const (
	phaseWarmup int32 = iota
	phaseWindow
	phaseDone
)

type clientStats struct {
	lat                                                *Recorder
	requests, accepted, bytes, errors, drained, cutOff int64
	wRequests, wAccepted, wErrors                      int64
	kinds                                              map[string]int
	examples                                           []string
}

// Run runs the load until the warm-up and the window have passed, or ctx
// ends, and returns the measurements.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.complete(); err != nil {
		return Result{}, err
	}
	hc := &http.Client{Transport: NewTransport(cfg.Clients), Timeout: cfg.Timeout}
	defer hc.CloseIdleConnections()

	// Clients start no request once the window has closed, and every
	// request runs under runCtx, cancelled Grace later: the run stops by
	// itself, however slow the server.
	start := time.Now()
	windowStart := start.Add(cfg.Warmup)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	var phase atomic.Int32
	var liveReadings, liveErrors atomic.Int64 // for the progress log
	stats := make([]*clientStats, cfg.Clients)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		st := &clientStats{lat: NewRecorder(cfg.MaxSamples / cfg.Clients), kinds: map[string]int{}}
		stats[c] = st
		var mine []*Body
		for i := c; i < len(cfg.Bodies); i += cfg.Clients {
			mine = append(mine, &cfg.Bodies[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runClient(runCtx, hc, &cfg, mine, st, &phase, &liveReadings, &liveErrors)
		}()
	}

	var ticker <-chan time.Time
	if cfg.Progress > 0 {
		t := time.NewTicker(cfg.Progress)
		defer t.Stop()
		ticker = t.C
	}
	warm := time.NewTimer(time.Until(windowStart))
	defer warm.Stop()
	end := time.NewTimer(time.Until(windowStart.Add(cfg.Duration)))
	defer end.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	lastAt, lastN := start, int64(0)
	var openedAt time.Time // when the clients were told the window is open
loop:
	for {
		select {
		case <-warm.C:
			phase.Store(phaseWindow)
			openedAt = time.Now()
			cfg.Log.Info().Msg("warm-up over; measuring")
			if cfg.OnWindow != nil {
				cfg.OnWindow(true)
			}
		case now := <-ticker:
			n := liveReadings.Load()
			p := "warmup"
			if phase.Load() == phaseWindow {
				p = "measuring"
			}
			cfg.Log.Info().Str("phase", p).Int64("readings", n).
				Float64("rate", float64(n-lastN)/now.Sub(lastAt).Seconds()).
				Int64("errors", liveErrors.Load()).Msg("bench progress")
			lastAt, lastN = now, n
		case <-end.C:
			break loop
		case <-ctx.Done():
			break loop
		case <-done: // only if every client ended early
			break loop
		}
	}
	phase.Store(phaseDone)
	// The window is the time the clients counted in it, which is
	// cfg.Duration unless a timer ran late or ctx ended early.
	res := Result{ErrorKinds: map[string]int{}}
	if !openedAt.IsZero() {
		res.Window = time.Since(openedAt)
		if cfg.OnWindow != nil {
			cfg.OnWindow(false)
		}
	}
	grace := time.NewTimer(cfg.Grace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		cancel()
		<-done
	}

	res.sum(stats, cfg.MaxSamples)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

// complete checks the configuration and fills in the defaults.
func (cfg *Config) complete() error {
	switch {
	case cfg.Clients < 1:
		return errors.New("loadgen: need at least one client")
	case len(cfg.Bodies) < cfg.Clients:
		return fmt.Errorf("loadgen: %d bodies for %d clients; need at least one per client", len(cfg.Bodies), cfg.Clients)
	case cfg.Duration <= 0:
		return errors.New("loadgen: the measured window must be positive")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.MaxSamples <= 0 {
		cfg.MaxSamples = 4 << 20
	}
	return nil
}

// sum adds up the clients' counts and latencies (at most maxSamples of
// them) and derives the rates over res.Window.
func (res *Result) sum(stats []*clientStats, maxSamples int) {
	res.WindowSeconds = res.Window.Seconds()
	lat := NewRecorder(maxSamples)
	for _, st := range stats {
		res.Requests += st.requests
		res.AcceptedReadings += st.accepted
		res.BytesSent += st.bytes
		res.Errors += st.errors
		res.Drained += st.drained
		res.CutOff += st.cutOff
		res.WarmupRequests += st.wRequests
		res.WarmupReadings += st.wAccepted
		res.WarmupErrors += st.wErrors
		for k, n := range st.kinds {
			res.ErrorKinds[k] += n
		}
		for _, e := range st.examples {
			if len(res.ErrorExamples) < 5 {
				res.ErrorExamples = append(res.ErrorExamples, e)
			}
		}
		lat.Merge(st.lat)
	}
	res.Latency = lat.Summary()
	res.DroppedSamples = lat.Dropped()
	if s := res.Window.Seconds(); s > 0 {
		res.ReadingsPerSec = float64(res.AcceptedReadings) / s
		res.RequestsPerSec = float64(res.Requests) / s
	}
}

// runClient posts its bodies in turn until ctx ends.
func runClient(ctx context.Context, hc *http.Client, cfg *Config, mine []*Body, st *clientStats,
	phase *atomic.Int32, liveReadings, liveErrors *atomic.Int64) {
	var resp bytes.Buffer
	for round := uint64(0); ; round++ {
		for _, b := range mine {
			if ctx.Err() != nil || phase.Load() == phaseDone {
				return
			}
			if round > 0 {
				b.setRound(round)
			}
			t0 := time.Now()
			accepted, kind, detail := post(ctx, hc, cfg, b, &resp)
			lat := time.Since(t0)
			p := phase.Load()
			if p == phaseDone || ctx.Err() != nil {
				if ctx.Err() != nil && kind != "" {
					st.cutOff++
				} else {
					st.drained++
				}
				return
			}
			if kind != "" {
				liveErrors.Add(1)
				if p == phaseWindow {
					st.errors++
					st.kinds[kind]++
					if len(st.examples) < 5 {
						st.examples = append(st.examples, kind+": "+detail)
					}
				} else {
					st.wErrors++
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(errorSleep):
				}
				continue
			}
			liveReadings.Add(int64(accepted))
			if p == phaseWindow {
				st.requests++
				st.accepted += int64(accepted)
				st.bytes += int64(len(b.Data))
				st.lat.Add(lat)
			} else {
				st.wRequests++
				st.wAccepted += int64(accepted)
			}
		}
	}
}

// post sends one body and reads the whole answer. kind is empty on
// success, else a short error class and a detail.
func post(ctx context.Context, hc *http.Client, cfg *Config, b *Body, buf *bytes.Buffer) (accepted int, kind, detail string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, bytes.NewReader(b.Data))
	if err != nil {
		return 0, "request", err.Error()
	}
	for k, v := range cfg.Header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "transport", err.Error()
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, "transport", "reading the answer: " + err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return 0, "status_" + strconv.Itoa(resp.StatusCode), truncate(buf.Bytes())
	}
	n, ok := ParseAccepted(buf.Bytes())
	switch {
	case !ok:
		return 0, "no_accepted_field", truncate(buf.Bytes())
	case n != b.Items:
		return n, "partly_accepted", fmt.Sprintf("%d of %d accepted: %s", n, b.Items, truncate(buf.Bytes()))
	}
	return n, "", ""
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

var acceptedKey = []byte(`"accepted":`)

// ParseAccepted reads the top-level "accepted" count of a batch answer
// without decoding the rest (the per-item verdicts are most of it). Ingest
// writes that field first, so the first occurrence is the top-level one.
func ParseAccepted(body []byte) (int, bool) {
	i := bytes.Index(body, acceptedKey)
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(body[i+len(acceptedKey):], " \t\r\n")
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	if j == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:j]))
	return n, err == nil
}

const hexDigits = "0123456789abcdef"

// setRound writes round as RoundWidth hex digits at every patch offset.
func (b *Body) setRound(round uint64) {
	var d [RoundWidth]byte
	for i := RoundWidth - 1; i >= 0; i-- {
		d[i] = hexDigits[round&0xf]
		round >>= 4
	}
	for _, off := range b.Patch {
		copy(b.Data[off:off+RoundWidth], d[:])
	}
}

// Kinds lists error kinds in a stable order, for reports.
func (r Result) Kinds() []string {
	ks := make([]string, 0, len(r.ErrorKinds))
	for k := range r.ErrorKinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
