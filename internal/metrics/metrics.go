// Package metrics exposes counters, gauges and histograms in the Prometheus
// text exposition format, version 0.0.4.
//
// It exists so that Vitals does not need the Prometheus client library: the
// project keeps its dependency set to the five libraries of its design, and
// the services need only three metric types and one output format, which fit
// in a few hundred lines of standard-library code.
//
// There are no package-level registries. Create a [Registry] with
// [NewRegistry], register metrics on it at start-up and pass it to whatever
// serves /metrics:
//
//	r := metrics.NewRegistry()
//	items := r.Counter("vitals_ingest_items_total", "Items judged by ingest.", "outcome", "reason")
//	accepted := items.With("accepted", "") // cache children used on hot paths
//	accepted.Add(3)
//	http.Handle("/metrics", r.Handler())
//
// Registration panics on invalid or duplicate names because those are
// programming errors best found at start-up. Everything else is safe for
// concurrent use, and updating a metric is a handful of atomic operations.
package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ContentType is the media type of the text exposition format version 0.0.4,
// as served by [Registry.Handler].
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// A Registry holds a set of metrics and writes them in the text exposition
// format. The zero value is not usable; create one with [NewRegistry].
// A Registry is safe for concurrent use.
type Registry struct {
	mu      sync.Mutex
	metrics map[string]collector // by metric name
	names   map[string]string    // every sample name in use -> owning metric
}

// collector is one registered metric family.
type collector interface {
	// write appends the family's HELP, TYPE and sample lines to w.
	write(w *bufio.Writer)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		metrics: make(map[string]collector),
		names:   make(map[string]string),
	}
}

// register validates the names and adds c under name. sampleNames are the
// names c's samples use (a histogram has three); reserving them all catches
// e.g. a counter "x_count" clashing with histogram "x", which Prometheus
// would otherwise see as one garbled family.
func (r *Registry) register(name string, labels []string, c collector, sampleNames ...string) {
	if !validMetricName(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	for i, l := range labels {
		if !validLabelName(l) {
			panic(fmt.Sprintf("metrics: %s: invalid label name %q", name, l))
		}
		if slices.Contains(labels[:i], l) {
			panic(fmt.Sprintf("metrics: %s: duplicate label name %q", name, l))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range sampleNames {
		if owner, ok := r.names[s]; ok {
			panic(fmt.Sprintf("metrics: %s: duplicate registration (sample name %q is used by %s)", name, s, owner))
		}
	}
	for _, s := range sampleNames {
		r.names[s] = name
	}
	r.metrics[name] = c
}

// Counter registers and returns a counter family with the given label names.
// With no label names, the family has exactly one series, obtained with
// With(), and it is exported as 0 before its first increment so that rates
// start from a known point.
// Counter panics if a name is invalid or the metric name is already in use.
func (r *Registry) Counter(name, help string, labelNames ...string) *CounterVec {
	v := new(CounterVec)
	v.vec.init(name, help, "counter", labelNames, func() *Counter { return new(Counter) })
	r.register(name, v.vec.labels, v, name)
	return v
}

// Gauge registers and returns a gauge family with the given label names.
// As with [Registry.Counter], a family without labels has one series,
// exported from the start.
// Gauge panics if a name is invalid or the metric name is already in use.
func (r *Registry) Gauge(name, help string, labelNames ...string) *GaugeVec {
	v := new(GaugeVec)
	v.vec.init(name, help, "gauge", labelNames, func() *Gauge { return new(Gauge) })
	r.register(name, v.vec.labels, v, name)
	return v
}

// Histogram registers and returns a histogram family with the given bucket
// upper bounds and label names. The bounds must be strictly increasing; a
// final +Inf bound is implied and may be omitted. The label name "le" is
// reserved for the buckets.
// Histogram panics if a name is invalid, a name is already in use or the
// buckets are not strictly increasing.
func (r *Registry) Histogram(name, help string, buckets []float64, labelNames ...string) *HistogramVec {
	bounds := slices.Clone(buckets)
	if n := len(bounds); n > 0 && math.IsInf(bounds[n-1], +1) {
		bounds = bounds[:n-1]
	}
	for i, b := range bounds {
		if math.IsNaN(b) || (i > 0 && b <= bounds[i-1]) {
			panic(fmt.Sprintf("metrics: %s: buckets must be strictly increasing, got %v", name, buckets))
		}
	}
	if slices.Contains(labelNames, "le") {
		panic(fmt.Sprintf("metrics: %s: label name \"le\" is reserved for histogram buckets", name))
	}
	les := make([]string, len(bounds)+1)
	for i, b := range bounds {
		les[i] = formatFloat(b)
	}
	les[len(bounds)] = "+Inf"
	v := &HistogramVec{les: les}
	v.vec.init(name, help, "histogram", labelNames, func() *Histogram {
		return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
	})
	r.register(name, v.vec.labels, v, name, name+"_bucket", name+"_sum", name+"_count")
	return v
}

// GaugeFunc registers a gauge without labels whose value is fn's result at
// scrape time. It suits values that already live elsewhere (queue lengths,
// pool sizes), which would otherwise need copying on every change.
// fn may be called concurrently by simultaneous scrapes and should be fast.
// GaugeFunc panics if the name is invalid or already in use.
func (r *Registry) GaugeFunc(name, help string, fn func() float64) {
	r.register(name, nil, &gaugeFunc{name: name, help: help, fn: fn}, name)
}

// WriteTo writes every registered metric to w in the text exposition format,
// families sorted by name and series by label values, so output is stable.
// It implements [io.WriterTo]. A scrape concurrent with updates sees each
// series at some moment during the scrape, not one instant for all series.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	names := make([]string, 0, len(r.metrics))
	for n := range r.metrics {
		names = append(names, n)
	}
	cs := make([]collector, len(names))
	slices.Sort(names)
	for i, n := range names {
		cs[i] = r.metrics[n]
	}
	r.mu.Unlock()

	cw := &countingWriter{w: w}
	bw := bufio.NewWriter(cw)
	for _, c := range cs {
		c.write(bw)
	}
	err := bw.Flush()
	return cw.n, err
}

// Handler returns an HTTP handler serving the registry in the text exposition
// format. The body is rendered in full before sending so the response carries
// a Content-Length and a scrape is never cut short half-way by a slow writer.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var buf bytes.Buffer
		r.WriteTo(&buf) // writing to a bytes.Buffer cannot fail
		h := w.Header()
		h.Set("Content-Type", ContentType)
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		if req.Method == http.MethodHead {
			return
		}
		w.Write(buf.Bytes())
	})
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

// vec is the part common to every family: its description and its children,
// one per distinct tuple of label values.
type vec[T any] struct {
	name, help, typ string
	labels          []string
	newChild        func() *T

	// single is the only child of a family without labels; keeping it out
	// of the map makes With() a field load.
	single *T

	// children maps the label values joined by keySep to a *child[T].
	// sync.Map suits the access pattern: series are created rarely and
	// looked up constantly, and its Load neither locks nor allocates.
	children sync.Map
}

type child[T any] struct {
	values []string
	metric *T
}

// keySep separates label values in a children key. The byte 0xff never
// occurs in UTF-8, which the exposition format requires of label values, so
// distinct tuples of valid values cannot produce the same key.
const keySep = 0xff

func (v *vec[T]) init(name, help, typ string, labels []string, newChild func() *T) {
	v.name, v.help, v.typ = name, help, typ
	v.labels = slices.Clone(labels)
	v.newChild = newChild
	if len(labels) == 0 {
		v.single = newChild()
	}
}

// with returns the child for values, creating it on first use.
func (v *vec[T]) with(values []string) *T {
	if len(values) != len(v.labels) {
		panic(fmt.Sprintf("metrics: %s: got %d label values for %d label names %q", v.name, len(values), len(v.labels), v.labels))
	}
	if v.single != nil {
		return v.single
	}
	// Build the key in a stack buffer: sync.Map.Load does not retain its
	// key, so a lookup of an existing series does not allocate when the key
	// is short.
	var buf [64]byte
	key := buf[:0]
	for i, s := range values {
		if i > 0 {
			key = append(key, keySep)
		}
		key = append(key, s...)
	}
	if c, ok := v.children.Load(string(key)); ok {
		return c.(*child[T]).metric
	}
	c, _ := v.children.LoadOrStore(string(key), &child[T]{values: slices.Clone(values), metric: v.newChild()})
	return c.(*child[T]).metric
}

// series returns the children sorted by label values, element by element
// (sorting the joined keys would not give the same order).
func (v *vec[T]) series() []*child[T] {
	if v.single != nil {
		return []*child[T]{{metric: v.single}}
	}
	var cs []*child[T]
	v.children.Range(func(_, c any) bool {
		cs = append(cs, c.(*child[T]))
		return true
	})
	sort.Slice(cs, func(i, j int) bool { return slices.Compare(cs[i].values, cs[j].values) < 0 })
	return cs
}

// writeHeader writes the HELP and TYPE lines.
func writeHeader(w *bufio.Writer, name, help, typ string) {
	w.WriteString("# HELP ")
	w.WriteString(name)
	w.WriteByte(' ')
	helpEscaper.WriteString(w, help)
	w.WriteString("\n# TYPE ")
	w.WriteString(name)
	w.WriteByte(' ')
	w.WriteString(typ)
	w.WriteByte('\n')
}

// writeSample writes one sample line. extraName/extraValue, if extraName is
// not empty, is appended as a final label (a histogram's "le").
func writeSample(w *bufio.Writer, name string, labels, values []string, extraName, extraValue string, value float64) {
	w.WriteString(name)
	if len(labels) > 0 || extraName != "" {
		w.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(l)
			w.WriteString(`="`)
			labelEscaper.WriteString(w, values[i])
			w.WriteByte('"')
		}
		if extraName != "" {
			if len(labels) > 0 {
				w.WriteByte(',')
			}
			w.WriteString(extraName)
			w.WriteString(`="`)
			w.WriteString(extraValue)
			w.WriteByte('"')
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(value))
	w.WriteByte('\n')
}

var (
	// helpEscaper escapes HELP text; quotes are legal there.
	helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	// labelEscaper escapes label values, which are double-quoted.
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// formatFloat formats v as Prometheus parses it. Integral values of
// moderate size are written without an exponent (1000000, not 1e+06) because
// counters are mostly integers and read better so; the rest use the
// shortest representation that round-trips, including +Inf, -Inf and NaN.
func formatFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// CounterVec is a family of counters partitioned by label values.
type CounterVec struct{ vec vec[Counter] }

// With returns the counter for the given label values, in the order of the
// label names given at registration, creating it on first use. Callers on
// hot paths should call With once and keep the result.
// With panics if the number of values differs from the number of names.
func (v *CounterVec) With(values ...string) *Counter { return v.vec.with(values) }

func (v *CounterVec) write(w *bufio.Writer) {
	f := &v.vec
	cs := f.series()
	if len(cs) == 0 {
		return
	}
	writeHeader(w, f.name, f.help, f.typ)
	for _, c := range cs {
		writeSample(w, f.name, f.labels, c.values, "", "", c.metric.Value())
	}
}

// A Counter is a value that only goes up. Its methods are safe for
// concurrent use.
type Counter struct {
	// Integral increments go to ints with a single atomic add; only
	// fractional ones pay for the compare-and-swap loop on bits.
	ints atomic.Uint64
	bits atomic.Uint64 // math.Float64bits of the fractional part's sum
}

// Inc adds 1 to the counter.
func (c *Counter) Inc() { c.ints.Add(1) }

// Add adds v to the counter. It panics if v is negative, since a counter
// that goes down breaks every rate computed from it.
func (c *Counter) Add(v float64) {
	if v < 0 {
		panic(fmt.Sprintf("metrics: counter decreased by %v", -v))
	}
	if v < 1<<63 && v == math.Trunc(v) {
		c.ints.Add(uint64(v))
		return
	}
	addFloat(&c.bits, v)
}

// Value returns the counter's current value.
func (c *Counter) Value() float64 {
	return float64(c.ints.Load()) + math.Float64frombits(c.bits.Load())
}

// addFloat atomically adds v to the float64 stored as bits in p.
func addFloat(p *atomic.Uint64, v float64) {
	for {
		old := p.Load()
		if p.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// GaugeVec is a family of gauges partitioned by label values.
type GaugeVec struct{ vec vec[Gauge] }

// With returns the gauge for the given label values, in the order of the
// label names given at registration, creating it on first use. Callers on
// hot paths should call With once and keep the result.
// With panics if the number of values differs from the number of names.
func (v *GaugeVec) With(values ...string) *Gauge { return v.vec.with(values) }

func (v *GaugeVec) write(w *bufio.Writer) {
	f := &v.vec
	cs := f.series()
	if len(cs) == 0 {
		return
	}
	writeHeader(w, f.name, f.help, f.typ)
	for _, c := range cs {
		writeSample(w, f.name, f.labels, c.values, "", "", c.metric.Value())
	}
}

// A Gauge is a value that can go up and down. Its methods are safe for
// concurrent use.
type Gauge struct {
	bits atomic.Uint64 // math.Float64bits of the value
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v, which may be negative, to the gauge.
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Inc adds 1 to the gauge.
func (g *Gauge) Inc() { g.Add(1) }

// Dec subtracts 1 from the gauge.
func (g *Gauge) Dec() { g.Add(-1) }

// Value returns the gauge's current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

type gaugeFunc struct {
	name, help string
	fn         func() float64
}

func (g *gaugeFunc) write(w *bufio.Writer) {
	writeHeader(w, g.name, g.help, "gauge")
	writeSample(w, g.name, nil, nil, "", "", g.fn())
}

// HistogramVec is a family of histograms partitioned by label values.
type HistogramVec struct {
	vec vec[Histogram]
	les []string // formatted bucket bounds, ending with "+Inf"
}

// With returns the histogram for the given label values, in the order of
// the label names given at registration, creating it on first use. Callers
// on hot paths should call With once and keep the result.
// With panics if the number of values differs from the number of names.
func (v *HistogramVec) With(values ...string) *Histogram { return v.vec.with(values) }

func (v *HistogramVec) write(w *bufio.Writer) {
	f := &v.vec
	cs := f.series()
	if len(cs) == 0 {
		return
	}
	writeHeader(w, f.name, f.help, f.typ)
	bucket, sum, count := f.name+"_bucket", f.name+"_sum", f.name+"_count"
	for _, c := range cs {
		h := c.metric
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i].Load()
			writeSample(w, bucket, f.labels, c.values, "le", v.les[i], float64(cum))
		}
		writeSample(w, sum, f.labels, c.values, "", "", h.Sum())
		writeSample(w, count, f.labels, c.values, "", "", float64(cum))
	}
}

// A Histogram counts observations in buckets and keeps their sum. Its
// methods are safe for concurrent use.
type Histogram struct {
	bounds []float64 // upper bounds, shared by the family; +Inf implied
	// counts holds per-bucket (not cumulative) counts, the last for +Inf.
	// The total count is derived from them at scrape time rather than kept
	// separately, so _count always equals the +Inf bucket even mid-update.
	counts []atomic.Uint64
	sum    atomic.Uint64 // math.Float64bits of the sum of observations
}

// Observe records v. A bucket's upper bound is inclusive, as in Prometheus.
// NaN is counted in the +Inf bucket and makes the sum NaN.
func (h *Histogram) Observe(v float64) {
	// Linear search beats binary search for the dozen or so buckets
	// histograms have in practice and stays simple.
	i := 0
	for i < len(h.bounds) && !(v <= h.bounds[i]) {
		i++
	}
	h.counts[i].Add(1)
	addFloat(&h.sum, v)
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Sum returns the sum of the observations.
func (h *Histogram) Sum() float64 { return math.Float64frombits(h.sum.Load()) }

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
// The name checks are written out rather than using regexp, which would be
// the package's heaviest import for two character classes.
func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]* and does
// not start with "__", which Prometheus reserves for internal labels.
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
