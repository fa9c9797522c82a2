package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/jsonwire"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/schemas"
)

type wireReading = jsonwire.Reading

func wire(r sample.HeartRate) wireReading {
	return wireReading{EventID: r.EventID(), UserID: r.UserID(), DeviceID: r.DeviceID(), Metric: "heart_rate",
		Value: r.Value, Unit: "/min", MeasuredAt: r.Time.Format(time.RFC3339Nano)}
}

// nearestRank computes the documented percentile definition independently
// of ClickHouse: index floor(p/100*n) of the sorted values.
func nearestRank(values []float64, ps []float64) []float64 {
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = rankOf(s, p)
	}
	return out
}

// TestPipelineEndToEnd posts real Fitbit heart-rate readings through ingest,
// with repeats, a bad item and a too-late reading, and checks that the query
// API's percentiles equal ones computed here from the same input, that
// repeats count once, and that the answers survive the projector
// re-inserting everything (a redelivery) unchanged.
func TestPipelineEndToEnd(t *testing.T) {
	s, ctx := newStackFor(t, 4*time.Minute)
	p := s.startPipelineWith(ctx, nil)
	ingestURL, proc := p.ingestURL, p.proc
	queryURL := s.startQuery(ctx)

	// Two users' first 1,500 readings each from the bundled sample.
	users, perUser := firstReadings(t, 2, 1500)
	var items []wireReading
	for _, u := range users {
		for _, r := range perUser[u] {
			items = append(items, wire(r))
		}
	}

	s.pairUsers(ingestURL, users, perUser)

	// Batches of 500; the first batch also carries a malformed item and a
	// repeat of its own first reading.
	first := append([]any{}, any(items[0]), map[string]any{"event_id": "bad-1", "user_id": users[0], "device_id": "d", "metric": "heart_rate", "value": 70, "unit": "bpm", "measured_at": items[0].MeasuredAt})
	for _, it := range items[:500] {
		first = append(first, it)
	}
	var resp ingest.BatchResponse
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-it", "readings": first}, &resp); code != http.StatusOK {
		t.Fatalf("first batch: status %d", code)
	}
	if resp.Accepted != 501 || resp.Rejected != 1 || resp.Items[1].Status != ingest.StatusRejected || resp.Items[1].Reason != ingest.ReasonUnknownUnit || resp.Items[1].Field != "unit" {
		t.Fatalf("first batch verdicts: accepted %d rejected %d item1 %+v", resp.Accepted, resp.Rejected, resp.Items[1])
	}
	for i := 500; i < len(items); i += 500 {
		batch := items[i:min(i+500, len(items))]
		if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-it", "readings": batch}, &resp); code != http.StatusOK || resp.Accepted != len(batch) {
			t.Fatalf("batch at %d: status %d, accepted %d of %d", i, code, resp.Accepted, len(batch))
		}
	}
	// The gateway retries each user's readings of the last 9 minutes (as
	// after a lost answer): all repeats inside the 10-minute lateness window,
	// so they are dropped as duplicates.
	var retry []wireReading
	for _, u := range users {
		rs := perUser[u]
		for _, r := range rs {
			if !r.Time.Before(rs[len(rs)-1].Time.Add(-9 * time.Minute)) {
				retry = append(retry, wire(r))
			}
		}
	}
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-it", "readings": retry}, &resp); code != http.StatusOK || resp.Accepted != len(retry) {
		t.Fatalf("retried batch: status %d accepted %d", code, resp.Accepted)
	}
	// A reading 20 minutes older than user 0's newest: beyond the 10-minute
	// lateness, so rejected too_late, not lost.
	newest := perUser[users[0]][len(perUser[users[0]])-1]
	late := wire(sample.HeartRate{FitbitID: newest.FitbitID, Time: newest.Time.Add(-20 * time.Minute).Add(500 * time.Millisecond), Value: 80})
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-it", "readings": []any{late}}, &resp); code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("late reading: status %d accepted %d", code, resp.Accepted)
	}

	total := len(items)
	eventually(t, 90*time.Second, "the processor to judge every reading", func() (bool, string) {
		acc, rej, dup, _ := proc.Stats().Snapshot()
		return acc == int64(total) && rej == 1 && dup == int64(1+len(retry)), fmt.Sprintf("accepted %d rejected %d duplicates %d (want %d 1 %d)", acc, rej, dup, total, 1+len(retry))
	})

	ps := []float64{0, 25, 50, 90, 99, 99.9, 100}
	check := func(stage string) {
		t.Helper()
		t.Logf("checking every user's percentiles: %s", stage)
		for _, u := range users {
			expectDayPercentiles(t, queryURL, perUser[u], ps, 60*time.Second)
		}
	}
	check("first projection")

	// The rejected topic holds the late reading with its reason.
	rej := readAll(t, ctx, s, s.kafka.Topics.RejectedReadings, 1)
	var rr schemas.RejectedReading
	if err := schemas.MustCodec(schemas.NameRejectedReading).Decode(rej[0].Value, &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Reason != processor.ReasonTooLate || rr.EventID != late.EventID || rr.TenantID != s.tenant || len(rr.Original) == 0 {
		t.Fatalf("rejected reading: %+v", rr)
	}

	// Redelivery: a second projector group reads the accepted topic from
	// the start. It resumes after the positions stored in ClickHouse, so it
	// stores no second copy.
	if err := p.projRun.stop(); err != nil {
		t.Fatal(err)
	}
	s.startProjector(ctx, s.id+"-projector-again")
	ch := s.openWarehouse(t, ctx)
	countRows := func() uint64 {
		var n uint64
		if err := ch.QueryRow(ctx, "SELECT count() FROM "+s.wh.Database+".readings").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	time.Sleep(2 * time.Second)
	if n := countRows(); n != uint64(total) {
		t.Fatalf("%d rows stored after a second projector group, want %d: a record was inserted twice", n, total)
	}
	// Copies made behind the projector's back (a re-emission by an older
	// processor, a manual re-load) stay invisible in answers: the raw table
	// then physically holds two copies of each reading (merges stopped, so
	// none collapses before the check).
	if err := ch.Exec(ctx, "SYSTEM STOP MERGES "+s.wh.Database+".readings"); err != nil {
		t.Fatal(err)
	}
	if err := ch.Exec(ctx, fmt.Sprintf("INSERT INTO %[1]s.readings (tenant_id, user_id, device_id, gateway_id, metric, loinc, value, unit, measured_at, measured_at_ms, received_at_ms, ingested_at_ms, event_id) SELECT tenant_id, user_id, device_id, gateway_id, metric, loinc, value, unit, measured_at, measured_at_ms, received_at_ms, ingested_at_ms, event_id FROM %[1]s.readings", s.wh.Database)); err != nil {
		t.Fatal(err)
	}
	if n := countRows(); n < uint64(2*total) {
		t.Fatalf("%d rows stored after copying, want %d", n, 2*total)
	}
	check("after redelivery")
}

// readAll reads at least n records of a topic from the start.
func readAll(t *testing.T, ctx context.Context, s *stack, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(out) < n {
		f := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("read %s: %d of %d records", topic, len(out), n)
		}
		out = append(out, f.Records()...)
	}
	s.openRecords(ctx, out)
	return out
}

var _ = json.Marshal
