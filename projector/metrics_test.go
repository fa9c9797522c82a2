package projector

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The lag of a committed batch's partitions is the log end its fetches saw
// minus the position after its last record; a partition given up loses its
// series, and the counters kept in Stats are exported as they stand.
func TestMetricsLagAndStats(t *testing.T) {
	var st Stats
	m := newProjMetrics(&st)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m.lag); err != nil {
		t.Fatal(err)
	}
	for _, c := range m.fromStats {
		reg.MustRegister(c)
	}
	rec := func(topic string, part int32, off int64) *kgo.Record {
		return &kgo.Record{Topic: topic, Partition: part, Offset: off}
	}
	m.noteEnds(kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "acc", Partitions: []kgo.FetchPartition{
		{Partition: 0, HighWatermark: 100, Records: []*kgo.Record{rec("acc", 0, 40)}},
		{Partition: 1, HighWatermark: 7, Records: []*kgo.Record{rec("acc", 1, 6)}},
		{Partition: 2, HighWatermark: 50}, // no records: end not taken
	}}}}})
	m.committed([]*kgo.Record{rec("acc", 0, 38), rec("acc", 0, 39), rec("acc", 1, 6), rec("acc", 0, 40), rec("acc", 2, 3)})
	st.Committed.Add(5)
	st.Erased.Add(2)
	st.Undecodable.Add(1)
	st.Shredded.Add(3)
	want := `
# HELP vitals_projector_lag_records Records between the committed position and the log end seen by the latest fetch, per owned topic-partition; set after each stored batch.
# TYPE vitals_projector_lag_records gauge
vitals_projector_lag_records{partition="0",topic="acc"} 59
vitals_projector_lag_records{partition="1",topic="acc"} 0
# HELP vitals_projector_records_committed_total Records whose offsets were committed after their rows were stored.
# TYPE vitals_projector_records_committed_total counter
vitals_projector_records_committed_total 5
# HELP vitals_projector_records_skipped_total Records left out of the tables, by reason: erased_user (rows of erased users), shredded (records sealed with the data key of a user erased since) or undecodable (unreadable records, logged by position).
# TYPE vitals_projector_records_skipped_total counter
vitals_projector_records_skipped_total{reason="erased_user"} 2
vitals_projector_records_skipped_total{reason="shredded"} 3
vitals_projector_records_skipped_total{reason="undecodable"} 1
`
	names := []string{"vitals_projector_lag_records", "vitals_projector_records_committed_total", "vitals_projector_records_skipped_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	m.forget(map[string][]int32{"acc": {0}})
	if n := testutil.CollectAndCount(m.lag); n != 1 {
		t.Errorf("%d lag series after giving up partition 0 of 2; want 1", n)
	}
}
