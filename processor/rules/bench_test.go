package rules

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/vitalshq/vitals/schemas"
)

// These benchmarks measure the aggregate logic alone, without Kafka or
// PostgreSQL: what judging one reading costs, how that changes when the
// aggregates of 100,000 users share the heap, and what the snapshot the
// PostgreSQL commit writes and the next load reads back costs per user.
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./processor/rules/

// benchT0 is the event time the benchmark readings start at.
var benchT0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// benchIDs are realistic event ids (a gateway-generated UUID-sized string).
// Ids repeat after len(benchIDs) readings of a user, i.e. after more than an
// hour of 1 Hz event time: far outside the 10-minute lateness window in
// which ids are remembered, so every reading is a new fact.
var benchIDs = func() []string {
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = fmt.Sprintf("7f3c9a2e-5b1d-4e8a-9c0f-%012x", i)
	}
	return ids
}()

// benchReading fills r as the n-th 1 Hz heart-rate reading of a user's
// device, ingested a second after it was measured.
func benchReading(r *schemas.Reading, user, device string, n int) {
	at := benchT0 + int64(n)*1000
	*r = schemas.Reading{TenantID: "default", EventID: benchIDs[n%len(benchIDs)], UserID: user, DeviceID: device,
		GatewayID: "bench-gateway", Metric: "heart_rate", Value: float64(60 + n%40), Unit: "/min",
		MeasuredAt: at, ReceivedAt: at + 500, IngestedAt: at + 1000, SourceFormat: "json"}
}

// benchAggregate returns an aggregate whose device was paired before
// benchT0, after applying readings 0..n-1 (compacted as the processor does
// after each batch), and the index of the next reading.
func benchAggregate(tb testing.TB, user, device string, n int, rules Config) *Aggregate {
	a := new(Aggregate)
	a.ApplyDevice(&schemas.DeviceEvent{TenantID: "default", EventID: "pair-" + user, UserID: user, DeviceID: device,
		GatewayID: "bench-gateway", Kind: "paired", OccurredAt: benchT0 - 60_000, IngestedAt: benchT0 - 60_000}, rules)
	var r schemas.Reading
	for i := range n {
		benchReading(&r, user, device, i)
		if outs := a.ApplyReading(&r, Held{}, rules); len(outs) != 1 || outs[0].Decision != Accept {
			tb.Fatalf("set-up reading %d: %v", i, describe(outs))
		}
		if i%64 == 63 {
			a.Compact(rules)
		}
	}
	a.Compact(rules)
	return a
}

// BenchmarkApplyReading is the steady state of one user: the device is
// paired, readings arrive 1 s apart, and the aggregate already holds a full
// 10-minute lateness window (600 remembered event ids, 11 rate minutes).
// Compact runs every compact-every readings: every 1 is what the processor
// does when a batch holds one reading per touched user (batch size below
// the user count), every 64 when users have many readings per batch.
func BenchmarkApplyReading(b *testing.B) {
	rules := DefaultConfig()
	for _, every := range []int{1, 64} {
		b.Run(fmt.Sprintf("compact-every-%d", every), func(b *testing.B) {
			warm := int(2 * rules.AllowedLateness / time.Second) // two windows: the state is at its steady size
			a := benchAggregate(b, "user-000001", "tracker-000001", warm, rules)
			var r schemas.Reading
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := warm + i
				benchReading(&r, "user-000001", "tracker-000001", n)
				outs := a.ApplyReading(&r, Held{}, rules)
				if len(outs) != 1 || outs[0].Decision != Accept {
					b.Fatalf("reading %d: %v", n, describe(outs))
				}
				if i%every == every-1 {
					a.Compact(rules)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(len(a.Seen)), "seen-ids")
		})
	}
}

// userKey is the processor's key of a user's aggregate (processor.UserKey).
type userKey struct{ Tenant, User string }

// BenchmarkApplyReadingManyUsers judges readings of 100,000 users round
// robin, each user with its own aggregate found through a map keyed by
// tenant and user (as the processor's cache is), and compacts the aggregate
// after each reading: with 100,000 users and batches of 10,000 records a
// user has about one reading per batch, and every touched aggregate is
// compacted once per batch. Each user starts paired with one reading
// applied; the state grows by a remembered id per reading, as it does in
// the first ten minutes of event time of a real run.
func BenchmarkApplyReadingManyUsers(b *testing.B) {
	const users = 100_000
	rules := DefaultConfig()
	keys := make([]userKey, users)
	devices := make([]string, users)
	aggs := make(map[userKey]*Aggregate, users)
	for u := range users {
		keys[u] = userKey{"default", fmt.Sprintf("user-%06d", u)}
		devices[u] = fmt.Sprintf("tracker-%06d", u)
		aggs[keys[u]] = benchAggregate(b, keys[u].User, devices[u], 1, rules)
	}
	var r schemas.Reading
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u, n := i%users, 1+i/users
		k := keys[u]
		a := aggs[k]
		benchReading(&r, k.User, devices[u], n)
		outs := a.ApplyReading(&r, Held{}, rules)
		if len(outs) != 1 || outs[0].Decision != Accept {
			b.Fatalf("user %d reading %d: %v", u, n, describe(outs))
		}
		a.Compact(rules)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/users, "readings/user")
}

// BenchmarkSnapshotRoundTrip encodes and decodes one user's aggregate as
// the store does: MarshalBinary in commit, UnmarshalBinary in load, beside
// the JSON snapshot it replaced (whose jsonb parsing in PostgreSQL came on
// top). "window-10m" is a user streaming 1 Hz heart rate, whose aggregate
// holds a full 10-minute window (600 remembered ids); "readings-20" is the
// shape of a user in the end-to-end benchmark (bench processor's defaults:
// 20 readings per user).
func BenchmarkSnapshotRoundTrip(b *testing.B) {
	rules := DefaultConfig()
	formats := []struct {
		name string
		enc  func(*Aggregate) ([]byte, error)
		dec  func([]byte, *Aggregate) error
	}{
		{"binary", (*Aggregate).MarshalBinary, func(d []byte, a *Aggregate) error { return a.UnmarshalBinary(d) }},
		{"json", func(a *Aggregate) ([]byte, error) { return json.Marshal(a) }, func(d []byte, a *Aggregate) error { return json.Unmarshal(d, a) }},
	}
	for _, c := range []struct {
		name     string
		readings int
	}{{"window-10m", int(2 * rules.AllowedLateness / time.Second)}, {"readings-20", 20}} {
		a := benchAggregate(b, "user-000001", "tracker-000001", c.readings, rules)
		for _, f := range formats {
			b.Run(c.name+"/"+f.name, func(b *testing.B) {
				data, err := f.enc(a)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					out, err := f.enc(a)
					if err != nil {
						b.Fatal(err)
					}
					var back Aggregate
					if err := f.dec(out, &back); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(data)), "snapshot-bytes")
			})
		}
	}
}
