// Package demo runs the bundled Fitbit sample through a running
// pipeline, as vitals demo does after starting every role: it posts the
// sample to ingest as a gateway would (pairing each user's tracker first),
// waits until the processor has judged every reading and the query
// service shows them, and reports each user's heart-rate percentiles next
// to the same figures computed here from the sample, with no code shared
// with the query service.
package demo

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
	"github.com/vitalshq/vitals/internal/jsonwire"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/query"
)

// Config says where the pipeline is and how to post.
type Config struct {
	IngestURL, QueryURL string
	// Key is a gateway API key and Token an analyst token of one tenant.
	Key, Token string
	// Batch readings per POST from Clients concurrent clients.
	Batch, Clients int
	// Wait bounds the wait for the readings to be judged and queryable.
	Wait time.Duration
	// Processor's counts tell when every reading has been judged.
	Processor *processor.Processor
	Log       zerolog.Logger
}

// Report is a run's outcome.
type Report struct {
	Readings        int
	Posted, Visible time.Duration
	// Judged is the processor's accepted, repeated and rejected counts.
	Judged [3]int64
	Users  []UserResult
}

// UserResult is one user's percentiles from the query API and whether
// they equal the independent computation.
type UserResult struct {
	User, Day string
	Count     uint64
	API       []float64
	Match     bool
}

// Run posts the sample and waits until every reading is judged and
// queryable, then compares every user's percentiles.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	rows, err := sample.HeartRates()
	if err != nil {
		return nil, err
	}
	d := demo{log: cfg.Log, client: &http.Client{Timeout: 30 * time.Second}, ingest: cfg.IngestURL, query: cfg.QueryURL, key: cfg.Key, token: cfg.Token}
	if err := d.pairDevices(ctx, rows); err != nil {
		return nil, err
	}
	if err := d.postProfiles(ctx, rows); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := d.post(ctx, rows, cfg.Batch, cfg.Clients); err != nil {
		return nil, err
	}
	rep := &Report{Readings: len(rows), Posted: time.Since(start)}
	cfg.Log.Info().Int("readings", len(rows)).Dur("took", rep.Posted).Msg("sample posted; every reading acknowledged by the broker")
	if rep.Judged, err = d.waitJudged(ctx, cfg.Processor, len(rows), cfg.Wait); err != nil {
		return nil, err
	}
	if rep.Users, err = d.verify(ctx, rows, cfg.Wait); err != nil {
		return nil, err
	}
	rep.Visible = time.Since(start)
	return rep, nil
}

// Print prints the report; it fails if any user's percentiles differ
// from the independent computation.
func (r *Report) Print(w io.Writer) error {
	fmt.Fprintf(w, "\nVitals demo: %d real heart-rate readings of %d Fitbit users (Fitabase 2016, CC0)\n", r.Readings, len(r.Users))
	fmt.Fprintf(w, "posted through ingest in %s; all queryable in ClickHouse after %s\n", r.Posted.Round(time.Millisecond), r.Visible.Round(time.Millisecond))
	fmt.Fprintf(w, "processor, this run: %d accepted, %d repeats dropped, %d rejected\n(on a rerun every reading is a repeat: those inside the lateness window are dropped, older ones are rejected too_late; none is counted twice)\n\n", r.Judged[0], r.Judged[1], r.Judged[2])
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "user\tday\treadings\tp50\tp90\tp99\tindependent check\t")
	mismatches := 0
	for _, u := range r.Users {
		check := "match"
		if !u.Match {
			check = "MISMATCH"
			mismatches++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%g\t%g\t%g\t%s\t\n", u.User, u.Day, u.Count, u.API[0], u.API[1], u.API[2], check)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nunit /min (LOINC 8867-4); percentiles are %s\n", query.Method)
	fmt.Fprintln(w, "the users' profiles (birth year, sex, region) are synthetic: the dataset has no demographics")
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

type jsonReading = jsonwire.Reading

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

// pairDevices posts a pairing of each user's tracker: the processor
// accepts readings only from devices paired to their user.
func (d demo) pairDevices(ctx context.Context, rows []sample.HeartRate) error {
	events := Pairings(rows, "fitbit")
	return d.postJSON(ctx, "/v1/device-events", map[string]any{"gateway_id": "demo-gateway", "events": events}, len(events))
}

// Pairings is a device event for each user of rows pairing the tracker of
// the user's first reading, dated before the dataset begins so that every
// reading comes after it; model, unless empty, is the tracker's model.
func Pairings(rows []sample.HeartRate, model string) []any {
	var events []any
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.UserID()] {
			continue
		}
		seen[r.UserID()] = true
		e := map[string]any{"event_id": r.DeviceID() + "-paired", "user_id": r.UserID(), "device_id": r.DeviceID(),
			"kind": "paired", "occurred_at": "2016-01-01T00:00:00Z"}
		if model != "" {
			e["model"] = model
		}
		events = append(events, e)
	}
	return events
}

// postProfiles registers each user with a synthetic profile, so that the
// dashboard and the cohort endpoints have cohorts to show.
func (d demo) postProfiles(ctx context.Context, rows []sample.HeartRate) error {
	var events []map[string]any
	for _, p := range sample.Profiles(rows) {
		events = append(events, map[string]any{"event_id": p.UserID + "-registered", "user_id": p.UserID, "kind": "registered",
			"birth_year": p.BirthYear, "sex": p.Sex, "region": p.Region, "occurred_at": "2016-01-01T00:00:00Z"})
	}
	return d.postJSON(ctx, "/v1/profile-events", map[string]any{"gateway_id": "demo-gateway", "events": events}, len(events))
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

// verify waits until each user's reading count in the query service equals
// the sample's, then compares the percentiles with ones computed here.
func (d demo) verify(ctx context.Context, rows []sample.HeartRate, wait time.Duration) ([]UserResult, error) {
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
	var out []UserResult
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
				res := UserResult{User: name, Day: from.Format("2006-01-02"), Count: got.Count, Match: true}
				for i, p := range got.Percentiles {
					res.API = append(res.API, p.Value)
					if p.Value != want[i] {
						res.Match = false
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
