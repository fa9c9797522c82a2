package projector

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// projMetrics are what the projector exports at /metrics. They are made
// unregistered and registered last in New (see promreg.Register), so that
// a New that fails and is retried finds none of its own registered.
type projMetrics struct {
	rows   *prometheus.CounterVec   // table
	insert *prometheus.HistogramVec // table
	batch  prometheus.Histogram
	lag    *prometheus.GaugeVec // topic, partition
	// fromStats are counters read from Stats at scrape time, which the
	// projector keeps anyway for its tests and benchmarks.
	fromStats []prometheus.Collector

	// ends are the log-end offsets the latest fetches saw, per
	// topic-partition; only the Run goroutine uses them.
	ends map[topicPartition]int64
}

type topicPartition struct {
	topic string
	part  int32
}

func newProjMetrics(st *Stats) projMetrics {
	counter := func(name, help string, v func() int64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v()) })
	}
	const skippedHelp = "Records left out of the tables, by reason: erased_user (rows of erased users), shredded (records sealed with the data key of a user erased since) or undecodable (unreadable records, logged by position)."
	return projMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vitals_projector_rows_total",
			Help: "Rows inserted into ClickHouse, by table."}, []string{"table"}),
		insert: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vitals_projector_insert_seconds",
			Help:    "Time of one successful INSERT of a batch's rows into a table.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"table"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vitals_projector_batch_records",
			Help:    "Records per stored batch (its count is the batches stored).",
			Buckets: []float64{1, 10, 100, 1000, 5000, 10000, 25000, 50000, 100000}}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vitals_projector_lag_records",
			Help: "Records between the committed position and the log end seen by the latest fetch, per owned topic-partition; set after each stored batch."},
			[]string{"topic", "partition"}),
		fromStats: []prometheus.Collector{
			counter("vitals_projector_records_committed_total", "Records whose offsets were committed after their rows were stored.", st.Committed.Load, nil),
			counter("vitals_projector_store_failures_total", "Failed attempts to store a batch (ClickHouse unavailable or refusing); each is retried.", st.Failures.Load, nil),
			counter("vitals_projector_records_skipped_total", skippedHelp, st.Erased.Load, prometheus.Labels{"reason": "erased_user"}),
			counter("vitals_projector_records_skipped_total", skippedHelp, st.Undecodable.Load, prometheus.Labels{"reason": "undecodable"}),
			counter("vitals_projector_records_skipped_total", skippedHelp, st.Shredded.Load, prometheus.Labels{"reason": "shredded"}),
		},
		ends: map[topicPartition]int64{},
	}
}

func (m *projMetrics) collectors() []prometheus.Collector {
	return append([]prometheus.Collector{m.rows, m.insert, m.batch, m.lag}, m.fromStats...)
}

// noteEnds remembers the log ends that fetches saw.
func (m *projMetrics) noteEnds(fetches kgo.Fetches) {
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Err == nil && len(fp.Records) > 0 {
			m.ends[topicPartition{fp.Topic, fp.Partition}] = fp.HighWatermark
		}
	})
}

// committed sets the lag of the partitions of a batch whose offsets were
// just committed.
func (m *projMetrics) committed(records []*kgo.Record) {
	next := map[topicPartition]int64{}
	for _, r := range records {
		k := topicPartition{r.Topic, r.Partition}
		next[k] = max(next[k], r.Offset+1)
	}
	for k, n := range next {
		if end, ok := m.ends[k]; ok {
			m.lag.WithLabelValues(k.topic, strconv.Itoa(int(k.part))).Set(float64(max(end-n, 0)))
		}
	}
}

// forget drops the lag of partitions the instance no longer owns: their
// new owner reports it.
func (m *projMetrics) forget(gone map[string][]int32) {
	for topic, parts := range gone {
		for _, part := range parts {
			m.lag.DeleteLabelValues(topic, strconv.Itoa(int(part)))
		}
	}
}
