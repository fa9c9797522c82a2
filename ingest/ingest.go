// Package ingest is the gateways' HTTP front door. It authenticates each
// gateway by API key (which names its tenant), syntax-checks every posted
// item, encodes the valid ones as Avro single-object messages and produces
// them to the event-log topics keyed by user id; invalid items go to the
// dead-letter topic with their original bytes and the reason. It answers
// only after the broker has acknowledged every record of the request
// (acks=all, idempotent producer), with a verdict per item.
//
// Ingest judges syntax only: whether a reading is a duplicate, late, or
// plausible is the processor's decision, made in event-time order with the
// user's history at hand.
package ingest

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/consistency"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/httpserve"
	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/promreg"
	"github.com/vitalshq/vitals/internal/quota"
	"github.com/vitalshq/vitals/internal/tlsconf"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/schemas"
)

// Config configures the ingest server.
type Config struct {
	// Addr is the HTTP listen address; it serves the API and the
	// Prometheus metrics at GET /metrics.
	Addr string
	// Registry is where ingest registers its metrics and what its /metrics
	// serves: the process's registry, shared by the roles of `vitals run`.
	// Nil (the default): a registry of the server's own.
	Registry *promreg.Registry
	// Kafka reaches the event log.
	Kafka eventlog.Config
	// PostgresURL locates the API keys and the users' data keys.
	PostgresURL string
	// UserKeys configures the users' data keys, which seal every record
	// (docs/privacy.md).
	UserKeys userkeys.Config
	// KeyCacheTTL is how long a verified key is trusted without asking
	// PostgreSQL again; it bounds how long a revoked key keeps working.
	KeyCacheTTL time.Duration
	// MaxBatchItems and MaxBodyBytes bound one request.
	MaxBatchItems int
	MaxBodyBytes  int64
	// MaxInflight bounds the batches being judged and produced at once
	// (default 64); beyond it ingest answers 503 at once instead of
	// queueing, so memory stays bounded. A request takes its slot only once
	// its whole body has arrived, so a slow or stalled client holds none.
	MaxInflight int
	// PerTenant is each tenant's share (default: 16 requests in flight,
	// bodies being read included, and 200,000 items/s in bursts of
	// 400,000): a tenant past it is answered 429 with Retry-After, and
	// other tenants keep their capacity.
	PerTenant quota.Limits
	// Turns is how many requests are judged at once (default GOMAXPROCS:
	// judging is CPU work). Turns are given round-robin between tenants, so
	// a tenant that floods gets no more of the CPU than one that posts now
	// and then; waiting for a turn is bounded by ProduceTimeout (then 503).
	Turns int
	// MinBodyRate is the slowest a body may arrive, in bytes per second
	// after BodyGrace (defaults 16 KiB/s and 5 s): a client that sends
	// more slowly is answered 408 and its connection closed.
	MinBodyRate int64
	BodyGrace   time.Duration
	// ProduceTimeout bounds the wait for the broker's ack; past it the
	// request answers 503 with Retry-After.
	ProduceTimeout time.Duration
	// Limits are the syntax check's bounds.
	Limits Limits
	// TLSCertFile and TLSKeyFile, if set, make the listener HTTPS with
	// this certificate chain and key (PEM; re-read when renewed).
	TLSCertFile, TLSKeyFile string
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Addr:           "127.0.0.1:8080",
		Kafka:          eventlog.DefaultConfig(),
		PostgresURL:    postgres.DefaultURL,
		KeyCacheTTL:    10 * time.Second,
		MaxBatchItems:  5000,
		MaxBodyBytes:   4 << 20,
		MaxInflight:    64,
		PerTenant:      quota.Limits{Rate: 200_000, Burst: 400_000, Concurrent: 16},
		MinBodyRate:    16 << 10,
		Turns:          runtime.GOMAXPROCS(0),
		BodyGrace:      5 * time.Second,
		ProduceTimeout: 10 * time.Second,
		Limits:         Limits{MaxFutureSkew: 5 * time.Minute},
		UserKeys:       userkeys.DefaultConfig(),
	}
}

// producer is the part of the Kafka client ingest needs.
type producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// keyVerifier authenticates a presented API key.
type keyVerifier interface {
	Verify(ctx context.Context, presented string) (Key, error)
}

// Server is the ingest HTTP service.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	client   *kgo.Client   // nil when a producer was injected
	pool     *pgxpool.Pool // nil when a verifier was injected
	producer producer
	keys     keyVerifier
	// sealer seals every record of a known user with the user's data key;
	// nil only in unit tests of the HTTP layer (newServer), which read the
	// records they produce.
	sealer   sealer
	userKeys *userkeys.Store
	now      func() time.Time
	handler  http.Handler

	readings, devices, profiles, deadLetters *schemas.Codec
	inflight                                 chan struct{}
	// tenantSlots bounds each tenant's requests in flight, tenantItems
	// its items per second (Config.PerTenant).
	tenantSlots, tenantItems *quota.Quota
	// turns shares the judging between tenants (Config.Turns).
	turns      *quota.Fair
	reg        *promreg.Registry
	m          serverMetrics
	registered *promreg.Registration

	// tls is the listener's TLS, nil for plain HTTP (Config.TLSCertFile).
	tls *tls.Config
}

// serverMetrics are what ingest exports at /metrics.
type serverMetrics struct {
	items   *prometheus.CounterVec   // endpoint, outcome, reason
	batch   *prometheus.HistogramVec // endpoint
	produce *prometheus.HistogramVec // endpoint
	status  *prometheus.CounterVec   // endpoint, code
	latency *prometheus.HistogramVec // endpoint
}

// latencyBuckets bound ingest's time histograms, in seconds: a produce
// usually takes milliseconds and gives up at ProduceTimeout (10 s).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newServerMetrics() serverMetrics {
	return serverMetrics{
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_ingest_items_total",
			Help: "Items judged by ingest, by endpoint, outcome (accepted, rejected, not_confirmed) and rejection reason."}, []string{"endpoint", "outcome", "reason"}),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vitals_ingest_batch_items", Help: "Items per request.",
			Buckets: []float64{1, 10, 50, 100, 250, 500, 1000, 2500, 5000}}, []string{"endpoint"}),
		produce: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vitals_ingest_produce_seconds",
			Help: "Time from produce to the broker's ack of a whole request.", Buckets: latencyBuckets}, []string{"endpoint"}),
		status: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_ingest_requests_total",
			Help: "Batch requests by endpoint and HTTP status."}, []string{"endpoint", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vitals_ingest_request_seconds",
			Help: "Time to handle a batch request, from the handler's start to its answer written.", Buckets: latencyBuckets}, []string{"endpoint"}),
	}
}

func (m serverMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.items, m.batch, m.produce, m.status, m.latency}
}

// New connects to PostgreSQL (API keys) and Kafka and returns a server
// ready to Run.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Server, error) {
	log = log.With().Str("role", "ingest").Logger()
	tc, err := tlsconf.ServerIf(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if err := eventlog.EnsureTopics(ctx, cfg.Kafka, log); err != nil {
		return nil, err
	}
	var opened []func() // closed, newest first, if New fails
	fail := func(err error) (*Server, error) {
		for i := len(opened) - 1; i >= 0; i-- {
			opened[i]()
		}
		return nil, fmt.Errorf("ingest: %w", err)
	}
	pool, err := postgres.Open(ctx, cfg.PostgresURL)
	if err != nil {
		return fail(err)
	}
	opened = append(opened, pool.Close)
	keys, err := NewKeyStore(ctx, pool, cfg.KeyCacheTTL)
	if err != nil {
		return fail(err)
	}
	uk, err := userkeys.Open(ctx, pool, cfg.UserKeys, log)
	if err != nil {
		return fail(err)
	}
	opened = append(opened, uk.Close)
	opts := append(cfg.Kafka.ClientOpts(log),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence is on by default and needs acks=all
		// Records are sealed (docs/privacy.md): ciphertext does not
		// compress, so compressing would cost CPU here, in the broker's
		// validation and in every consumer for nothing.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.MaxBufferedRecords(4*cfg.MaxBatchItems),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fail(fmt.Errorf("kafka client: %w", err))
	}
	opened = append(opened, cl.Close)
	s, err := newServer(cfg, log, cl, keys)
	if err != nil {
		return fail(err)
	}
	s.client, s.pool, s.sealer, s.userKeys, s.tls = cl, pool, uk, uk, tc
	return s, nil
}

//go:embed openapi.yaml
var openapiYAML []byte

// newServer makes the server and registers its metrics, which fails only
// if cfg.Registry holds another live server's.
func newServer(cfg Config, log zerolog.Logger, p producer, keys keyVerifier) (*Server, error) {
	s := &Server{
		cfg:         cfg,
		log:         log,
		producer:    p,
		keys:        keys,
		now:         time.Now,
		readings:    schemas.MustCodec(schemas.NameReading),
		devices:     schemas.MustCodec(schemas.NameDeviceEvent),
		profiles:    schemas.MustCodec(schemas.NameProfileEvent),
		deadLetters: schemas.MustCodec(schemas.NameDeadLetter),
		inflight:    make(chan struct{}, cfg.MaxInflight),
		tenantSlots: quota.New(quota.Limits{Concurrent: cfg.PerTenant.Concurrent}),
		tenantItems: quota.New(quota.Limits{Rate: cfg.PerTenant.Rate, Burst: cfg.PerTenant.Burst}),
		turns:       quota.NewFair(cfg.Turns),
		reg:         promreg.OrNew(cfg.Registry),
		m:           newServerMetrics(),
	}
	var err error
	if s.registered, err = promreg.Register(s.reg, s.m.collectors()...); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/readings", s.batchHandler(endpointReadings, cfg.Kafka.Topics.Readings, s.decodeReadings))
	mux.HandleFunc("POST /v1/device-events", s.batchHandler(endpointDevices, cfg.Kafka.Topics.DeviceEvents, s.decodeDevices))
	mux.HandleFunc("POST /v1/profile-events", s.batchHandler(endpointProfiles, cfg.Kafka.Topics.ProfileEvents, s.decodeProfiles))
	mux.HandleFunc("POST /fhir/r4/Observation", s.batchHandler(endpointFHIR, cfg.Kafka.Topics.Readings, s.decodeFHIRBody))
	mux.HandleFunc("GET /v1/catalogue", s.getCatalogue)
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openapiYAML)
	})
	mux.Handle("GET /metrics", s.reg.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", s.ready)
	s.handler = mux
	return s, nil
}

// Handler is the HTTP API, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Metrics is the registry the server's /metrics serves.
func (s *Server) Metrics() *promreg.Registry { return s.reg }

// Run serves until ctx ends, then stops accepting, lets in-flight requests
// finish (their produces complete or time out) and returns.
func (s *Server) Run(ctx context.Context) error {
	return httpserve.Run(ctx, "ingest", s.cfg.Addr, s.Serve)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return httpserve.ServeTLS(ctx, s.log, ln, s.handler, s.cfg.ProduceTimeout+5*time.Second, s.tls)
}

// Close flushes the producer, closes the connections and withdraws the
// server's metrics from the registry.
func (s *Server) Close() {
	s.registered.Unregister()
	if s.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProduceTimeout)
		defer cancel()
		if err := s.client.Flush(ctx); err != nil {
			s.log.Warn().Err(err).Msg("flush on close")
		}
		s.client.Close()
	}
	if s.userKeys != nil {
		s.userKeys.Close()
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

// ready answers 200 when the broker and the key database answer.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if s.client != nil {
		if err := s.client.Ping(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "log_unavailable", "the event log does not answer")
			return
		}
	}
	if s.pool != nil {
		if err := s.pool.Ping(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "keys_unavailable", "the key database does not answer")
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// Endpoint names, as used in dead letters and metrics.
const (
	endpointReadings = "readings"
	endpointDevices  = "device-events"
	endpointProfiles = "profile-events"
	endpointFHIR     = "fhir"
)

// Item statuses in a batch response.
const (
	StatusAccepted    = "accepted"    // durable in the log
	StatusRejected    = "rejected"    // failed the syntax check; see reason (and the dead-letter topic)
	StatusNotSaved    = "not_stored"  // valid, but the log refused it: retry
	StatusUnconfirmed = "unconfirmed" // valid, but the log did not answer in time: it may be stored; retry (repeats are dropped)
)

// ItemVerdict is the outcome for one item of a batch.
type ItemVerdict struct {
	Index   int    `json:"index"`
	Status  string `json:"status"`
	EventID string `json:"event_id,omitempty"`
	// Reason, Field and Message say why a rejected item was refused.
	Reason  string `json:"reason,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message,omitempty"`
}

// BatchResponse is the answer to a batch POST.
type BatchResponse struct {
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	Items    []ItemVerdict `json:"items"`
	// ConsistencyToken names the log positions of the accepted items; a
	// query that passes it waits until the read side has stored them
	// (read-your-writes). Empty when nothing was accepted.
	ConsistencyToken string `json:"consistency_token,omitempty"`
}

// consistencyToken is the highest offset per partition of the records
// the broker acknowledged in topic (dead letters are left out: nothing
// downstream waits for them). The promise filled in each record's
// partition and offset before produceAll returned.
func consistencyToken(topic string, records []*kgo.Record, outcomes []int) string {
	tok := consistency.Token{}
	for j, o := range outcomes {
		if o == produced && records[j].Topic == topic {
			tok.Add(topic, records[j].Partition, records[j].Offset)
		}
	}
	return tok.Encode()
}

// APIError is the JSON body of every error response.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, APIError{Code: code, Message: fmt.Sprintf(format, args...)})
}

// catalogueEntry is one metric in GET /v1/catalogue.
type catalogueEntry struct {
	Name      string   `json:"name"`
	LOINC     string   `json:"loinc"`
	Unit      string   `json:"unit"`
	Units     []string `json:"accepted_units"`
	Shape     string   `json:"shape"`
	Min       *float64 `json:"min,omitempty"`
	Max       *float64 `json:"max,omitempty"`
	PerSecond *float64 `json:"max_per_second,omitempty"`
	Stages    []string `json:"stages,omitempty"`
}

func (s *Server) getCatalogue(w http.ResponseWriter, _ *http.Request) {
	out := make([]catalogueEntry, 0)
	for _, n := range metric.Names() {
		m := metric.MustLookup(n)
		e := catalogueEntry{Name: m.Name, LOINC: m.LOINC, Unit: m.Unit, Units: m.Units(), Stages: m.Stages}
		switch m.Shape {
		case metric.Interval:
			e.Shape, e.PerSecond = "interval", &m.MaxPerSecond
		case metric.Pair:
			e.Shape, e.Min, e.Max = "pair", &m.Min, &m.Max
		case metric.Stage:
			e.Shape = "stage"
		default:
			e.Shape, e.Min, e.Max = "point", &m.Min, &m.Max
		}
		out = append(out, e)
	}
	writeJSON(w, http.StatusOK, out)
}

// apiError is a request-level failure.
type apiError struct {
	status        int
	code, message string
	// refusal, if set, is a tenant over its share: 429 with Retry-After.
	refusal *quota.Refusal
}

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

// judged is one item after the syntax check: either an encoded event for
// the log or a rejection, plus what the dead-letter record needs.
type judged struct {
	raw         []byte
	user, event string
	value       []byte
	rej         *Rejection
}

// decodedBatch is a request body split into items. judge checks item i.
type decodedBatch struct {
	gateway string
	tenant  *string // a tenant the body claims; must match the key's
	n       int
	format  string
	judge   func(i int, cc *checkContext) judged
}

type decoder func(r *http.Request, body []byte) (decodedBatch, *apiError)

// authenticate returns the caller's key or writes 401/403/503.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Key, bool) {
	presented, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || presented == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vitals"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "send the gateway's API key as Authorization: Bearer vk_...")
		return Key{}, false
	}
	k, err := s.keys.Verify(r.Context(), presented)
	switch {
	case err == nil:
		return k, true
	case errors.Is(err, ErrRevokedKey):
		writeError(w, http.StatusForbidden, "key_revoked", "this API key was revoked")
	case errors.Is(err, ErrBadKey):
		w.Header().Set("WWW-Authenticate", `Bearer realm="vitals", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "the API key is not valid")
	default:
		s.log.Warn().Err(err).Msg("key verification unavailable")
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		writeError(w, http.StatusServiceUnavailable, "keys_unavailable", "the key database does not answer; retry shortly")
	}
	return Key{}, false
}

// batchHandler runs the shared path of every batch endpoint: limit,
// authenticate, decode, judge every item, produce valid items to topic and
// rejected ones to the dead-letter topic, and answer per item.
func (s *Server) batchHandler(endpoint, topic string, decode decoder) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			s.m.status.WithLabelValues(endpoint, strconv.Itoa(sw.code)).Inc()
			s.m.latency.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
		}()
		s.serveBatch(sw, r, endpoint, topic, decode)
	}
}

func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request, endpoint, topic string, decode decoder) {
	// Authenticate from the headers alone; then the tenant's share bounds
	// its requests in flight, a slow body included, and only a whole body
	// takes one of the server's slots.
	key, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	release, refused := s.tenantSlots.Admit(key.Tenant, 1)
	if refused != nil {
		tooMany(w, refused)
		return
	}
	defer release()
	body, ok := s.admitBody(w, r)
	if !ok {
		return
	}
	defer func() { <-s.inflight }()
	// Judging is CPU work: it waits for its tenant's turn, and the turn
	// ends before the wait for the broker.
	tctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProduceTimeout)
	endTurn, err := s.turns.Acquire(tctx, key.Tenant)
	cancel()
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "overloaded", "no turn to judge the batch within %s; retry shortly", s.cfg.ProduceTimeout)
		return
	}
	defer endTurn()
	d, aerr := decode(r, body)
	if aerr == nil {
		aerr = s.checkBatch(&d, key)
	}
	if aerr != nil {
		if aerr.refusal != nil {
			tooMany(w, aerr.refusal)
			return
		}
		writeError(w, aerr.status, aerr.code, "%s", aerr.message)
		return
	}
	s.m.batch.WithLabelValues(endpoint).Observe(float64(d.n))
	b := s.judgeBatch(&d, key, endpoint, topic, r.Header.Get("Content-Type"))
	endTurn()
	if s.sealer != nil {
		if err := s.sealBatch(r.Context(), key.Tenant, &b); err != nil {
			s.log.Error().Err(err).Str("endpoint", endpoint).Msg("key store unavailable; answering 503")
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
			writeError(w, http.StatusServiceUnavailable, "key_store_unavailable", "the users' data keys could not be read; nothing was stored: retry the batch")
			return
		}
	}
	start := time.Now()
	outcomes, firstErr := s.produceAll(r.Context(), b.records)
	s.m.produce.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	s.answerBatch(w, endpoint, topic, &b, outcomes, firstErr)
}

// tooMany answers a request over its tenant's share.
func tooMany(w http.ResponseWriter, refused *quota.Refusal) {
	w.Header().Set("Retry-After", strconv.Itoa(quota.RetryAfterSeconds(refused.RetryAfter)))
	writeError(w, http.StatusTooManyRequests, "rate_limited", "the tenant is over its share (%s); retry after the Retry-After seconds", refused.Reason)
}

// readBody reads the whole request body, at most MaxBodyBytes, at no less
// than MinBodyRate after BodyGrace (see bodyPace).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body := io.Reader(r.Body)
	if s.cfg.MinBodyRate > 0 {
		body = &bodyPace{r: r.Body, rc: http.NewResponseController(w), start: time.Now(), grace: s.cfg.BodyGrace, rate: s.cfg.MinBodyRate}
	}
	b, err := readAll(w, io.NopCloser(body), r.ContentLength, s.cfg.MaxBodyBytes)
	switch {
	case err != nil:
		// The rest of the body is not wanted: closing it makes the server
		// close the connection after the answer instead of reading on.
		r.Body.Close()
	case s.cfg.MinBodyRate > 0:
		// The next request on the connection keeps the server's timeouts,
		// not this body's pace.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	return b, err
}

// bodyPace reads a body at a minimum pace: before each read the
// connection's deadline is set to when the bytes read so far would have
// arrived at rate after grace, so the next bytes must come before it. A
// client that stalls, or trickles a byte at a time, is cut off instead of
// holding a connection and its tenant's share for the server's 30 s read
// timeout.
type bodyPace struct {
	r     io.Reader
	rc    *http.ResponseController
	start time.Time
	grace time.Duration
	rate  int64
	n     int64
}

func (p *bodyPace) Read(b []byte) (int, error) {
	allowed := p.grace + time.Duration(float64(p.n)/float64(p.rate)*float64(time.Second))
	if err := p.rc.SetReadDeadline(p.start.Add(allowed)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

// readAll reads the whole body, at most limit bytes. A body that declares
// its length is read into a buffer of that size at once, rather than one
// grown by doubling from 512 bytes (several copies of a 100 KB batch).
func readAll(w http.ResponseWriter, body io.ReadCloser, contentLength, limit int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, body, limit)
	if n := contentLength; n > 0 && n <= limit {
		// One byte more than declared, so that the read reaches EOF
		// without growing the buffer.
		buf := make([]byte, 0, n+1)
		for {
			m, err := rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if err == io.EOF {
				return buf, nil
			}
			if err != nil {
				return buf, err
			}
			if len(buf) == cap(buf) {
				// Longer than declared (the server stops that first):
				// read the rest the ordinary way.
				rest, err := io.ReadAll(rd)
				return append(buf, rest...), err
			}
		}
	}
	return io.ReadAll(rd)
}

// Outcomes of one record's produce.
const (
	pending  = iota // no answer from the broker within ProduceTimeout
	produced        // acknowledged by all in-sync replicas
	failed          // definitively not stored
)

// produceAll produces records and waits, at most ProduceTimeout, for the
// broker's answers. The idempotent producer will not give up on a record
// that may already have reached the broker (failing it could reorder the
// partition), so a request never waits on it past the deadline: such
// records are reported pending, and the client is told so.
func (s *Server) produceAll(ctx context.Context, records []*kgo.Record) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
	defer cancel()
	var (
		mu       sync.Mutex
		outcomes = make([]int, len(records))
		firstErr error
		left     = len(records)
		done     = make(chan struct{})
	)
	if left == 0 {
		return outcomes, nil
	}
	for j, rec := range records {
		s.producer.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				outcomes[j] = failed
				if firstErr == nil {
					firstErr = err
				}
			} else {
				outcomes[j] = produced
			}
			if left--; left == 0 {
				close(done)
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr == nil && left > 0 {
		firstErr = fmt.Errorf("%d records unacknowledged after %s", left, s.cfg.ProduceTimeout)
	}
	return append([]int(nil), outcomes...), firstErr
}

// retryAfterSeconds is what a client is told to wait after a 503.
const retryAfterSeconds = 2

// statusWriter remembers the status code for the request counter.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (the body's
// read deadline).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// jsonEnvelope is the JSON body of every batch endpoint.
type jsonEnvelope struct {
	GatewayID string            `json:"gateway_id"`
	TenantID  *string           `json:"tenant_id"`
	Readings  []json.RawMessage `json:"readings"`
	Events    []json.RawMessage `json:"events"`
}

func decodeEnvelope(body []byte, itemsField string) (jsonEnvelope, *apiError) {
	var env jsonEnvelope
	if k := duplicateKey(body, envelopeKeys); k != "" {
		return env, badRequest("malformed_body", "the body names %q twice (keys match ignoring case); send each field once", truncate(k))
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return env, badRequest("malformed_body", `body must be a JSON object {"gateway_id": ..., %q: [...]}: %v`, itemsField, err)
	}
	return env, nil
}

// Content type of an Avro reading batch.
const contentTypeAvroBatch = "application/vnd.vitals.reading-batch+avro"

func (s *Server) decodeReadings(r *http.Request, body []byte) (decodedBatch, *apiError) {
	if mediaType(r) == contentTypeAvroBatch {
		return s.decodeAvroReadings(body)
	}
	if fb, ok := scanReadingsJSON(body); ok {
		return decodedBatch{gateway: fb.gateway, tenant: fb.tenant, n: len(fb.items), format: "json",
			judge: func(i int, cc *checkContext) judged {
				it := &fb.items[i]
				var in Input
				var rej *Rejection
				if it.fast {
					in, rej = it.input()
				} else {
					in, rej = readingFromJSON(it.raw)
				}
				return s.judgeReading(it.raw, &in, rej, cc)
			}}, nil
	}
	env, aerr := decodeEnvelope(body, "readings")
	if aerr != nil {
		return decodedBatch{}, aerr
	}
	return decodedBatch{gateway: env.GatewayID, tenant: env.TenantID, n: len(env.Readings), format: "json",
		judge: func(i int, cc *checkContext) judged {
			in, rej := readingFromJSON(env.Readings[i])
			return s.judgeReading(env.Readings[i], &in, rej, cc)
		}}, nil
}

// judgeReading checks and encodes one reading in any input format.
func (s *Server) judgeReading(raw []byte, in *Input, rej *Rejection, cc *checkContext) judged {
	it := judged{raw: raw}
	var rd schemas.Reading
	if rej == nil {
		rd, rej = cc.CheckReading(in)
	}
	if rej == nil {
		// CheckReading checked the ids: no need to look at them again.
		it.user, it.event = rd.UserID, rd.EventID
		v, err := cc.encodeReading(&rd)
		if err != nil {
			it.rej = reject(ReasonInternal, "", "could not encode item")
			return it
		}
		it.value = v
		return it
	}
	// A refused item keeps the ids that are valid, for the dead letter.
	if in.UserID != nil && checkID("user_id", *in.UserID) == nil {
		it.user = *in.UserID
	}
	if in.EventID != nil && checkID("event_id", *in.EventID) == nil {
		it.event = *in.EventID
	}
	it.rej = rej
	return it
}

func (s *Server) decodeDevices(_ *http.Request, body []byte) (decodedBatch, *apiError) {
	return decodeEvents(body, s.devices, deviceFromJSON,
		func(in *DeviceInput) (*string, *string) { return in.UserID, in.EventID },
		(*checkContext).CheckDevice)
}

func (s *Server) decodeProfiles(_ *http.Request, body []byte) (decodedBatch, *apiError) {
	return decodeEvents(body, s.profiles, profileFromJSON,
		func(in *ProfileInput) (*string, *string) { return in.UserID, in.EventID },
		(*checkContext).CheckProfile)
}

// decodeEvents is the JSON path of the device and profile endpoints: parse
// each item of "events", check it, and encode the event with codec.
func decodeEvents[In, Ev any](body []byte, codec *schemas.Codec, parse func(json.RawMessage) (In, *Rejection),
	ids func(*In) (user, event *string), check func(*checkContext, *In) (Ev, *Rejection)) (decodedBatch, *apiError) {
	env, aerr := decodeEnvelope(body, "events")
	if aerr != nil {
		return decodedBatch{}, aerr
	}
	return decodedBatch{gateway: env.GatewayID, tenant: env.TenantID, n: len(env.Events), format: "json",
		judge: func(i int, cc *checkContext) judged {
			it := judged{raw: env.Events[i]}
			in, rej := parse(env.Events[i])
			user, event := ids(&in)
			if user != nil && checkID("user_id", *user) == nil {
				it.user = *user
			}
			if event != nil && checkID("event_id", *event) == nil {
				it.event = *event
			}
			if rej == nil {
				var ev Ev
				if ev, rej = check(cc, &in); rej == nil {
					it.value, rej = encodeOrReject(codec, &ev)
				}
			}
			it.rej = rej
			return it
		}}, nil
}

// encodeOrReject encodes a checked event; failing is a defect, reported as
// a rejection rather than an empty record.
func encodeOrReject(c *schemas.Codec, v any) ([]byte, *Rejection) {
	b, err := c.Encode(v)
	if err != nil {
		return nil, reject(ReasonInternal, "", "could not encode item")
	}
	return b, nil
}

// decodeFHIRBody reads an Observation or a Bundle of them; the gateway names
// itself in the X-Gateway-ID header, since FHIR resources have no place for
// it.
func (s *Server) decodeFHIRBody(r *http.Request, body []byte) (decodedBatch, *apiError) {
	items, err := decodeFHIR(body)
	if err != nil {
		return decodedBatch{}, badRequest("malformed_body", "%v", err)
	}
	return decodedBatch{gateway: r.Header.Get("X-Gateway-ID"), n: len(items), format: "fhir",
		judge: func(i int, cc *checkContext) judged {
			return s.judgeReading(items[i].raw, &items[i].in, items[i].rej, cc)
		}}, nil
}

// mediaType is the request's content type without parameters.
func mediaType(r *http.Request) string {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.TrimSpace(strings.ToLower(ct))
}
