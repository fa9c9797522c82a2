package query

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serviceMetrics are what the query service exports at /metrics. They are
// registered last in New, so that a New that fails and is retried finds
// none of its own registered.
type serviceMetrics struct {
	requests *prometheus.CounterVec   // endpoint, code
	latency  *prometheus.HistogramVec // endpoint
	// auditFailures counts answers replaced by 503 because their audit
	// record could not be written (the requests counter saw the
	// handler's status).
	auditFailures prometheus.Counter
}

func newServiceMetrics() serviceMetrics {
	return serviceMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_query_requests_total",
			Help: "API requests by endpoint and HTTP status."}, []string{"endpoint", "code"}),
		// Up to the read-your-writes wait (MaxWait, 10 s) plus a query
		// (QueryTimeout, 30 s).
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vitals_query_request_seconds",
			Help:    "Time to answer an API request, by endpoint: authentication, any read-your-writes wait and the ClickHouse queries.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 40}}, []string{"endpoint"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "vitals_query_audit_failures_total",
			Help: "API answers withheld (503 audit_unavailable) because their access audit record could not be written."}),
	}
}

func (m serviceMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.auditFailures}
}

// instrument counts and times h's requests as endpoint's. The endpoint's
// latency series is exported from the start, so a dashboard shows the
// endpoint before its first request.
func (m serviceMetrics) instrument(endpoint string, h http.Handler) http.Handler {
	l := prometheus.Labels{"endpoint": endpoint}
	m.latency.With(l)
	return promhttp.InstrumentHandlerDuration(m.latency.MustCurryWith(l),
		promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(l), h))
}
