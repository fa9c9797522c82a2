package processor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// procMetrics are what the processor exports at /metrics. They are made
// unregistered and registered last in New (see promreg.Register), so that
// a New that fails and is retried finds none of its own registered.
type procMetrics struct {
	events    *prometheus.CounterVec // kind, outcome, reason
	commit    prometheus.Histogram
	batchSize prometheus.Histogram
	lag       *prometheus.GaugeVec // topic, partition
	// checkpointUsers counts aggregates written per checkpoint.
	checkpointUsers prometheus.Histogram
	// resent counts outputs produced again after unacknowledged sends.
	resent prometheus.Counter
	// users and evicted are the aggregates in memory, and those dropped
	// to keep within MaxUsers.
	users   prometheus.Gauge
	evicted prometheus.Counter
}

func newProcMetrics() procMetrics {
	return procMetrics{
		users: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vitals_processor_users_in_memory",
			Help: "Aggregates of owned users held in memory (bounded by --processor-max-users)."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "vitals_processor_users_evicted_total",
			Help: "Aggregates dropped from memory after a checkpoint to stay within --processor-max-users; loaded again on the user's next event."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_processor_events_total",
			Help: "Events judged, by kind (reading, device, profile), outcome (accepted, rejected, duplicate, held, applied) and reason."},
			[]string{"kind", "outcome", "reason"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vitals_processor_commit_seconds",
			Help:    "Time to commit a checkpoint (changed aggregates and offsets) to PostgreSQL.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vitals_processor_batch_records",
			Help:    "Records per applied step.",
			Buckets: []float64{1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000}}),
		checkpointUsers: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vitals_processor_checkpoint_users",
			Help:    "Aggregates written per checkpoint.",
			Buckets: []float64{1, 10, 100, 1000, 10000, 50000, 100000, 250000}}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{Name: "vitals_processor_outputs_resent_total",
			Help: "Outputs produced again because their first send was not acknowledged (only those the output topics did not already hold)."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vitals_processor_lag_records",
			Help: "Records between the stored position and the log end, per owned topic-partition."}, []string{"topic", "partition"}),
	}
}

func (m procMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.commit, m.batchSize, m.checkpointUsers, m.resent, m.lag, m.users, m.evicted}
}
