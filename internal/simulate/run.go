package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/loadgen"
	"github.com/vitalshq/vitals/internal/sample"
)

// Faults are the probabilities of injecting each fault after a normal
// reading (WrongKey: per request, an extra request with a bad key).
type Faults struct {
	Duplicate, OutOfOrder, Late, Unpaired, Implausible, Malformed, WrongKey float64
}

// DefaultFaults inject about one fault per 100 readings.
func DefaultFaults() Faults {
	return Faults{Duplicate: 0.003, OutOfOrder: 0.002, Late: 0.001, Unpaired: 0.001, Implausible: 0.001, Malformed: 0.001, WrongKey: 0.01}
}

// Options configure Run.
type Options struct {
	URL      string // ingest's base URL, e.g. http://127.0.0.1:8080
	Key      string // a valid API key of the tenant
	Users    int
	Rate     float64 // readings per second, all clients together
	Duration time.Duration
	Batch    int // normal readings per request (faults come on top)
	Clients  int // concurrent clients; each owns Users/Clients users
	RunID    string
	Seed     uint64
	Faults   Faults
	// Drain is how long unanswered items are still retried after Duration.
	Drain time.Duration
	// Timeout bounds each request.
	Timeout time.Duration
	// Manifest receives one JSON line per event (see Entry).
	Manifest io.Writer
	// OnProbe, if set, is called with each acknowledged probe reading: one
	// reading per few requests goes to a probe user per client, whose rows
	// a freshness watcher can find cheaply by user id (ProbeUser).
	OnProbe func(eventID string, ackedAt time.Time)
	Log     zerolog.Logger
}

// Stats are Run's running totals, for progress reports while it runs.
type Stats struct {
	Items, Acked, Requests, Failures, Retries atomic.Int64
}

// Result sums up a run.
type Result struct {
	Seconds       float64 `json:"seconds"`
	Items         int64   `json:"items"`
	Acked         int64   `json:"acked"`
	Requests      int64   `json:"requests"`
	Failures      int64   `json:"failed_requests"`
	Retries       int64   `json:"retried_requests"`
	Unacked       int64   `json:"unacked_items"`
	ManifestLines int     `json:"manifest_lines"`
	// AckedPerSec is readings acknowledged per second of the send window.
	AckedPerSec float64 `json:"acked_per_sec"`
}

// maxPerUserRate keeps every user's streams far below the processor's
// 600 readings per device and metric per minute.
const maxPerUserRate = 4.0

// ProbeUser is the user id of client c's probe readings in run.
func ProbeUser(run string, c int) string { return run + "-probe" + strconv.Itoa(c) }

// User, device and gateway naming.
func userID(run string, u int) string     { return run + "-u" + strconv.Itoa(u) }
func watchID(user string) string          { return user + "-watch" }
func gatewayID(run string, c int) string  { return run + "-gw" + strconv.Itoa(c) }
func wrongKey(run string) string          { return "vk_" + run + "_not_a_key" }
func badDevice(user string, n int) string { return user + "-unpaired-" + strconv.Itoa(n) }

func (o *Options) validate() error {
	switch {
	case o.URL == "" || o.Key == "":
		return errors.New("simulate: URL and Key are required")
	case o.Users < 1 || o.Clients < 1 || o.Batch < 1 || o.Rate <= 0 || o.Duration <= 0:
		return errors.New("simulate: users, clients, batch, rate and duration must be positive")
	case o.Users < o.Clients:
		return fmt.Errorf("simulate: %d users cannot be spread over %d clients", o.Users, o.Clients)
	case o.Rate/float64(o.Users) > maxPerUserRate:
		return fmt.Errorf("simulate: %.0f readings/s over %d users is more than %g per user per second; add users (the processor allows 600 per device and metric per minute)", o.Rate, o.Users, maxPerUserRate)
	}
	return nil
}

// Run pairs every user's watch, then streams for o.Duration, then retries
// what ingest has not answered for at most o.Drain. The manifest is
// complete when Run returns.
func Run(ctx context.Context, o Options, st *Stats) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	if st == nil {
		st = &Stats{}
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	rows, err := sample.HeartRates()
	if err != nil {
		return Result{}, err
	}
	series := map[string][]float64{}
	var order []string
	for _, r := range rows {
		if _, ok := series[r.FitbitID]; !ok {
			order = append(order, r.FitbitID)
		}
		series[r.FitbitID] = append(series[r.FitbitID], r.Value)
	}
	hc := &http.Client{Transport: loadgen.NewTransport(o.Clients + 2), Timeout: o.Timeout}
	man := newManifestWriter(o.Manifest)

	clients := make([]*client, o.Clients)
	for c := range clients {
		cl := &client{o: &o, idx: c, hc: hc, man: man, st: st, rng: rand.New(rand.NewPCG(o.Seed, uint64(c)))}
		for u := c; u < o.Users; u += o.Clients {
			id := userID(o.RunID, u)
			s := series[order[u%len(order)]]
			cl.users = append(cl.users, &user{id: id, watch: watchID(id), hr: s, pos: (u * 7919) % len(s)})
		}
		probe := ProbeUser(o.RunID, c)
		cl.probe = &user{id: probe, watch: watchID(probe), hr: series[order[c%len(order)]]}
		clients[c] = cl
	}
	pctx, cancelPair := context.WithTimeout(ctx, 5*time.Minute)
	err = pair(pctx, hc, &o, clients)
	cancelPair()
	if err != nil {
		return Result{}, err
	}
	o.Log.Info().Int("users", o.Users).Int("clients", o.Clients).Float64("rate", o.Rate).Dur("duration", o.Duration).Msg("simulating")

	start := time.Now()
	end := start.Add(o.Duration)
	// Requests are retried until o.Drain after the send window, even when
	// ctx ends first: the manifest must say what ingest answered.
	dctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), end.Add(o.Drain))
	defer cancel()
	g, gctx := errgroup.WithContext(dctx)
	for _, cl := range clients {
		g.Go(func() error { return cl.run(gctx, ctx, end) })
	}
	err = g.Wait()
	elapsed := time.Since(start)
	if ferr := man.flush(); err == nil {
		err = ferr
	}
	var unacked int64
	for _, cl := range clients {
		unacked += cl.unacked
	}
	res := Result{Seconds: elapsed.Seconds(), Items: st.Items.Load(), Acked: st.Acked.Load(), Requests: st.Requests.Load(),
		Failures: st.Failures.Load(), Retries: st.Retries.Load(), Unacked: unacked, ManifestLines: man.n}
	res.AckedPerSec = float64(res.Acked) / min(elapsed, o.Duration).Seconds()
	return res, err
}

// user is one simulated user's generator state, owned by one client.
type user struct {
	id, watch string
	hr        []float64 // Fitbit heart-rate series replayed in a loop
	pos, n    int
	// lastHR is the measured time of the newest heart-rate reading of the
	// watch that ingest acknowledged: every later event of the user comes
	// after it in the log, so the processor's stream is at least there.
	lastHR int64
	// lastRaw is an acknowledged normal reading, for duplicates.
	lastRaw json.RawMessage
	lastID  string
}

// item is one reading in flight with its manifest entry.
type item struct {
	raw   json.RawMessage
	entry Entry
	done  bool
	// hr marks a normal heart-rate reading of the watch at measured.
	hr       bool
	measured int64
	u        *user
	probe    bool
}

type client struct {
	o       *Options
	idx     int
	hc      *http.Client
	man     *manifestWriter
	st      *Stats
	rng     *rand.Rand
	users   []*user
	probe   *user
	next    int // round-robin position in users
	batches int
	unacked int64
}

// wire is a reading as JSON for POST /v1/readings.
type wire struct {
	EventID    string  `json:"event_id"`
	UserID     string  `json:"user_id"`
	DeviceID   string  `json:"device_id"`
	Metric     string  `json:"metric"`
	Value      float64 `json:"value"`
	Unit       string  `json:"unit"`
	MeasuredAt string  `json:"measured_at"`
	PeriodEnd  string  `json:"period_end,omitempty"`
}

func ts(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

func (c *client) newItem(u *user, fault, expect, reason, metric string, w wire, measured int64) *item {
	raw, _ := json.Marshal(&w) // a flat struct of strings and a float: cannot fail
	return &item{raw: raw, u: u, measured: measured,
		entry: Entry{EventID: w.EventID, UserID: u.id, Metric: metric, Day: day(measured), Fault: fault, Expect: expect, Reason: reason}}
}

func (c *client) eventID(u *user) string {
	u.n++
	return u.id + "-" + strconv.Itoa(u.n)
}

// normal makes u's next regular reading: mostly heart rate from the
// sample, every 10th SpO2, every 30th a one-minute step count.
func (c *client) normal(u *user, now int64) *item {
	id := c.eventID(u)
	switch {
	case u.n%30 == 0:
		w := wire{EventID: id, UserID: u.id, DeviceID: u.watch, Metric: "steps", Value: float64(c.rng.IntN(120)), Unit: "{steps}",
			MeasuredAt: ts(now - 60_000), PeriodEnd: ts(now)}
		return c.newItem(u, FaultNone, ExpectAccepted, "", "steps", w, now-60_000)
	case u.n%10 == 0:
		w := wire{EventID: id, UserID: u.id, DeviceID: u.watch, Metric: "spo2", Value: float64(94 + c.rng.IntN(6)), Unit: "%", MeasuredAt: ts(now)}
		return c.newItem(u, FaultNone, ExpectAccepted, "", "spo2", w, now)
	}
	u.pos = (u.pos + 1) % len(u.hr)
	w := wire{EventID: id, UserID: u.id, DeviceID: u.watch, Metric: "heart_rate", Value: u.hr[u.pos], Unit: "/min", MeasuredAt: ts(now)}
	it := c.newItem(u, FaultNone, ExpectAccepted, "", "heart_rate", w, now)
	it.hr = true
	return it
}

// faults appends the faults drawn for user u after a normal reading.
func (c *client) faults(u *user, now int64, out []*item) []*item {
	f := c.o.Faults
	hit := func(p float64) bool { return p > 0 && c.rng.Float64() < p }
	hr := func(fault, expect, reason, device string, value float64, measured int64) *item {
		w := wire{EventID: c.eventID(u), UserID: u.id, DeviceID: device, Metric: "heart_rate", Value: value, Unit: "/min", MeasuredAt: ts(measured)}
		return c.newItem(u, fault, expect, reason, "heart_rate", w, measured)
	}
	if hit(f.Duplicate) && u.lastRaw != nil {
		it := &item{raw: u.lastRaw, u: u, entry: Entry{EventID: u.lastID, UserID: u.id, Fault: FaultDuplicate, Expect: ExpectRepeat}}
		out = append(out, it)
	}
	if hit(f.OutOfOrder) {
		out = append(out, hr(FaultOutOfOrder, ExpectAccepted, "", u.watch, 70, now-3*60_000))
	}
	// Late and unpaired need an acknowledged reading to be late against.
	if u.lastHR > 0 && hit(f.Late) {
		out = append(out, hr(FaultLate, ExpectRejected, "too_late", u.watch, 70, u.lastHR-15*60_000))
	}
	if u.lastHR > 0 && hit(f.Unpaired) {
		out = append(out, hr(FaultUnpaired, ExpectRejected, "device_not_paired", badDevice(u.id, u.n), 70, u.lastHR-15*60_000))
	}
	if hit(f.Implausible) {
		out = append(out, hr(FaultImplausible, ExpectRejected, "implausible_value", u.watch, 300, now))
	}
	if hit(f.Malformed) {
		w := wire{EventID: c.eventID(u), UserID: u.id, DeviceID: u.watch, Metric: "heart_rate", Value: 70, Unit: "bpm", MeasuredAt: ts(now)}
		reason := "unknown_unit"
		if c.rng.IntN(2) == 0 {
			w.Unit, w.MeasuredAt, reason = "/min", "yesterday", "invalid_timestamp"
		}
		it := c.newItem(u, FaultMalformed, ExpectDeadLetter, reason, "heart_rate", w, now)
		it.entry.Day = ""
		out = append(out, it)
	}
	return out
}

// run is one client's loop: a request every interval until end (sent
// late rather than bunched up when the pipeline pushes back), each retried
// until answered; then the manifest lines.
func (c *client) run(ctx, sendCtx context.Context, end time.Time) error {
	o := c.o
	interval := time.Duration(float64(o.Batch*o.Clients) / o.Rate * float64(time.Second))
	next := time.Now().Add(time.Duration(c.idx) * interval / time.Duration(o.Clients))
	// Probe readings: at most 2 per second per probe user.
	probeEvery := max(1, int(math.Ceil(float64(time.Second)/float64(interval)/2)))
	for sendCtx.Err() == nil && time.Now().Before(end) {
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-sendCtx.Done():
				return nil
			}
		}
		next = next.Add(interval)
		if behind := time.Since(next); behind > 2*time.Second {
			next = time.Now()
		}
		now := time.Now().UnixMilli()
		items := make([]*item, 0, o.Batch+o.Batch/20+1)
		if c.batches%probeEvery == 0 {
			it := c.normal(c.probe, now)
			it.probe = true
			items = append(items, it)
		}
		c.batches++
		for range o.Batch {
			u := c.users[c.next]
			c.next = (c.next + 1) % len(c.users)
			items = append(items, c.normal(u, now))
			items = c.faults(u, now, items)
		}
		if err := c.deliver(ctx, items); err != nil {
			return err
		}
		if o.Faults.WrongKey > 0 && c.rng.Float64() < o.Faults.WrongKey {
			if err := c.wrongKey(ctx, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// deliver posts items until ingest gave each a final verdict or ctx ends,
// then writes their manifest lines.
func (c *client) deliver(ctx context.Context, items []*item) error {
	c.st.Items.Add(int64(len(items)))
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		var open []*item
		for _, it := range items {
			if !it.done {
				open = append(open, it)
			}
		}
		if len(open) == 0 || ctx.Err() != nil {
			break
		}
		if attempt > 0 {
			c.st.Retries.Add(1)
			select {
			case <-time.After(backoff + time.Duration(c.rng.Int64N(int64(backoff)))):
			case <-ctx.Done():
				continue
			}
			backoff = min(2*backoff, 2*time.Second)
		}
		status, resp, err := c.post(ctx, c.o.Key, "/v1/readings", "readings", open)
		for _, it := range open {
			it.entry.Attempts++
		}
		if err != nil || (status != http.StatusOK && status != http.StatusServiceUnavailable) || len(resp.Items) != len(open) {
			c.st.Failures.Add(1)
			for _, it := range open {
				it.entry.Status = failure(status, err)
			}
			if status >= 400 && status < 500 && status != http.StatusTooManyRequests {
				return fmt.Errorf("simulate: ingest refused a request: %s", failure(status, err))
			}
			continue
		}
		at := time.Now()
		for i, v := range resp.Items {
			it := open[i]
			it.entry.Status = v.Status
			if v.Reason != "" {
				it.entry.Status = v.Status + ":" + v.Reason
			}
			// A rejected item is final only in a 200: a 503 does not
			// promise that it reached the dead-letter topic.
			if v.Status == ingest.StatusAccepted || (v.Status == ingest.StatusRejected && status == http.StatusOK) {
				it.done = true
				it.entry.Acked, it.entry.AckedAt = true, at.UnixMilli()
				c.acked(it, v.Status == ingest.StatusAccepted, at)
			}
		}
	}
	entries := make([]Entry, len(items))
	for i, it := range items {
		entries[i] = it.entry
		if !it.done {
			c.unacked++
		}
	}
	return c.man.write(entries)
}

// acked updates the generator state once ingest stored an item.
func (c *client) acked(it *item, accepted bool, at time.Time) {
	c.st.Acked.Add(1)
	if !accepted || it.entry.Fault != FaultNone {
		return
	}
	u := it.u
	u.lastRaw, u.lastID = it.raw, it.entry.EventID
	if it.hr && it.measured > u.lastHR {
		u.lastHR = it.measured
	}
	if it.probe && c.o.OnProbe != nil {
		c.o.OnProbe(it.entry.EventID, at)
	}
}

// wrongKey posts a few readings with a key that does not exist: ingest must
// refuse them all. A refused request is not retried.
func (c *client) wrongKey(ctx context.Context, now int64) error {
	u := c.users[c.rng.IntN(len(c.users))]
	var items []*item
	for range 1 + c.rng.IntN(3) {
		w := wire{EventID: c.eventID(u), UserID: u.id, DeviceID: u.watch, Metric: "heart_rate", Value: 70, Unit: "/min", MeasuredAt: ts(now)}
		items = append(items, c.newItem(u, FaultWrongKey, ExpectRefused, "unauthenticated", "heart_rate", w, now))
	}
	c.st.Items.Add(int64(len(items)))
	status, _, err := c.post(ctx, wrongKey(c.o.RunID), "/v1/readings", "readings", items)
	entries := make([]Entry, len(items))
	for i, it := range items {
		it.entry.Attempts, it.entry.Status = 1, failure(status, err)
		it.entry.Acked = status == http.StatusOK
		entries[i] = it.entry
	}
	return c.man.write(entries)
}

func failure(status int, err error) string {
	if err != nil {
		return "error"
	}
	return "http_" + strconv.Itoa(status)
}

// post sends one request of items under field ("readings" or "events").
func (c *client) post(ctx context.Context, key, path, field string, items []*item) (int, ingest.BatchResponse, error) {
	var resp ingest.BatchResponse
	var buf bytes.Buffer
	buf.WriteString(`{"gateway_id":"` + gatewayID(c.o.RunID, c.idx) + `","` + field + `":[`)
	for i, it := range items {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(it.raw)
	}
	buf.WriteString("]}")
	c.st.Requests.Add(1)
	rctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.o.URL+path, &buf)
	if err != nil {
		return 0, resp, fmt.Errorf("simulate: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	r, err := c.hc.Do(req)
	if err != nil {
		return 0, resp, fmt.Errorf("simulate: post %s: %w", path, err)
	}
	defer r.Body.Close()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return r.StatusCode, resp, fmt.Errorf("simulate: read answer: %w", err)
	}
	if r.StatusCode == http.StatusOK || r.StatusCode == http.StatusServiceUnavailable {
		_ = json.Unmarshal(body, &resp) // a 503 without items leaves resp empty: all retried
	}
	return r.StatusCode, resp, nil
}

// pair pairs every user's watch (and the probes'), an hour before now, and
// retries until ingest accepted every pairing.
func pair(ctx context.Context, hc *http.Client, o *Options, clients []*client) error {
	type event struct {
		EventID    string `json:"event_id"`
		UserID     string `json:"user_id"`
		DeviceID   string `json:"device_id"`
		Kind       string `json:"kind"`
		OccurredAt string `json:"occurred_at"`
	}
	at := ts(time.Now().Add(-time.Hour).UnixMilli())
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, cl := range clients {
		var items []*item
		for _, u := range append([]*user{cl.probe}, cl.users...) {
			raw, _ := json.Marshal(event{EventID: u.watch + "-paired", UserID: u.id, DeviceID: u.watch, Kind: "paired", OccurredAt: at})
			items = append(items, &item{raw: raw})
		}
		for len(items) > 0 {
			chunk := items[:min(1000, len(items))]
			items = items[len(chunk):]
			g.Go(func() error {
				for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
					status, resp, err := cl.post(gctx, o.Key, "/v1/device-events", "events", chunk)
					if err == nil && status == http.StatusOK && resp.Accepted == len(chunk) {
						return nil
					}
					mu.Lock()
					o.Log.Warn().Str("status", failure(status, err)).Msg("pairing devices: retrying")
					mu.Unlock()
					select {
					case <-time.After(backoff):
					case <-gctx.Done():
						return fmt.Errorf("simulate: pairing devices: %w", gctx.Err())
					}
				}
			})
		}
	}
	return g.Wait()
}
