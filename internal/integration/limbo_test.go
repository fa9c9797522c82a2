package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/processor"
	"github.com/vitalshq/vitals/schemas"
)

// TestHeldReadingOfSilentUserIsSettled: a user sends one reading from a
// device never paired and then nothing more. The processor holds it (a
// pairing may still come) and must still give it an outcome once its
// partition's time, moved by other users' records, passes it by the
// allowed lateness: rejected device_not_paired, exactly once. The
// processor holding it is stopped in between, so the deadline must come
// back from PostgreSQL with the partition.
func TestHeldReadingOfSilentUserIsSettled(t *testing.T) {
	s, ctx := newStackFor(t, 2*time.Minute)
	ingestURL, _ := s.startIngest(ctx)
	cfg := s.processorConfig()
	cfg.Rules.AllowedLateness = 2 * time.Second
	cfg.CheckpointInterval = 100 * time.Millisecond
	p1, run1 := s.startProcessor(ctx, cfg)

	// Others: 30 users with paired watches, so that some share the silent
	// user's partition (3 partitions).
	const others = 30
	var pairings []any
	for i := range others {
		pairings = append(pairings, map[string]any{"event_id": fmt.Sprintf("limbo-p%d", i), "user_id": fmt.Sprintf("limbo-b%d", i),
			"device_id": fmt.Sprintf("limbo-b%d-w", i), "kind": "paired", "occurred_at": "2026-01-01T00:00:00Z"})
	}
	var resp ingest.BatchResponse
	if code := s.postJSON(ingestURL+"/v1/device-events", map[string]any{"gateway_id": "gw-limbo", "events": pairings}, &resp); code != http.StatusOK || resp.Accepted != others {
		t.Fatalf("pairings: %d, %d accepted", code, resp.Accepted)
	}
	reading := func(user, device, id string) wireReading {
		return wireReading{EventID: id, UserID: user, DeviceID: device, Metric: "heart_rate", Value: 71, Unit: "/min",
			MeasuredAt: time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)}
	}
	posted := time.Now()
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-limbo",
		"readings": []wireReading{reading("limbo-a", "limbo-a-phone", "limbo-a-1")}}, &resp); code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("the silent user's reading: %d, %d accepted", code, resp.Accepted)
	}

	// Held and checkpointed with its deadline, then the processor stops.
	conn, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	eventually(t, 30*time.Second, "the held reading's deadline to be checkpointed", func() (bool, string) {
		var until *int64
		err := conn.QueryRow(ctx, `SELECT held_until FROM processor_aggregates WHERE group_id = $1 AND user_id = 'limbo-a'`, cfg.Group).Scan(&until)
		return err == nil && until != nil, fmt.Sprintf("held_until %v (%v)", until, err)
	})
	if acc, rej, _, _ := p1.Stats().Snapshot(); acc+rej != 0 {
		t.Fatalf("the reading was decided at once (accepted %d, rejected %d); want it held", acc, rej)
	}
	if err := run1.stop(); err != nil {
		t.Fatal(err)
	}
	p2, _ := s.startProcessor(ctx, cfg)

	// The others post after the deadline; the silent user never again.
	time.Sleep(time.Until(posted.Add(2500 * time.Millisecond)))
	var later []wireReading
	for i := range others {
		later = append(later, reading(fmt.Sprintf("limbo-b%d", i), fmt.Sprintf("limbo-b%d-w", i), fmt.Sprintf("limbo-b%d-1", i)))
	}
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-limbo", "readings": later}, &resp); code != http.StatusOK || resp.Accepted != others {
		t.Fatalf("the others' readings: %d, %d accepted", code, resp.Accepted)
	}
	eventually(t, 30*time.Second, "the held reading to be settled", func() (bool, string) {
		acc, rej, _, _ := p2.Stats().Snapshot()
		return acc == others && rej == 1, fmt.Sprintf("accepted %d rejected %d", acc, rej)
	})

	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	silentKey := s.dataKeyOf(ctx, "limbo-a")
	codec := schemas.MustCodec(schemas.NameRejectedReading)
	var got []string
	for _, rs := range readTopic(t, ctx, s, s.kafka.Topics.RejectedReadings) {
		for _, r := range rs {
			// Settled by the partition's clock after a restart, with no
			// record of the user's in the step: still the user's, sealed
			// with the user's key like every other output.
			if id, sealed, err := userkeys.RecordKeyID(r); err != nil || !sealed || id != silentKey {
				t.Errorf("the settled rejection at %d/%d is not sealed with the user's key (sealed %v, %v)", r.Partition, r.Offset, sealed, err)
			}
			var rj schemas.RejectedReading
			if err := codec.Decode(r.Value, &rj); err != nil {
				t.Fatal(err)
			}
			got = append(got, rj.EventID+" "+rj.Reason)
		}
	}
	if len(got) != 1 || got[0] != "limbo-a-1 "+processor.ReasonDeviceNotPaired {
		t.Fatalf("rejected readings %q; want the silent user's, device_not_paired, once", got)
	}
}
