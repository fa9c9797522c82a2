package projector

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/schemas"
)

func ptr[T any](v T) *T { return &v }

// TestSinkRows encodes one event of every projected topic and checks the
// row the projector would insert: every value in its column, the record's
// position in log_partition/log_offset, milliseconds kept beside the
// second-resolution DateTime, and absent optional fields as documented.
func TestSinkRows(t *testing.T) {
	topics := eventlog.TopicsWithPrefix("t")
	bySink := map[string]*sink{}
	for _, s := range sinks(topics) {
		bySink[s.topic] = s
	}
	const ms = int64(1700000000123)
	at := time.UnixMilli(ms).UTC().Truncate(time.Second)
	tests := []struct {
		name  string
		topic string
		codec string
		event any
		want  map[string]any
	}{
		{
			name: "accepted blood pressure", topic: topics.AcceptedReadings, codec: schemas.NameAcceptedReading,
			event: &schemas.AcceptedReading{TenantID: "ten", EventID: "e1", UserID: "u1", DeviceID: "d1", GatewayID: "g1",
				Metric: "blood_pressure", LOINC: "85354-9", Value: 120, Unit: "mm[Hg]", MeasuredAt: ms, ReceivedAt: ms + 1, IngestedAt: ms + 2,
				SourcePartition: 4, SourceOffset: 99, SecondValue: ptr(80.0), Sequence: ptr(int64(7))},
			want: map[string]any{"tenant_id": "ten", "user_id": "u1", "device_id": "d1", "gateway_id": "g1", "metric": "blood_pressure",
				"loinc": "85354-9", "value": 120.0, "unit": "mm[Hg]", "measured_at": at, "measured_at_ms": ms, "received_at_ms": ms + 1,
				"ingested_at_ms": ms + 2, "event_id": "e1", "source_topic": topics.Readings, "source_partition": int32(4), "source_offset": int64(99),
				"period_end_ms": int64(0), "second_value": ptr(80.0), "stage": "", "sequence": ptr(int64(7)),
				"log_partition": int32(2), "log_offset": int64(42)},
		},
		{
			name: "accepted sleep interval", topic: topics.AcceptedReadings, codec: schemas.NameAcceptedReading,
			event: &schemas.AcceptedReading{TenantID: "ten", EventID: "e2", UserID: "u1", Metric: "sleep_stage", Value: 45, Unit: "min",
				MeasuredAt: ms, PeriodEnd: ptr(ms + 45*60000), Stage: ptr("deep")},
			want: map[string]any{"period_end_ms": ms + 45*60000, "stage": "deep", "second_value": (*float64)(nil), "sequence": (*int64)(nil)},
		},
		{
			name: "rejected", topic: topics.RejectedReadings, codec: schemas.NameRejectedReading,
			event: &schemas.RejectedReading{TenantID: "ten", EventID: "e3", UserID: "u2", DeviceID: "d2", Metric: "spo2", MeasuredAt: ms,
				Reason: "too_late", Message: "late", SourcePartition: 1, SourceOffset: 5, Original: []byte{1}},
			want: map[string]any{"tenant_id": "ten", "user_id": "u2", "device_id": "d2", "metric": "spo2", "measured_at": at, "measured_at_ms": ms,
				"reason": "too_late", "message": "late", "event_id": "e3", "source_topic": topics.Readings, "source_partition": int32(1),
				"source_offset": int64(5), "log_partition": int32(2), "log_offset": int64(42)},
		},
		{
			name: "alert", topic: topics.Alerts, codec: schemas.NameAlert,
			event: &schemas.Alert{TenantID: "ten", EventID: "a1", UserID: "u3", DeviceID: "d3", GatewayID: "g3", Metric: "spo2", Rule: "spo2_low_sustained",
				Severity: "critical", MeasuredAt: ms + 60000, StartedAt: ms, ReceivedAt: ms + 61000, Value: 88, Message: "low"},
			want: map[string]any{"tenant_id": "ten", "user_id": "u3", "device_id": "d3", "gateway_id": "g3", "metric": "spo2", "rule": "spo2_low_sustained",
				"severity": "critical", "started_at": at, "started_at_ms": ms, "measured_at": at.Add(time.Minute), "measured_at_ms": ms + 60000,
				"received_at_ms": ms + 61000, "value": 88.0, "message": "low", "event_id": "a1", "log_partition": int32(2), "log_offset": int64(42)},
		},
		{
			name: "profile update stating only the region", topic: topics.ProfileEvents, codec: schemas.NameProfileEvent,
			event: &schemas.ProfileEvent{TenantID: "ten", EventID: "p1", UserID: "u4", GatewayID: "g4", Kind: "updated", Region: ptr("DE"), OccurredAt: ms},
			want: map[string]any{"tenant_id": "ten", "user_id": "u4", "event_id": "p1", "gateway_id": "g4", "kind": "updated",
				"birth_year": int32(0), "sex": "", "region": "DE", "occurred_at": at, "occurred_at_ms": ms, "log_offset": int64(42)},
		},
		{
			name: "profile registration", topic: topics.ProfileEvents, codec: schemas.NameProfileEvent,
			event: &schemas.ProfileEvent{TenantID: "ten", EventID: "p2", UserID: "u4", Kind: "registered", BirthYear: ptr(int32(1980)), Sex: ptr("female"), OccurredAt: ms},
			want:  map[string]any{"birth_year": int32(1980), "sex": "female", "region": ""},
		},
		{
			name: "device pairing", topic: topics.DeviceEvents, codec: schemas.NameDeviceEvent,
			event: &schemas.DeviceEvent{TenantID: "ten", EventID: "d1", UserID: "u5", DeviceID: "w1", GatewayID: "g5", Kind: "paired", Model: ptr("charge-hr"), OccurredAt: ms, ReceivedAt: ms, IngestedAt: ms},
			want:  map[string]any{"tenant_id": "ten", "user_id": "u5", "device_id": "w1", "event_id": "d1", "kind": "paired", "model": "charge-hr", "firmware": "", "occurred_at": at},
		},
		{
			name: "erasure", topic: topics.Erasures, codec: schemas.NameErasure,
			event: &schemas.Erasure{TenantID: "ten", EventID: "x1", UserID: "u6", GatewayID: "g6", RequestedAt: ms, ReceivedAt: ms + 1},
			want: map[string]any{"tenant_id": "ten", "user_id": "u6", "event_id": "x1", "gateway_id": "g6", "requested_at_ms": ms, "received_at_ms": ms + 1,
				"log_partition": int32(2), "log_offset": int64(42)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := bySink[tc.topic]
			val, err := schemas.MustCodec(tc.codec).Encode(tc.event)
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.decode(&kgo.Record{Topic: tc.topic, Partition: 2, Offset: 42, Value: val})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.vals) != len(s.columns) {
				t.Fatalf("%d values for %d columns", len(r.vals), len(s.columns))
			}
			if r.partition != 2 || r.offset != 42 || r.tenant != "ten" || r.user == "" {
				t.Errorf("row key: %+v", r)
			}
			got := map[string]any{}
			for i, c := range s.columns {
				got[c] = r.vals[i]
			}
			for c, w := range tc.want {
				if !reflect.DeepEqual(got[c], w) {
					t.Errorf("column %s = %#v, want %#v", c, got[c], w)
				}
			}
		})
	}
}

// TestSinkColumnsExist checks that every INSERT column list names only
// columns of its table and covers every column without a server default.
func TestSinkColumnsExist(t *testing.T) {
	for _, s := range sinks(eventlog.TopicsWithPrefix("t")) {
		table := warehouse.TableColumns(s.table)
		for _, c := range s.columns {
			if !slices.Contains(table, c) {
				t.Errorf("%s: column %s is not in the table", s.table, c)
			}
		}
		for _, c := range table {
			if !slices.Contains(s.columns, c) {
				t.Errorf("%s: table column %s is never written", s.table, c)
			}
		}
	}
}

func TestUndecodableRecord(t *testing.T) {
	for _, s := range sinks(eventlog.TopicsWithPrefix("t")) {
		if _, err := s.decode(&kgo.Record{Topic: s.topic, Value: []byte("not avro")}); err == nil {
			t.Errorf("%s: garbage decoded without error", s.topic)
		}
	}
}

func TestResumeAt(t *testing.T) {
	tests := []struct {
		name              string
		committed, stored int64
		want              int64
	}{
		{"nothing committed, rows stored", -2, 10, 11},
		{"committed behind the stored rows (crash before commit)", 5, 10, 11},
		{"committed just after the stored rows", 11, 10, -1},
		{"committed ahead (an erasure deleted the newest rows)", 20, 10, -1},
		{"no positions stored (rows from before positions existed)", 7, -1, -1},
	}
	for _, tc := range tests {
		if got := resumeAt(tc.committed, tc.stored); got != tc.want {
			t.Errorf("%s: resumeAt(%d, %d) = %d, want %d", tc.name, tc.committed, tc.stored, got, tc.want)
		}
	}
}

func TestErasedSetFilter(t *testing.T) {
	e := newErasedSet(nil, "db")
	e.add([]row{{tenant: "t1", user: "gone"}})
	rows := []row{{tenant: "t1", user: "gone", offset: 1}, {tenant: "t2", user: "gone", offset: 2}, {tenant: "t1", user: "kept", offset: 3}}
	var dropped Stats
	got := e.filter(rows, &dropped.Erased)
	if len(got) != 2 || got[0].offset != 2 || got[1].offset != 3 || dropped.Erased.Load() != 1 {
		t.Fatalf("filter kept %+v, dropped %d; want offsets 2 and 3 (erasure is per tenant)", got, dropped.Erased.Load())
	}
	in := e.erasedIn([]*pending{{sink: &sink{}, rows: []row{{tenant: "t1", user: "gone"}, {tenant: "t1", user: "gone"}, {tenant: "t1", user: "kept"}}}})
	if len(in) != 1 || in[0].user != "gone" {
		t.Fatalf("erasedIn = %+v, want the erased user once", in)
	}
}
