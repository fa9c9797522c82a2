package integration

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/export"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/replay"
)

// canaryUser is a user whose every stored value is a canary: strings and
// floats that occur nowhere else, so finding their bytes anywhere means
// the user's data is there.
type canaryUser struct {
	user, device, model, firmware, events, unit string
	value, implausible                          float64
}

func newCanaryUser(id, tag string, value, implausible float64) canaryUser {
	c := "cnry" + tag + id
	return canaryUser{user: "user-" + tag + "-" + id, device: c + "dev", model: c + "model", firmware: c + "fw",
		events: c + "ev", unit: c + "unit", value: value, implausible: implausible}
}

// needles are the user's canaries as bytes: the strings, and the floats
// both as text (ClickHouse, PostgreSQL text) and as Avro's 8 bytes.
func (c canaryUser) needles() map[string][]byte {
	f := func(v float64) []byte { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v)) }
	return map[string][]byte{
		"device id": []byte(c.device), "device model": []byte(c.model), "firmware": []byte(c.firmware),
		"event id": []byte(c.events), "unit": []byte(c.unit),
		"value text": []byte(strconv.FormatFloat(c.value, 'f', -1, 64)), "implausible text": []byte(strconv.FormatFloat(c.implausible, 'f', -1, 64)),
		"float value": f(c.value), "float implausible": f(c.implausible),
	}
}

const canaryReadings = 20

// post sends the user's pairing, profile, readings (one implausible, so
// rejected by the processor with its original) and one item with an
// unknown unit (a dead letter, with its original).
func (s *stack) postCanaryUser(ingestURL string, c canaryUser, t0 time.Time) {
	s.t.Helper()
	s.postEvents(ingestURL, "/v1/device-events", []any{map[string]any{"event_id": c.events + "-pair", "user_id": c.user,
		"device_id": c.device, "kind": "paired", "model": c.model, "firmware": c.firmware, "occurred_at": t0.Add(-time.Hour).Format(time.RFC3339)}})
	s.postEvents(ingestURL, "/v1/profile-events", []any{map[string]any{"event_id": c.events + "-reg", "user_id": c.user,
		"kind": "registered", "birth_year": 1961, "sex": "female", "region": "DE", "occurred_at": t0.Add(-time.Hour).Format(time.RFC3339)}})
	var items []any
	for i := range canaryReadings {
		items = append(items, c.reading(fmt.Sprint(i), c.value, "/min", t0.Add(time.Duration(i)*time.Minute)))
	}
	items = append(items, c.reading("implausible", c.implausible, "/min", t0.Add(30*time.Minute)),
		c.reading("badunit", c.value, c.unit, t0.Add(31*time.Minute)))
	var resp ingest.BatchResponse
	if code := s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-canary", "readings": items}, &resp); code != http.StatusOK || resp.Accepted != canaryReadings+1 {
		s.t.Fatalf("post readings: status %d, %d accepted: %+v", code, resp.Accepted, resp.Items)
	}
}

func (c canaryUser) reading(n string, v float64, unit string, at time.Time) map[string]any {
	return map[string]any{"event_id": c.events + "-" + n, "user_id": c.user, "device_id": c.device, "metric": "heart_rate",
		"value": v, "unit": unit, "measured_at": at.UTC().Format("2006-01-02T15:04:05.000Z")}
}

// TestErasureShredsEverything posts canary values for two users, checks
// that the Kafka segment files never hold them in clear, exports one user
// as FHIR and checks the bundle against what was posted, rebuilds the
// tables (so that <db>_old holds the user), erases the user, and then
// scans every Kafka segment file, every PostgreSQL table and its data
// directory, and every ClickHouse table and its data directory for the
// erased user's canaries: none may be found. A rebuild and a reprocess
// after the erasure do not bring the user back; the other user's data is
// untouched (and found by the same scans, which shows they work).
func TestErasureShredsEverything(t *testing.T) {
	s, ctx := newStackFor(t, 8*time.Minute)
	ingestURL := s.startPipeline(ctx)
	ch := s.openWarehouse(t, ctx)

	gone := newCanaryUser(s.id, "E", 97.71484375, 999.9140625)
	kept := newCanaryUser(s.id, "K", 88.33984375, 998.8359375)
	t0 := time.Now().Add(-3 * time.Hour).Truncate(time.Minute).UTC()
	for _, c := range []canaryUser{gone, kept} {
		s.postCanaryUser(ingestURL, c, t0)
	}
	count := func(db, table, user string) uint64 {
		var n uint64
		if err := ch.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s WHERE tenant_id = ? AND user_id = ?", db, table), s.tenant, user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []canaryUser{gone, kept} {
		eventually(t, 90*time.Second, c.user+"'s readings, rejection, device and profile in ClickHouse", func() (bool, string) {
			got := [4]uint64{count(s.wh.Database, warehouse.ReadingsTable, c.user), count(s.wh.Database, warehouse.RejectedTable, c.user),
				count(s.wh.Database, warehouse.DeviceEventsTable, c.user), count(s.wh.Database, warehouse.ProfileEventsTable, c.user)}
			return got == [4]uint64{canaryReadings, 1, 1, 1}, fmt.Sprint(got)
		})
	}

	// Sealed from the start: no canary of either user in any segment,
	// while the record keys (user ids, in clear by design) are there.
	kafkaDir := filepath.Join(stackDir(t), "kafka", "data")
	segments := func() scanResult {
		needles := map[string][]byte{"kept user id (control)": []byte(kept.user)}
		for k, v := range gone.needles() {
			needles["erased "+k] = v
		}
		for k, v := range kept.needles() {
			needles["kept "+k] = v
		}
		return scanFiles(t, "Kafka segment files", kafkaDir, func(n string) bool { return strings.HasSuffix(n, ".log") }, needles)
	}
	before := segments()
	t.Logf("before erasure: %s (%d files hold the kept user's id, the record key, as the control)", before, len(before.hits["kept user id (control)"]))
	if len(before.hits["kept user id (control)"]) == 0 {
		t.Fatal("the segment scan does not find the record keys: it reads nothing")
	}
	for k, where := range before.hits {
		if k != "kept user id (control)" {
			t.Errorf("Kafka segments hold %s in clear: %v", k, where)
		}
	}

	checkExport(t, ctx, s, gone, t0)

	// A rebuild keeps the replaced tables in <db>_old: the erasure must
	// clean them too.
	rcfg := s.replayConfig()
	rcfg.Projector.PostgresURL = s.pgURL
	if res, err := replay.Rebuild(ctx, rcfg, s.log); err != nil || !res.Swapped {
		t.Fatalf("rebuild before the erasure: %+v, %v", res, err)
	}
	if n := count(s.wh.Database+"_old", warehouse.ReadingsTable, gone.user); n != canaryReadings {
		t.Fatalf("%s_old holds %d readings of the user, want %d", s.wh.Database, n, canaryReadings)
	}

	s.postEvents(ingestURL, "/v1/profile-events", []any{map[string]any{"event_id": "erase-" + s.id, "user_id": gone.user,
		"kind": "erasure_requested", "occurred_at": time.Now().UTC().Format(time.RFC3339)}})
	var afterErasure ingest.BatchResponse // accepted or refused, depending on how far the erasure got
	s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-canary", "readings": []any{
		gone.reading("after-1", gone.value, "/min", t0.Add(40*time.Minute))}}, &afterErasure)
	pg, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)
	eventually(t, 3*time.Minute, "the erased user's data key to be shredded", func() (bool, string) {
		var shredded bool
		err := pg.QueryRow(ctx, `SELECT shredded_at IS NOT NULL FROM user_data_keys WHERE tenant_id = $1 AND user_id = $2`, s.tenant, gone.user).Scan(&shredded)
		return err == nil && shredded, fmt.Sprint(err)
	})
	for _, db := range []string{s.wh.Database, s.wh.Database + "_old"} {
		for _, tbl := range warehouse.ErasableTables {
			if n := count(db, tbl, gone.user); n != 0 {
				t.Errorf("key shredded while %s.%s still holds %d rows of the user", db, tbl, n)
			}
		}
	}
	// Readings after the shredding: refused by ingest, nothing stored.
	eventually(t, 20*time.Second, "ingest to refuse the erased user's readings", func() (bool, string) {
		var resp ingest.BatchResponse
		s.postJSON(ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-canary", "readings": []any{
			gone.reading("after-2", gone.value, "/min", t0.Add(41*time.Minute))}}, &resp)
		return len(resp.Items) == 1 && resp.Items[0].Reason == ingest.ReasonUserErased, fmt.Sprint(resp.Items)
	})

	// A rebuild and a reprocess after the erasure skip the shredded
	// records and do not bring the user back.
	if res, err := replay.Rebuild(ctx, rcfg, s.log); err != nil || !res.Swapped {
		t.Fatalf("rebuild after the erasure: %+v, %v", res, err)
	}
	pcfg := s.processorConfig()
	rep, err := replay.Reprocess(ctx, replay.ReprocessConfig{Processor: pcfg, Version: "v2", ProgressEvery: time.Second}, s.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reprocess after the erasure: %d accepted, %d rejected, %d shredded", rep.Accepted, rep.Rejected, rep.Shredded)
	if rep.Shredded < canaryReadings+3 || rep.Accepted != canaryReadings {
		t.Errorf("reprocess: %d shredded (want at least the erased user's %d records), %d accepted (want the kept user's %d)", rep.Shredded, canaryReadings+3, rep.Accepted, canaryReadings)
	}
	if n := s.topicKeyCount(ctx, rep.Topics.AcceptedReadings, gone.user) + s.topicKeyCount(ctx, rep.Topics.RejectedReadings, gone.user); n != 0 {
		t.Errorf("the reprocess emitted %d records of the erased user", n)
	}
	for _, db := range []string{s.wh.Database, s.wh.Database + "_old"} {
		for _, tbl := range warehouse.ErasableTables {
			if n := count(db, tbl, gone.user); n != 0 {
				t.Errorf("after rebuild and reprocess, %s.%s holds %d rows of the erased user", db, tbl, n)
			}
		}
	}
	if n := count(s.wh.Database, warehouse.ReadingsTable, kept.user); n != canaryReadings {
		t.Errorf("the kept user has %d readings, want %d", n, canaryReadings)
	}

	// The scans. The kept user's canaries are found where they are kept in
	// clear (ClickHouse), which shows each scan reads what it claims.
	erasedNeedles := gone.needles()
	after := segments()
	t.Logf("after erasure: %s (%d files hold the kept user's id, the record key, as the control)", after, len(after.hits["kept user id (control)"]))
	for k, where := range after.hits {
		if strings.HasPrefix(k, "erased ") {
			t.Errorf("Kafka segments hold the %s: %v", k, where)
		}
	}
	pgTables := scanPostgres(t, ctx, s.pgURL, erasedNeedles)
	t.Logf("%s", pgTables)
	pgFiles := scanFiles(t, "PostgreSQL data directory (heap, WAL)", filepath.Join(stackDir(t), "postgres", "data"), func(string) bool { return true }, erasedNeedles)
	t.Logf("%s", pgFiles)
	chTables := scanClickHouse(t, ctx, ch, erasedNeedles)
	t.Logf("%s", chTables)
	for _, r := range []scanResult{pgTables, pgFiles, chTables} {
		for k, where := range r.hits {
			t.Errorf("%s hold the erased user's %s: %v", r.what, k, where)
		}
	}
	if ctl := scanClickHouse(t, ctx, ch, map[string][]byte{"kept device id": []byte(kept.device), "kept value": []byte(strconv.FormatFloat(kept.value, 'f', -1, 64))}); len(ctl.hits) != 2 {
		t.Errorf("control: the ClickHouse scan does not find the kept user's canaries: %v", ctl.hits)
	}
	// Parts replaced by the deletes stay on disk until old_parts_lifetime
	// (10 s on the local stack) and the cleanup that follows.
	// Column files are compressed: the strings are found in them (the kept
	// user's are), the floats need not be.
	chDir := filepath.Join(stackDir(t), "clickhouse", "data")
	eventually(t, 2*time.Minute, "ClickHouse's data directory to lose the replaced parts", func() (bool, string) {
		r := scanFiles(t, "ClickHouse data directory", chDir, func(string) bool { return true }, textNeedles(erasedNeedles))
		return len(r.hits) == 0, r.String() + fmt.Sprint(r.hits)
	})
	r := scanFiles(t, "ClickHouse data directory", chDir, func(string) bool { return true }, textNeedles(erasedNeedles))
	t.Logf("%s", r)
	if ctl := scanFiles(t, "ClickHouse data directory", chDir, func(string) bool { return true }, map[string][]byte{"kept device id": []byte(kept.device)}); len(ctl.hits) == 0 {
		t.Errorf("control: the ClickHouse data directory scan does not find the kept user's device id")
	}
}

// checkExport exports the user as FHIR and compares it with what was
// posted: the profile, the device and every accepted reading with its
// LOINC code and UCUM unit.
func checkExport(t *testing.T, ctx context.Context, s *stack, c canaryUser, t0 time.Time) {
	t.Helper()
	conn := s.openWarehouse(t, ctx)
	b, err := export.Export(ctx, conn, s.wh.Database, s.tenant, c.user)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.ResourceType != "Bundle" || doc.Type != "collection" {
		t.Fatalf("export: %s %s", doc.ResourceType, doc.Type)
	}
	byType := map[string][]map[string]any{}
	for _, e := range doc.Entry {
		rt, _ := e.Resource["resourceType"].(string)
		byType[rt] = append(byType[rt], e.Resource)
	}
	p := byType["Patient"]
	if len(p) != 1 || p[0]["birthDate"] != "1961" || p[0]["gender"] != "female" || fmt.Sprint(p[0]["address"]) != "[map[country:DE]]" {
		t.Errorf("export: patient %v", p)
	}
	d := byType["Device"]
	if len(d) != 1 || d[0]["modelNumber"] != c.model || fmt.Sprint(d[0]["version"]) != "[map[value:"+c.firmware+"]]" ||
		fmt.Sprint(d[0]["identifier"]) != "[map[system:"+export.SystemDevice+" value:"+c.device+"]]" {
		t.Errorf("export: device %v", d)
	}
	if u := byType["DeviceUseStatement"]; len(u) != 1 {
		t.Errorf("export: device use statements %v", u)
	}
	obs := byType["Observation"]
	if len(obs) != canaryReadings {
		t.Fatalf("export: %d observations, want %d", len(obs), canaryReadings)
	}
	for i, o := range obs {
		want := fmt.Sprintf("map[coding:[map[code:8867-4 display:heart_rate system:%s]] text:heart_rate]", export.SystemLOINC)
		q, _ := o["valueQuantity"].(map[string]any)
		at := t0.Add(time.Duration(i) * time.Minute).Format("2006-01-02T15:04:05.000Z")
		if fmt.Sprint(o["code"]) != want || q["value"] != c.value || q["code"] != "/min" || q["system"] != export.SystemUCUM ||
			o["effectiveDateTime"] != at || o["status"] != "final" || fmt.Sprint(o["identifier"]) != fmt.Sprintf("[map[system:%s value:%s-%d]]", export.SystemEventID, c.events, i) {
			t.Errorf("export: observation %d: %v (want value %v at %s)", i, o, c.value, at)
		}
	}
	t.Logf("export: %d resources (%d observations), %d bytes of JSON", len(doc.Entry), len(obs), len(raw))
}

// topicKeyCount counts the records of topic keyed by key.
func (s *stack) topicKeyCount(ctx context.Context, topic, key string) int {
	recs := s.readTopic(ctx, topic)
	n := 0
	for _, r := range recs {
		if string(r.Key) == key {
			n++
		}
	}
	return n
}
