package projector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// Pausing for a table swap
//
// `vitals replay rebuild` swaps rebuilt tables into place while projectors
// keep running. A projector must not be inserting into a table while it is
// renamed away (those rows would land in the old table), and afterwards it
// must continue from the positions of the new table, not from where it was.
// So replay asks it to pause through warehouse.ReplayPausesTable in the
// projector's own database: a "pause" row with an id and a deadline. Before
// every insert, and about once a second while idle, the projector looks
// for a pause in force; when it finds one it drops the batch it holds
// (nothing of it was inserted or committed), writes an "ack" row with its
// group member id and waits until replay writes "resume" or the deadline
// passes. Replay swaps only after every member of the group acknowledged.
// On resuming, the projector seeks every owned partition to the later of
// its committed offset and max(log_offset)+1 stored in the (possibly new)
// table, exactly as at an assignment, and drops any already-buffered
// record below that position.

// Pause row kinds in warehouse.ReplayPausesTable.
const (
	PauseKindPause  = "pause"
	PauseKindAck    = "ack"
	PauseKindResume = "resume"
)

// errPaused is flush's answer when it found a pause: the batch was not
// inserted and the partitions have been re-sought, so it is dropped.
var errPaused = errors.New("paused for a replay swap; batch dropped")

// pauseCheckEvery is how often an idle projector looks for a pause.
const pauseCheckEvery = time.Second

// owned tracks the partitions assigned to this instance, for the re-seek
// after a pause.
type owned struct {
	mu    sync.Mutex
	parts map[string]map[int32]bool
}

func (o *owned) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.parts == nil {
		o.parts = map[string]map[int32]bool{}
	}
	for t, ps := range m {
		if o.parts[t] == nil {
			o.parts[t] = map[int32]bool{}
		}
		for _, p := range ps {
			o.parts[t][p] = true
		}
	}
}

func (o *owned) removed(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(o.parts[t], p)
		}
	}
}

func (o *owned) snapshot() map[string][]int32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string][]int32{}
	for t, ps := range o.parts {
		for p := range ps {
			out[t] = append(out[t], p)
		}
	}
	return out
}

// WritePause writes one row of the pause protocol into db's
// warehouse.ReplayPausesTable: kind is PauseKindPause, PauseKindAck or
// PauseKindResume, member the acknowledging group member (empty otherwise). The projector acknowledges with it and replay asks and ends
// with it.
func WritePause(ctx context.Context, conn driver.Conn, db, id, kind, member string, until time.Time) error {
	b, err := conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.%s (pause_id, kind, member, until_ms)", db, warehouse.ReplayPausesTable))
	if err != nil {
		return fmt.Errorf("write replay pause %s %s: %w", kind, id, err)
	}
	defer b.Abort()
	if err := b.Append(id, kind, member, until.UnixMilli()); err != nil {
		return fmt.Errorf("write replay pause %s %s: %w", kind, id, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("write replay pause %s %s: %w", kind, id, err)
	}
	return nil
}

// pauseInForce returns the id and deadline of a pause that is neither
// resumed nor expired, or "" if there is none.
func (p *Projector) pauseInForce(ctx context.Context) (string, time.Time, error) {
	q := fmt.Sprintf(`SELECT pause_id, max(until_ms) FROM %[1]s.%[2]s
		WHERE kind = ? AND until_ms > ? AND pause_id NOT IN (SELECT pause_id FROM %[1]s.%[2]s WHERE kind = ?)
		GROUP BY pause_id LIMIT 1`, p.db, warehouse.ReplayPausesTable)
	rows, err := p.conn.Query(ctx, q, PauseKindPause, time.Now().UnixMilli(), PauseKindResume)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("look for a replay pause: %w", err)
	}
	defer rows.Close()
	var id string
	var until int64
	if rows.Next() {
		if err := rows.Scan(&id, &until); err != nil {
			return "", time.Time{}, fmt.Errorf("look for a replay pause: %w", err)
		}
	}
	return id, time.UnixMilli(until), rows.Err()
}

// honourPause looks for a pause in force and, if there is one,
// acknowledges it and waits until it ends, then re-seeks. It reports
// whether it paused: the caller must then drop the records it holds.
func (p *Projector) honourPause(ctx context.Context) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, p.cfg.InsertTimeout)
	defer cancel()
	id, until, err := p.pauseInForce(qctx)
	if err != nil || id == "" {
		return false, err
	}
	member, _ := p.cl.GroupMetadata()
	if err := WritePause(qctx, p.conn, p.db, id, PauseKindAck, member, until); err != nil {
		return false, err
	}
	p.log.Info().Str("pause_id", id).Str("member", member).Time("until", until).Msg("paused for a replay table swap")
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case <-time.After(100 * time.Millisecond):
		}
		wctx, wcancel := context.WithTimeout(ctx, p.cfg.InsertTimeout)
		now, _, err := p.pauseInForce(wctx)
		wcancel()
		if err != nil {
			p.log.Warn().Err(err).Str("pause_id", id).Msg("cannot read the replay pause; still paused")
			continue
		}
		if now != id {
			break
		}
	}
	return true, p.reseek(ctx)
}

// reseek moves every owned partition to where an assignment would start it
// now: after the rows stored in the table (which a swap may have replaced)
// or at the committed offset, whichever is later. (A rollback's restored
// tables are caught up by vitals replay before the pause ends.)
func (p *Projector) reseek(ctx context.Context) error {
	committed := p.cl.CommittedOffsets()
	offsets := map[string]map[int32]kgo.Offset{}
	for topic, parts := range p.owned.snapshot() {
		offsets[topic] = map[int32]kgo.Offset{}
		for _, part := range parts {
			at := int64(-1)
			if eo, ok := committed[topic][part]; ok {
				at = eo.Offset
			}
			offsets[topic][part] = kgo.NewOffset().At(at)
		}
	}
	if _, err := p.resumeOffsets(ctx, offsets); err != nil {
		return err
	}
	set := map[string]map[int32]kgo.EpochOffset{}
	for topic, parts := range offsets {
		set[topic] = map[int32]kgo.EpochOffset{}
		for part, o := range parts {
			at := max(o.EpochOffset().Offset, 0)
			set[topic][part] = kgo.EpochOffset{Epoch: -1, Offset: at}
			p.floor[floorKey{topic, part}] = at
		}
	}
	// SetOffsets also drops the fetches buffered before, so a seek back
	// cannot deliver a record twice.
	p.cl.SetOffsets(set)
	p.log.Info().Str("positions", describeOffsets(set)).Msg("resumed after the replay pause")
	return nil
}

// floorKey names a topic-partition whose records below a floor are
// dropped after a re-seek (fetched before the seek, already stored).
type floorKey struct {
	topic string
	part  int32
}

// aboveFloor drops records below their partition's floor.
func (p *Projector) aboveFloor(records []*kgo.Record) []*kgo.Record {
	if len(p.floor) == 0 {
		return records
	}
	out := records[:0]
	for _, r := range records {
		if f, ok := p.floor[floorKey{r.Topic, r.Partition}]; !ok || r.Offset >= f {
			out = append(out, r)
		}
	}
	return out
}

func describeOffsets(m map[string]map[int32]kgo.EpochOffset) string {
	var parts []string
	for t, ps := range m {
		for p, o := range ps {
			parts = append(parts, t+"/"+strconv.Itoa(int(p))+"@"+strconv.FormatInt(o.Offset, 10))
		}
	}
	return strings.Join(parts, " ")
}

// chooseSinks keeps the sinks of the given tables, all of them if tables
// is empty.
func chooseSinks(all []*sink, tables []string) ([]*sink, error) {
	if len(tables) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, t := range tables {
		want[t] = true
	}
	if !want[warehouse.ErasedUsersTable] {
		return nil, fmt.Errorf("tables %v leave out %s: rows of erased users would be projected again", tables, warehouse.ErasedUsersTable)
	}
	var out []*sink
	for _, s := range all {
		if want[s.table] {
			out = append(out, s)
			delete(want, s.table)
			if s.revisions != nil {
				delete(want, s.revisions.table)
			}
		}
	}
	// The rollups are filled by their views, not from a topic; the
	// revisions table by the readings' sink.
	delete(want, warehouse.DailyRollupTable)
	delete(want, warehouse.ValuesRollupTable)
	delete(want, warehouse.DailyRevisionsTable)
	if want[warehouse.RevisionsTable] {
		return nil, fmt.Errorf("tables %v: %s is projected with %s, from the same records", tables, warehouse.RevisionsTable, warehouse.ReadingsTable)
	}
	for t := range want {
		return nil, fmt.Errorf("no topic is projected into table %q", t)
	}
	return out, nil
}
