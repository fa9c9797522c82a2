package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/replay"
	"github.com/vitalshq/vitals/schemas"
)

// TestEncryptClearLog migrates a log written in clear by an earlier
// release: vitals replay encrypt copies the raw topics into v2, every
// record sealed with its user's key, in the same partitions and order,
// leaving out a user erased meanwhile; a second run resumes and copies
// only what is new; the processor reprocesses the sealed copy into the
// same outputs as from the clear log.
func TestEncryptClearLog(t *testing.T) {
	s, ctx := newStackFor(t, 4*time.Minute)
	if err := eventlog.EnsureTopics(ctx, s.kafka, s.log); err != nil {
		t.Fatal(err)
	}
	v2, err := s.kafka.Topics.WithRawVersion("v2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.deleteTopics(v2.Readings, v2.DeviceEvents, v2.ProfileEvents, v2.DeadLetters) })

	// The clear log, as earlier releases wrote it.
	kept, gone := "clear-kept-"+s.id, "clear-gone-"+s.id
	canary := "cnryclear" + s.id
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
	var recs []*kgo.Record
	enc := func(name string, v any) []byte {
		b, err := schemas.MustCodec(name).Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const perUser = 12
	for _, u := range []string{kept, gone} {
		recs = append(recs, &kgo.Record{Topic: s.kafka.Topics.DeviceEvents, Key: []byte(u), Timestamp: t0.Add(-time.Minute),
			Value: enc(schemas.NameDeviceEvent, &schemas.DeviceEvent{TenantID: s.tenant, EventID: u + "-pair", UserID: u, DeviceID: canary + u,
				GatewayID: "gw", Kind: "paired", OccurredAt: t0.Add(-time.Hour).UnixMilli(), IngestedAt: t0.UnixMilli()})})
		for i := range perUser {
			at := t0.Add(time.Duration(i) * time.Second)
			recs = append(recs, &kgo.Record{Topic: s.kafka.Topics.Readings, Key: []byte(u), Timestamp: at,
				Value: enc(schemas.NameReading, &schemas.Reading{TenantID: s.tenant, EventID: fmt.Sprintf("%s-%d", u, i), UserID: u, DeviceID: canary + u,
					GatewayID: "gw", Metric: "heart_rate", Value: 60 + float64(i), Unit: "/min", MeasuredAt: at.UnixMilli(), ReceivedAt: at.UnixMilli(),
					IngestedAt: at.UnixMilli(), SourceFormat: "json"})})
		}
	}
	recs = append(recs, &kgo.Record{Topic: s.kafka.Topics.DeadLetters, Key: []byte(kept), Timestamp: t0,
		Value: enc(schemas.NameDeadLetter, &schemas.DeadLetter{TenantID: s.tenant, GatewayID: "gw", UserID: kept, EventID: "bad", Endpoint: "readings",
			Reason: "unknown_unit", Original: []byte(`{"unit":"` + canary + `"}`), ReceivedAt: t0.UnixMilli()})})
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The gone user was erased meanwhile (no key was ever made for them:
	// shredding leaves a keyless row all the same).
	pool := s.pgPool(ctx)
	keys, err := userkeys.Open(ctx, pool, userkeys.DefaultConfig(), s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	if err := keys.Shred(ctx, s.tenant, gone); err != nil {
		t.Fatal(err)
	}

	cfg := replay.EncryptConfig{Kafka: s.kafka, Version: "v2", PostgresURL: s.pgURL, UserKeys: userkeys.DefaultConfig(), ProgressEvery: time.Second}
	res, err := replay.Encrypt(ctx, cfg, s.log)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sealed != perUser+2 || res.Shredded != perUser+1 || res.Copied != 0 {
		t.Fatalf("encrypt: %d sealed (want %d), %d of the erased user left out (want %d), %d copied as they were (want 0)", res.Sealed, perUser+2, res.Shredded, perUser+1, res.Copied)
	}
	src := map[string]*kgo.Record{}
	for _, topic := range []string{s.kafka.Topics.Readings, s.kafka.Topics.DeviceEvents, s.kafka.Topics.DeadLetters} {
		for _, r := range s.readTopic(ctx, topic) {
			src[fmt.Sprintf("%s/%d/%d", topic, r.Partition, r.Offset)] = r
		}
	}
	copies := 0
	for _, topic := range []string{v2.Readings, v2.DeviceEvents, v2.DeadLetters} {
		got := s.readTopic(ctx, topic)
		if err := keys.LoadRecordKeys(ctx, got); err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			copies++
			if string(r.Key) == gone || !userkeys.SealedIn(r) {
				t.Fatalf("%s/%d@%d: key %q sealed %v", topic, r.Partition, r.Offset, r.Key, userkeys.SealedIn(r))
			}
			var from string
			for _, h := range r.Headers {
				if h.Key == "vitals-source-offset" {
					from = fmt.Sprintf("%s/%d/%s", strings.TrimSuffix(topic, ".v2")+".v1", r.Partition, h.Value)
				}
			}
			o := src[from]
			plain, _, err := keys.OpenRecord(nil, r)
			if o == nil || err != nil || string(plain) != string(o.Value) || !o.Timestamp.Equal(r.Timestamp) || string(o.Key) != string(r.Key) {
				t.Fatalf("%s/%d@%d (source %s) is not its source sealed: %v", topic, r.Partition, r.Offset, from, err)
			}
		}
	}
	if copies != perUser+2 {
		t.Fatalf("%d copies, want %d", copies, perUser+2)
	}
	// The sealed topics' segment files hold no canary.
	for _, topic := range []string{v2.Readings, v2.DeviceEvents, v2.DeadLetters} {
		dirs, _ := filepath.Glob(filepath.Join(stackDir(t), "kafka", "data", topic+"-*"))
		if len(dirs) == 0 {
			t.Fatalf("no segment directory of %s", topic)
		}
		for _, d := range dirs {
			r := scanFiles(t, "segments of "+filepath.Base(d), d, func(n string) bool { return strings.HasSuffix(n, ".log") }, map[string][]byte{"canary": []byte(canary)})
			if len(r.hits) > 0 {
				t.Errorf("%s", r)
			}
		}
	}

	// A second run copies only what came since (records of the erased
	// user after a partition's last copy are looked at, and left out,
	// again: a copy's source offset is where a run resumes).
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: s.kafka.Topics.Readings, Key: []byte(kept), Timestamp: t0.Add(time.Minute),
		Value: enc(schemas.NameReading, &schemas.Reading{TenantID: s.tenant, EventID: kept + "-late", UserID: kept, DeviceID: canary + kept,
			GatewayID: "gw", Metric: "heart_rate", Value: 75, Unit: "/min", MeasuredAt: t0.Add(time.Minute).UnixMilli(),
			ReceivedAt: t0.Add(time.Minute).UnixMilli(), IngestedAt: t0.Add(time.Minute).UnixMilli(), SourceFormat: "json"})}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if res, err = replay.Encrypt(ctx, cfg, s.log); err != nil || res.Sealed != 1 || res.Copied != 0 {
		t.Fatalf("second encrypt: %+v %v", res, err)
	}

	// The processor reprocesses the sealed copy: the kept user's readings
	// are accepted, nothing of the erased user is there to skip.
	pcfg := s.processorConfig()
	pcfg.Kafka.Topics = v2
	rep, err := replay.Reprocess(ctx, replay.ReprocessConfig{Processor: pcfg, Version: "v2", ProgressEvery: time.Second}, s.log)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := v2.WithOutputVersion("v2")
	t.Cleanup(func() { s.deleteTopics(out.AcceptedReadings, out.RejectedReadings, out.Alerts, out.Erasures) })
	if rep.Accepted != perUser+1 || rep.Shredded != 0 {
		t.Fatalf("reprocess of the sealed copy: %d accepted (want %d), %d shredded", rep.Accepted, perUser+1, rep.Shredded)
	}
}
