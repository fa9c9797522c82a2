package metrics

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

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

func TestExposition(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *Registry)
		want  string
	}{
		{
			name: "counter vec sorted by label values",
			setup: func(r *Registry) {
				c := r.Counter("vitals_ingest_items_total", "Items judged by ingest, by outcome and reason.", "outcome", "reason")
				c.With("rejected", "unknown_unit").Inc()
				c.With("accepted", "").Add(3)
				c.With("rejected", "implausible").Add(2)
				c.With("rejected", "unknown_unit").Add(0.5)
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
				c := r.Counter("c_total", "h", "a", "b")
				c.With("ab", "x").Inc()
				c.With("a", "z").Inc()
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
				r.Gauge("b_gauge", "A gauge.")
				r.Counter("a_total", "A counter.")
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
				r.Counter("unused_total", "Never used.", "x")
			},
			want: "",
		},
		{
			name: "gauge set add inc dec",
			setup: func(r *Registry) {
				g := r.Gauge("vitals_processor_lag", "Consumer lag in records.", "partition")
				g.With("1").Set(42)
				g.With("0").Set(10)
				g.With("0").Add(-2.5)
				g.With("2").Inc()
				g.With("2").Inc()
				g.With("2").Dec()
			},
			want: `# HELP vitals_processor_lag Consumer lag in records.
# TYPE vitals_processor_lag gauge
vitals_processor_lag{partition="0"} 7.5
vitals_processor_lag{partition="1"} 42
vitals_processor_lag{partition="2"} 1
`,
		},
		{
			name: "gauge func and float formatting",
			setup: func(r *Registry) {
				r.GaugeFunc("vitals_up", "1 while the process runs.", func() float64 { return 1 })
				g := r.Gauge("g", "Values.", "v")
				g.With("big").Set(1e6)
				g.With("huge").Set(1e300)
				g.With("inf").Set(math.Inf(1))
				g.With("nan").Set(math.NaN())
				g.With("neginf").Set(math.Inf(-1))
				g.With("small").Set(0.000125)
			},
			want: `# HELP g Values.
# TYPE g gauge
g{v="big"} 1000000
g{v="huge"} 1e+300
g{v="inf"} +Inf
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
				h := r.Histogram("vitals_ingest_produce_seconds", "Time from produce to broker ack.", []float64{.005, .01, .1, 1}, "topic")
				p := h.With("vitals.raw")
				for _, v := range []float64{.001, .005, .007, .05, .05, 0.5, 3} {
					p.Observe(v)
				}
				h.With("vitals.dlq").Observe(2)
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
				h := r.Histogram("h_seconds", "H.", []float64{1, 2, math.Inf(1)})
				h.With().Observe(1) // bounds are inclusive
				h.With().Observe(2.5)
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
				c := r.Counter("esc_total", "Help with \\ backslash,\nnewline and \"quotes\".", "v")
				c.With("a\\b").Inc()
				c.With("line1\nline2").Inc()
				c.With(`say "hi"`).Inc()
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
			r := NewRegistry()
			tt.setup(r)
			if got := render(t, r); got != tt.want {
				t.Errorf("exposition mismatch\ngot:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func(r *Registry)
	}{
		{"empty metric name", func(r *Registry) { r.Counter("", "h") }},
		{"metric name starts with digit", func(r *Registry) { r.Counter("1x", "h") }},
		{"metric name with dash", func(r *Registry) { r.Gauge("a-b", "h") }},
		{"bad label name", func(r *Registry) { r.Counter("x_total", "h", "a:b") }},
		{"reserved label name", func(r *Registry) { r.Counter("x_total", "h", "__name") }},
		{"duplicate label name", func(r *Registry) { r.Counter("x_total", "h", "a", "a") }},
		{"le on histogram", func(r *Registry) { r.Histogram("x", "h", nil, "le") }},
		{"unsorted buckets", func(r *Registry) { r.Histogram("x", "h", []float64{1, 0.5}) }},
		{"repeated bucket", func(r *Registry) { r.Histogram("x", "h", []float64{1, 1}) }},
		{"NaN bucket", func(r *Registry) { r.Histogram("x", "h", []float64{math.NaN()}) }},
		{"duplicate registration", func(r *Registry) {
			r.Counter("x_total", "h")
			r.Gauge("x_total", "h", "a")
		}},
		{"duplicate gauge func", func(r *Registry) {
			r.GaugeFunc("up", "h", func() float64 { return 1 })
			r.GaugeFunc("up", "h", func() float64 { return 1 })
		}},
		{"clash with histogram sample name", func(r *Registry) {
			r.Histogram("x", "h", nil)
			r.Counter("x_count", "h")
		}},
		{"too few label values", func(r *Registry) { r.Counter("x_total", "h", "a", "b").With("1") }},
		{"too many label values", func(r *Registry) { r.Gauge("x", "h", "a").With("1", "2") }},
		{"values for unlabelled", func(r *Registry) { r.Histogram("x", "h", nil).With("1") }},
		{"no values for labelled", func(r *Registry) { r.Counter("x_total", "h", "a").With() }},
		{"negative counter add", func(r *Registry) { r.Counter("x_total", "h").With().Add(-1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			tt.f(NewRegistry())
		})
	}
}

func TestConcurrentUpdates(t *testing.T) {
	const goroutines, perG = 64, 1000
	r := NewRegistry()
	c := r.Counter("c_total", "h", "k")
	g := r.Gauge("g", "h")
	h := r.Histogram("h", "h", []float64{1, 2})
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			for j := range perG {
				c.With("shared").Inc()
				c.With("shared").Add(0.5) // exercises the CAS path
				g.With().Add(1)
				h.With().Observe(float64(j % 3))
				if j%100 == 0 && i%16 == 0 {
					render(t, r) // scrapes concurrent with updates
				}
			}
		})
	}
	wg.Wait()
	n := float64(goroutines * perG)
	if got, want := c.With("shared").Value(), 1.5*n; got != want {
		t.Errorf("counter = %v, want %v", got, want)
	}
	if got := g.With().Value(); got != n {
		t.Errorf("gauge = %v, want %v", got, n)
	}
	hh := h.With()
	if got := hh.Count(); got != uint64(n) {
		t.Errorf("histogram count = %v, want %v", got, n)
	}
	// j%3 sums to 999 per 1000 observations (333 each of 0, 1, 2 plus a 0).
	if got, want := hh.Sum(), float64(goroutines*999); got != want {
		t.Errorf("histogram sum = %v, want %v", got, want)
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_total", "h").With().Inc()
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
	if got := resp.Header.Get("Content-Type"); got != "text/plain; version=0.0.4; charset=utf-8" {
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

func TestWithReturnsSameChild(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("x_total", "h", "a", "b")
	if c.With("1", "2") != c.With("1", "2") {
		t.Error("With returned different children for the same values")
	}
	if c.With("1", "2") == c.With("12", "") {
		t.Error("With returned the same child for different values")
	}
	vals := []string{"p", "q"}
	c.With(vals...).Inc()
	vals[0] = "mutated" // the registry must have copied the values
	if got := render(t, r); !strings.Contains(got, `x_total{a="p",b="q"} 1`) {
		t.Errorf("values not copied:\n%s", got)
	}
}

func BenchmarkCounterWithInc(b *testing.B) {
	r := NewRegistry()
	c := r.Counter("vitals_ingest_items_total", "h", "outcome", "reason")
	b.Run("cached", func(b *testing.B) {
		cc := c.With("rejected", "unknown_unit")
		b.ReportAllocs()
		for b.Loop() {
			cc.Inc()
		}
	})
	b.Run("with", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.With("rejected", "unknown_unit").Inc()
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		cc := c.With("rejected", "unknown_unit")
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
				c.With("rejected", "unknown_unit").Inc()
			}
		})
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	r := NewRegistry()
	h := r.Histogram("vitals_ingest_produce_seconds", "h",
		[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "topic")
	b.Run("cached", func(b *testing.B) {
		hh := h.With("vitals.raw")
		b.ReportAllocs()
		for b.Loop() {
			hh.Observe(0.042)
		}
	})
	b.Run("with", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.With("vitals.raw").Observe(0.042)
		}
	})
}
