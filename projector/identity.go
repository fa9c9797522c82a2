package projector

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
)

// Identity is what `vitals replay` verification compares for each record:
// the table its row goes to, its tenant and user (rows of erased users are
// not kept) and the event id stored in the row.
type Identity struct {
	Table, Tenant, User, EventID string
}

// Identifier decodes records of the projector's topics into their
// Identity with the projector's own decoders, so that verification reads
// exactly what the projector would store. ok is false for a topic the
// projector does not read.
func Identifier(topics eventlog.Topics) func(rec *kgo.Record) (id Identity, ok bool, err error) {
	type entry struct {
		s     *sink
		event int // index of event_id in the sink's columns
		// bufs holds one-row buffers, so that the function stays safe for
		// concurrent use without allocating a buffer per record.
		bufs *sync.Pool
	}
	byTopic := map[string]entry{}
	for _, s := range sinks(topics) {
		e := entry{s: s, event: slices.Index(s.columns, "event_id"), bufs: &sync.Pool{New: func() any { return newPending(s) }}}
		byTopic[s.topic] = e
	}
	return func(rec *kgo.Record) (Identity, bool, error) {
		e, ok := byTopic[rec.Topic]
		if !ok {
			return Identity{}, false, nil
		}
		t := e.bufs.Get().(*pending)
		defer func() {
			t.reset()
			e.bufs.Put(t)
		}()
		r, err := t.add(rec)
		if errors.Is(err, errRevision) {
			return Identity{}, false, nil // rows of its own, in the revisions table
		}
		if err != nil {
			return Identity{}, true, fmt.Errorf("decode %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
		}
		// Copies: the decoded strings may share the record's bytes.
		id := Identity{Table: e.s.table, Tenant: strings.Clone(r.tenant), User: strings.Clone(r.user)}
		if e.event >= 0 {
			ev, _ := t.cols[e.event].col.value(0).(string)
			id.EventID = strings.Clone(ev)
		}
		return id, true, nil
	}
}

// TableTopics maps each projected table to the topic it is projected
// from; the rollups (warehouse.DailyRollupTable, ValuesRollupTable,
// DailyRevisionsTable) are not among them (views fill them). The revisions
// table shares the readings table's topic.
func TableTopics(topics eventlog.Topics) map[string]string {
	out := map[string]string{}
	for _, s := range sinks(topics) {
		out[s.table] = s.topic
		if s.revisions != nil {
			out[s.revisions.table] = s.topic
		}
	}
	return out
}
