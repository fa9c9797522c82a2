package integration

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// TestProjectorErasure streams three users' readings with profiles and
// paired device models, checks the user dimension and that raw and rollup
// totals equal the input, then erases one user. The user's rows disappear
// from every table (raw, rollup, rejected, alerts, profile and device
// events, dimension), readings posted for them afterwards are never
// stored, and the other users' raw and rollup totals still equal the
// input.
func TestProjectorErasure(t *testing.T) {
	s, ctx := newStackFor(t, 3*time.Minute)
	ingestURL := s.startPipeline(ctx)
	ch := s.openWarehouse(t, ctx)

	users, per := firstReadings(t, 3, 1500)
	type profile struct {
		birthYear                int
		sex, region, model, band string
	}
	now := time.Now()
	profiles := map[string]profile{
		users[0]: {1984, "female", "DE", "charge-hr", warehouse.AgeBand(1984, now)},
		users[1]: {1950, "male", "US-CA", "versa-2", warehouse.AgeBand(1950, now)},
		users[2]: {0, "", "", "", "unknown"},
	}
	var devices, profs []any
	for _, u := range users {
		p := profiles[u]
		dev := map[string]any{"event_id": u + "-paired", "user_id": u, "device_id": per[u][0].DeviceID(), "kind": "paired", "occurred_at": "2016-01-01T00:00:00Z"}
		if p.model != "" {
			// An older pairing of another model first: the dimension takes
			// the latest paired device.
			devices = append(devices, map[string]any{"event_id": u + "-old", "user_id": u, "device_id": "old-" + u, "kind": "paired", "model": "old-model", "occurred_at": "2015-01-01T00:00:00Z"})
			dev["model"] = p.model
		}
		devices = append(devices, dev)
		if p.birthYear != 0 {
			// Registered with a placeholder region, then a partial update:
			// the dimension keeps the birth year and sex, takes the region.
			profs = append(profs,
				map[string]any{"event_id": u + "-reg", "user_id": u, "kind": "registered", "birth_year": p.birthYear, "sex": p.sex, "region": "FR", "occurred_at": "2015-06-01T00:00:00Z"},
				map[string]any{"event_id": u + "-upd", "user_id": u, "kind": "updated", "region": p.region, "occurred_at": "2015-07-01T00:00:00Z"})
		}
	}
	s.postEvents(ingestURL, "/v1/device-events", devices)
	s.postEvents(ingestURL, "/v1/profile-events", profs)
	var all []sample.HeartRate
	for _, u := range users {
		all = append(all, per[u]...)
		s.postReadings(ingestURL, "gw-erasure", per[u], 500)
	}
	want := inputTotals(all)
	expectWarehouseTotals(t, ctx, ch, s.wh.Database, s.tenant, want, 90*time.Second)

	dimension := func() map[string]profile {
		rows, err := ch.Query(ctx, "SELECT user_id, age_band, sex, region, device_model FROM ("+warehouse.UserDimension(s.wh.Database)+")", s.tenant)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]profile{}
		for rows.Next() {
			var u string
			var p profile
			if err := rows.Scan(&u, &p.band, &p.sex, &p.region, &p.model); err != nil {
				t.Fatal(err)
			}
			out[u] = p
		}
		return out
	}
	eventually(t, 30*time.Second, "the user dimension", func() (bool, string) {
		got := dimension()
		for _, u := range users {
			w := profiles[u]
			w.birthYear = 0
			if w.sex == "" {
				w.sex, w.region, w.model = "unknown", "unknown", "unknown"
			}
			if got[u] != w {
				return false, fmt.Sprintf("%s: got %+v want %+v", u, got[u], w)
			}
		}
		return len(got) == len(users), fmt.Sprint(got)
	})

	checkDocExamples(t, ctx, ch, s.wh.Database, s.tenant)

	// Erase users[0], then post more of their readings: the processor
	// rejects them (user_erased) and the projector must not store them.
	erased := users[0]
	s.postEvents(ingestURL, "/v1/profile-events", []any{map[string]any{"event_id": erased + "-erase", "user_id": erased, "kind": "erasure_requested", "occurred_at": "2016-12-01T00:00:00Z"}})
	after := sample.HeartRate{FitbitID: per[erased][0].FitbitID, Time: per[erased][len(per[erased])-1].Time.Add(time.Minute), Value: 77}
	s.postReadings(ingestURL, "gw-erasure", []sample.HeartRate{after}, 1)
	delete(want, erased)

	eventually(t, 60*time.Second, "the erasure to be stored", func() (bool, string) {
		var n uint64
		err := ch.QueryRow(ctx, "SELECT count() FROM "+s.wh.Database+".erased_users WHERE tenant_id = ? AND user_id = ?", s.tenant, erased).Scan(&n)
		return err == nil && n > 0, fmt.Sprint(n, err)
	})
	// Hidden at once from dedup-aware queries, before the mutations end.
	var visible uint64
	if err := ch.QueryRow(ctx, "SELECT count() FROM ("+warehouse.DedupReadings(s.wh.Database, "tenant_id = ? AND user_id = ?")+")", s.tenant, erased).Scan(&visible); err != nil {
		t.Fatal(err)
	}
	if visible != 0 {
		t.Fatalf("DedupReadings still shows %d readings of the erased user", visible)
	}
	mutationsDone(t, ctx, ch, s.wh.Database, 60*time.Second)
	// Give the projector time to see the late reading's rejection too.
	eventually(t, 30*time.Second, "the late reading to be judged", func() (bool, string) {
		var n uint64
		err := ch.QueryRow(ctx, "SELECT count() FROM "+s.wh.Database+".rejected_readings WHERE tenant_id = ?", s.tenant).Scan(&n)
		return err == nil, fmt.Sprint(n, err)
	})
	time.Sleep(2 * time.Second)
	mutationsDone(t, ctx, ch, s.wh.Database, 60*time.Second)
	for _, table := range warehouse.ErasableTables {
		var n uint64
		if err := ch.QueryRow(ctx, "SELECT count() FROM "+s.wh.Database+"."+table+" WHERE tenant_id = ? AND user_id = ?", s.tenant, erased).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s still holds %d rows of the erased user", table, n)
		}
	}
	if _, ok := dimension()[erased]; ok {
		t.Errorf("the user dimension still lists the erased user")
	}
	raw, distinct, rollup := warehouseTotals(t, ctx, ch, s.wh.Database, s.tenant)
	for name, got := range map[string]map[string]totals{"raw": raw, "distinct": distinct, "rollup": rollup} {
		if d := diffTotals(want, got); d != "" {
			t.Errorf("%s totals after the erasure: %s", name, d)
		}
	}
}

// checkDocExamples runs every SQL example of docs/warehouse.md against the
// test's database and tenant (for "vitals" and 'default'): each must run,
// and those over readings, the rollup or the dimension must return rows
// (they name the first sample user and its day, which this test streams).
func checkDocExamples(t *testing.T, ctx context.Context, ch driver.Conn, db, tenant string) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/warehouse.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 6 {
		t.Fatalf("docs/warehouse.md has %d SQL examples, want at least 6", len(blocks))
	}
	r := strings.NewReplacer("vitals.", db+".", "'vitals'", "'"+db+"'", "'default'", "'"+tenant+"'")
	for i, b := range blocks {
		q := r.Replace(b[1])
		rows, err := ch.Query(ctx, q)
		if err != nil {
			t.Errorf("docs/warehouse.md example %d fails: %v\n%s", i+1, err, q)
			continue
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		mustHaveRows := strings.Contains(q, ".readings") || strings.Contains(q, ".device_events")
		if mustHaveRows && n == 0 {
			t.Errorf("docs/warehouse.md example %d returned no rows:\n%s", i+1, q)
		}
	}
	t.Logf("ran the %d SQL examples of docs/warehouse.md", len(blocks))
}
