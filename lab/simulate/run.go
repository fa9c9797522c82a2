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
	"github.com/vitalshq/vitals/internal/jsonwire"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/schemas"
)

// Faults are the probabilities of injecting each fault after a normal
// reading (WrongKey: per request, an extra request with a bad key).
type Faults struct {
	Duplicate, OutOfOrder, Late, Unpaired, Implausible, Malformed, WrongKey float64
	// Revisions of an acknowledged reading (see the Fault constants).
	Correction, Withdrawal, Stale, Conflicting float64
}

// DefaultFaults inject about one fault per 100 readings.
func DefaultFaults() Faults {
	return Faults{Duplicate: 0.003, OutOfOrder: 0.002, Late: 0.001, Unpaired: 0.001, Implausible: 0.001, Malformed: 0.001, WrongKey: 0.01,
		Correction: 0.002, Withdrawal: 0.001, Stale: 0.2, Conflicting: 0.0005}
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
	// PerUser is how many consecutive readings of a request are one
	// user's, measured evenly over the time since that user's last ones
	// (as a phone app posts what its watch recorded); 0 or 1 gives each
	// reading of a request the next user, the hardest case for ingest's,
	// the processor's and the projector's per-user state and data keys.
	PerUser int
	// Format is the body of readings requests: loadgen.FormatJSON (the
	// default) or loadgen.FormatAvro, a ReadingBatch as gateways may send
	// it. The outcomes are the same in both, except for one malformed
	// item each format carries its own way (see FaultMalformed).
	Format string
	RunID  string
	// EventPrefix starts every reading's event id: a second run of the
	// same RunID (the same users) with another prefix sends new readings,
	// not repeats of the first run's.
	EventPrefix string
	Seed        uint64
	Faults      Faults
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
	case o.Format != "" && o.Format != loadgen.FormatJSON && o.Format != loadgen.FormatAvro:
		return fmt.Errorf("simulate: format %q: want %s or %s", o.Format, loadgen.FormatJSON, loadgen.FormatAvro)
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
	if o.Format == "" {
		o.Format = loadgen.FormatJSON
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
	enc := loadgen.NewBodyEncoder()

	clients := make([]*client, o.Clients)
	for c := range clients {
		cl := &client{o: &o, idx: c, hc: hc, man: man, st: st, rng: rand.New(rand.NewPCG(o.Seed, uint64(c))),
			enc: enc, gateway: gatewayID(o.RunID, c), contentType: loadgen.ContentType(o.Format),
			spacing: int64(max(1, 1000*float64(o.Users)/o.Rate))}
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
	// last is an acknowledged normal reading, for duplicates and
	// revisions (hasLast); lastRevised says a revision or re-send of it
	// was sent already, so it gets no other.
	last        reading
	hasLast     bool
	lastRevised bool
	// corrected is a correction ingest acknowledged, which a stale
	// revision can follow (hasCorrected).
	corrected    reading
	hasCorrected bool
}

// reading is one reading as the simulator sends it, in either format.
type reading struct {
	id, user, device, metric, unit string
	value                          float64
	measured                       int64
	end                            int64 // period_end, when hasEnd
	hasEnd                         bool
	revision                       int64
	withdrawn                      bool
}

// item is one reading in flight with its manifest entry.
type item struct {
	r reading
	// badJSON, when set, is the item's JSON, sent instead of r: a
	// malformed item that JSON can carry and r cannot (a measured_at that
	// is not a time).
	badJSON []byte
	entry   Entry
	done    bool
	// hr marks a normal heart-rate reading of the watch at r.measured.
	hr    bool
	u     *user
	probe bool
}

// gatewayReading is the item as a ReadingBatch reading; it points into
// the item.
func (it *item) gatewayReading() schemas.GatewayReading {
	g := schemas.GatewayReading{EventID: it.r.id, UserID: it.r.user, DeviceID: it.r.device, Metric: it.r.metric, Value: &it.r.value,
		Unit: it.r.unit, MeasuredAt: it.r.measured}
	if it.r.hasEnd {
		g.PeriodEnd = &it.r.end
	}
	if it.r.revision != 0 {
		g.Revision = &it.r.revision
	}
	if it.r.withdrawn {
		g.Withdrawn = &it.r.withdrawn
	}
	return g
}

type client struct {
	o     *Options
	idx   int
	hc    *http.Client
	man   *manifestWriter
	st    *Stats
	rng   *rand.Rand
	users []*user
	probe *user
	next  int // round-robin position in users
	// spacing is the milliseconds between a user's readings (Users/Rate),
	// by which a request's consecutive readings of one user lie apart.
	spacing int64
	batches int
	unacked int64

	enc                  *loadgen.BodyEncoder
	gateway, contentType string
	// Reused from request to request (a client sends one at a time):
	// the batch's items, their pointers, the ReadingBatch readings, a
	// scratch buffer for ids, the answer, its verdicts and the manifest
	// entries.
	slab     []item
	answer   bytes.Buffer
	ptrs     []*item
	readings []schemas.GatewayReading
	idBuf    []byte
	verdicts []verdict
	entries  []Entry
	// bodyHint sizes the next request body: the largest one so far.
	bodyHint int
	days     dayCache
}

func (c *client) eventID(u *user) string {
	u.n++
	c.idBuf = strconv.AppendInt(append(append(append(c.idBuf[:0], c.o.EventPrefix...), u.id...), '-'), int64(u.n), 10)
	return string(c.idBuf)
}

// add appends an item of u to the batch and returns it.
func (c *client) add(u *user, fault, expect, reason string, r reading) *item {
	c.slab = append(c.slab, item{r: r, u: u,
		entry: Entry{EventID: r.id, UserID: u.id, Metric: r.metric, Day: c.days.of(r.measured), Fault: fault, Expect: expect, Reason: reason}})
	return &c.slab[len(c.slab)-1]
}

// normal makes u's next regular reading: mostly heart rate from the
// sample, every 10th SpO2, every 30th a one-minute step count.
func (c *client) normal(u *user, now int64) *item {
	id := c.eventID(u)
	switch {
	case u.n%30 == 0:
		return c.add(u, FaultNone, ExpectAccepted, "", reading{id: id, user: u.id, device: u.watch, metric: "steps", value: float64(c.rng.IntN(120)),
			unit: "{steps}", measured: now - 60_000, end: now, hasEnd: true})
	case u.n%10 == 0:
		return c.add(u, FaultNone, ExpectAccepted, "", reading{id: id, user: u.id, device: u.watch, metric: "spo2", value: float64(94 + c.rng.IntN(6)),
			unit: "%", measured: now})
	}
	u.pos = (u.pos + 1) % len(u.hr)
	it := c.add(u, FaultNone, ExpectAccepted, "", reading{id: id, user: u.id, device: u.watch, metric: "heart_rate", value: u.hr[u.pos], unit: "/min", measured: now})
	it.hr = true
	return it
}

// faults appends the faults drawn for user u after a normal reading.
func (c *client) faults(u *user, now int64) {
	f := c.o.Faults
	hit := func(p float64) bool { return p > 0 && c.rng.Float64() < p }
	hr := func(fault, expect, reason, device string, value float64, measured int64) {
		c.add(u, fault, expect, reason, reading{id: c.eventID(u), user: u.id, device: device, metric: "heart_rate", value: value, unit: "/min", measured: measured})
	}
	c.revisions(u)
	if hit(f.Duplicate) && u.hasLast && !u.lastRevised {
		c.slab = append(c.slab, item{r: u.last, u: u, entry: Entry{EventID: u.last.id, UserID: u.id, Fault: FaultDuplicate, Expect: ExpectRepeat}})
	}
	if hit(f.OutOfOrder) {
		hr(FaultOutOfOrder, ExpectAccepted, "", u.watch, 70, now-3*60_000)
	}
	// Late and unpaired need an acknowledged reading to be late against.
	if u.lastHR > 0 && hit(f.Late) {
		hr(FaultLate, ExpectRejected, "too_late", u.watch, 70, u.lastHR-15*60_000)
	}
	if u.lastHR > 0 && hit(f.Unpaired) {
		hr(FaultUnpaired, ExpectRejected, "device_not_paired", badDevice(u.id, u.n), 70, u.lastHR-15*60_000)
	}
	if hit(f.Implausible) {
		hr(FaultImplausible, ExpectRejected, "implausible_value", u.watch, 300, now)
	}
	if hit(f.Malformed) {
		c.malformed(u, now, c.rng.IntN(2) == 0)
	}
}

// revisions appends the revision faults drawn for user u: each revises
// the user's last acknowledged reading (once), or follows an acknowledged
// correction with a stale revision.
func (c *client) revisions(u *user) {
	f := c.o.Faults
	hit := func(p float64) bool { return p > 0 && c.rng.Float64() < p }
	if u.hasCorrected && hit(f.Stale) {
		r := u.corrected
		r.revision, r.value = 1, other(r)
		it := c.add(u, FaultStale, ExpectRejected, "stale_revision", r)
		it.entry.Revision = 1
		u.hasCorrected = false
	}
	if !u.hasLast || u.lastRevised {
		return
	}
	switch {
	case hit(f.Correction):
		r := u.last
		r.revision, r.value = 2, other(r)
		it := c.add(u, FaultCorrection, ExpectRevised, "", r)
		it.entry.Revision, it.entry.Value = 2, r.value
	case hit(f.Withdrawal):
		r := u.last
		r.revision, r.withdrawn = 1, true
		it := c.add(u, FaultWithdrawal, ExpectWithdrawn, "", r)
		it.entry.Revision = 1
	case hit(f.Conflicting):
		r := u.last
		r.value = other(r)
		c.add(u, FaultConflicting, ExpectRejected, "conflicting_repeat", r)
	default:
		return
	}
	u.lastRevised = true
}

// other is a value other than r's, plausible for its metric.
func other(r reading) float64 {
	if r.metric == "spo2" && r.value >= 100 {
		return r.value - 1
	}
	return r.value + 1
}

// malformed appends an item ingest refuses. Half are an unknown unit, in
// either format; the other half are what each format can carry: in JSON a
// measured_at that is not a time (invalid_timestamp), which a
// schema-valid Avro body cannot hold (measured_at is a long there), and in
// Avro a NaN value (non_finite_value), which JSON cannot hold.
func (c *client) malformed(u *user, now int64, other bool) {
	r := reading{id: c.eventID(u), user: u.id, device: u.watch, metric: "heart_rate", value: 70, unit: "bpm", measured: now}
	reason := "unknown_unit"
	var badJSON []byte
	switch {
	case other && c.o.Format == loadgen.FormatAvro:
		r.unit, r.value, reason = "/min", math.NaN(), "non_finite_value"
	case other:
		r.unit, reason = "/min", "invalid_timestamp"
		badJSON, _ = json.Marshal(wire{EventID: r.id, UserID: r.user, DeviceID: r.device, Metric: r.metric, Value: r.value, Unit: r.unit, MeasuredAt: "yesterday"})
	}
	it := c.add(u, FaultMalformed, ExpectDeadLetter, reason, r)
	it.badJSON = badJSON
	it.entry.Day = ""
}

// wire is a JSON reading whose measured_at is any string, for the one
// malformed item a reading cannot describe.
type wire = jsonwire.Reading

// dayCache remembers the last UTC day formatted: a batch's readings are
// measured within a minute of each other.
type dayCache struct {
	n   int64
	s   string
	set bool
}

func (d *dayCache) of(ms int64) string {
	n := ms / 86_400_000
	if ms < 0 && ms%86_400_000 != 0 {
		n--
	}
	if !d.set || n != d.n {
		d.n, d.s, d.set = n, day(ms), true
	}
	return d.s
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
		c.slab = c.slab[:0]
		if c.batches%probeEvery == 0 {
			c.normal(c.probe, now).probe = true
		}
		c.batches++
		c.fill(now)
		// The slab is complete: its items no longer move.
		c.ptrs = c.ptrs[:0]
		for i := range c.slab {
			c.ptrs = append(c.ptrs, &c.slab[i])
		}
		if err := c.deliver(ctx, c.ptrs); err != nil {
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

// fill appends a request's normal readings and their faults to the slab:
// o.Batch readings, o.PerUser consecutive ones of each user in turn.
func (c *client) fill(now int64) {
	per := max(1, c.o.PerUser)
	for k := 0; k < c.o.Batch; {
		u := c.users[c.next]
		c.next = (c.next + 1) % len(c.users)
		for j := 0; j < per && k < c.o.Batch; j, k = j+1, k+1 {
			at := now - int64(per-1-j)*c.spacing
			c.normal(u, at)
			c.faults(u, at)
		}
	}
}

// deliver posts items until ingest gave each a final verdict or ctx ends,
// then writes their manifest lines.
func (c *client) deliver(ctx context.Context, items []*item) error {
	c.st.Items.Add(int64(len(items)))
	backoff := 100 * time.Millisecond
	var open []*item
	for attempt := 0; ; attempt++ {
		open = open[:0]
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
		body, err := c.body(open)
		if err != nil {
			return err
		}
		status, verdicts, err := c.post(ctx, c.o.Key, "/v1/readings", c.contentType, body)
		for _, it := range open {
			it.entry.Attempts++
		}
		if err != nil || (status != http.StatusOK && status != http.StatusServiceUnavailable) || len(verdicts) != len(open) {
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
		for i, v := range verdicts {
			it := open[i]
			it.entry.Status = v.status
			if v.reason != "" {
				it.entry.Status = v.status + ":" + v.reason
			}
			// A rejected item is final only in a 200: a 503 does not
			// promise that it reached the dead-letter topic.
			if v.status == ingest.StatusAccepted || (v.status == ingest.StatusRejected && status == http.StatusOK) {
				it.done = true
				it.entry.Acked, it.entry.AckedAt = true, at.UnixMilli()
				c.acked(it, v.status == ingest.StatusAccepted, at)
			}
		}
	}
	c.entries = c.entries[:0]
	for _, it := range items {
		c.entries = append(c.entries, it.entry)
		if !it.done {
			c.unacked++
		}
	}
	return c.man.write(c.entries)
}

// body is a readings request of items in the client's format.
func (c *client) body(items []*item) ([]byte, error) {
	// A new buffer per request: the transport may still be writing the
	// previous body when an early answer (a 401) has already come back.
	dst := make([]byte, 0, c.bodyHint)
	var err error
	if c.o.Format == loadgen.FormatAvro {
		c.readings = c.readings[:0]
		for _, it := range items {
			c.readings = append(c.readings, it.gatewayReading())
		}
		dst, err = c.enc.Append(dst, loadgen.FormatAvro, c.gateway, c.readings)
		clear(c.readings) // keep no pointers into items past the request
	} else {
		dst = append(append(append(dst, `{"gateway_id":"`...), c.gateway...), `","readings":[`...)
		for i, it := range items {
			if i > 0 {
				dst = append(dst, ',')
			}
			if it.badJSON != nil {
				dst = append(dst, it.badJSON...)
				continue
			}
			g := it.gatewayReading()
			if dst, err = loadgen.AppendJSONReading(dst, &g); err != nil {
				break
			}
		}
		dst = append(dst, "]}"...)
	}
	if err != nil {
		return nil, fmt.Errorf("simulate: encode request: %w", err)
	}
	c.bodyHint = max(c.bodyHint, len(dst))
	return dst, nil
}

// acked updates the generator state once ingest stored an item.
func (c *client) acked(it *item, accepted bool, at time.Time) {
	c.st.Acked.Add(1)
	if accepted && it.entry.Fault == FaultCorrection {
		it.u.corrected, it.u.hasCorrected = it.r, true
	}
	if !accepted || it.entry.Fault != FaultNone {
		return
	}
	u := it.u
	u.last, u.hasLast, u.lastRevised = it.r, true, false
	if it.hr && it.r.measured > u.lastHR {
		u.lastHR = it.r.measured
	}
	if it.probe && c.o.OnProbe != nil {
		c.o.OnProbe(it.entry.EventID, at)
	}
}

// wrongKey posts a few readings with a key that does not exist: ingest must
// refuse them all. A refused request is not retried.
func (c *client) wrongKey(ctx context.Context, now int64) error {
	u := c.users[c.rng.IntN(len(c.users))]
	c.slab = c.slab[:0]
	for range 1 + c.rng.IntN(3) {
		c.add(u, FaultWrongKey, ExpectRefused, "unauthenticated",
			reading{id: c.eventID(u), user: u.id, device: u.watch, metric: "heart_rate", value: 70, unit: "/min", measured: now})
	}
	c.ptrs = c.ptrs[:0]
	for i := range c.slab {
		c.ptrs = append(c.ptrs, &c.slab[i])
	}
	c.st.Items.Add(int64(len(c.ptrs)))
	body, err := c.body(c.ptrs)
	if err != nil {
		return err
	}
	status, _, err := c.post(ctx, wrongKey(c.o.RunID), "/v1/readings", c.contentType, body)
	c.entries = c.entries[:0]
	for _, it := range c.ptrs {
		it.entry.Attempts, it.entry.Status = 1, failure(status, err)
		it.entry.Acked = status == http.StatusOK
		c.entries = append(c.entries, it.entry)
	}
	return c.man.write(c.entries)
}

func failure(status int, err error) string {
	if err != nil {
		return "error"
	}
	return "http_" + strconv.Itoa(status)
}

// post sends one request body and returns the status and, for a 200 or
// a 503 with items, the verdicts (which point into the client's scratch
// space, valid until the next post).
func (c *client) post(ctx context.Context, key, path, contentType string, body []byte) (int, []verdict, error) {
	c.st.Requests.Add(1)
	rctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.o.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("simulate: request: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+key)
	r, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("simulate: post %s: %w", path, err)
	}
	defer r.Body.Close()
	// The verdicts keep no bytes of the answer, so its buffer is reused.
	c.answer.Reset()
	if _, err := c.answer.ReadFrom(r.Body); err != nil {
		return r.StatusCode, nil, fmt.Errorf("simulate: read answer: %w", err)
	}
	if r.StatusCode == http.StatusOK || r.StatusCode == http.StatusServiceUnavailable {
		c.verdicts = parseVerdicts(c.answer.Bytes(), c.verdicts[:0]) // a 503 without items leaves none: all retried
	} else {
		c.verdicts = c.verdicts[:0]
	}
	return r.StatusCode, c.verdicts, nil
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
		var events []event
		for _, u := range append([]*user{cl.probe}, cl.users...) {
			events = append(events, event{EventID: u.watch + "-paired", UserID: u.id, DeviceID: u.watch, Kind: "paired", OccurredAt: at})
		}
		for len(events) > 0 {
			chunk := events[:min(1000, len(events))]
			events = events[len(chunk):]
			g.Go(func() error {
				body, err := json.Marshal(struct {
					GatewayID string  `json:"gateway_id"`
					Events    []event `json:"events"`
				}{cl.gateway, chunk})
				if err != nil {
					return fmt.Errorf("simulate: pairing devices: %w", err)
				}
				for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
					status, accepted, err := postEvents(gctx, cl.hc, o, body)
					if err == nil && status == http.StatusOK && accepted == len(chunk) {
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

func ts(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

// postEvents posts a device-events body and returns the status and the
// number of events ingest accepted.
func postEvents(ctx context.Context, hc *http.Client, o *Options, body []byte) (int, int, error) {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, o.URL+"/v1/device-events", bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("simulate: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+o.Key)
	r, err := hc.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("simulate: post device events: %w", err)
	}
	defer r.Body.Close()
	var resp ingest.BatchResponse
	if err := json.NewDecoder(r.Body).Decode(&resp); err != nil && r.StatusCode == http.StatusOK {
		return r.StatusCode, 0, fmt.Errorf("simulate: read answer: %w", err)
	}
	return r.StatusCode, resp.Accepted, nil
}
