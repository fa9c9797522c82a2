// Package integration drives the whole pipeline over the real local stack
// started by deploy/stack.sh (Kafka, PostgreSQL, ClickHouse). Nothing here
// is mocked. Each test gets its own topics, consumer groups, ClickHouse
// database and tenant, so tests and earlier runs do not see each other.
//
// The tests need the stack: `make up` starts it. They fail, rather than
// skip, when it is unreachable, unless -short is given.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/demo"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/projector"
	"github.com/vitalshq/vitals/query"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// stack is one test's slice of the shared local stack.
type stack struct {
	t      *testing.T
	id     string
	log    zerolog.Logger
	kafka  eventlog.Config
	pgURL  string
	wh     warehouse.Config
	tenant string
	key    string // an API key of tenant, made by startIngest
	// queryToken is an analyst token of tenant, made by startQuery.
	queryToken string
	// pool is the test's PostgreSQL pool (pgPool), made on first use.
	poolOnce sync.Once
	pool     *pgxpool.Pool
}

func newStack(t *testing.T) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack (make up)")
	}
	id := fmt.Sprintf("it%d", time.Now().UnixNano()%1_000_000_000)
	s := &stack{t: t, id: id, pgURL: env("VITALS_PG_URL", processor.DefaultConfig().PostgresURL), tenant: "tenant-" + id}
	s.kafka = eventlog.DefaultConfig()
	s.kafka.Brokers = eventlog.ParseBrokers(env("VITALS_KAFKA_BROKERS", strings.Join(s.kafka.Brokers, ",")))
	s.kafka.Topics = eventlog.TopicsWithPrefix(id)
	s.kafka.Partitions = 3
	s.wh = warehouse.DefaultConfig()
	s.wh.Addr = env("VITALS_CLICKHOUSE_ADDR", s.wh.Addr)
	// Against the cluster stack (eval "$(deploy/stack.sh env --cluster)")
	// the tests run on sharded, replicated tables and replicated topics.
	s.wh.Cluster = env("VITALS_CLICKHOUSE_CLUSTER", "")
	if r, err := strconv.Atoi(env("VITALS_KAFKA_REPLICATION", "1")); err == nil {
		s.kafka.ReplicationFactor = r
	}
	s.wh.Database = "vitals_" + id
	// Logs go to the test log, so a failure shows what the roles did.
	s.log = zerolog.New(zerolog.ConsoleWriter{Out: testWriter{t}, NoColor: true}).Level(zerolog.InfoLevel).With().Timestamp().Logger()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.checkReachable(ctx)
	t.Cleanup(s.cleanup)
	return s
}

// newStackFor is newStack with the context a test runs in: it ends after
// timeout or when the test ends, whichever comes first.
func newStackFor(t *testing.T, timeout time.Duration) (*stack, context.Context) {
	t.Helper()
	s := newStack(t)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return s, ctx
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// pgPool is a pool of the stack's PostgreSQL for the test, closed when
// the test ends.
func (s *stack) pgPool(ctx context.Context) *pgxpool.Pool {
	s.t.Helper()
	s.poolOnce.Do(func() {
		pool, err := pgxpool.New(ctx, s.pgURL)
		if err != nil {
			s.t.Fatal(err)
		}
		s.pool = pool
		s.t.Cleanup(pool.Close)
	})
	return s.pool
}

// openWarehouse connects to ClickHouse for t (the stack's test or a
// subtest of it); the connection closes when t ends.
func (s *stack) openWarehouse(t testing.TB, ctx context.Context) driver.Conn {
	t.Helper()
	ch, err := warehouse.Open(ctx, s.wh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

func (s *stack) checkReachable(ctx context.Context) {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
	if err == nil {
		err = cl.Ping(ctx)
		cl.Close()
	}
	if err != nil {
		s.t.Fatalf("Kafka at %v is unreachable (start the stack with `make up`): %v", s.kafka.Brokers, err)
	}
	conn, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		s.t.Fatalf("PostgreSQL is unreachable (start the stack with `make up`): %v", err)
	}
	conn.Close(ctx)
	ch, err := warehouse.Open(ctx, s.wh)
	if err != nil {
		s.t.Fatalf("ClickHouse is unreachable (start the stack with `make up`): %v", err)
	}
	ch.Close()
}

// cleanup drops what the test created, so repeated runs keep the stack small.
func (s *stack) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...)); err == nil {
		adm := kadm.NewClient(cl)
		var names []string
		for _, sp := range s.kafka.Specs() {
			names = append(names, sp.Name)
		}
		if _, err := adm.DeleteTopics(ctx, names...); err != nil {
			s.t.Logf("cleanup: delete topics: %v", err)
		}
		cl.Close()
	}
	if ch, err := warehouse.Open(ctx, s.wh); err == nil {
		if err := warehouse.ExecEverywhere(ctx, ch, "DROP DATABASE IF EXISTS "+s.wh.Database); err != nil {
			s.t.Logf("cleanup: drop database: %v", err)
		}
		ch.Close()
	}
	if conn, err := pgx.Connect(ctx, s.pgURL); err == nil {
		for _, q := range []string{`DELETE FROM processor_aggregates WHERE group_id LIKE $1`, `DELETE FROM processor_offsets WHERE group_id LIKE $1`} {
			if _, err := conn.Exec(ctx, q, s.id+"%"); err != nil {
				s.t.Logf("cleanup: %v", err)
			}
		}
		conn.Close(ctx)
	}
}

// running is a role started by the test; stop ends it and waits.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

func (s *stack) run(name string, runFn func(ctx context.Context) error, closeFn func()) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := runFn(ctx)
		closeFn()
		r.done <- err
	}()
	s.t.Cleanup(func() {
		if err := r.stop(); err != nil {
			s.t.Errorf("%s stopped with: %v", name, err)
		}
	})
	return r
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startIngest starts ingest and returns its base URL.
func (s *stack) startIngest(ctx context.Context) (string, *running) {
	return s.startIngestWith(ctx, s.ingestConfig())
}

// ingestConfig is ingest on the test's slice of the stack.
func (s *stack) ingestConfig() ingest.Config {
	cfg := ingest.DefaultConfig()
	cfg.Kafka, cfg.PostgresURL = s.kafka, s.pgURL
	return cfg
}

// startIngestWith starts ingest with cfg (normally a changed
// ingestConfig) and returns its base URL; s.key is valid for it.
func (s *stack) startIngestWith(ctx context.Context, cfg ingest.Config) (string, *running) {
	s.t.Helper()
	srv, err := ingest.New(ctx, cfg, s.log)
	if err != nil {
		s.t.Fatal(err)
	}
	s.key = s.newKey(ctx, s.tenant)
	return s.serve("ingest", cfg.TLSCertFile != "", srv.Serve, srv.Close)
}

// serve runs a role's HTTP server on a free local port until the test
// ends and returns its base URL, https if the server has a certificate.
func (s *stack) serve(name string, tls bool, serveFn func(context.Context, net.Listener) error, closeFn func()) (string, *running) {
	ln := listen(s.t)
	r := s.run(name, func(ctx context.Context) error { return serveFn(ctx, ln) }, closeFn)
	if tls {
		return "https://" + ln.Addr().String(), r
	}
	return "http://" + ln.Addr().String(), r
}

// startPipeline starts ingest, a processor with processorConfig and a
// projector of group <id>-projector, and returns ingest's base URL.
func (s *stack) startPipeline(ctx context.Context) string {
	return s.startPipelineWith(ctx, nil).ingestURL
}

// pipeline is what startPipelineWith started, for tests that watch or
// stop a role.
type pipeline struct {
	ingestURL string
	proc      *processor.Processor
	proj      *projector.Projector
	projRun   *running
}

// startPipelineWith is startPipeline with the projector's configuration
// changed by tune, unless tune is nil.
func (s *stack) startPipelineWith(ctx context.Context, tune func(*projector.Config)) pipeline {
	ingestURL, _ := s.startIngest(ctx)
	proc, _ := s.startProcessor(ctx, s.processorConfig())
	cfg := s.projectorConfig(s.id + "-projector")
	if tune != nil {
		tune(&cfg)
	}
	proj, projRun := s.startProjectorWith(ctx, cfg)
	return pipeline{ingestURL: ingestURL, proc: proc, proj: proj, projRun: projRun}
}

func (s *stack) processorConfig() processor.Config {
	cfg := processor.DefaultConfig()
	cfg.Kafka, cfg.PostgresURL, cfg.Group = s.kafka, s.pgURL, s.id+"-processor"
	return cfg
}

func (s *stack) startProcessor(ctx context.Context, cfg processor.Config) (*processor.Processor, *running) {
	return startRole(s, ctx, "processor", processor.New, cfg)
}

func (s *stack) startProjector(ctx context.Context, group string) *running {
	_, r := s.startProjectorWith(ctx, s.projectorConfig(group))
	return r
}

// projectorConfig is a projector of group on the test's slice of the
// stack, flushing often so that tests need not wait long.
func (s *stack) projectorConfig(group string) projector.Config {
	cfg := projector.DefaultConfig()
	cfg.Kafka, cfg.Warehouse, cfg.Group, cfg.PostgresURL = s.kafka, s.wh, group, s.pgURL
	cfg.FlushInterval = 200 * time.Millisecond
	return cfg
}

// startProjectorWith starts a projector with cfg (normally a changed
// projectorConfig); tests that read its counters keep the projector.
func (s *stack) startProjectorWith(ctx context.Context, cfg projector.Config) (*projector.Projector, *running) {
	return startRole(s, ctx, "projector", projector.New, cfg)
}

// role is what the processor and the projector have in common: Run until
// the context ends, then Close.
type role interface {
	Run(ctx context.Context) error
	Close()
}

// startRole makes a role with newRole and cfg and runs it until the test
// ends.
func startRole[C any, R role](s *stack, ctx context.Context, name string, newRole func(context.Context, C, zerolog.Logger) (R, error), cfg C) (R, *running) {
	s.t.Helper()
	r, err := newRole(ctx, cfg, s.log)
	if err != nil {
		s.t.Fatal(err)
	}
	return r, s.run(name, r.Run, r.Close)
}

// startQuery starts the query service of the test's slice of the stack
// and returns its base URL.
func (s *stack) startQuery(ctx context.Context) string {
	s.t.Helper()
	return s.startQueryWith(ctx, s.queryConfig())
}

// startQueryWith starts a query service with cfg (normally a changed
// queryConfig) and returns its base URL; s.queryToken is valid for it.
func (s *stack) startQueryWith(ctx context.Context, cfg query.Config) string {
	s.t.Helper()
	q, err := query.New(ctx, cfg, s.log)
	if err != nil {
		s.t.Fatal(err)
	}
	base, _ := s.serve("query", cfg.TLSCertFile != "", q.Serve, q.Close)
	s.queryToken = s.newCredential(ctx, credential.AnalystTokens, s.tenant)
	queryTokens.Store(base, s.queryToken)
	return base
}

// queryConfig is the query service of the test's slice of the stack.
func (s *stack) queryConfig() query.Config {
	cfg := query.DefaultConfig()
	cfg.Warehouse, cfg.PostgresURL, cfg.Kafka = s.wh, s.pgURL, s.kafka
	cfg.ProcessorGroup, cfg.ProjectorGroup = s.id+"-processor", s.id+"-projector"
	return cfg
}

// queryTokens maps a started query service's base URL to an analyst token
// of the test's tenant, so helpers that get only the URL can authenticate.
var queryTokens sync.Map

// newKey creates an API key for tenant in the real key store.
func (s *stack) newKey(ctx context.Context, tenant string) string {
	return s.newCredential(ctx, credential.GatewayKeys, tenant)
}

// newCredential creates a credential of kind for tenant in PostgreSQL and
// deletes it when the test ends.
func (s *stack) newCredential(ctx context.Context, kind credential.Kind, tenant string) string {
	s.t.Helper()
	pool := s.pgPool(ctx)
	store, err := credential.NewStore(ctx, pool, kind, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	full, c, err := store.Create(ctx, tenant, "integration test "+s.id)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), s.pgURL); err == nil {
			_, _ = conn.Exec(context.Background(), `DELETE FROM `+kind.Table+` WHERE key_id = $1`, c.ID)
			conn.Close(context.Background())
		}
	})
	return full
}

// postJSON posts body with the test's API key and decodes the JSON answer
// into out.
func (s *stack) postJSON(url string, body any, out any) int {
	return postAs(s.t, s.key, url, body, out)
}

// postAs posts body with the given API key.
func postAs(t *testing.T, key, url string, body any, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decode answer of %s: %v", url, err)
	}
	return resp.StatusCode
}

func getPercentiles(t *testing.T, base, user string, from, to time.Time, ps string) (query.PercentilesResponse, int) {
	t.Helper()
	q := url.Values{"metric": {"heart_rate"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "p": {ps}}
	req, err := http.NewRequest(http.MethodGet, base+"/v1/users/"+url.PathEscape(user)+"/percentiles?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := queryTokens.Load(base); ok {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out query.PercentilesResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
	}
	return out, resp.StatusCode
}

// eventually polls cond until it is true or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pairDevices posts, through ingest, a pairing of each given user's Fitbit
// tracker dated before the dataset: the processor accepts readings only
// from paired devices.
func (s *stack) pairDevices(ingestURL string, rows ...sample.HeartRate) {
	s.t.Helper()
	events := demo.Pairings(rows, "")
	var resp ingest.BatchResponse
	if code := s.postJSON(ingestURL+"/v1/device-events", map[string]any{"gateway_id": "gw-pairing", "events": events}, &resp); code != http.StatusOK || resp.Accepted != len(events) {
		s.t.Fatalf("pairing: status %d, %d of %d accepted", code, resp.Accepted, len(events))
	}
}

// expectPercentiles waits until the query service counts exactly
// len(values) readings of user in [from, to) (failing at once if it ever
// counts more: a repeat counted twice) and then checks each percentile in
// ps against nearestRank over values, computed here independently.
func expectPercentiles(t *testing.T, queryURL, user string, from, to time.Time, values, ps []float64, timeout time.Duration) {
	t.Helper()
	p := make([]string, len(ps))
	for i, v := range ps {
		p[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	var got []float64
	eventually(t, timeout, user+"'s readings to be queryable", func() (bool, string) {
		res, code := getPercentiles(t, queryURL, user, from, to, strings.Join(p, ","))
		if code != http.StatusOK {
			return false, fmt.Sprintf("status %d", code)
		}
		if res.Count > uint64(len(values)) {
			t.Fatalf("%s: %d readings counted, %d sent: counted twice", user, res.Count, len(values))
		}
		got = got[:0]
		for _, r := range res.Percentiles {
			got = append(got, r.Value)
		}
		return res.Count == uint64(len(values)), fmt.Sprintf("%d of %d", res.Count, len(values))
	})
	want := nearestRank(values, ps)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: p%g = %g, computed independently %g", user, ps[i], got[i], want[i])
		}
	}
}

// expectDayPercentiles is expectPercentiles over rows, one user's
// readings, on the day (UTC) of the first.
func expectDayPercentiles(t *testing.T, queryURL string, rows []sample.HeartRate, ps []float64, timeout time.Duration) {
	t.Helper()
	day := rows[0].Time.Truncate(24 * time.Hour)
	expectPercentiles(t, queryURL, rows[0].UserID(), day, day.AddDate(0, 0, 1), valuesOf(rows), ps, timeout)
}

// postReadings posts rows through ingest in order, batch at a time, and
// fails unless every reading is accepted.
func (s *stack) postReadings(ingestURL, gateway string, rows []sample.HeartRate, batch int) {
	s.t.Helper()
	for i := 0; i < len(rows); i += batch {
		var items []wireReading
		for _, r := range rows[i:min(i+batch, len(rows))] {
			items = append(items, wire(r))
		}
		var resp ingest.BatchResponse
		if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": gateway, "readings": items}, &resp); code != http.StatusOK || resp.Accepted != len(items) {
			s.t.Fatalf("post: status %d, %d of %d accepted", code, resp.Accepted, len(items))
		}
	}
}

// streamReadings posts each user's readings in order, batch at a time with
// a pause after each, all users at once, in the background; the channel
// yields the first error (or nil) when every post is done. Fault tests use
// it to keep a stream flowing while they kill or stop things.
func (s *stack) streamReadings(ingestURL, gateway string, perUser map[string][]sample.HeartRate, batch int, pause time.Duration) <-chan error {
	return s.streamReadingsGated(ingestURL, gateway, perUser, batch, pause, nil, nil)
}

// streamReadingsGated is streamReadings that, unless they are nil, calls
// gate before each batch of a user's readings with the index of its first
// reading and the user's count (a gate may block, to hold the stream at a
// point of a test) and adds each accepted batch's size to posted.
func (s *stack) streamReadingsGated(ingestURL, gateway string, perUser map[string][]sample.HeartRate, batch int, pause time.Duration,
	gate func(i, n int), posted *atomic.Int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		errs := make(chan error, len(perUser))
		for u, rs := range perUser {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < len(rs); i += batch {
					if gate != nil {
						gate(i, len(rs))
					}
					items := make([]wireReading, 0, batch)
					for _, r := range rs[i:min(i+batch, len(rs))] {
						items = append(items, wire(r))
					}
					var resp ingest.BatchResponse
					if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": gateway, "readings": items}, &resp); code != http.StatusOK || resp.Accepted != len(items) {
						errs <- fmt.Errorf("post %s at %d: status %d, %d of %d accepted", u, i, code, resp.Accepted, len(items))
						return
					}
					if posted != nil {
						posted.Add(int64(len(items)))
					}
					time.Sleep(pause)
				}
			}()
		}
		wg.Wait()
		close(errs)
		done <- <-errs
	}()
	return done
}

// topicRecords counts the records a topic holds: the sum of its partitions'
// end offsets (test topics keep everything, so every log starts at 0).
func (s *stack) topicRecords(ctx context.Context, topic string) int64 {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		s.t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// stopGracefully sends SIGTERM to a role's process and fails the test
// unless it exits cleanly within 30 s.
func stopGracefully(t *testing.T, cmd *exec.Cmd, role string) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("%s exit after SIGTERM: %v", role, err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s did not exit within 30s of SIGTERM", role)
	}
}
