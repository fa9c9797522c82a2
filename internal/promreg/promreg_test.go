package promreg

// These tests carry over what the hand-written exposition package that
// client_golang replaced asserted (families sorted by name and series by
// label values, unlabelled metrics exported from the start, cumulative
// histogram buckets, escaping, refusal of invalid definitions, safety under
// concurrent updates and scrapes, the /metrics handler), now as facts the
// roles rely on from client_golang and from this package.

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

// bare is a registry without the Go and process collectors, so that
// expected expositions hold only the test's metrics.
func bare() *Registry { return &Registry{Registry: prometheus.NewRegistry()} }

func render(t *testing.T, r *Registry) string {
	t.Helper()
	var b strings.Builder
	n, err := r.WriteTo(&b)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if int(n) != b.Len() {
		t.Errorf("WriteTo returned %d, wrote %d bytes", n, b.Len())
	}
	return b.String()
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func counter(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "h"})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func TestExposition(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *Registry)
		want  string
	}{
		{
			name: "counter vec sorted by label values",
			setup: func(r *Registry) {
				c := counterVec("vitals_ingest_items_total", "Items judged by ingest, by outcome and reason.", "outcome", "reason")
				r.MustRegister(c)
				c.WithLabelValues("rejected", "unknown_unit").Inc()
				c.WithLabelValues("accepted", "").Add(3)
				c.WithLabelValues("rejected", "implausible").Add(2)
				c.WithLabelValues("rejected", "unknown_unit").Add(0.5)
			},
			want: `# HELP vitals_ingest_items_total Items judged by ingest, by outcome and reason.
# TYPE vitals_ingest_items_total counter
vitals_ingest_items_total{outcome="accepted",reason=""} 3
vitals_ingest_items_total{outcome="rejected",reason="implausible"} 2
vitals_ingest_items_total{outcome="rejected",reason="unknown_unit"} 1.5
`,
		},
		{
			name: "series sort element-wise, not by joined key",
			setup: func(r *Registry) {
				c := counterVec("c_total", "h", "a", "b")
				r.MustRegister(c)
				c.WithLabelValues("ab", "x").Inc()
				c.WithLabelValues("a", "z").Inc()
			},
			want: `# HELP c_total h
# TYPE c_total counter
c_total{a="a",b="z"} 1
c_total{a="ab",b="x"} 1
`,
		},
		{
			name: "unlabelled metrics exported from the start, families by name",
			setup: func(r *Registry) {
				r.MustRegister(
					prometheus.NewGauge(prometheus.GaugeOpts{Name: "b_gauge", Help: "A gauge."}),
					prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "A counter."}),
				)
			},
			want: `# HELP a_total A counter.
# TYPE a_total counter
a_total 0
# HELP b_gauge A gauge.
# TYPE b_gauge gauge
b_gauge 0
`,
		},
		{
			name: "labelled family without series is omitted",
			setup: func(r *Registry) {
				r.MustRegister(counterVec("unused_total", "Never used.", "x"))
			},
			want: "",
		},
		{
			name: "gauge set add inc dec",
			setup: func(r *Registry) {
				g := gaugeVec("vitals_processor_lag", "Consumer lag in records.", "partition")
				r.MustRegister(g)
				g.WithLabelValues("1").Set(42)
				g.WithLabelValues("0").Set(10)
				g.WithLabelValues("0").Add(-2.5)
				g.WithLabelValues("2").Inc()
				g.WithLabelValues("2").Inc()
				g.WithLabelValues("2").Dec()
			},
			want: `# HELP vitals_processor_lag Consumer lag in records.
# TYPE vitals_processor_lag gauge
vitals_processor_lag{partition="0"} 7.5
vitals_processor_lag{partition="1"} 42
vitals_processor_lag{partition="2"} 1
`,
		},
		{
			// Values are written as Go's shortest round-tripping form, which
			// Prometheus parses: large integers get an exponent (1e+06).
			name: "gauge func and float formatting",
			setup: func(r *Registry) {
				r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vitals_up", Help: "1 while the process runs."}, func() float64 { return 1 }))
				g := gaugeVec("g", "Values.", "v")
				r.MustRegister(g)
				g.WithLabelValues("big").Set(1e6)
				g.WithLabelValues("huge").Set(1e300)
				g.WithLabelValues("inf").Set(math.Inf(1))
				g.WithLabelValues("int").Set(123456)
				g.WithLabelValues("nan").Set(math.NaN())
				g.WithLabelValues("neginf").Set(math.Inf(-1))
				g.WithLabelValues("small").Set(0.000125)
			},
			want: `# HELP g Values.
# TYPE g gauge
g{v="big"} 1e+06
g{v="huge"} 1e+300
g{v="inf"} +Inf
g{v="int"} 123456
g{v="nan"} NaN
g{v="neginf"} -Inf
g{v="small"} 0.000125
# HELP vitals_up 1 while the process runs.
# TYPE vitals_up gauge
vitals_up 1
`,
		},
		{
			name: "histogram buckets are cumulative, with sum and count",
			setup: func(r *Registry) {
				h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vitals_ingest_produce_seconds", Help: "Time from produce to broker ack.",
					Buckets: []float64{.005, .01, .1, 1}}, []string{"topic"})
				r.MustRegister(h)
				p := h.WithLabelValues("vitals.raw")
				for _, v := range []float64{.001, .005, .007, .05, .05, 0.5, 3} {
					p.Observe(v)
				}
				h.WithLabelValues("vitals.dlq").Observe(2)
			},
			want: `# HELP vitals_ingest_produce_seconds Time from produce to broker ack.
# TYPE vitals_ingest_produce_seconds histogram
vitals_ingest_produce_seconds_bucket{topic="vitals.dlq",le="0.005"} 0
vitals_ingest_produce_seconds_bucket{topic="vitals.dlq",le="0.01"} 0
vitals_ingest_produce_seconds_bucket{topic="vitals.dlq",le="0.1"} 0
vitals_ingest_produce_seconds_bucket{topic="vitals.dlq",le="1"} 0
vitals_ingest_produce_seconds_bucket{topic="vitals.dlq",le="+Inf"} 1
vitals_ingest_produce_seconds_sum{topic="vitals.dlq"} 2
vitals_ingest_produce_seconds_count{topic="vitals.dlq"} 1
vitals_ingest_produce_seconds_bucket{topic="vitals.raw",le="0.005"} 2
vitals_ingest_produce_seconds_bucket{topic="vitals.raw",le="0.01"} 3
vitals_ingest_produce_seconds_bucket{topic="vitals.raw",le="0.1"} 5
vitals_ingest_produce_seconds_bucket{topic="vitals.raw",le="1"} 6
vitals_ingest_produce_seconds_bucket{topic="vitals.raw",le="+Inf"} 7
vitals_ingest_produce_seconds_sum{topic="vitals.raw"} 3.613
vitals_ingest_produce_seconds_count{topic="vitals.raw"} 7
`,
		},
		{
			name: "histogram without labels, explicit +Inf bound dropped",
			setup: func(r *Registry) {
				h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds", Help: "H.", Buckets: []float64{1, 2, math.Inf(1)}})
				r.MustRegister(h)
				h.Observe(1) // bounds are inclusive
				h.Observe(2.5)
			},
			want: `# HELP h_seconds H.
# TYPE h_seconds histogram
h_seconds_bucket{le="1"} 1
h_seconds_bucket{le="2"} 1
h_seconds_bucket{le="+Inf"} 2
h_seconds_sum 3.5
h_seconds_count 2
`,
		},
		{
			name: "escaping of label values and help",
			setup: func(r *Registry) {
				c := counterVec("esc_total", "Help with \\ backslash,\nnewline and \"quotes\".", "v")
				r.MustRegister(c)
				c.WithLabelValues("a\\b").Inc()
				c.WithLabelValues("line1\nline2").Inc()
				c.WithLabelValues(`say "hi"`).Inc()
			},
			want: `# HELP esc_total Help with \\ backslash,\nnewline and "quotes".
# TYPE esc_total counter
esc_total{v="a\\b"} 1
esc_total{v="line1\nline2"} 1
esc_total{v="say \"hi\""} 1
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bare()
			tt.setup(r)
			if got := render(t, r); got != tt.want {
				t.Errorf("exposition mismatch\ngot:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestInvalidDefinitionsRefused: definitions that would garble the
// exposition are refused, by Register (an error a role's constructor
// returns) or by a panic where client_golang finds them only on use.
func TestInvalidDefinitionsRefused(t *testing.T) {
	registerFails := []struct {
		name string
		cs   []prometheus.Collector
	}{
		{"empty metric name", []prometheus.Collector{counterVec("", "h")}},
		{"reserved label name", []prometheus.Collector{counterVec("x_total", "h", "__name")}},
		{"duplicate label name", []prometheus.Collector{counterVec("x_total", "h", "a", "a")}},
		{"duplicate registration", []prometheus.Collector{counterVec("x_total", "h"), gaugeVec("x_total", "h", "a")}},
		{"duplicate gauge func", []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "up", Help: "h"}, func() float64 { return 1 }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "up", Help: "h"}, func() float64 { return 1 }),
		}},
	}
	for _, tt := range registerFails {
		t.Run(tt.name, func(t *testing.T) {
			r := bare()
			if _, err := Register(r, tt.cs...); err == nil {
				t.Error("Register accepted it")
			}
			if got := render(t, r); got != "" {
				t.Errorf("a failed Register left metrics registered:\n%s", got)
			}
		})
	}

	panics := []struct {
		name string
		f    func()
	}{
		{"le on histogram", func() {
			prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x", Help: "h"}, []string{"le"}).WithLabelValues("1")
		}},
		{"unsorted buckets", func() {
			prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Help: "h", Buckets: []float64{1, 0.5}})
		}},
		{"repeated bucket", func() {
			prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Help: "h", Buckets: []float64{1, 1}})
		}},
		{"too few label values", func() { counterVec("x_total", "h", "a", "b").WithLabelValues("1") }},
		{"too many label values", func() { gaugeVec("x", "h", "a").WithLabelValues("1", "2") }},
		{"values for unlabelled", func() {
			prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x", Help: "h"}, nil).WithLabelValues("1")
		}},
		{"no values for labelled", func() { counterVec("x_total", "h", "a").WithLabelValues() }},
		{"negative counter add", func() { prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "h"}).Add(-1) }},
	}
	for _, tt := range panics {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			tt.f()
		})
	}

	// A counter named like a histogram's _count series would make one
	// garbled family for Prometheus; the scrape reports it instead.
	t.Run("clash with histogram sample name", func(t *testing.T) {
		r := bare()
		if _, err := Register(r, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Help: "h"}),
			prometheus.NewCounter(prometheus.CounterOpts{Name: "x_count", Help: "h"})); err != nil {
			t.Fatal(err)
		}
		if _, err := r.WriteTo(io.Discard); err == nil {
			t.Error("WriteTo rendered a histogram x beside a counter x_count")
		}
	})
}

func TestRegisterAllOrNone(t *testing.T) {
	r := bare()
	taken, err := Register(r, counter("b_total"))
	if err != nil {
		t.Fatal(err)
	}
	a := counter("a_total")
	failed, err := Register(r, a, counter("b_total"))
	if err == nil {
		t.Fatal("Register accepted a name already taken")
	}
	// a was registered, then withdrawn: registering it again works.
	again, err := Register(r, a)
	if err != nil {
		t.Errorf("a stayed registered after the failed Register: %v", err)
	}
	// Withdrawing a failed registration withdraws nothing, in particular
	// not the b_total of the registration that holds the name.
	failed.Unregister()
	if got := render(t, r); !strings.Contains(got, "b_total 0") {
		t.Errorf("a failed registration's Unregister withdrew another's metric:\n%s", got)
	}
	again.Unregister()
	taken.Unregister()
	taken.Unregister() // twice is harmless
	if got := render(t, r); got != "" {
		t.Errorf("metrics left after Unregister:\n%s", got)
	}
	if _, err := Register(r, counter("a_total"), counter("b_total")); err != nil {
		t.Errorf("Unregister did not free the names: %v", err)
	}
}

func TestNewHoldsRuntimeAndProcessMetrics(t *testing.T) {
	families, err := New().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range families {
		have[f.GetName()] = true
	}
	for _, want := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !have[want] {
			t.Errorf("New() does not export %s", want)
		}
	}
	r := bare()
	if OrNew(r) != r {
		t.Error("OrNew replaced a registry it was given")
	}
	if OrNew(nil) == nil {
		t.Error("OrNew(nil) is nil")
	}
}

func TestConcurrentUpdates(t *testing.T) {
	const goroutines, perG = 64, 1000
	r := bare()
	c := counterVec("c_total", "h", "k")
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "h"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h", Buckets: []float64{1, 2}})
	r.MustRegister(c, g, h)
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			for j := range perG {
				c.WithLabelValues("shared").Inc()
				c.WithLabelValues("shared").Add(0.5) // a fractional add
				g.Add(1)
				h.Observe(float64(j % 3))
				if j%100 == 0 && i%16 == 0 {
					render(t, r) // scrapes concurrent with updates
				}
			}
		})
	}
	wg.Wait()
	n := float64(goroutines * perG)
	if got, want := testutil.ToFloat64(c.WithLabelValues("shared")), 1.5*n; got != want {
		t.Errorf("counter = %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(g); got != n {
		t.Errorf("gauge = %v, want %v", got, n)
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram().GetSampleCount(); got != uint64(n) {
		t.Errorf("histogram count = %v, want %v", got, n)
	}
	// j%3 sums to 999 per 1000 observations (333 each of 0, 1, 2 plus a 0).
	if got, want := m.GetHistogram().GetSampleSum(), float64(goroutines*999); got != want {
		t.Errorf("histogram sum = %v, want %v", got, want)
	}
}

func TestHandler(t *testing.T) {
	r := bare()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "h"})
	r.MustRegister(c)
	c.Inc()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d", resp.StatusCode)
	}
	// The text format, version 0.0.4 (client_golang adds the escaping
	// scheme as a further parameter).
	if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/plain; version=0.0.4; charset=utf-8") {
		t.Errorf("Content-Type = %q", got)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# HELP x_total h\n# TYPE x_total counter\nx_total 1\n"; string(body) != want {
		t.Errorf("body = %q, want %q", body, want)
	}

	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST status = %d, want %d", rec.Code, http.StatusMethodNotAllowed)
	}
}

func TestServeMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := bare()
	r.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "h"}))
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.ServeMetrics(ctx, zerolog.Nop(), addr); err != nil {
		t.Fatal(err)
	}
	if err := r.ServeMetrics(ctx, zerolog.Nop(), addr); err == nil {
		t.Error("a second ServeMetrics on the same address did not fail at once")
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "x_total 0") {
		t.Errorf("/metrics = %q", body)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // stopped listening with ctx
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still listening after ctx ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWithReturnsSameChild(t *testing.T) {
	r := bare()
	c := counterVec("x_total", "h", "a", "b")
	r.MustRegister(c)
	if c.WithLabelValues("1", "2") != c.WithLabelValues("1", "2") {
		t.Error("WithLabelValues returned different children for the same values")
	}
	if c.WithLabelValues("1", "2") == c.WithLabelValues("12", "") {
		t.Error("WithLabelValues returned the same child for different values")
	}
	vals := []string{"p", "q"}
	c.WithLabelValues(vals...).Inc()
	vals[0] = "mutated" // the registry must have copied the values
	if got := render(t, r); !strings.Contains(got, `x_total{a="p",b="q"} 1`) {
		t.Errorf("values not copied:\n%s", got)
	}
}

func BenchmarkCounterWithInc(b *testing.B) {
	c := counterVec("vitals_ingest_items_total", "h", "outcome", "reason")
	b.Run("cached", func(b *testing.B) {
		cc := c.WithLabelValues("rejected", "unknown_unit")
		b.ReportAllocs()
		for b.Loop() {
			cc.Inc()
		}
	})
	b.Run("with", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.WithLabelValues("rejected", "unknown_unit").Inc()
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		cc := c.WithLabelValues("rejected", "unknown_unit")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				cc.Inc()
			}
		})
	})
	b.Run("with-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.WithLabelValues("rejected", "unknown_unit").Inc()
			}
		})
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vitals_ingest_produce_seconds", Help: "h",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"topic"})
	b.Run("cached", func(b *testing.B) {
		hh := h.WithLabelValues("vitals.raw")
		b.ReportAllocs()
		for b.Loop() {
			hh.Observe(0.042)
		}
	})
	b.Run("with", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.WithLabelValues("vitals.raw").Observe(0.042)
		}
	})
}
