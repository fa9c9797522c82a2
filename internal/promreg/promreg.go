// Package promreg holds the one Prometheus registry of a Vitals process
// and what every role does with it: register its collectors all or none,
// serve the registry at /metrics, and render it as text for tests and
// benchmarks that read metrics in-process.
//
// The metric types, the exposition format and the Go runtime and process
// collectors are github.com/prometheus/client_golang's. Nothing here uses
// its global default registry: a process makes one [Registry] and passes it
// down, so roles that share a process (`vitals run`) share it, and tests
// that start many roles in one process give each its own.
package promreg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/httpserve"
)

// Registry is a process's metrics registry: the roles register on it (it is
// a [prometheus.Registerer]) and /metrics serves it (it is a
// [prometheus.Gatherer]).
type Registry struct {
	*prometheus.Registry
}

// New returns a registry holding the Go runtime collector (go_*) and the
// process collector (process_*), which every process exports once.
func New() *Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Registry{Registry: r}
}

// OrNew returns r, or a new registry of its own if r is nil: the default of a
// role whose configuration names no registry.
func OrNew(r *Registry) *Registry {
	if r == nil {
		return New()
	}
	return r
}

// Handler serves the registry in the Prometheus exposition format the
// scraper asks for (the text format by default). Methods other than GET and
// HEAD are refused: a scrape never changes anything.
func (r *Registry) Handler() http.Handler {
	h := promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, req)
	})
}

// WriteTo writes every metric in the text exposition format, as a scrape
// of [Registry.Handler] would get it. It implements [io.WriterTo].
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	families, err := r.Gather()
	if err != nil {
		return 0, fmt.Errorf("gather metrics: %w", err)
	}
	cw := &countingWriter{w: w}
	enc := expfmt.NewEncoder(cw, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return cw.n, fmt.Errorf("encode metrics: %w", err)
		}
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ServeMetrics listens on addr now, so that a taken port fails the caller's
// start, and serves the registry at GET /metrics in the background until
// ctx ends. It is for roles without an HTTP listener of their own (the
// processor and the projector).
func (r *Registry) ServeMetrics(ctx context.Context, log zerolog.Logger, addr string) error {
	ln, err := httpserve.Listen(addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler())
	go func() {
		if err := httpserve.Serve(ctx, log, ln, mux, time.Second); err != nil {
			log.Warn().Err(err).Msg("metrics listener stopped")
		}
	}()
	return nil
}

// Registration is a set of collectors a role registered together.
type Registration struct {
	reg prometheus.Registerer
	cs  []prometheus.Collector
}

// Register registers every collector of cs on reg, or none of them: if one
// fails (a name already taken, an invalid name), the ones registered before
// it are unregistered and the error is returned. Roles register last in
// their constructors, so a constructor that fails and is retried never
// finds its own metrics already registered.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) (*Registration, error) {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			(&Registration{reg: reg, cs: cs[:i]}).Unregister()
			var taken prometheus.AlreadyRegisteredError
			if errors.As(err, &taken) {
				return nil, fmt.Errorf("register metrics: already registered (one registry serves one instance of each role): %w", err)
			}
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return &Registration{reg: reg, cs: cs}, nil
}

// Unregister withdraws the collectors, as a closed role does, so that the
// process's /metrics stops serving them and a new instance may register.
// It does nothing on a nil Registration (a role whose registration never
// happened), which matters: the registry matches collectors by their
// descriptors, not their identity, so withdrawing collectors that failed
// to register would withdraw those of the instance that holds the names.
func (r *Registration) Unregister() {
	if r == nil {
		return
	}
	for _, c := range r.cs {
		r.reg.Unregister(c)
	}
	r.cs = nil
}
