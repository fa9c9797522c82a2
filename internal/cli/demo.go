package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/query"
)

// cmdDemo runs every role in this process, posts the bundled Fitbit sample
// to ingest as a gateway would, waits until the query service sees every
// reading, and prints each user's heart-rate percentiles next to the same
// figures computed here from the sample.
func cmdDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := cmdline.AllFlags("vitals demo")
	var batch, clients int
	var wait time.Duration
	fs.Int(&batch, "demo-batch", 500, "readings per POST")
	fs.Int(&clients, "demo-clients", 4, "concurrent posting clients")
	fs.Duration(&wait, "demo-wait", 3*time.Minute, "how long to wait for the readings to become queryable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := s.Logger()
	if err != nil {
		return err
	}
	rows, err := sample.HeartRates()
	if err != nil {
		return err
	}

	roles, err := startAll(ctx, s, log)
	if err != nil {
		return err
	}
	rctx, stopRoles := context.WithCancel(ctx)
	defer stopRoles()
	done := make(chan error, 1)
	go func() { done <- runRoles(rctx, log, roles...) }()
	shutdown := func() error {
		stopRoles()
		return <-done
	}

	key, revoke, err := s.TempKey(ctx, "vitals demo gateway")
	if err != nil {
		return fmt.Errorf("%w (shutdown: %v)", err, shutdown())
	}
	defer revoke()
	token, revokeToken, err := s.TempCredential(ctx, credential.AnalystTokens, "vitals demo analyst")
	if err != nil {
		return fmt.Errorf("%w (shutdown: %v)", err, shutdown())
	}
	defer revokeToken()
	d := demo{
		log:    log,
		client: &http.Client{Timeout: 30 * time.Second},
		ingest: "http://" + s.IngestAddr,
		query:  "http://" + s.QueryAddr,
		key:    key,
		token:  token,
	}
	for _, base := range []string{d.ingest, d.query} {
		if err := cmdline.WaitHealthy(ctx, base); err != nil {
			return fmt.Errorf("%w (shutdown: %v)", err, shutdown())
		}
	}
	if err := d.pairDevices(ctx, rows); err != nil {
		return fmt.Errorf("%w (shutdown: %v)", err, shutdown())
	}
	start := time.Now()
	if err := d.post(ctx, rows, batch, clients); err != nil {
		return fmt.Errorf("%w (shutdown: %v)", err, shutdown())
	}
	posted := time.Since(start)
	log.Info().Int("readings", len(rows)).Dur("took", posted).Msg("sample posted; every reading acknowledged by the broker")

	var proc *processor.Processor
	for _, r := range roles {
		if p, ok := r.(*processor.Processor); ok {
			proc = p
		}
	}
	judged, err := d.waitJudged(ctx, proc, len(rows), wait)
	if err != nil {
		return fmt.Errorf("%w (shutdown: %v)", err, shutdown())
	}
	results, err := d.verify(ctx, rows, wait)
	visible := time.Since(start)
	if serr := shutdown(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nVitals demo: %d real heart-rate readings of %d Fitbit users (Fitabase 2016, CC0)\n", len(rows), len(results))
	fmt.Fprintf(stdout, "posted through ingest in %s; all queryable in ClickHouse after %s\n", posted.Round(time.Millisecond), visible.Round(time.Millisecond))
	fmt.Fprintf(stdout, "processor, this run: %d accepted, %d repeats dropped, %d rejected\n(on a rerun every reading is a repeat: those inside the lateness window are dropped, older ones are rejected too_late; none is counted twice)\n\n", judged[0], judged[1], judged[2])
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "user\tday\treadings\tp50\tp90\tp99\tindependent check\t")
	mismatches := 0
	for _, r := range results {
		check := "match"
		if !r.match {
			check = "MISMATCH"
			mismatches++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%g\t%g\t%g\t%s\t\n", r.user, r.day, r.count, r.api[0], r.api[1], r.api[2], check)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nunit /min (LOINC 8867-4); percentiles are %s\n", query.Method)
	if mismatches > 0 {
		return fmt.Errorf("%d users' percentiles differ from the independent computation", mismatches)
	}
	return nil
}

// waitJudged waits until the processor has judged n readings and returns
// how many it accepted, dropped as repeats and rejected.
func (d demo) waitJudged(ctx context.Context, p *processor.Processor, n int, wait time.Duration) ([3]int64, error) {
	deadline := time.Now().Add(wait)
	for {
		acc, rej, dup, _ := p.Stats().Snapshot()
		if acc+rej+dup >= int64(n) {
			return [3]int64{acc, dup, rej}, nil
		}
		if time.Now().After(deadline) {
			return [3]int64{}, fmt.Errorf("the processor judged %d of %d readings in %s", acc+rej+dup, n, wait)
		}
		select {
		case <-ctx.Done():
			return [3]int64{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type demo struct {
	log           zerolog.Logger
	client        *http.Client
	ingest, query string
	key           string // the demo gateway's API key
	token         string // the demo analyst's query token
}

type jsonReading struct {
	EventID    string  `json:"event_id"`
	UserID     string  `json:"user_id"`
	DeviceID   string  `json:"device_id"`
	Metric     string  `json:"metric"`
	Value      float64 `json:"value"`
	Unit       string  `json:"unit"`
	MeasuredAt string  `json:"measured_at"`
}

// post sends the rows in batches from concurrent clients, retrying a batch
// the server answered 503, and fails on anything not accepted. Like real
// gateways, each client posts its users' readings in order: a user's
// batches never race each other, so event-time order survives the trip.
func (d demo) post(ctx context.Context, rows []sample.HeartRate, batch, clients int) error {
	byUser := map[string][]sample.HeartRate{}
	var users []string
	for _, r := range rows {
		if _, ok := byUser[r.UserID()]; !ok {
			users = append(users, r.UserID())
		}
		byUser[r.UserID()] = append(byUser[r.UserID()], r)
	}
	queue := make(chan string, len(users))
	for _, u := range users {
		queue <- u
	}
	close(queue)
	var mu sync.Mutex
	sent := 0
	g, gctx := errgroup.WithContext(ctx)
	for range clients {
		g.Go(func() error {
			for u := range queue {
				rs := byUser[u]
				for i := 0; i < len(rs); i += batch {
					b := rs[i:min(i+batch, len(rs))]
					if err := d.postBatch(gctx, b); err != nil {
						return err
					}
					mu.Lock()
					sent += len(b)
					if sent/10000 != (sent-len(b))/10000 {
						d.log.Info().Int("posted", sent).Int("total", len(rows)).Msg("posting sample")
					}
					mu.Unlock()
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// pairDevices posts a pairing of each user's tracker, dated before the
// dataset begins: the processor accepts readings only from devices paired
// to their user.
func (d demo) pairDevices(ctx context.Context, rows []sample.HeartRate) error {
	var events []map[string]any
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.UserID()] {
			continue
		}
		seen[r.UserID()] = true
		events = append(events, map[string]any{"event_id": r.DeviceID() + "-paired", "user_id": r.UserID(), "device_id": r.DeviceID(),
			"kind": "paired", "model": "fitbit", "occurred_at": "2016-01-01T00:00:00Z"})
	}
	return d.postJSON(ctx, "/v1/device-events", map[string]any{"gateway_id": "demo-gateway", "events": events}, len(events))
}

// postJSON posts one batch body, retrying while ingest answers 503, and
// checks that want items were accepted.
func (d demo) postJSON(ctx context.Context, path string, body any, want int) error {
	buf, err := json.Marshal(body)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.ingest+path, bytes.NewReader(buf))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+d.key)
		resp, err := d.client.Do(req)
		if err != nil {
			return fmt.Errorf("post %s: %w", path, err)
		}
		var out ingest.BatchResponse
		derr := json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable && attempt < 5:
			d.log.Warn().Int("attempt", attempt).Str("path", path).Msg("ingest answered 503; retrying the batch")
			time.Sleep(time.Duration(attempt) * time.Second)
			continue
		case resp.StatusCode != http.StatusOK || derr != nil || out.Accepted != want:
			return fmt.Errorf("post %s: status %d, %d of %d accepted", path, resp.StatusCode, out.Accepted, want)
		}
		return nil
	}
}

func (d demo) postBatch(ctx context.Context, rows []sample.HeartRate) error {
	body := struct {
		GatewayID string        `json:"gateway_id"`
		Readings  []jsonReading `json:"readings"`
	}{GatewayID: "demo-gateway"}
	for _, r := range rows {
		body.Readings = append(body.Readings, jsonReading{
			EventID: r.EventID(), UserID: r.UserID(), DeviceID: r.DeviceID(),
			Metric: "heart_rate", Value: r.Value, Unit: "/min",
			MeasuredAt: r.Time.Format("2006-01-02T15:04:05.000Z07:00"),
		})
	}
	return d.postJSON(ctx, "/v1/readings", body, len(rows))
}

type userResult struct {
	user, day string
	count     uint64
	api       []float64
	match     bool
}

// verify waits until each user's reading count in the query service equals
// the sample's, then compares the percentiles with ones computed here.
func (d demo) verify(ctx context.Context, rows []sample.HeartRate, wait time.Duration) ([]userResult, error) {
	type userData struct {
		values   []float64
		from, to time.Time
	}
	users := map[string]*userData{}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.EventID()] {
			continue // the processor counts a repeated event once; so does the check
		}
		seen[r.EventID()] = true
		u := users[r.UserID()]
		if u == nil {
			u = &userData{from: r.Time, to: r.Time}
			users[r.UserID()] = u
		}
		u.values = append(u.values, r.Value)
		if r.Time.Before(u.from) {
			u.from = r.Time
		}
		if r.Time.After(u.to) {
			u.to = r.Time
		}
	}
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	sort.Strings(names)

	ps := []float64{50, 90, 99}
	deadline := time.Now().Add(wait)
	var out []userResult
	for _, name := range names {
		u := users[name]
		from := time.Date(u.from.Year(), u.from.Month(), u.from.Day(), 0, 0, 0, 0, time.UTC)
		to := from.AddDate(0, 0, 1)
		for {
			got, err := d.percentiles(ctx, name, from, to, ps)
			if err != nil {
				return nil, err
			}
			if got.Count == uint64(len(u.values)) {
				want := nearestRank(u.values, ps)
				res := userResult{user: name, day: from.Format("2006-01-02"), count: got.Count, match: true}
				for i, p := range got.Percentiles {
					res.api = append(res.api, p.Value)
					if p.Value != want[i] {
						res.match = false
					}
				}
				out = append(out, res)
				break
			}
			if got.Count > uint64(len(u.values)) {
				return nil, fmt.Errorf("user %s: query counts %d readings, the sample has %d: a reading was counted twice", name, got.Count, len(u.values))
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("user %s: only %d of %d readings queryable after %s", name, got.Count, len(u.values), wait)
			}
			d.log.Info().Str("user", name).Uint64("visible", got.Count).Int("expected", len(u.values)).Msg("waiting for the read side to catch up")
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return out, nil
}

func (d demo) percentiles(ctx context.Context, user string, from, to time.Time, ps []float64) (query.PercentilesResponse, error) {
	var out query.PercentilesResponse
	p := make([]string, len(ps))
	for i, v := range ps {
		p[i] = fmt.Sprint(v)
	}
	q := url.Values{"metric": {"heart_rate"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "p": {strings.Join(p, ",")}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.query+"/v1/users/"+url.PathEscape(user)+"/percentiles?"+q.Encode(), nil)
	if err != nil {
		return out, err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.client.Do(req)
	if err != nil {
		return out, fmt.Errorf("query: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("query: status %d", resp.StatusCode)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// nearestRank is the documented percentile definition computed in Go: the
// value at 0-based index floor(p/100*n) of the sorted values, the last for
// p=100. It shares no code with the query service.
func nearestRank(values, ps []float64) []float64 {
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	out := make([]float64, len(ps))
	for i, p := range ps {
		idx := int(p / 100 * float64(len(sorted)))
		out[i] = sorted[min(idx, len(sorted)-1)]
	}
	return out
}
