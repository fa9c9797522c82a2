package projector

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	chcol "github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

func ptr[T any](v T) *T { return &v }

// chColumn adapts a clickhouse-go column to the driver.BatchColumn a
// batch hands out, so that tests append to real columns of the DDL types
// without a server.
type chColumn struct{ chcol.Interface }

func (c chColumn) Append(v any) error {
	_, err := c.Interface.Append(v)
	return err
}

// newChColumns returns empty clickhouse-go columns of the table's DDL
// types, in the order of names.
func newChColumns(t *testing.T, table string, names []string) []chcol.Interface {
	t.Helper()
	types := warehouse.TableColumnTypes(table)
	out := make([]chcol.Interface, len(names))
	for i, n := range names {
		c, err := chcol.Type(types[n]).Column(n, &chcol.ServerContext{Timezone: time.UTC})
		if err != nil {
			t.Fatalf("%s.%s %s: %v", table, n, types[n], err)
		}
		out[i] = c
	}
	return out
}

// sent decodes the records with the sink's buffer and appends every
// column to real clickhouse-go columns, as an insert does; it returns
// the buffer and the columns.
func sent(t *testing.T, s *sink, recs ...*kgo.Record) (*pending, []chcol.Interface) {
	t.Helper()
	p := newPending(s)
	for _, rec := range recs {
		if _, err := p.add(rec); err != nil {
			t.Fatalf("%s: %v", s.topic, err)
		}
	}
	chCols := newChColumns(t, s.table, s.columns)
	for i, c := range p.cols {
		if err := c.col.send(chColumn{chCols[i]}); err != nil {
			t.Fatalf("%s.%s: %v", s.table, c.name, err)
		}
	}
	return p, chCols
}

// cell is what a clickhouse-go column holds at row i, as the server will
// receive it; NULL is nil.
func cell(c chcol.Interface, i int) any {
	v := c.Row(i, false)
	if rv := reflect.ValueOf(v); v != nil && rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil
	}
	return v
}

func record(t testing.TB, topic, codec string, event any) *kgo.Record {
	t.Helper()
	val, err := schemas.MustCodec(codec).Encode(event)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Partition: 2, Offset: 42, Value: val}
}

// TestSinkRows encodes one event of every projected topic and checks the
// row the projector would insert, as it reaches clickhouse-go columns of
// the table's DDL types: every value in its column, the record's position
// in log_partition/log_offset, milliseconds kept beside the
// second-resolution DateTime, and absent optional fields as documented.
// Cases marked all must name every column.
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
		all   bool
		want  map[string]any
	}{
		{
			name: "accepted blood pressure", topic: topics.AcceptedReadings, codec: schemas.NameAcceptedReading, all: true,
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
			want: map[string]any{"period_end_ms": ms + 45*60000, "stage": "deep", "second_value": nil, "sequence": nil, "device_id": "", "value": 45.0},
		},
		{
			name: "accepted with a zero second value and sequence (not NULL)", topic: topics.AcceptedReadings, codec: schemas.NameAcceptedReading,
			event: &schemas.AcceptedReading{TenantID: "ten", EventID: "e3", UserID: "u1", Metric: "blood_pressure", MeasuredAt: 1999,
				SecondValue: ptr(0.0), Sequence: ptr(int64(0)), Stage: ptr("rem")},
			want: map[string]any{"second_value": ptr(0.0), "sequence": ptr(int64(0)), "stage": "rem", "measured_at_ms": int64(1999),
				"measured_at": time.Unix(1, 0).UTC()},
		},
		{
			name: "rejected", topic: topics.RejectedReadings, codec: schemas.NameRejectedReading, all: true,
			event: &schemas.RejectedReading{TenantID: "ten", EventID: "e3", UserID: "u2", DeviceID: "d2", Metric: "spo2", MeasuredAt: ms,
				Reason: "too_late", Message: "late", SourcePartition: 1, SourceOffset: 5, Original: []byte{1}},
			want: map[string]any{"tenant_id": "ten", "user_id": "u2", "device_id": "d2", "metric": "spo2", "measured_at": at, "measured_at_ms": ms,
				"reason": "too_late", "message": "late", "event_id": "e3", "source_topic": topics.Readings, "source_partition": int32(1),
				"source_offset": int64(5), "log_partition": int32(2), "log_offset": int64(42)},
		},
		{
			name: "alert", topic: topics.Alerts, codec: schemas.NameAlert, all: true,
			event: &schemas.Alert{TenantID: "ten", EventID: "a1", UserID: "u3", DeviceID: "d3", GatewayID: "g3", Metric: "spo2", Rule: "spo2_low_sustained",
				Severity: "critical", MeasuredAt: ms + 60000, StartedAt: ms, ReceivedAt: ms + 61000, Value: 88, Message: "low",
				AlertID: "a0", Status: "resolved", StatusAt: ms + 90000, RecordedAt: ms + 95000},
			want: map[string]any{"tenant_id": "ten", "user_id": "u3", "device_id": "d3", "gateway_id": "g3", "metric": "spo2", "rule": "spo2_low_sustained",
				"severity": "critical", "started_at": at, "started_at_ms": ms, "measured_at": at.Add(time.Minute), "measured_at_ms": ms + 60000,
				"received_at_ms": ms + 61000, "value": 88.0, "message": "low", "event_id": "a1", "log_partition": int32(2), "log_offset": int64(42),
				"alert_id": "a0", "status": "resolved", "status_at_ms": ms + 90000, "recorded_at_ms": ms + 95000},
		},
		{
			name: "alert raised before the lifecycle", topic: topics.Alerts, codec: schemas.NameAlert,
			event: &schemas.Alert{TenantID: "ten", EventID: "a1", UserID: "u3", DeviceID: "d3", Metric: "spo2", Rule: "spo2_low_sustained",
				Severity: "critical", MeasuredAt: ms + 60000, StartedAt: ms, Status: "raised"},
			want: map[string]any{"alert_id": "a1", "status": "raised", "status_at_ms": ms + 60000, "recorded_at_ms": int64(0)},
		},
		{
			name: "profile update stating only the region", topic: topics.ProfileEvents, codec: schemas.NameProfileEvent, all: true,
			event: &schemas.ProfileEvent{TenantID: "ten", EventID: "p1", UserID: "u4", GatewayID: "g4", Kind: "updated", Region: ptr("DE"), OccurredAt: ms,
				ReceivedAt: ms + 5, IngestedAt: ms + 6},
			want: map[string]any{"tenant_id": "ten", "user_id": "u4", "event_id": "p1", "gateway_id": "g4", "kind": "updated",
				"birth_year": int32(0), "sex": "", "region": "DE", "occurred_at": at, "occurred_at_ms": ms, "received_at_ms": ms + 5,
				"ingested_at_ms": ms + 6, "log_partition": int32(2), "log_offset": int64(42)},
		},
		{
			name: "profile registration", topic: topics.ProfileEvents, codec: schemas.NameProfileEvent,
			event: &schemas.ProfileEvent{TenantID: "ten", EventID: "p2", UserID: "u4", Kind: "registered", BirthYear: ptr(int32(1980)), Sex: ptr("female"), OccurredAt: ms},
			want:  map[string]any{"birth_year": int32(1980), "sex": "female", "region": ""},
		},
		{
			name: "device pairing", topic: topics.DeviceEvents, codec: schemas.NameDeviceEvent, all: true,
			event: &schemas.DeviceEvent{TenantID: "ten", EventID: "d1", UserID: "u5", DeviceID: "w1", GatewayID: "g5", Kind: "paired", Model: ptr("charge-hr"),
				OccurredAt: ms, ReceivedAt: ms + 1, IngestedAt: ms + 2},
			want: map[string]any{"tenant_id": "ten", "user_id": "u5", "device_id": "w1", "event_id": "d1", "gateway_id": "g5", "kind": "paired",
				"model": "charge-hr", "firmware": "", "occurred_at": at, "occurred_at_ms": ms, "received_at_ms": ms + 1, "ingested_at_ms": ms + 2,
				"log_partition": int32(2), "log_offset": int64(42)},
		},
		{
			name: "erasure", topic: topics.Erasures, codec: schemas.NameErasure, all: true,
			event: &schemas.Erasure{TenantID: "ten", EventID: "x1", UserID: "u6", GatewayID: "g6", RequestedAt: ms, ReceivedAt: ms + 1},
			want: map[string]any{"tenant_id": "ten", "user_id": "u6", "event_id": "x1", "gateway_id": "g6", "requested_at_ms": ms, "received_at_ms": ms + 1,
				"log_partition": int32(2), "log_offset": int64(42)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := bySink[tc.topic]
			p, chCols := sent(t, s, record(t, tc.topic, tc.codec, tc.event))
			if len(p.rows) != 1 {
				t.Fatalf("%d rows", len(p.rows))
			}
			if r := p.rows[0]; r.partition != 2 || r.offset != 42 || r.tenant != "ten" || r.user != chCols[1].Row(0, false) {
				t.Errorf("row key: %+v", r)
			}
			got := map[string]any{}
			for i, c := range s.columns {
				if chCols[i].Rows() != 1 {
					t.Errorf("column %s holds %d rows, want 1", c, chCols[i].Rows())
				}
				got[c] = cell(chCols[i], 0)
			}
			for c, w := range tc.want {
				g, ok := got[c]
				if !ok {
					t.Errorf("no column %s", c)
					continue
				}
				if wt, isTime := w.(time.Time); isTime {
					if gt, ok := g.(time.Time); !ok || !gt.Equal(wt) {
						t.Errorf("column %s = %#v, want %v", c, g, wt)
					}
					continue
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("column %s = %#v, want %#v", c, g, w)
				}
			}
			if tc.all {
				for _, c := range s.columns {
					if _, ok := tc.want[c]; !ok {
						t.Errorf("case names no value for column %s", c)
					}
				}
			}
		})
	}
}

// legacyValues is how the projector built rows before it appended column
// by column: one []any per record in the sink's column order, appended
// with batch.Append. TestSinkRowsMatchRowWise checks that the columns
// receive exactly what those rows gave them.
func legacyValues(t *testing.T, topics eventlog.Topics, rec *kgo.Record) []any {
	t.Helper()
	sec := func(ms int64) time.Time { return time.UnixMilli(ms).UTC().Truncate(time.Second) }
	decode := func(name string, v any) {
		if err := schemas.MustCodec(name).Decode(rec.Value, v); err != nil {
			t.Fatal(err)
		}
	}
	switch rec.Topic {
	case topics.AcceptedReadings:
		var r schemas.AcceptedReading
		decode(schemas.NameAcceptedReading, &r)
		return []any{r.TenantID, r.UserID, r.DeviceID, r.GatewayID, r.Metric, r.LOINC,
			r.Value, r.Unit, sec(r.MeasuredAt), r.MeasuredAt, r.ReceivedAt, r.IngestedAt,
			r.EventID, topics.Readings, r.SourcePartition, r.SourceOffset,
			orZero(r.PeriodEnd), r.SecondValue, orZero(r.Stage), r.Sequence, rec.Partition, rec.Offset}
	case topics.RejectedReadings:
		var r schemas.RejectedReading
		decode(schemas.NameRejectedReading, &r)
		return []any{r.TenantID, r.UserID, r.DeviceID, r.Metric, sec(r.MeasuredAt), r.MeasuredAt,
			r.Reason, r.Message, r.EventID, topics.Readings, r.SourcePartition, r.SourceOffset,
			rec.Partition, rec.Offset}
	case topics.Alerts:
		var a schemas.Alert
		decode(schemas.NameAlert, &a)
		statusAt := a.StatusAt
		if a.AlertID == "" {
			statusAt = a.MeasuredAt
		}
		return []any{a.TenantID, a.UserID, a.DeviceID, a.GatewayID, a.Metric, a.Rule, a.Severity,
			sec(a.StartedAt), a.StartedAt, sec(a.MeasuredAt), a.MeasuredAt, a.ReceivedAt,
			a.Value, a.Message, a.EventID, a.ID(), a.Status, statusAt, a.RecordedAt, rec.Partition, rec.Offset}
	case topics.ProfileEvents:
		var e schemas.ProfileEvent
		decode(schemas.NameProfileEvent, &e)
		return []any{e.TenantID, e.UserID, e.EventID, e.GatewayID, e.Kind, orZero(e.BirthYear), orZero(e.Sex), orZero(e.Region),
			sec(e.OccurredAt), e.OccurredAt, e.ReceivedAt, e.IngestedAt, rec.Partition, rec.Offset}
	case topics.DeviceEvents:
		var e schemas.DeviceEvent
		decode(schemas.NameDeviceEvent, &e)
		return []any{e.TenantID, e.UserID, e.EventID, e.GatewayID, e.Kind, e.DeviceID, orZero(e.Model), orZero(e.Firmware),
			sec(e.OccurredAt), e.OccurredAt, e.ReceivedAt, e.IngestedAt, rec.Partition, rec.Offset}
	case topics.Erasures:
		var e schemas.Erasure
		decode(schemas.NameErasure, &e)
		return []any{e.TenantID, e.UserID, e.EventID, e.GatewayID, e.RequestedAt, e.ReceivedAt, rec.Partition, rec.Offset}
	}
	t.Fatalf("no legacy row for %s", rec.Topic)
	return nil
}

// eventGen makes random events with every optional field sometimes
// absent, odd strings and instants before 1970.
type eventGen struct{ rng *rand.Rand }

func (g eventGen) str() string {
	return []string{"", "a", "user-" + strconv.Itoa(g.rng.IntN(1000)), "ünï\x00cödé", string(make([]byte, g.rng.IntN(300)))}[g.rng.IntN(5)]
}

func (g eventGen) ms() int64 {
	return []int64{0, -1, -999, -1000, -1001, 1700000000123, g.rng.Int64N(4e12) - 1e12}[g.rng.IntN(7)]
}

func (g eventGen) f64() float64 {
	return []float64{0, math.Copysign(0, -1), 72.5, -3.25, math.MaxFloat64, math.SmallestNonzeroFloat64, g.rng.NormFloat64() * 1e3}[g.rng.IntN(7)]
}

func (g eventGen) of(symbols ...string) string { return symbols[g.rng.IntN(len(symbols))] }

func maybe[T any](g eventGen, v T) *T {
	if g.rng.IntN(2) == 0 {
		return nil
	}
	return &v
}

func (g eventGen) accepted() *schemas.AcceptedReading {
	return &schemas.AcceptedReading{TenantID: g.str(), EventID: g.str(), UserID: g.str(), DeviceID: g.str(), GatewayID: g.str(),
		Metric: g.str(), LOINC: g.str(), Value: g.f64(), Unit: g.str(), MeasuredAt: g.ms(), ReceivedAt: g.ms(), IngestedAt: g.ms(),
		SourcePartition: g.rng.Int32() - math.MaxInt32/2, SourceOffset: g.rng.Int64() - math.MaxInt64/2,
		PeriodEnd: maybe(g, g.ms()), SecondValue: maybe(g, g.f64()), Stage: maybe(g, g.of("awake", "light", "deep", "rem")),
		Sequence: maybe(g, g.rng.Int64()-math.MaxInt64/2)}
}

// records returns n random events of the topic's schema, encoded.
func (g eventGen) records(t testing.TB, topics eventlog.Topics, topic string, n int) []*kgo.Record {
	var out []*kgo.Record
	for i := range n {
		var codec string
		var ev any
		switch topic {
		case topics.AcceptedReadings:
			codec, ev = schemas.NameAcceptedReading, g.accepted()
		case topics.RejectedReadings:
			codec, ev = schemas.NameRejectedReading, &schemas.RejectedReading{TenantID: g.str(), EventID: g.str(), UserID: g.str(), DeviceID: g.str(),
				Metric: g.str(), MeasuredAt: g.ms(), Reason: g.str(), Message: g.str(), SourcePartition: g.rng.Int32(), SourceOffset: g.rng.Int64()}
		case topics.Alerts:
			codec, ev = schemas.NameAlert, &schemas.Alert{TenantID: g.str(), EventID: g.str(), UserID: g.str(), DeviceID: g.str(), GatewayID: g.str(),
				Metric: g.str(), Rule: g.str(), Severity: g.of("info", "warning", "critical"), MeasuredAt: g.ms(), StartedAt: g.ms(), ReceivedAt: g.ms(), Value: g.f64(), Message: g.str(),
				AlertID: g.str(), Status: g.of("raised", "resolved", "withdrawn"), StatusAt: g.ms(), RecordedAt: g.ms()}
		case topics.ProfileEvents:
			codec, ev = schemas.NameProfileEvent, &schemas.ProfileEvent{TenantID: g.str(), EventID: g.str(), UserID: g.str(), GatewayID: g.str(),
				Kind: g.of("registered", "updated", "erasure_requested"), BirthYear: maybe(g, g.rng.Int32()), Sex: maybe(g, g.of("female", "male", "other", "unknown")), Region: maybe(g, g.str()),
				OccurredAt: g.ms(), ReceivedAt: g.ms(), IngestedAt: g.ms()}
		case topics.DeviceEvents:
			codec, ev = schemas.NameDeviceEvent, &schemas.DeviceEvent{TenantID: g.str(), EventID: g.str(), UserID: g.str(), DeviceID: g.str(),
				GatewayID: g.str(), Kind: g.of("paired", "unpaired", "status"), Model: maybe(g, g.str()), Firmware: maybe(g, g.str()), BatteryPct: maybe(g, g.f64()),
				OccurredAt: g.ms(), ReceivedAt: g.ms(), IngestedAt: g.ms()}
		case topics.Erasures:
			codec, ev = schemas.NameErasure, &schemas.Erasure{TenantID: g.str(), EventID: g.str(), UserID: g.str(), GatewayID: g.str(),
				RequestedAt: g.ms(), ReceivedAt: g.ms()}
		}
		// Unique event ids, so that ReplacingMergeTree tables keep every
		// row when the records are inserted (TestInsertRoundTrip).
		reflect.ValueOf(ev).Elem().FieldByName("EventID").SetString(g.str() + "#" + strconv.Itoa(i))
		rec := record(t, topic, codec, ev)
		rec.Partition, rec.Offset = int32(i%7), int64(1000+i)
		out = append(out, rec)
	}
	return out
}

// TestSinkRowsMatchRowWise projects random events of every topic both
// ways, column by column as the projector does now and row by row as it
// did (legacyValues through AppendRow), into clickhouse-go columns of the
// DDL types, and requires every cell to be identical.
func TestSinkRowsMatchRowWise(t *testing.T) {
	topics := eventlog.TopicsWithPrefix("t")
	g := eventGen{rand.New(rand.NewPCG(1, 2))}
	for _, s := range sinks(topics) {
		t.Run(s.table, func(t *testing.T) {
			recs := g.records(t, topics, s.topic, 300)
			p, got := sent(t, s, recs...)
			want := newChColumns(t, s.table, s.columns)
			for _, rec := range recs {
				vals := legacyValues(t, topics, rec)
				if len(vals) != len(want) {
					t.Fatalf("%d legacy values for %d columns", len(vals), len(want))
				}
				for i, v := range vals {
					if err := want[i].AppendRow(v); err != nil {
						t.Fatalf("legacy %s: %v", s.columns[i], err)
					}
				}
			}
			for i, name := range s.columns {
				if got[i].Rows() != len(recs) || want[i].Rows() != len(recs) {
					t.Fatalf("column %s: %d rows, legacy %d, want %d", name, got[i].Rows(), want[i].Rows(), len(recs))
				}
				for r := range recs {
					if g, w := cell(got[i], r), cell(want[i], r); !reflect.DeepEqual(g, w) {
						t.Fatalf("column %s row %d = %#v, row-wise gave %#v", name, r, g, w)
					}
				}
			}
			for r, rec := range recs {
				if k := p.rows[r]; k.partition != rec.Partition || k.offset != rec.Offset || k.tenant != cell(got[0], r) || k.user != cell(got[1], r) {
					t.Fatalf("row %d key %+v does not match its record and columns", r, k)
				}
			}
		})
	}
}

// TestRetainAndReset checks that dropping rows keeps every column aligned
// with the row keys, and that a reset buffer starts empty.
func TestRetainAndReset(t *testing.T) {
	topics := eventlog.TopicsWithPrefix("t")
	s := sinks(topics)[0]
	g := eventGen{rand.New(rand.NewPCG(3, 4))}
	recs := g.records(t, topics, s.topic, 10)
	p := newPending(s)
	for _, rec := range recs {
		if _, err := p.add(rec); err != nil {
			t.Fatal(err)
		}
	}
	eventCol := slices.Index(s.columns, "event_id")
	if dropped := p.retain(func(r row) bool { return r.offset%3 != 0 }); dropped != 3 {
		t.Fatalf("dropped %d, want 3 (offsets 1002, 1005, 1008)", dropped)
	}
	chCols := newChColumns(t, s.table, s.columns)
	for i, c := range p.cols {
		if err := c.col.send(chColumn{chCols[i]}); err != nil {
			t.Fatal(err)
		}
	}
	var kept []*kgo.Record
	for _, rec := range recs {
		if rec.Offset%3 != 0 {
			kept = append(kept, rec)
		}
	}
	for i, rec := range kept {
		legacy := legacyValues(t, topics, rec)
		if p.rows[i].offset != rec.Offset || cell(chCols[eventCol], i) != legacy[eventCol] || cell(chCols[len(chCols)-1], i) != rec.Offset {
			t.Fatalf("row %d after retain: key %+v, event %v; want offset %d, event %v", i, p.rows[i], cell(chCols[eventCol], i), rec.Offset, legacy[eventCol])
		}
	}
	for i := range chCols {
		if chCols[i].Rows() != len(kept) {
			t.Fatalf("column %s has %d rows after retain, want %d", s.columns[i], chCols[i].Rows(), len(kept))
		}
	}
	p.stored, p.uncertain = true, true
	p.reset()
	if len(p.rows) != 0 || p.stored || p.uncertain {
		t.Fatalf("after reset: %d rows, stored %v, uncertain %v", len(p.rows), p.stored, p.uncertain)
	}
	empty := newChColumns(t, s.table, s.columns)
	for i, c := range p.cols {
		if err := c.col.send(chColumn{empty[i]}); err != nil {
			t.Fatal(err)
		}
		if empty[i].Rows() != 0 {
			t.Fatalf("column %s holds %d rows after reset", s.columns[i], empty[i].Rows())
		}
	}
}

// TestSecs checks DateTime seconds against the time.Time rounding the
// row-wise projector used, negative instants included.
func TestSecs(t *testing.T) {
	for _, ms := range []int64{0, 1, 999, 1000, 1001, -1, -999, -1000, -1001, -1999, 1700000000123, -1700000000123, 253402300799999} {
		if got, want := secs(ms), time.UnixMilli(ms).UTC().Truncate(time.Second).Unix(); got != want {
			t.Errorf("secs(%d) = %d, want %d", ms, got, want)
		}
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
		if n := len(newPending(s).cols); n != len(s.columns) {
			t.Errorf("%s: %d buffered columns for %d names", s.table, n, len(s.columns))
		}
	}
}

func TestUndecodableRecord(t *testing.T) {
	for _, s := range sinks(eventlog.TopicsWithPrefix("t")) {
		p := newPending(s)
		if _, err := p.add(&kgo.Record{Topic: s.topic, Value: []byte("not avro")}); err == nil {
			t.Errorf("%s: garbage decoded without error", s.topic)
		}
		if len(p.rows) != 0 {
			t.Errorf("%s: an undecodable record left a row", s.topic)
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
	topics := eventlog.TopicsWithPrefix("t")
	e := newErasedSet(nil, "db")
	e.add([]row{{tenant: "t1", user: "gone"}})
	var s *sink
	for _, x := range sinks(topics) {
		if x.topic == topics.AcceptedReadings {
			s = x
		}
	}
	p := newPending(s)
	for i, k := range []struct{ tenant, user string }{{"t1", "gone"}, {"t2", "gone"}, {"t1", "kept"}} {
		rec := record(t, s.topic, schemas.NameAcceptedReading, &schemas.AcceptedReading{TenantID: k.tenant, UserID: k.user, EventID: "e" + strconv.Itoa(i+1)})
		rec.Offset = int64(i + 1)
		if _, err := p.add(rec); err != nil {
			t.Fatal(err)
		}
	}
	var dropped Stats
	e.filter(p, &dropped.Erased)
	if len(p.rows) != 2 || p.rows[0].offset != 2 || p.rows[1].offset != 3 || dropped.Erased.Load() != 1 {
		t.Fatalf("filter kept %+v, dropped %d; want offsets 2 and 3 (erasure is per tenant)", p.rows, dropped.Erased.Load())
	}
	events := p.cols[slices.Index(s.columns, "event_id")].col
	if events.value(0) != "e2" || events.value(1) != "e3" {
		t.Fatalf("event_id column after filter: %v, %v; want e2, e3", events.value(0), events.value(1))
	}
	in := e.erasedIn([]*pending{{sink: &sink{}, rows: []row{{tenant: "t1", user: "gone"}, {tenant: "t1", user: "gone"}, {tenant: "t1", user: "kept"}}}})
	if len(in) != 1 || in[0].user != "gone" {
		t.Fatalf("erasedIn = %+v, want the erased user once", in)
	}
}

// TestForwardedReadingRows checks that a reading the processor forwarded
// (ingest's message with its source in rules.HeaderSource) makes the same
// readings row, cell for cell, as the accepted_reading message the
// processor would have encoded for it.
func TestForwardedReadingRows(t *testing.T) {
	topics := eventlog.TopicsWithPrefix("t")
	var s *sink
	for _, sk := range sinks(topics) {
		if sk.table == warehouse.ReadingsTable {
			s = sk
		}
	}
	readings := []schemas.Reading{
		{TenantID: "ten", EventID: "e1", UserID: "u1", DeviceID: "d1", GatewayID: "g1", Metric: "heart_rate", Value: 61, Unit: "/min",
			MeasuredAt: 1700000000123, ReceivedAt: 1700000000124, IngestedAt: 1700000000125, Sequence: ptr(int64(4)), SourceFormat: "json"},
		{TenantID: "ten", EventID: "e2", UserID: "u1", Metric: "body_temperature", Value: 98.6, Unit: "[degF]", MeasuredAt: 1700000000000},
		{TenantID: "ten", EventID: "e3", UserID: "u2", Metric: "sleep_stage", Value: 45, Unit: "min", MeasuredAt: 1700000000000,
			PeriodEnd: ptr(int64(1700002700000)), Stage: ptr("deep")},
	}
	var fwd, acc []*kgo.Record
	for i := range readings {
		rd := &readings[i]
		msg, err := schemas.AppendReading(schemas.MustCodec(schemas.NameReading), nil, rd)
		if err != nil {
			t.Fatal(err)
		}
		part, off := int32(i), int64(100+i)
		fwd = append(fwd, &kgo.Record{Topic: topics.AcceptedReadings, Partition: 2, Offset: int64(42 + i), Value: msg,
			Headers: []kgo.RecordHeader{{Key: rules.HeaderSource, Value: rules.AppendSource(nil, part, off)}}})
		var a schemas.AcceptedReading
		rules.Accepted(&a, rd, part, off)
		r := record(t, topics.AcceptedReadings, schemas.NameAcceptedReading, &a)
		r.Offset = int64(42 + i)
		acc = append(acc, r)
	}
	_, got := sent(t, s, fwd...)
	_, want := sent(t, s, acc...)
	for c, name := range s.columns {
		for r := range readings {
			if g, w := cell(got[c], r), cell(want[c], r); !reflect.DeepEqual(g, w) {
				t.Fatalf("column %s row %d: forwarded %#v, accepted message %#v", name, r, g, w)
			}
		}
	}
	if v, _ := cell(got[slices.Index(s.columns, "value")], 1).(float64); math.Abs(v-37) > 1e-9 {
		t.Fatalf("forwarded 98.6 [degF] stored as %v, want 37 (canonical)", v)
	}
}

// BenchmarkAcceptedForms is the projector's decoding of an accepted
// reading in its two forms: "message" an accepted_reading message (read
// by hand, no allocation), "forwarded" a logged reading the processor
// forwarded (rules.HeaderSource), made into the accepted reading.
//
//	go test -run '^$' -bench AcceptedForms -count 5 ./projector/
func BenchmarkAcceptedForms(b *testing.B) {
	c := newAcceptedCodec()
	rd := schemas.Reading{TenantID: "default", EventID: "bench-1234abcd-987654", UserID: "bench-user-4711", DeviceID: "bench-user-4711-tracker",
		GatewayID: "bench-gateway", Metric: "heart_rate", Value: 72, Unit: "/min", MeasuredAt: 1700000000000, ReceivedAt: 1700000000800,
		IngestedAt: 1700000001000, Sequence: ptr(int64(42)), SourceFormat: "json"}
	fwd, err := schemas.AppendReading(c.reading, nil, &rd)
	if err != nil {
		b.Fatal(err)
	}
	var a schemas.AcceptedReading
	rules.Accepted(&a, &rd, 3, 77)
	msg, err := c.accepted.Encode(&a)
	if err != nil {
		b.Fatal(err)
	}
	for _, form := range []struct {
		name string
		rec  *kgo.Record
	}{
		{"message", &kgo.Record{Value: msg}},
		{"forwarded", &kgo.Record{Value: fwd, Headers: []kgo.RecordHeader{{Key: rules.HeaderSource, Value: rules.AppendSource(nil, 3, 77)}}}},
	} {
		b.Run(form.name, func(b *testing.B) {
			b.ReportAllocs()
			var f schemas.FlatAcceptedReading
			for b.Loop() {
				if err := c.decode(form.rec, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
