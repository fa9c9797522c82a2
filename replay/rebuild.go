package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/projector"
)

// opTimeout bounds each ClickHouse statement and Kafka admin request of
// the replay itself (not the copying, which the projector bounds).
const opTimeout = 30 * time.Second

// session holds the connections of one Rebuild or Rollback.
type session struct {
	cfg    Config
	log    zerolog.Logger
	ch     driver.Conn
	cl     *kgo.Client
	adm    *kadm.Client
	tables []string
	// topicOf maps each selected table to its topic (not the rollup).
	topicOf map[string]string
}

func open(ctx context.Context, cfg Config, log zerolog.Logger) (*session, error) {
	tables, err := ResolveTables(cfg.Tables)
	if err != nil {
		return nil, err
	}
	if cfg.LiveGroup == "" {
		return nil, errors.New("replay: the live projector group is not set")
	}
	ch, err := warehouse.Open(ctx, cfg.Warehouse)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	cl, err := kgo.NewClient(cfg.Kafka.ClientOpts(log)...)
	if err != nil {
		ch.Close()
		return nil, fmt.Errorf("replay: kafka client: %w", err)
	}
	s := &session{cfg: cfg, log: log, ch: ch, cl: cl, adm: kadm.NewClient(cl), tables: tables, topicOf: map[string]string{}}
	all := projector.TableTopics(cfg.Kafka.Topics)
	for _, t := range tables {
		if topic, ok := all[t]; ok {
			s.topicOf[t] = topic
		}
	}
	return s, nil
}

func (s *session) close() {
	s.cl.Close()
	s.ch.Close()
}

func (s *session) topics() []string {
	var out []string
	for _, t := range s.tables {
		if topic, ok := s.topicOf[t]; ok {
			out = append(out, topic)
		}
	}
	return out
}

// exec runs one statement with opTimeout (on a cluster, on every server:
// replay's statements are DDL, which 18.16 does not replicate).
func (s *session) exec(ctx context.Context, q string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := warehouse.ExecEverywhere(ctx, s.ch, q, args...); err != nil {
		return fmt.Errorf("%s: %w", strings.SplitN(q, "(", 2)[0], err)
	}
	return nil
}

// count runs a query returning one UInt64.
func (s *session) count(ctx context.Context, q string, args ...any) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var n uint64
	if err := s.ch.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", q, err)
	}
	return n, nil
}

// existing returns which of the tables exist in db.
func (s *session) existing(ctx context.Context, db string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	out, err := warehouse.ScanSet[string](s.ch.Query(ctx, "SELECT name FROM system.tables WHERE database = ?", db))
	if err != nil {
		return nil, fmt.Errorf("list tables of %s: %w", db, err)
	}
	if warehouse.ClusterOf(s.ch) != nil {
		return logicalNames(out), nil
	}
	return out, nil
}

// Plan is what a rebuild would do, for --dry-run and the start of a run.
type Plan struct {
	Tables         []string
	Topics         []string
	Group          string
	LiveDatabase   string
	ShadowDatabase string
	OldDatabase    string
	From           time.Time
	Start, End     positions
	// Resume holds the shadow group's committed offsets, if it has any.
	Resume positions
	// LiveRows and ShadowRows count each table's rows now (-1: no table).
	LiveRows, ShadowRows map[string]int64
}

// Records is the number of records between the start and end offsets.
func (p *Plan) Records() int64 { return p.Start.span(p.End) }

func (s *session) plan(ctx context.Context) (*Plan, error) {
	topics := s.topics()
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	p := &Plan{Tables: s.tables, Topics: topics, Group: s.cfg.group(), LiveDatabase: s.cfg.Warehouse.Database,
		ShadowDatabase: s.cfg.ShadowDatabase(), OldDatabase: s.cfg.OldDatabase(), From: s.cfg.From,
		LiveRows: map[string]int64{}, ShadowRows: map[string]int64{}}
	var err error
	if p.Start, err = startOffsets(actx, s.adm, s.cfg.From, topics...); err != nil {
		return nil, err
	}
	if p.End, err = endOffsets(actx, s.adm, topics...); err != nil {
		return nil, err
	}
	if p.Resume, err = committedOffsets(actx, s.adm, p.Group, topics...); err != nil {
		return nil, err
	}
	for db, into := range map[string]map[string]int64{p.LiveDatabase: p.LiveRows, p.ShadowDatabase: p.ShadowRows} {
		have, err := s.existing(ctx, db)
		if err != nil {
			return nil, err
		}
		for _, t := range s.tables {
			into[t] = -1
			if have[t] {
				n, err := s.count(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", db, t))
				if err != nil {
					return nil, err
				}
				into[t] = int64(n)
			}
		}
	}
	return p, nil
}

// Print describes the plan.
func (p *Plan) Print(w io.Writer) {
	from := "the start of each topic"
	if !p.From.IsZero() {
		from = p.From.UTC().Format(time.RFC3339) + " (rows of earlier records are copied from the live tables)"
	}
	fmt.Fprintf(w, "rebuild %s.{%s}\n", p.LiveDatabase, strings.Join(p.Tables, ","))
	fmt.Fprintf(w, "  shadow database %s, consumer group %s, replaced tables kept in %s\n", p.ShadowDatabase, p.Group, p.OldDatabase)
	fmt.Fprintf(w, "  from %s\n", from)
	for _, topic := range p.Topics {
		var parts []string
		for _, part := range p.End.sortedParts(topic) {
			s, e := p.Start[topic][part], p.End[topic][part]
			r := ""
			if at, ok := p.Resume[topic][part]; ok {
				r = fmt.Sprintf(" (group at %d)", at)
			}
			parts = append(parts, fmt.Sprintf("p%d %d..%d%s", part, s, e, r))
		}
		fmt.Fprintf(w, "  topic %s: %s\n", topic, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "  records to read: %d", p.Records())
	if done := p.Resume.done(p.Start, p.End); done > 0 {
		fmt.Fprintf(w, " (%d already done by the group: a rerun resumes)", done)
	}
	fmt.Fprintln(w)
	for _, t := range p.Tables {
		fmt.Fprintf(w, "  table %-18s live rows %s, shadow rows %s\n", t, rowsText(p.LiveRows[t]), rowsText(p.ShadowRows[t]))
	}
	fmt.Fprintln(w, "  then: verify the shadow against the log, pause the live projectors, bring the shadow level, swap with one RENAME TABLE, resume")
}

func rowsText(n int64) string {
	if n < 0 {
		return "(no table)"
	}
	return fmt.Sprint(n)
}

// DryRun returns the plan without changing anything.
func DryRun(ctx context.Context, cfg Config, log zerolog.Logger) (*Plan, error) {
	s, err := open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.plan(ctx)
}

// Result is what Rebuild did.
type Result struct {
	Plan     *Plan
	Records  int64         // records projected by this run
	CaughtUp time.Duration // from the start of projecting to caught up
	Verified []Check
	Swapped  bool
	Paused   time.Duration // how long the live projectors were paused
}

// Rebuild rebuilds the selected tables into the shadow database, verifies
// them and swaps them into place (see the package documentation). It can
// be stopped at any time; a rerun resumes.
func Rebuild(ctx context.Context, cfg Config, log zerolog.Logger) (*Result, error) {
	log = log.With().Str("role", "replay").Logger()
	s, err := open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.prepareShadow(ctx); err != nil {
		return nil, err
	}
	plan, err := s.plan(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Plan: plan}
	log.Info().Strs("tables", plan.Tables).Str("shadow", plan.ShadowDatabase).Str("group", plan.Group).Int64("records", plan.Records()).Msg("rebuilding")

	sh, err := startShadow(ctx, cfg, plan, log)
	if err != nil {
		return nil, err
	}
	stop := sh.stop
	// Closing leaves the group, which can take seconds while the other
	// instance's rebalance settles: do it after the swap, not during the
	// live projectors' pause. Stopping (Run returned) is enough to swap.
	defer sh.close()
	// Stop as soon as the caller does, and fail if the shadow projector does.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go sh.cancelOnFailure(rctx, cancel)

	started := time.Now()
	// What an earlier run did: the group's commits or, after a reset of
	// the group, the rows stored.
	before := plan.Resume.done(plan.Start, plan.End)
	if stored, err := s.storedPositions(rctx, plan.ShadowDatabase, plan.Tables); err == nil {
		at := positions{}
		at.raise(plan.Resume)
		at.raise(stored)
		before = at.done(plan.Start, plan.End)
	}
	var caught positions
	if caught, err = s.catchUp(rctx, plan, "rebuild"); err != nil {
		return nil, s.stopErr(ctx, err, stop)
	}
	res.CaughtUp = time.Since(started)
	res.Records = plan.Start.span(caught) - before
	log.Info().Dur("took", res.CaughtUp).Int64("records", res.Records).Msg("shadow caught up with the log")
	if cfg.Verify {
		if res.Verified, err = s.verify(rctx, plan.ShadowDatabase, plan.Start, caught); err != nil {
			return res, s.stopErr(ctx, err, stop)
		}
	}
	if !cfg.Swap {
		return res, stop()
	}
	if res.Paused, err = s.swap(rctx, plan, stop); err != nil {
		return res, s.stopErr(ctx, err, stop)
	}
	res.Swapped = true
	return res, nil
}

// shadow is a rebuild's projectors into the shadow database, running
// until stop.
type shadow struct {
	group   *projector.Group
	cancel  context.CancelFunc
	done    chan error // the projectors' end, once
	stopped atomic.Bool
}

// startShadow starts cfg.Instances projectors of the plan's tables into
// its shadow database, in the plan's group (see projector.Group).
func startShadow(ctx context.Context, cfg Config, plan *Plan, log zerolog.Logger) (*shadow, error) {
	pcfg := cfg.Projector
	pcfg.Kafka, pcfg.Warehouse, pcfg.Group, pcfg.Tables = cfg.Kafka, cfg.Warehouse, plan.Group, plan.Tables
	pcfg.Warehouse.Database = plan.ShadowDatabase
	pcfg.MetricsAddr = "" // several instances; none serves /metrics
	pcfg.Shred = false    // the live projectors finish erasures, the shadow's included
	g, err := projector.NewGroup(ctx, pcfg, cfg.Instances, log.With().Str("projection", "shadow").Logger())
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sh := &shadow{group: g, cancel: cancel, done: make(chan error, 1)}
	go func() { sh.done <- g.Run(pctx) }()
	return sh, nil
}

// stop stops the projectors and returns how they ended; only the first
// call waits, later ones return nil.
func (sh *shadow) stop() error {
	if sh.stopped.Swap(true) {
		return nil
	}
	sh.cancel()
	return <-sh.done
}

// close stops the projectors and closes them, leaving the group.
func (sh *shadow) close() {
	_ = sh.stop()
	sh.group.Close()
}

// cancelOnFailure calls cancel if the projectors end before stop was
// called (a failure), and returns when they end or ctx does.
func (sh *shadow) cancelOnFailure(ctx context.Context, cancel context.CancelFunc) {
	select {
	case err := <-sh.done:
		sh.done <- err // for stop
		if !sh.stopped.Load() {
			cancel()
		}
	case <-ctx.Done():
	}
}

// stopErr stops the shadow projector and returns err, or what stopped it.
func (s *session) stopErr(ctx context.Context, err error, stop func() error) error {
	serr := stop()
	if ctx.Err() != nil {
		return fmt.Errorf("replay stopped (a rerun resumes): %w", ctx.Err())
	}
	if serr != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("shadow projector: %w", serr)
	}
	return err
}

// prepareShadow creates the shadow tables. If any selected table was
// missing (a first run, or after a swap), the shadow starts afresh: the
// selected tables are emptied and the group's old positions forgotten, so
// that positions and rows never disagree. Otherwise it resumes.
func (s *session) prepareShadow(ctx context.Context) error {
	db := s.cfg.ShadowDatabase()
	have, err := s.existing(ctx, db)
	if err != nil {
		return err
	}
	// Without their views (dropped at a swap) the shadow's rollups would be
	// backfilled on top of what they hold: start afresh then too.
	fresh := false
	for _, v := range warehouse.RollupViews {
		fresh = fresh || (slices.Contains(s.tables, warehouse.DailyRollupTable) && !have[v])
	}
	for _, t := range s.tables {
		fresh = fresh || !have[t]
	}
	mctx, cancel := context.WithTimeout(ctx, 2*opTimeout)
	defer cancel()
	if err := warehouse.Migrate(mctx, s.ch, s.cfg.Warehouse.Database); err != nil {
		return err
	}
	if !fresh {
		s.log.Info().Str("shadow", db).Msg("resuming the rebuild in the existing shadow tables")
		return warehouse.Migrate(mctx, s.ch, db)
	}
	for _, t := range s.tables {
		if err := s.exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", db, s.local(t))); err != nil {
			return err
		}
	}
	if _, err := s.adm.DeleteGroup(mctx, s.cfg.group()); err != nil && !strings.Contains(err.Error(), "GROUP_ID_NOT_FOUND") {
		return fmt.Errorf("forget the positions of group %s: %w", s.cfg.group(), err)
	}
	if err := warehouse.Migrate(mctx, s.ch, db); err != nil {
		return err
	}
	if s.cfg.From.IsZero() {
		return nil
	}
	return s.copyPrefix(ctx)
}

// copyPrefix copies into the fresh shadow tables the live rows of records
// before cfg.From, so that the rebuild reads only the records after it.
// The rollup follows through the shadow's view.
func (s *session) copyPrefix(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	from, err := startOffsets(actx, s.adm, s.cfg.From, s.topics()...)
	if err != nil {
		return err
	}
	live, shadow := s.cfg.Warehouse.Database, s.cfg.ShadowDatabase()
	for _, t := range s.tables {
		topic, ok := s.topicOf[t]
		if !ok || t == warehouse.ErasedUsersTable {
			continue // the rollups follow readings and revisions; erasures are always replayed whole
		}
		cols := strings.Join(warehouse.TableColumns(t), ", ")
		for _, part := range from.sortedParts(topic) {
			q := fmt.Sprintf("INSERT INTO %s.%s (%s) SELECT %s FROM %s.%s WHERE log_partition = ? AND log_offset >= 0 AND log_offset < ?",
				shadow, s.local(t), cols, cols, live, s.local(t))
			cctx, ccancel := context.WithTimeout(ctx, 10*opTimeout)
			// On a cluster, shard by shard: each copies its own rows.
			err := warehouse.ExecPerShard(cctx, s.ch, q, part, from[topic][part])
			ccancel()
			if err != nil {
				return fmt.Errorf("copy %s partition %d before %s: %w", t, part, s.cfg.From.UTC().Format(time.RFC3339), err)
			}
		}
		s.log.Info().Str("table", t).Msg("copied the rows of records before --from-timestamp from the live table")
	}
	return nil
}

// catchUp waits until the shadow group has committed the end offsets of
// the topics as they are now, reporting progress, and returns those ends.
func (s *session) catchUp(ctx context.Context, plan *Plan, phase string) (positions, error) {
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	ends, err := endOffsets(actx, s.adm, plan.Topics...)
	cancel()
	if err != nil {
		return nil, err
	}
	t := newTracker(phase, plan.Start, ends)
	return ends, watch(ctx, s.cfg.ProgressEvery, s.cfg.Progress, t, s.shadowPoll(plan), func(p positions) bool { return p.reached(ends) })
}

// shadowPoll returns where the shadow projection stands: its group's
// committed offsets and, when those have not moved for 2 s, also the
// positions stored in the shadow tables. Those are later after the group
// was reset backwards with the Kafka tools: the projector resumes after
// the stored rows and, with nothing new to read, commits nothing. (While
// the commits move, the scan of the tables is not worth its cost.)
func (s *session) shadowPoll(plan *Plan) func(context.Context) (positions, error) {
	var stored positions
	var last int64 = -1
	var movedAt time.Time
	return func(ctx context.Context) (positions, error) {
		at, err := committedOffsets(ctx, s.adm, plan.Group, plan.Topics...)
		if err != nil {
			return nil, err
		}
		if n := at.done(positions{}, plan.End); n != last {
			last, movedAt = n, time.Now()
		} else if time.Since(movedAt) > 2*time.Second {
			if stored, err = s.storedPositions(ctx, plan.ShadowDatabase, plan.Tables); err != nil {
				return nil, err
			}
			movedAt = time.Now()
		}
		at.raise(stored)
		return at, nil
	}
}

// newID returns a random pause id.
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// swap pauses the live projectors, brings the shadow level with them,
// stops it, renames and resumes. It returns how long the pause lasted.
func (s *session) swap(ctx context.Context, plan *Plan, stopShadow func() error) (time.Duration, error) {
	live, shadow, old := plan.LiveDatabase, plan.ShadowDatabase, plan.OldDatabase
	// Before the pause, so that it stays short: make room in the old
	// database (the previous rollback point is replaced).
	if err := s.exec(ctx, "CREATE DATABASE IF NOT EXISTS "+old); err != nil {
		return 0, err
	}
	for _, t := range plan.Tables {
		if err := s.exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", old, s.local(t))); err != nil {
			return 0, err
		}
	}
	renames := make([]string, 0, 2*len(plan.Tables))
	for _, t := range plan.Tables {
		lt := s.local(t)
		renames = append(renames, fmt.Sprintf("%s.%s TO %s.%s", live, lt, old, lt), fmt.Sprintf("%s.%s TO %s.%s", shadow, lt, live, lt))
	}

	began := time.Now()
	id, until, err := s.pause(ctx, live)
	acked := time.Since(began)
	if err != nil {
		return 0, err
	}
	resumed := false
	resume := func() {
		if resumed {
			return
		}
		resumed = true
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		if err := projector.WritePause(rctx, s.ch, live, id, projector.PauseKindResume, "", until); err != nil {
			s.log.Error().Err(err).Str("pause_id", id).Time("until", until).Msg("cannot end the pause; the live projectors resume by themselves at its deadline")
		}
	}
	defer resume()
	// The live projectors stand still: their position is fixed. Bring the
	// shadow to it (it is usually there already, the log having moved little).
	target, err := s.livePositions(ctx, plan)
	if err != nil {
		return 0, err
	}
	level := newTracker("level", plan.Start, target)
	lctx, lcancel := context.WithDeadline(ctx, until.Add(-2*time.Second))
	err = watch(lctx, s.cfg.ProgressEvery, nil, level, s.shadowPoll(plan), func(p positions) bool { return p.reached(target) })
	lcancel()
	if err != nil {
		return 0, fmt.Errorf("bring the shadow level with the paused live projection: %w", err)
	}
	leveled := time.Since(began)
	if err := stopShadow(); err != nil {
		return 0, fmt.Errorf("stop the shadow projector: %w", err)
	}
	stoppedAt := time.Since(began)
	if left := time.Until(until); left < 2*time.Second {
		return 0, fmt.Errorf("the pause is about to expire (%s left); not swapping, rerun to try again", left.Round(time.Millisecond))
	}
	if err := s.rename(ctx, renames); err != nil {
		return 0, fmt.Errorf("swap (nothing renamed if RENAME failed on its first table; check %s and %s): %w", live, old, err)
	}
	if err := s.recreateViews(ctx, live, plan.Tables); err != nil {
		return 0, err
	}
	resume()
	paused := time.Since(began)
	s.log.Info().Strs("tables", plan.Tables).Dur("paused", paused).Dur("acknowledged_after", acked).Dur("level_after", leveled).
		Dur("shadow_stopped_after", stoppedAt).Str("old", old).Msg("swapped the rebuilt tables into place")
	// The shadow's views would feed later shadow rollups from whatever
	// table takes the name next; a later rebuild creates them afresh. The
	// group's positions belong to the swapped tables now.
	for _, v := range warehouse.RollupViews {
		if err := s.exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", shadow, v)); err != nil {
			s.log.Warn().Err(err).Str("view", v).Msg("drop the shadow view")
		}
	}
	dctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := s.adm.DeleteGroup(dctx, plan.Group); err != nil {
		s.log.Warn().Err(err).Str("group", plan.Group).Msg("delete the replay group; delete it by hand before the next rebuild")
	}
	return paused, nil
}

// recreateViews recreates the live rollups' views after tables were
// renamed into place, if the readings table was among them: on current
// releases the views stop firing when their source is renamed (see
// warehouse.RecreateViews). It runs while the projectors are paused, so no
// insert can pass between the rename and the new views.
func (s *session) recreateViews(ctx context.Context, live string, tables []string) error {
	if !slices.Contains(tables, warehouse.ReadingsTable) {
		return nil
	}
	vctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := warehouse.RecreateViews(vctx, s.ch, live); err != nil {
		return fmt.Errorf("the tables were renamed into place, but the rollups' views could not be recreated (until they are, readings inserted do not reach the rollups; run vitals replay rebuild again): %w", err)
	}
	return nil
}

// pause asks the live projectors to pause and waits until every member of
// the live group has acknowledged.
func (s *session) pause(ctx context.Context, live string) (string, time.Time, error) {
	id, until := newID(), time.Now().Add(s.cfg.PauseTimeout)
	wctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := projector.WritePause(wctx, s.ch, live, id, projector.PauseKindPause, "", until); err != nil {
		return "", time.Time{}, err
	}
	s.log.Info().Str("pause_id", id).Str("group", s.cfg.LiveGroup).Msg("asked the live projectors to pause")
	for {
		members, err := s.members(ctx)
		if err != nil {
			return id, until, err
		}
		acked, err := s.acked(ctx, live, id)
		if err != nil {
			return id, until, err
		}
		missing := 0
		for _, m := range members {
			if !acked[m] {
				missing++
			}
		}
		if missing == 0 {
			s.log.Info().Int("members", len(members)).Msg("live projectors paused")
			return id, until, nil
		}
		if time.Until(until) < s.cfg.PauseTimeout/2 {
			return id, until, fmt.Errorf("%d of %d live projectors did not pause within %s (are they older than this version?)", missing, len(members), s.cfg.PauseTimeout/2)
		}
		select {
		case <-ctx.Done():
			return id, until, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *session) members(ctx context.Context) ([]string, error) {
	dctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	groups, err := s.adm.DescribeGroups(dctx, s.cfg.LiveGroup)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", s.cfg.LiveGroup, err)
	}
	var out []string
	for _, m := range groups[s.cfg.LiveGroup].Members {
		out = append(out, m.MemberID)
	}
	return out, nil
}

func (s *session) acked(ctx context.Context, db, id string) (map[string]bool, error) {
	qctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	out, err := warehouse.ScanSet[string](s.ch.Query(qctx, fmt.Sprintf("SELECT member FROM %s.%s WHERE pause_id = ? AND kind = ?", db, warehouse.ReplayPausesTable), id, projector.PauseKindAck))
	if err != nil {
		return nil, fmt.Errorf("read acknowledgements: %w", err)
	}
	return out, nil
}

// livePositions is where the paused live projection stands, per
// partition: the later of the live group's committed offset and the
// highest stored position plus one, but not past the log's end. Stored
// positions can be past it when the live tables were projected from other
// topics (a cut-over to a reprocessed output version, with the live
// projectors stopped).
func (s *session) livePositions(ctx context.Context, plan *Plan) (positions, error) {
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	out, err := committedOffsets(actx, s.adm, s.cfg.LiveGroup, plan.Topics...)
	if err != nil {
		return nil, err
	}
	ends, err := endOffsets(actx, s.adm, plan.Topics...)
	if err != nil {
		return nil, err
	}
	stored, err := s.storedPositions(ctx, plan.LiveDatabase, plan.Tables)
	if err != nil {
		return nil, err
	}
	out.raise(stored)
	for t, parts := range out {
		for part, off := range parts {
			parts[part] = min(off, ends[t][part])
		}
	}
	return out, nil
}

// storedPositions returns, per topic partition, the highest position
// stored in db's tables plus one: where a projector resumes. erased_users
// is left out (its projector does not resume from it).
func (s *session) storedPositions(ctx context.Context, db string, tables []string) (positions, error) {
	have, err := s.existing(ctx, db)
	if err != nil {
		return nil, err
	}
	qctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	out := positions{}
	for _, t := range tables {
		topic, ok := s.topicOf[t]
		if !ok || !have[t] || t == warehouse.ErasedUsersTable {
			continue
		}
		stored, err := warehouse.MaxPositions(qctx, s.ch, db, t)
		if err != nil {
			return nil, err
		}
		for part, off := range stored {
			out.set(topic, part, off+1)
		}
	}
	return out, nil
}

// Rollback swaps the tables kept in the old database back into place; the
// rebuilt ones go to the shadow database. The live projectors are paused
// the same way; before they resume, the rows they wrote into the rebuilt
// tables since the swap are copied into the restored ones (rollback.go).
func Rollback(ctx context.Context, cfg Config, log zerolog.Logger) ([]string, error) {
	log = log.With().Str("role", "replay").Logger()
	s, err := open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer s.close()
	live, shadow, old := cfg.Warehouse.Database, cfg.ShadowDatabase(), cfg.OldDatabase()
	have, err := s.existing(ctx, old)
	if err != nil {
		return nil, err
	}
	var tables, renames []string
	for _, t := range s.tables {
		if have[t] {
			tables = append(tables, t)
		}
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("nothing to roll back: %s holds none of %s", old, strings.Join(s.tables, ", "))
	}
	if err := s.exec(ctx, "CREATE DATABASE IF NOT EXISTS "+shadow); err != nil {
		return nil, err
	}
	for _, t := range tables {
		lt := s.local(t)
		if err := s.exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", shadow, lt)); err != nil {
			return nil, err
		}
		renames = append(renames, fmt.Sprintf("%s.%s TO %s.%s", live, lt, shadow, lt), fmt.Sprintf("%s.%s TO %s.%s", old, lt, live, lt))
	}
	id, until, err := s.pause(ctx, live)
	if id != "" {
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
			defer cancel()
			if err := projector.WritePause(rctx, s.ch, live, id, projector.PauseKindResume, "", until); err != nil {
				log.Error().Err(err).Msg("cannot end the pause; the live projectors resume by themselves at its deadline")
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	if err := s.rename(ctx, renames); err != nil {
		return nil, fmt.Errorf("roll back: %w", err)
	}
	if err := s.recreateViews(ctx, live, tables); err != nil {
		return nil, err
	}
	// Still paused: what the live projectors wrote since the swap
	// (rollback.go).
	copied, err := s.catchUpRestored(ctx, live, shadow, tables)
	if err != nil {
		return tables, fmt.Errorf("rolled back, but the restored tables lack rows written since the swap (rerun the catch-up by rolling back twice): %w", err)
	}
	log.Info().Strs("tables", tables).Str("rebuilt_now_in", shadow).Int("rows_copied", copied).Msg("rolled back; rows written since the swap copied into the restored tables")
	return tables, nil
}
