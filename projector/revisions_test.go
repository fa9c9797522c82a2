package projector

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/schemas"
)

// A batch's revisions retract the version their event id holds: one the
// batch itself made, else one stored before it; a withdrawal adds
// nothing, and a revision of a reading nothing holds only adds.
func TestResolveRevisions(t *testing.T) {
	topics := eventlog.DefaultConfig().Topics
	p := &Projector{sinks: map[string]*sink{}, bufs: map[string]*pending{}}
	for _, s := range sinks(topics) {
		p.sinks[s.topic] = s
	}
	acc := func(id string, rev int64, value float64, withdrawn bool, offset int64) *kgo.Record {
		a := &schemas.AcceptedReading{TenantID: "t", EventID: id, UserID: "u", DeviceID: "d", Metric: "heart_rate", LOINC: "8867-4",
			Value: value, Unit: "/min", MeasuredAt: 1_700_000_000_000, IngestedAt: 1_700_000_100_000 + rev, Revision: rev, Withdrawn: withdrawn}
		rec := record(t, topics.AcceptedReadings, schemas.NameAcceptedReading, a)
		rec.Partition, rec.Offset = 1, offset
		return rec
	}
	records := []*kgo.Record{
		acc("e", 0, 70, false, 10), // original in the batch
		acc("s", 2, 90, false, 11), // revises a stored version
		acc("e", 1, 80, false, 12), // revises the batch's original
		acc("e", 2, 0, true, 13),   // withdraws that
		acc("n", 1, 60, false, 14), // nothing holds it
		acc("e", 3, 85, false, 15), // after a withdrawal: nothing to retract
	}
	b := p.decode(records, opened{})
	if b.readings == nil || b.revisions == nil || len(b.accepted) != 6 || len(b.readings.rows) != 1 {
		t.Fatalf("decode: %+v", b)
	}
	var asked []eventKey
	stored := version{tenant: "t", user: "u", eventID: "s", metric: "heart_rate", value: 99, revision: 1, measuredAt: 1_699_000_000_000}
	err := resolve(b.accepted, b.readings, b.revisions, func(keys []eventKey) (map[eventKey][]version, error) {
		asked = keys
		return map[eventKey][]version{{"t", "u", "s"}: {stored}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []eventKey{{"t", "u", "s"}, {"t", "u", "e"}, {"t", "u", "n"}}; !reflect.DeepEqual(asked, want) {
		t.Fatalf("looked up %v, want %v", asked, want)
	}
	rb := b.revisions.buf.(*revisionsBuf)
	var got []string
	for i := range b.revisions.rows {
		got = append(got, fmt.Sprintf("%s r%d %+d %g @%d rec%d", rb.eventID.v[i], rb.revision.v[i], rb.sign.v[i], rb.value.v[i],
			rb.measured.ms.v[i]-1_699_000_000_000, rb.recordedAt.v[i]-1_700_000_100_000))
	}
	want := []string{
		"s r1 -1 99 @0 rec2", "s r2 +1 90 @1000000000 rec2",
		"e r0 -1 70 @1000000000 rec1", "e r1 +1 80 @1000000000 rec1",
		"e r1 -1 80 @1000000000 rec2",
		"n r1 +1 60 @1000000000 rec1",
		"e r3 +1 85 @1000000000 rec3",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n%q\nwant\n%q", got, want)
	}
	for i, r := range b.revisions.rows {
		if r.partition != 1 || r.offset < 11 || len(rb.pos.offset.v) != len(b.revisions.rows) || rb.pos.offset.v[i] != r.offset {
			t.Fatalf("row %d at %+v", i, r)
		}
	}
	b.release()
	if len(rb.records) != 0 || len(b.revisions.rows) != 0 {
		t.Fatal("release kept the batch's revisions")
	}
}
