package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/projector"
	"github.com/vitalshq/vitals/schemas"
)

// TestRevisionsOracle streams readings, then corrections and withdrawals
// of them (JSON, Avro and FHIR), late and repeated revisions and re-sends
// with other content, through the whole pipeline in three phases, and
// checks every query endpoint, now and as of the end of each earlier
// phase, against the independent oracle (revisions_oracle_test.go); and
// the tables themselves: the readings with their revision rows, both
// rollups, and the rejections with their reasons.
//
// The stream: 12 users (6 female, 6 male; one changes sex in phase 2),
// each with a paired watch and oximeter; a heart rate every 6 minutes over
// three days (values 55-110) and an SpO2 every hour; four alert episodes
// (heart rate above 180 for 6 minutes, SpO2 below 90 for a minute), one of
// each corrected or withdrawn away later, one left open. Phase 2 revises
// about 240 readings (corrections, some moving a reading to another day,
// and withdrawals), re-sends some readings unchanged and some with other
// content; phase 3 sends revisions above and below the ones applied
// (stale), repeats and conflicting repeats of revisions, withdrawals of
// corrected readings and a few hundred new readings.
func TestRevisionsOracle(t *testing.T) {
	s, ctx := newStackFor(t, 6*time.Minute)
	p := s.startPipelineWith(ctx, func(cfg *projector.Config) {
		cfg.FlushInterval, cfg.MaxRows = 100*time.Millisecond, 700 // revisions and their originals in one batch and in others
	})
	ingestURL := p.ingestURL
	queryURL := s.startQuery(ctx)
	tok := s.queryToken

	rng, seed := oracleRNG(os.Getenv("VITALS_ORACLE_SEED"))
	t.Logf("oracle seed %d (VITALS_ORACLE_SEED repeats it)", seed)
	g := newOracleGen(rng)
	sender := &oracleSender{t: t, s: s, ingestURL: ingestURL, o: g.o}

	// Phase 1: profiles, pairings, the readings.
	sender.events("/v1/profile-events", g.profiles(1))
	sender.events("/v1/device-events", g.pairings())
	sender.send(g.phase1())
	asOf1 := sender.mark()
	// Phase 2: corrections, withdrawals, re-sends; a profile change.
	sender.events("/v1/profile-events", g.profiles(2))
	sender.send(g.phase2())
	asOf2 := sender.mark()
	// Phase 3: late, repeated and conflicting revisions; new readings.
	sender.send(g.phase3())
	t.Logf("sent %d versions of %d readings: %d revisions, %d withdrawals; expected rejections %v",
		g.sentVersions(), len(g.o.events), g.revisions(), g.withdrawals(), g.rejected)

	ch := s.openWarehouse(t, ctx)
	chk := &oracleCheck{t: t, s: s, o: g.o, queryURL: queryURL, tok: tok, day0: g.day0, ctx: ctx, ch: ch}
	eventually(t, 3*time.Minute, "the pipeline to store every version and rejection", func() (bool, string) {
		return chk.stored(g.rejected)
	})
	chk.tables()
	for _, at := range []struct {
		name  string
		phase int
		asOf  time.Time
	}{{"now", 3, time.Time{}}, {"as of phase 2", 2, asOf2}, {"as of phase 1", 1, asOf1}} {
		t.Run(at.name, func(t *testing.T) {
			c := *chk
			c.t, c.phase, c.asOf = t, at.phase, at.asOf
			c.endpoints()
		})
	}
}

// oracleItem is one version of a reading to send.
type oracleItem struct {
	e *oEvent
	v oVersion
}

// oracleGen generates the stream and records it in the oracle.
type oracleGen struct {
	rng      *rand.Rand
	o        *oracle
	day0     time.Time // midnight UTC of the first day, four days ago
	rejected map[string]int
	byUser   map[string][]*oEvent // heart-rate readings of phase 1, in order
	touched  map[*oEvent]bool     // readings revised or re-sent already
	extremes []*oEvent            // u05's readings corrected to extreme values
}

func newOracleGen(rng *rand.Rand) *oracleGen {
	g := &oracleGen{rng: rng, o: newOracle(), rejected: map[string]int{}, byUser: map[string][]*oEvent{}, touched: map[*oEvent]bool{}}
	g.day0 = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -4)
	for i := range 12 {
		u := fmt.Sprintf("u%02d", i)
		g.o.users = append(g.o.users, u)
		sex := "female"
		if i >= 6 {
			sex = "male"
		}
		later := sex
		if i == 0 {
			later = "male" // stated in phase 2
		}
		g.o.sex[u] = [3]string{sex, later, later}
	}
	return g
}

func watch(u string) string                   { return "w-" + u }
func oximeter(u string) string                { return "ox-" + u }
func (g *oracleGen) at(d time.Duration) int64 { return g.day0.Add(d).UnixMilli() }

// reading makes a new reading's first version.
func (g *oracleGen) reading(user, metricName string, at int64, value float64, phase int) oracleItem {
	dev := watch(user)
	if metricName == "spo2" {
		dev = oximeter(user)
	}
	e := &oEvent{user: user, id: fmt.Sprintf("%s-%s-%d", user, metricName, at), device: dev, metric: metricName}
	g.o.events = append(g.o.events, e)
	g.o.byID[e.id] = e
	return oracleItem{e: e, v: oVersion{value: value, at: at, phase: phase, format: "json"}}
}

// revise makes a further version of e.
func (g *oracleGen) revise(e *oEvent, rev int64, value float64, at int64, withdrawn bool, phase int, format string) oracleItem {
	return oracleItem{e: e, v: oVersion{rev: rev, value: value, at: at, withdrawn: withdrawn, phase: phase, format: format}}
}

func (g *oracleGen) profiles(phase int) []any {
	var out []any
	for _, u := range g.o.users {
		sex := g.o.sex[u][phase-1]
		if phase > 1 && sex == g.o.sex[u][phase-2] {
			continue
		}
		out = append(out, map[string]any{"event_id": fmt.Sprintf("%s-profile-%d", u, phase), "user_id": u, "kind": "updated",
			"birth_year": 1980, "sex": sex, "region": "US-CA", "occurred_at": ts(g.day0.Add(time.Duration(phase) * time.Hour).UnixMilli())})
	}
	return out
}

func (g *oracleGen) pairings() []any {
	var out []any
	for _, u := range g.o.users {
		for _, d := range []string{watch(u), oximeter(u)} {
			out = append(out, map[string]any{"event_id": d + "-paired", "user_id": u, "device_id": d, "kind": "paired",
				"model": "vitals-test", "occurred_at": ts(g.day0.AddDate(0, 0, -1).UnixMilli())})
		}
	}
	return out
}

func ts(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z") }

// episode is a run of readings of one alert rule at an offset from day0.
type episode struct {
	user, metric string
	start        time.Duration
	every        time.Duration
	values       []float64
	last         bool // the user's heart rate ends with it
}

var oracleEpisodes = []episode{
	// Raised at 5 min, resolved at 6.5; reading 5 is corrected to 85 in
	// phase 2: the two runs left are too short, the alert is withdrawn.
	{"u01", "heart_rate", 24*time.Hour + 10*time.Hour, 30 * time.Second, append(repeat(190, 13), 80), false},
	{"u02", "heart_rate", 24*time.Hour + 12*time.Hour, 30 * time.Second, append(repeat(190, 13), 80), false},
	// Raised, never resolved: the user's last readings.
	{"u07", "heart_rate", 72*time.Hour - 10*time.Minute, 30 * time.Second, repeat(190, 13), true},
	// Raised at 60 s, resolved at 75 s; the reading at 60 s is withdrawn
	// in phase 3 (FHIR entered-in-error): the alert is withdrawn.
	{"u03", "spo2", 15 * time.Hour, 15 * time.Second, append(repeat(85, 5), 95), false},
	{"u04", "spo2", 56 * time.Hour, 15 * time.Second, append(repeat(85, 5), 95), false},
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// phase1 is every user's readings, each stream in measurement order.
func (g *oracleGen) phase1() []oracleItem {
	var out []oracleItem
	for _, u := range g.o.users {
		var eps []episode
		for _, ep := range oracleEpisodes {
			if ep.user == u {
				eps = append(eps, ep)
			}
		}
		type point struct {
			at     int64
			metric string
			value  float64
			normal bool
		}
		var pts []point
		inEpisode := func(metricName string, at int64) bool {
			for _, ep := range eps {
				s := g.at(ep.start)
				e := s + int64(len(ep.values))*ep.every.Milliseconds() + 60_000
				if ep.last {
					e = math.MaxInt64
				}
				if ep.metric == metricName && at >= s-60_000 && at < e {
					return true
				}
			}
			return false
		}
		for at := g.at(3 * time.Minute); at < g.at(72*time.Hour); at += 6 * 60_000 {
			if !inEpisode("heart_rate", at) {
				pts = append(pts, point{at, "heart_rate", float64(55 + g.rng.IntN(56)), true})
			}
		}
		for at := g.at(30 * time.Minute); at < g.at(72*time.Hour); at += 3600_000 {
			if !inEpisode("spo2", at) {
				pts = append(pts, point{at, "spo2", float64(95 + g.rng.IntN(5)), false})
			}
		}
		for _, ep := range eps {
			for i, v := range ep.values {
				pts = append(pts, point{g.at(ep.start) + int64(i)*ep.every.Milliseconds(), ep.metric, v, false})
			}
		}
		sort.Slice(pts, func(i, j int) bool { return pts[i].at < pts[j].at })
		for _, pt := range pts {
			it := g.reading(u, pt.metric, pt.at, pt.value, 1)
			out = append(out, it)
			if pt.normal {
				g.byUser[u] = append(g.byUser[u], it.e)
			}
		}
	}
	return out
}

// pick returns a phase-1 heart-rate reading of a random user (not one of
// the alert users), not touched before, older than the user's last hour.
func (g *oracleGen) pick() *oEvent {
	for {
		u := g.o.users[g.rng.IntN(len(g.o.users))]
		if u == "u01" || u == "u02" || u == "u07" {
			continue
		}
		rs := g.byUser[u]
		e := rs[g.rng.IntN(len(rs)-20)]
		if !g.touched[e] {
			g.touched[e] = true
			return e
		}
	}
}

// episodeReading is reading i of the episode of user and metric.
func (g *oracleGen) episodeReading(user, metricName string, i int) *oEvent {
	for _, ep := range oracleEpisodes {
		if ep.user == user && ep.metric == metricName {
			return g.o.byID[fmt.Sprintf("%s-%s-%d", user, metricName, g.at(ep.start)+int64(i)*ep.every.Milliseconds())]
		}
	}
	panic("no such episode")
}

func (g *oracleGen) value() float64 { return float64(55 + g.rng.IntN(56)) }

// phase2 revises readings in every format, and re-sends some.
func (g *oracleGen) phase2() []oracleItem {
	var out []oracleItem
	first := func(e *oEvent) oVersion { return e.sent[0] }
	// Extremes of u05's days, revised below and undone in phase 3: what
	// the daily rollup's min and max states cannot forget. Reserved before
	// the random picks, which would otherwise revise one of them first
	// and turn its extreme into an unexpected conflicting_repeat.
	g.extremes = nil
	for i := range 3 {
		e := g.byUser["u05"][100+300*i]
		g.touched[e] = true
		g.extremes = append(g.extremes, e)
	}
	for range 60 { // JSON corrections, a fifth of them moved a day earlier
		e := g.pick()
		at := first(e).at
		if g.rng.IntN(5) == 0 && at >= g.at(24*time.Hour) {
			at -= 24*3600_000 - 60_000
		}
		out = append(out, g.revise(e, 1, g.value(), at, false, 2, "json"))
	}
	for range 50 {
		e := g.pick()
		out = append(out, g.revise(e, 1, g.value(), first(e).at, false, 2, "avro"))
	}
	for i := range 50 { // FHIR corrected (version 2) or amended (version 3)
		e := g.pick()
		out = append(out, g.revise(e, int64(1+i%2), g.value(), first(e).at, false, 2, "fhir"))
	}
	for i := range 40 { // withdrawals, JSON and FHIR entered-in-error
		e := g.pick()
		format := "json"
		if i%2 == 1 {
			format = "fhir"
		}
		out = append(out, g.revise(e, 1, 0, first(e).at, true, 2, format))
	}
	for i, v := range []float64{150, 151, 42} {
		e := g.extremes[i]
		out = append(out, g.revise(e, 1, v, first(e).at, false, 2, "json"))
	}
	// The alert run of u01: one of its raising readings corrected to 85.
	e := g.episodeReading("u01", "heart_rate", 5)
	out = append(out, g.revise(e, 1, 85, first(e).at, false, 2, "json"))
	// Re-sends of each user's last heart rate (within the lateness): the
	// same (dropped) or other content (conflicting_repeat); and of old
	// readings (too_late).
	for i, u := range g.o.users {
		if u == "u07" {
			continue
		}
		rs := g.byUser[u]
		last := rs[len(rs)-1]
		g.touched[last] = true
		if i%2 == 0 {
			out = append(out, oracleItem{e: last, v: oVersion{value: first(last).value, at: first(last).at, phase: 2, format: "json"}})
		} else {
			out = append(out, oracleItem{e: last, v: oVersion{value: first(last).value + 1, at: first(last).at, phase: 2, format: "json"}})
			g.rejected["conflicting_repeat"]++
		}
	}
	for range 5 {
		e := g.pick()
		out = append(out, oracleItem{e: e, v: oVersion{value: first(e).value, at: first(e).at, phase: 2, format: "json"}})
		g.rejected["too_late"]++
	}
	return out
}

// phase3 sends revisions after those of phase 2, some stale, repeated or
// conflicting, withdraws corrected readings, and adds new readings.
func (g *oracleGen) phase3() []oracleItem {
	var out []oracleItem
	var revised []*oEvent
	for _, e := range g.o.events {
		if len(e.sent) == 2 && e.sent[1].rev == 1 && !e.sent[1].withdrawn && e.sent[1].format == "json" && e.user != "u01" && !slices.Contains(g.extremes, e) {
			revised = append(revised, e)
		}
	}
	g.rng.Shuffle(len(revised), func(i, j int) { revised[i], revised[j] = revised[j], revised[i] })
	n := len(revised) / 4
	for _, e := range revised[:n] { // revision 3, then the stale revision 2
		out = append(out, g.revise(e, 3, g.value(), e.sent[1].at, false, 3, "json"))
		out = append(out, g.revise(e, 2, g.value(), e.sent[1].at, false, 3, "json"))
		g.rejected["stale_revision"]++
	}
	for _, e := range revised[n : 2*n] { // revision 1 again: dropped
		v := e.sent[1]
		v.phase = 3
		out = append(out, oracleItem{e: e, v: v})
	}
	for _, e := range revised[2*n : 3*n] { // revision 1 with other content
		v := e.sent[1]
		v.phase, v.value = 3, v.value+0.5
		out = append(out, oracleItem{e: e, v: v})
		g.rejected["conflicting_repeat"]++
	}
	for i, e := range revised[3*n:] { // withdrawn after the correction
		format := "json"
		if i%2 == 1 {
			format = "avro"
		}
		out = append(out, g.revise(e, 2, 0, e.sent[1].at, true, 3, format))
	}
	out = append(out, g.revise(g.extremes[0], 2, 0, g.extremes[0].sent[0].at, true, 3, "json"))
	out = append(out, g.revise(g.extremes[2], 2, 60, g.extremes[2].sent[0].at, false, 3, "fhir"))
	// The SpO2 run of u03: its raising reading withdrawn.
	e := g.episodeReading("u03", "spo2", 4)
	out = append(out, g.revise(e, 1, 0, e.sent[0].at, true, 3, "fhir"))
	// New readings on the fourth day, after every stream's newest.
	for _, u := range g.o.users[:6] {
		for at := g.at(72*time.Hour + 3*time.Minute); at < g.at(78*time.Hour); at += 6 * 60_000 {
			out = append(out, g.reading(u, "heart_rate", at, g.value(), 3))
		}
	}
	return out
}

func (g *oracleGen) sentVersions() (n int) {
	for _, e := range g.o.events {
		n += len(e.sent)
	}
	return n
}

func (g *oracleGen) revisions() (n int) {
	for _, e := range g.o.events {
		for _, v := range e.sent {
			if v.rev > 0 {
				n++
			}
		}
	}
	return n
}

func (g *oracleGen) withdrawals() (n int) {
	for _, e := range g.o.events {
		for _, v := range e.sent {
			if v.withdrawn {
				n++
			}
		}
	}
	return n
}

// oracleSender posts items through ingest and records them as sent.
type oracleSender struct {
	t         *testing.T
	s         *stack
	ingestURL string
	o         *oracle
}

// events posts device or profile events.
func (se *oracleSender) events(path string, events []any) {
	if len(events) > 0 {
		se.s.postEvents(se.ingestURL, path, events)
	}
}

// mark is a moment after everything sent so far was received, and before
// anything sent next: an as_of that separates the phases.
func (se *oracleSender) mark() time.Time {
	time.Sleep(20 * time.Millisecond)
	at := time.Now().UTC().Truncate(time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	return at
}

// send posts the items in order, runs of one format in one request each
// (at most 500 items), and requires every item accepted by ingest.
func (se *oracleSender) send(items []oracleItem) {
	for len(items) > 0 {
		n := 1
		for n < len(items) && n < 500 && items[n].v.format == items[0].v.format {
			n++
		}
		run := items[:n]
		items = items[n:]
		var resp ingest.BatchResponse
		var code int
		switch run[0].v.format {
		case "json":
			code = se.postJSONItems(run, &resp)
		case "avro":
			code = se.postAvro(run, &resp)
		case "fhir":
			code = se.postFHIR(run, &resp)
		}
		if code != http.StatusOK || resp.Accepted != len(run) {
			se.t.Fatalf("%s batch of %d: status %d, %d accepted: %+v", run[0].v.format, len(run), code, resp.Accepted, resp.Items[:min(3, len(resp.Items))])
		}
		for _, it := range run {
			it.e.sent = append(it.e.sent, it.v)
		}
	}
}

func unitOf(metricName string) string {
	if metricName == "spo2" {
		return "%"
	}
	return "/min"
}

func (se *oracleSender) postJSONItems(run []oracleItem, resp *ingest.BatchResponse) int {
	var items []map[string]any
	for _, it := range run {
		m := map[string]any{"event_id": it.e.id, "user_id": it.e.user, "device_id": it.e.device, "metric": it.e.metric,
			"measured_at": ts(it.v.at)}
		if it.v.rev > 0 {
			m["revision"] = it.v.rev
		}
		if it.v.withdrawn {
			m["withdrawn"] = true
		} else {
			m["value"], m["unit"] = it.v.value, unitOf(it.e.metric)
		}
		items = append(items, m)
	}
	return se.s.postJSON(se.ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-oracle", "readings": items}, resp)
}

func (se *oracleSender) postAvro(run []oracleItem, resp *ingest.BatchResponse) int {
	b := schemas.ReadingBatch{GatewayID: "gw-oracle"}
	for _, it := range run {
		g := schemas.GatewayReading{EventID: it.e.id, UserID: it.e.user, DeviceID: it.e.device, Metric: it.e.metric,
			Unit: unitOf(it.e.metric), MeasuredAt: it.v.at}
		value, rev, withdrawn := it.v.value, it.v.rev, it.v.withdrawn
		g.Value = &value
		if rev > 0 {
			g.Revision = &rev
		}
		if withdrawn {
			g.Withdrawn = &withdrawn
		}
		b.Readings = append(b.Readings, g)
	}
	body, err := schemas.AppendReadingBatch(schemas.MustCodec(schemas.NameReadingBatch), nil, &b)
	if err != nil {
		se.t.Fatal(err)
	}
	return se.post("/v1/readings", "application/vnd.vitals.reading-batch+avro", body, resp)
}

func (se *oracleSender) postFHIR(run []oracleItem, resp *ingest.BatchResponse) int {
	var entries []any
	for _, it := range run {
		loinc := "8867-4"
		if it.e.metric == "spo2" {
			loinc = "59408-5"
		}
		status := "corrected"
		switch {
		case it.v.withdrawn:
			status = "entered-in-error"
		case it.v.rev == 2:
			status = "amended"
		}
		obs := map[string]any{"resourceType": "Observation", "id": it.e.id, "status": status,
			"meta":    map[string]any{"versionId": fmt.Sprint(it.v.rev + 1)},
			"code":    map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": loinc}}},
			"subject": map[string]any{"reference": "Patient/" + it.e.user}, "device": map[string]any{"reference": "Device/" + it.e.device},
			"effectiveDateTime": ts(it.v.at)}
		if !it.v.withdrawn {
			obs["valueQuantity"] = map[string]any{"value": it.v.value, "system": "http://unitsofmeasure.org", "code": unitOf(it.e.metric)}
		}
		entries = append(entries, map[string]any{"resource": obs})
	}
	body, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "collection", "entry": entries})
	if err != nil {
		se.t.Fatal(err)
	}
	return se.post("/fhir/r4/Observation", "application/fhir+json", body, resp)
}

func (se *oracleSender) post(path, contentType string, body []byte, resp *ingest.BatchResponse) int {
	req, err := http.NewRequest(http.MethodPost, se.ingestURL+path, bytes.NewReader(body))
	if err != nil {
		se.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+se.s.key)
	req.Header.Set("X-Gateway-ID", "gw-oracle")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		se.t.Fatal(err)
	}
	defer r.Body.Close()
	if err := json.NewDecoder(r.Body).Decode(resp); err != nil {
		se.t.Fatalf("decode answer of %s: %v", path, err)
	}
	return r.StatusCode
}

// oracleCheck compares the pipeline with the oracle as of a phase.
type oracleCheck struct {
	t        *testing.T
	s        *stack
	o        *oracle
	queryURL string
	tok      string
	day0     time.Time
	ctx      context.Context
	ch       driver.Conn
	phase    int
	asOf     time.Time // zero: now
}
