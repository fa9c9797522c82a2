// Package ingest is the gateways' HTTP front door. It syntax-checks each
// posted reading, encodes the valid ones as Avro single-object messages and
// produces them to the raw readings topic keyed by user id, answering only
// after the broker has acknowledged them (acks=all, idempotent producer).
//
// Ingest judges syntax only: whether a reading is a duplicate, late, or
// plausible is the processor's decision, made in event-time order with the
// user's history at hand.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/httpserve"
	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// Config configures the ingest server.
type Config struct {
	// Addr is the HTTP listen address.
	Addr string
	// Kafka reaches the event log.
	Kafka eventlog.Config
	// Tenant is the tenant every reading is filed under until gateways
	// authenticate with per-tenant keys.
	Tenant string
	// MaxBatchItems and MaxBodyBytes bound one request.
	MaxBatchItems int
	MaxBodyBytes  int64
	// MaxInflight bounds concurrent batch requests; beyond it ingest answers
	// 503 at once instead of queueing, so memory stays bounded.
	MaxInflight int
	// ProduceTimeout bounds the wait for the broker's ack; past it the
	// request answers 503 with Retry-After.
	ProduceTimeout time.Duration
	// Limits are the syntax check's bounds.
	Limits Limits
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Addr:           "127.0.0.1:8080",
		Kafka:          eventlog.DefaultConfig(),
		Tenant:         "default",
		MaxBatchItems:  5000,
		MaxBodyBytes:   4 << 20,
		MaxInflight:    64,
		ProduceTimeout: 10 * time.Second,
		Limits:         Limits{MaxFutureSkew: 5 * time.Minute},
	}
}

// producer is the part of the Kafka client ingest needs.
type producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// Server is the ingest HTTP service.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	client   *kgo.Client // nil when a producer was injected
	producer producer
	codec    *schemas.Codec
	inflight chan struct{}
	now      func() time.Time
	handler  http.Handler
}

// New connects to Kafka and returns a server ready to Run.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Server, error) {
	log = log.With().Str("role", "ingest").Logger()
	if err := eventlog.EnsureTopics(ctx, cfg.Kafka, log); err != nil {
		return nil, err
	}
	opts := append(cfg.Kafka.ClientOpts(log),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence is on by default and needs acks=all
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.MaxBufferedRecords(4*cfg.MaxBatchItems),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("ingest: kafka client: %w", err)
	}
	s := newServer(cfg, log, cl)
	s.client = cl
	return s, nil
}

func newServer(cfg Config, log zerolog.Logger, p producer) *Server {
	s := &Server{
		cfg:      cfg,
		log:      log,
		producer: p,
		codec:    schemas.MustCodec(schemas.NameReading),
		inflight: make(chan struct{}, cfg.MaxInflight),
		now:      time.Now,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/readings", s.postReadings)
	mux.HandleFunc("GET /v1/metrics", s.getMetrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	s.handler = mux
	return s
}

// Handler is the HTTP API, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx ends, then stops accepting, lets in-flight requests
// finish (their produces complete or time out) and returns.
func (s *Server) Run(ctx context.Context) error {
	ln, err := httpserve.Listen(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return httpserve.Serve(ctx, s.log, ln, s.handler, s.cfg.ProduceTimeout+5*time.Second)
}

// Close flushes and closes the Kafka client.
func (s *Server) Close() {
	if s.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProduceTimeout)
		defer cancel()
		if err := s.client.Flush(ctx); err != nil {
			s.log.Warn().Err(err).Msg("flush on close")
		}
		s.client.Close()
	}
}

// batchRequest is the body of POST /v1/readings.
type batchRequest struct {
	GatewayID string            `json:"gateway_id"`
	Readings  []json.RawMessage `json:"readings"`
}

// Item statuses in a batch response.
const (
	StatusAccepted = "accepted" // durable in the log
	StatusRejected = "rejected" // failed the syntax check; see reason
	StatusNotSaved = "not_stored"
)

// ItemVerdict is the outcome for one item of a batch.
type ItemVerdict struct {
	Index   int    `json:"index"`
	Status  string `json:"status"`
	EventID string `json:"event_id,omitempty"`
	*Rejection
}

// BatchResponse is the answer to POST /v1/readings.
type BatchResponse struct {
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	Items    []ItemVerdict `json:"items"`
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

func (s *Server) getMetrics(w http.ResponseWriter, _ *http.Request) {
	out := make([]metric.Metric, 0)
	for _, n := range metric.Names() {
		out = append(out, metric.MustLookup(n))
	}
	writeJSON(w, http.StatusOK, out)
}

// postReadings handles a batch: every item gets a verdict, valid items are
// produced together, and success is answered only after the broker acked
// all of them.
func (s *Server) postReadings(w http.ResponseWriter, r *http.Request) {
	select {
	case s.inflight <- struct{}{}:
		defer func() { <-s.inflight }()
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "overloaded", "too many concurrent batches; retry shortly")
		return
	}
	var req batchRequest
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds %d bytes", s.cfg.MaxBodyBytes)
			return
		}
		writeError(w, http.StatusBadRequest, "malformed_body", "body must be a JSON object {\"gateway_id\": ..., \"readings\": [...]}: %v", err)
		return
	}
	if r := checkID("gateway_id", req.GatewayID); r != nil {
		writeError(w, http.StatusBadRequest, r.Reason, "%s", r.Message)
		return
	}
	if len(req.Readings) == 0 {
		writeError(w, http.StatusBadRequest, "empty_batch", "readings must hold at least one item")
		return
	}
	if len(req.Readings) > s.cfg.MaxBatchItems {
		writeError(w, http.StatusRequestEntityTooLarge, "batch_too_large", "readings holds %d items; the limit is %d", len(req.Readings), s.cfg.MaxBatchItems)
		return
	}

	now := s.now()
	resp := BatchResponse{Items: make([]ItemVerdict, len(req.Readings))}
	records := make([]*kgo.Record, 0, len(req.Readings))
	recIndex := make([]int, 0, len(req.Readings))
	for i, raw := range req.Readings {
		rd, rej := Check(raw, s.cfg.Tenant, req.GatewayID, now, s.cfg.Limits)
		if rej != nil {
			resp.Items[i] = ItemVerdict{Index: i, Status: StatusRejected, Rejection: rej}
			resp.Rejected++
			continue
		}
		val, err := s.codec.Encode(&rd)
		if err != nil { // a valid reading always encodes; this is a defect
			resp.Items[i] = ItemVerdict{Index: i, Status: StatusRejected, Rejection: reject("internal", "", "could not encode item")}
			resp.Rejected++
			s.log.Error().Err(err).Int("index", i).Msg("encode reading")
			continue
		}
		resp.Items[i] = ItemVerdict{Index: i, Status: StatusAccepted, EventID: rd.EventID}
		records = append(records, &kgo.Record{Topic: s.cfg.Kafka.Topics.Readings, Key: []byte(rd.UserID), Value: val})
		recIndex = append(recIndex, i)
	}

	if len(records) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ProduceTimeout)
		start := time.Now()
		results := s.producer.ProduceSync(ctx, records...)
		cancel()
		failed := 0
		var firstErr error
		for j, res := range results {
			if res.Err != nil {
				failed++
				if firstErr == nil {
					firstErr = res.Err
				}
				resp.Items[recIndex[j]].Status = StatusNotSaved
			}
		}
		resp.Accepted = len(records) - failed
		if failed > 0 {
			s.log.Warn().Err(firstErr).Int("failed", failed).Int("stored", resp.Accepted).Msg("produce failed; answering 503")
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
			writeJSON(w, http.StatusServiceUnavailable, struct {
				APIError
				BatchResponse
			}{APIError{Code: "log_unavailable", Message: "the event log did not acknowledge every item in time; items marked not_stored were not saved, retry them (retrying the whole batch is safe: repeats are dropped by event_id)"}, resp})
			return
		}
		s.log.Debug().Int("accepted", resp.Accepted).Int("rejected", resp.Rejected).Dur("produce", time.Since(start)).Msg("batch stored")
	}
	writeJSON(w, http.StatusOK, resp)
}

// retryAfterSeconds is what a gateway is told to wait after a 503.
const retryAfterSeconds = 2
