package integration

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/sample/sampletest"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/projector"
	"github.com/vitalshq/vitals/replay"
)

// TestClickHouseCheck is the ClickHouse check (docs/clickhouse.md): every
// statement the project sends runs, through the project's own code paths
// unchanged, on the stack's ClickHouse 18.16 and on a current engine (chDB
// 26.9 behind deploy/chdb/bridge.py, over the HTTP protocol), and every
// answer is compared between the two and with an independent computation
// over the rows sent:
//
//   - migrations: an upgrade from the first schema (readings only, no
//     positions, no comments, no rollups), a fresh database, and repeats;
//   - the projector's inserts of every table from the pipeline's topics,
//     its retry after an insert that succeeded but answered an error, and
//     its resume after a restart;
//   - erasure (the projector's deletes) and the replay pause;
//   - replay rebuild with verify and swap, then rollback;
//   - every query endpoint over realistic parameters, before and after an
//     erasure, with merged partitions, after the rebuild, each answer from
//     four query services (two per engine, with and without the value
//     rollup) identical byte for byte and equal to the figures computed
//     here from the input.
//
// The bridge logs what the current engine ran; the check fails on a
// statement that failed there or that it cannot classify, and reports how
// many distinct statements of each class ran.
func TestClickHouseCheck(t *testing.T) {
	s := newStack(t)
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	db := s.wh.Database
	databases := []string{db, db + "_shadow", db + "_old", db + "_v1"}
	cur := currentEngine(db)
	br := bridge{base: "http://" + cur.Addr}
	_, mark, err := br.statements(ctx, math.MaxInt32)
	if err != nil {
		t.Fatal(err)
	}
	engines := []*engine{{wh: s.wh, group: s.id + "-projector"}, {wh: cur, group: s.id + "-projector-current"}}
	for _, e := range engines {
		if e.conn, err = warehouse.Open(ctx, e.wh); err != nil {
			t.Fatalf("%s: %v", e.wh.Addr, err)
		}
		v, err := e.conn.ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		e.name = fmt.Sprintf("ClickHouse %d.%d", v.Version.Major, v.Version.Minor)
		t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer ccancel()
			for _, d := range databases {
				if err := e.exec(cctx, "DROP DATABASE IF EXISTS "+d); err != nil {
					t.Logf("cleanup: %v", err)
				}
			}
			e.conn.Close()
		})
	}
	current := engines[1]
	t.Logf("engines: %s at %s (native), %s at %s (chDB, http)", engines[0].name, engines[0].wh.Addr, current.name, current.wh.Addr)

	if !t.Run("migrations", func(t *testing.T) { checkMigrations(t, ctx, engines, db) }) {
		t.FailNow()
	}

	all := sampletest.HeartRates(t)
	in := newCheckInput(all, 1500)
	alertRows := in.alertUser.rows[len(in.alertUser.rows)-8:]
	ingestURL, _ := s.startIngest(ctx)
	s.startProcessor(ctx, s.processorConfig())
	for _, e := range engines {
		e.proj = startProjectorOn(s, ctx, e)
	}
	ok := t.Run("projector inserts", func(t *testing.T) {
		postCheckInput(s, ingestURL, in, alertRows)
		awaitRows(t, ctx, engines, db, in, len(alertRows))
		compareEngines(t, ctx, engines, db, "projected")
	})
	ok = ok && t.Run("projector retry and resume", func(t *testing.T) {
		// The current engine's projector restarts (resume) while the
		// alert readings arrive, and its readings insert succeeds but
		// answers an error (retry: it must find the rows stored).
		if err := current.proj.stop(); err != nil {
			t.Fatal(err)
		}
		if err := br.failAfter(ctx, "INSERT INTO "+db+".readings "); err != nil {
			t.Fatal(err)
		}
		s.postReadings(ingestURL, "gw-check", alertRows, len(alertRows))
		current.proj = startProjectorOn(s, ctx, current)
		awaitRows(t, ctx, engines, db, in, 0)
		// The failed insert stored its rows, so they are all there before
		// the retry: wait for it to check what is stored.
		eventually(t, time.Minute, "the projector's retry after the injected failure", func() (bool, string) {
			stmts, _, err := br.statements(ctx, mark)
			if err != nil {
				return false, err.Error()
			}
			injected, rechecked := false, false
			for _, st := range stmts {
				injected = injected || strings.Contains(st.Error, "injected by the bridge")
				rechecked = rechecked || (injected && strings.HasPrefix(st.SQL, "SELECT log_offset FROM "+db+".readings"))
			}
			return injected && rechecked, fmt.Sprintf("injected failure %v, stored rows checked after it %v", injected, rechecked)
		})
		awaitRows(t, ctx, engines, db, in, 0)
		for _, e := range engines {
			if dup, err := e.rows(ctx, "SELECT count() - uniqExact(log_partition, log_offset) FROM "+db+".readings"); err != nil || dup[0] != "0" {
				t.Errorf("%s: %v rows stored twice (%v)", e.name, dup, err)
			}
		}
		compareEngines(t, ctx, engines, db, "after the retry and the restart")
	})
	if !ok {
		t.FailNow()
	}

	for _, e := range engines {
		cfg := s.queryConfig()
		cfg.Warehouse, cfg.MinCohortUsers = e.wh, ckMinUsers
		e.query = s.startQueryWith(ctx, cfg)
		cfg.ValuesFromRollup = false
		e.raw = s.startQueryWith(ctx, cfg)
	}
	first, last := in.users[0].rows[0].Time, in.users[0].rows[0].Time
	for _, u := range in.users {
		if m := u.rows[len(u.rows)/2].Time; m.Before(first) {
			first = m
		} else if m.After(last) {
			last = m
		}
	}
	whole := scope{from: time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC), to: time.Date(2016, 6, 1, 0, 0, 0, 0, time.UTC)}
	partial := scope{from: first, to: last}
	round := func(stage string) bool {
		return t.Run("queries "+stage, func(t *testing.T) { queryRound(t, engines, in, whole, partial) })
	}
	ok = round("fresh")

	ok = ok && t.Run("erasure", func(t *testing.T) {
		erased := in.users[6]
		s.postEvents(ingestURL, "/v1/profile-events", []any{map[string]any{"event_id": erased.id + "-erase", "user_id": erased.id,
			"kind": "erasure_requested", "occurred_at": "2016-12-01T00:00:00Z"}})
		erased.erased = true
		for _, e := range engines {
			eventually(t, 60*time.Second, e.name+" to store the erasure and delete the rows", func() (bool, string) {
				r, err := e.rows(ctx, fmt.Sprintf(`SELECT (SELECT count() FROM %[1]s.erased_users), (SELECT count() FROM %[1]s.readings WHERE user_id = ?),
					(SELECT countIf(is_done = 0) FROM system.mutations WHERE database = ?)`, db), erased.id, db)
				if err != nil {
					return false, err.Error()
				}
				return len(r) == 1 && r[0] == "1|0|0", "erasures|readings left|mutations pending: " + strings.Join(r, ",")
			})
		}
		compareEngines(t, ctx, engines, db, "after the erasure")
	})
	ok = ok && round("after an erasure")
	ok = ok && t.Run("merged", func(t *testing.T) {
		for _, e := range engines {
			for _, table := range []string{warehouse.ReadingsTable, warehouse.ValuesRollupTable, warehouse.DailyRollupTable} {
				if err := e.exec(ctx, "OPTIMIZE TABLE "+db+"."+table+" FINAL"); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%s: t-digest percentiles of the daily rollup at most %g from the exact ones", e.name, tdigestWithin(t, ctx, e, db))
		}
		compareEngines(t, ctx, engines, db, "merged")
	})
	ok = ok && round("with merged partitions")
	// After a swap or rollback the live projectors go on inserting:
	// readings of a new day must reach the tables and both rollups.
	extend := func(t *testing.T, day int) {
		u := in.users[0]
		last := u.rows[len(u.rows)-1]
		start := last.Time.Truncate(24 * time.Hour).Add(time.Duration(day) * 24 * time.Hour)
		var add []sample.HeartRate
		for i := range 40 {
			add = append(add, sample.HeartRate{FitbitID: last.FitbitID, Time: start.Add(time.Duration(i) * 30 * time.Second), Value: float64(70 + i%7)})
		}
		s.postReadings(ingestURL, "gw-check", add, len(add))
		u.rows = append(u.rows, add...)
	}
	settle := func(t *testing.T, stage string) map[string][]string {
		awaitRows(t, ctx, engines, db, in, 0)
		for _, e := range engines {
			r, err := e.rows(ctx, fmt.Sprintf(`SELECT (SELECT count() FROM %[1]s.readings), (SELECT countMerge(readings) FROM %[1]s.readings_daily),
				(SELECT sum(readings) FROM %[1]s.readings_daily_values)`, db))
			if f := strings.Split(strings.Join(r, ""), "|"); err != nil || len(f) != 3 || f[0] != f[1] || f[0] != f[2] {
				t.Errorf("%s: %s: readings|daily rollup|value rollup = %v (%v): the rollups must count every reading", e.name, stage, r, err)
			}
		}
		return compareEngines(t, ctx, engines, db, stage)
	}
	ok = ok && t.Run("replay", func(t *testing.T) { checkReplay(t, ctx, s, engines, db, extend, settle) })
	ok = ok && round("after the rebuilds")
	ok = ok && t.Run("docs examples", func(t *testing.T) { compareDocExamples(t, ctx, engines, db, s.tenant) })

	stmts, _, err := br.statements(ctx, mark)
	if err != nil {
		t.Fatal(err)
	}
	cov, problems := coverageOf(stmts, databases)
	for _, p := range problems {
		t.Error(p)
	}
	for _, cl := range classes {
		if cov.runs[cl] == 0 {
			t.Errorf("no %s statement ran on the current engine", cl)
		}
	}
	if ok && !t.Failed() {
		cov.writeReport(t, cov.report(current.name+" (chDB)", time.Since(began)))
	}
}

// startProjectorOn starts a live projector writing to an engine.
func startProjectorOn(s *stack, ctx context.Context, e *engine) *running {
	cfg := projector.DefaultConfig()
	cfg.Kafka, cfg.Warehouse, cfg.Group, cfg.PostgresURL = s.kafka, e.wh, e.group, s.pgURL
	cfg.FlushInterval = 200 * time.Millisecond
	p, err := projector.New(ctx, cfg, s.log.With().Str("engine", e.name).Logger())
	if err != nil {
		s.t.Fatal(err)
	}
	return s.run("projector "+e.name, p.Run, p.Close)
}

// postCheckInput sends the profiles (with one later update), the paired
// devices (and a status event), every reading but held (sent later) and
// three implausible readings (rejected).
func postCheckInput(s *stack, ingestURL string, in *ckInput, held []sample.HeartRate) {
	var profiles, devices []any
	for _, u := range in.users {
		region := u.region
		if u == in.users[7] {
			region = "US-NY" // updated to the real one below
		}
		profiles = append(profiles, map[string]any{"event_id": u.id + "-registered", "user_id": u.id, "kind": "registered",
			"birth_year": u.birthYear, "sex": u.sex, "region": region, "occurred_at": "2016-01-01T00:00:00Z"})
		devices = append(devices, map[string]any{"event_id": u.rows[0].DeviceID() + "-paired", "user_id": u.id, "device_id": u.rows[0].DeviceID(),
			"kind": "paired", "model": u.model, "occurred_at": "2016-01-01T00:00:00Z"})
	}
	u7 := in.users[7]
	profiles = append(profiles, map[string]any{"event_id": u7.id + "-moved", "user_id": u7.id, "kind": "updated", "region": u7.region,
		"occurred_at": "2016-02-01T00:00:00Z"})
	devices = append(devices, map[string]any{"event_id": u7.rows[0].DeviceID() + "-status", "user_id": u7.id, "device_id": u7.rows[0].DeviceID(),
		"kind": "status", "firmware": "1.2.3", "occurred_at": "2016-02-01T00:00:00Z"})
	s.postEvents(ingestURL, "/v1/profile-events", profiles)
	s.postEvents(ingestURL, "/v1/device-events", devices)
	var rows []sample.HeartRate
	for _, u := range in.users {
		rs := u.rows
		if u == in.alertUser {
			rs = rs[:len(rs)-len(held)]
		}
		rows = append(rows, rs...)
	}
	s.postReadings(ingestURL, "gw-check", rows, 2000)
	bad := in.users[0].rows[len(in.users[0].rows)-1]
	var items []wireReading
	for i := range 3 {
		w := wire(bad)
		w.EventID, w.Value = fmt.Sprintf("%s-implausible-%d", bad.EventID(), i), 400
		w.MeasuredAt = bad.Time.Add(time.Duration(i+1) * time.Second).Format(time.RFC3339Nano)
		items = append(items, w)
	}
	var resp struct{ Accepted int }
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-check", "readings": items}, &resp); code != http.StatusOK || resp.Accepted != 3 {
		s.t.Fatalf("implausible readings: status %d, %d accepted by ingest", code, resp.Accepted)
	}
	in.rejected = 3
}

// awaitRows waits until both engines hold every reading sent but the
// held ones, the rejections, the events and (once nothing is held) the
// alert, and checks the readings against the input.
func awaitRows(t *testing.T, ctx context.Context, engines []*engine, db string, in *ckInput, held int) {
	t.Helper()
	var readings, users int
	want := map[string]totals{}
	for _, u := range in.users {
		if u.erased {
			continue // its rows are deleted everywhere
		}
		users++
		rs := u.rows
		if u == in.alertUser {
			rs = rs[:len(rs)-held]
		}
		readings += len(rs)
		for u, x := range inputTotals(rs) {
			want[u] = x
		}
	}
	alerts := 0
	if held == 0 {
		alerts = 1
	}
	// Every user's registration and pairing, and the last user's profile
	// update and device status.
	wantCounts := fmt.Sprintf("%d|%d|%d|%d|%d", readings, in.rejected, alerts, users+1, users+1)
	for _, e := range engines {
		eventually(t, 2*time.Minute, e.name+" to hold every row", func() (bool, string) {
			r, err := e.rows(ctx, fmt.Sprintf(`SELECT (SELECT count() FROM %[1]s.readings), (SELECT count() FROM %[1]s.rejected_readings),
				(SELECT count() FROM %[1]s.alerts), (SELECT count() FROM %[1]s.profile_events), (SELECT count() FROM %[1]s.device_events)`, db))
			if err != nil {
				return false, err.Error()
			}
			return len(r) == 1 && r[0] == wantCounts, fmt.Sprintf("readings|rejected|alerts|profiles|devices %v, want %s", r, wantCounts)
		})
		got, err := e.rows(ctx, "SELECT user_id, count(), sum(value) FROM "+db+".readings GROUP BY user_id ORDER BY user_id")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range got {
			f := strings.Split(line, "|")
			if w := want[f[0]]; fmt.Sprintf("%d|%s", w.n, strconv.FormatFloat(w.sum, 'g', -1, 64)) != f[1]+"|"+f[2] {
				t.Errorf("%s: %s holds %s readings summing to %s, sent %s", e.name, f[0], f[1], f[2], w)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: readings of %d users, sent %d", e.name, len(got), len(want))
		}
	}
}

// queryRound asks every request of the battery from the four query
// services (at once: the engines work in parallel), requires identical
// answers and checks one against the independent computation.
func queryRound(t *testing.T, engines []*engine, in *ckInput, whole, partial scope) {
	var bases, from []string
	for _, e := range engines {
		bases = append(bases, e.query, e.raw)
		from = append(from, e.name, e.name)
	}
	for _, req := range in.queryRequests(whole, partial) {
		answers := make([][]byte, len(bases))
		codes := make([]int, len(bases))
		var wg sync.WaitGroup
		for i, base := range bases {
			wg.Go(func() { codes[i], answers[i] = getBody(base, req.path) })
		}
		wg.Wait()
		failed := false
		for i, code := range codes {
			if code != http.StatusOK {
				t.Errorf("%s from %s: status %d: %s", req.path, from[i], code, answers[i])
				failed = true
			}
		}
		if failed {
			continue
		}
		if !sameAnswers(answers) {
			var b strings.Builder
			for i, a := range answers {
				fmt.Fprintf(&b, "\n  %s (value rollup %v): %s", from[i], i%2 == 0, a)
			}
			t.Errorf("%s: the answers differ:%s", req.path, b.String())
			continue
		}
		if err := req.check(answers[0]); err != nil {
			t.Errorf("%s: %v\n  answer: %s", req.path, err, answers[0])
		}
	}
}

// getBody GETs a query API path with the service's analyst token; a
// failed request is status 0 with the error as body.
func getBody(base, path string) (int, []byte) {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	if tok, ok := queryTokens.Load(base); ok {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, []byte(err.Error())
	}
	return resp.StatusCode, body
}

// checkReplay rebuilds every table on each engine (the live projector
// pauses for the swap) and compares the verifications and the rebuilt rows
// with the live ones; sends readings of a new day (extend), which must
// reach the rebuilt tables and their rollups (settle); rolls back, after
// which the restored tables must get that day too and equal the rebuilt
// ones; and once more after a second rebuild.
func checkReplay(t *testing.T, ctx context.Context, s *stack, engines []*engine, db string,
	extend func(*testing.T, int), settle func(*testing.T, string) map[string][]string) {
	rebuild := func(stage string) {
		before := compareEngines(t, ctx, engines, db, "before the "+stage)
		var verified [][]replay.Check
		for _, e := range engines {
			cfg := s.replayConfig()
			cfg.Warehouse, cfg.LiveGroup, cfg.Instances = e.wh, e.group, 1
			res, err := replay.Rebuild(ctx, cfg, s.log.With().Str("engine", e.name).Logger())
			if err != nil {
				t.Fatalf("%s: %s: %v", e.name, stage, err)
			}
			if !res.Swapped || len(res.Verified) == 0 {
				t.Fatalf("%s: the %s did not verify and swap: %+v", e.name, stage, res)
			}
			verified = append(verified, res.Verified)
		}
		if fmt.Sprint(verified[0]) != fmt.Sprint(verified[1]) {
			t.Errorf("the verifications of the %s differ:\n  %s: %v\n  %s: %v", stage, engines[0].name, verified[0], engines[1].name, verified[1])
		}
		after := compareEngines(t, ctx, engines, db, stage)
		if diff := sameDumps(before, after, "live", "rebuilt"); diff != "" {
			t.Errorf("%s: the rebuilt tables differ from the live ones:\n  %s", stage, diff)
		}
	}
	rebuild("rebuild")
	extend(t, 1)
	rebuilt := settle(t, "readings of a day after the swap")
	for _, e := range engines {
		cfg := s.replayConfig()
		cfg.Warehouse, cfg.LiveGroup = e.wh, e.group
		tables, err := replay.Rollback(ctx, cfg, s.log.With().Str("engine", e.name).Logger())
		if err != nil || len(tables) != len(replay.Rebuildable) {
			t.Fatalf("%s: rollback of %v: %v", e.name, tables, err)
		}
	}
	back := settle(t, "rolled back")
	if diff := sameDumps(rebuilt, back, "rebuilt", "rolled back"); diff != "" {
		t.Errorf("the rolled back tables, projected again since the swap, differ from the rebuilt ones:\n  %s", diff)
	}
	extend(t, 2)
	settle(t, "readings of a day after the rollback")
	rebuild("second rebuild")
	extend(t, 3)
	settle(t, "readings of a day after the second swap")
}
