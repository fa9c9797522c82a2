package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/internal/warehouse"
)

// The current engine of the ClickHouse check: chDB behind
// deploy/chdb/bridge.py (`deploy/stack.sh up chdb`, which `make test`
// runs), reached with the HTTP protocol. The bridge logs every statement it
// runs; the check reads that log to prove what ran and to count it.

// currentEngine is the warehouse configuration of the current engine for
// database db.
func currentEngine(db string) warehouse.Config {
	c := warehouse.DefaultConfig()
	c.Addr, c.Protocol, c.Database = env("VITALS_CHDB_ADDR", "127.0.0.1:18124"), warehouse.ProtocolHTTP, db
	c.ReadTimeout = 2 * time.Minute
	return c
}

// bridge is the statement log and fault injection of the chDB bridge.
type bridge struct {
	base string
}

// bridgeStatement is one statement the bridge ran.
type bridgeStatement struct {
	I     int     `json:"i"`
	SQL   string  `json:"sql"`
	OK    bool    `json:"ok"`
	Error string  `json:"error"`
	MS    float64 `json:"ms"`
}

func (b bridge) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("chdb bridge at %s (start it with `deploy/stack.sh up chdb`): %w", b.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chdb bridge %s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// statements returns what the bridge ran from index from on, and the next
// index.
func (b bridge) statements(ctx context.Context, from int) ([]bridgeStatement, int, error) {
	var page struct {
		Next       int               `json:"next"`
		Statements []bridgeStatement `json:"statements"`
	}
	err := b.get(ctx, fmt.Sprintf("/bridge/log?from=%d", from), &page)
	return page.Statements, page.Next, err
}

// failAfter makes the bridge answer the next statement that starts with
// prefix with an error after running it: a timeout that hid a success.
func (b bridge) failAfter(ctx context.Context, prefix string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+"/bridge/fail-after?prefix="+url.QueryEscape(prefix), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bridge fail-after: status %d", resp.StatusCode)
	}
	return nil
}

// checkTag starts the check's own statements (dumps, fixtures, cleanup),
// so that the coverage counts leave them out.
const checkTag = "/* check */ "

// Statement classes of the coverage figures.
const (
	classDDL       = "DDL"       // migrations: fresh, repeated, upgrade
	classInsert    = "insert"    // the projector's batch inserts
	classProjector = "projector" // resume, erasure and pause statements
	classReplay    = "replay"    // rebuild, verify, swap, rollback
	classQuery     = "query"     // the query service's endpoints
	classDriver    = "driver"    // clickhouse-go's own (hello, ping, DESCRIBE for HTTP inserts)
	classCheck     = "check"     // the check's own
)

// classes in report order.
var classes = []string{classDDL, classInsert, classProjector, classReplay, classQuery}

// classRule assigns a class to statements matching re (over the normalized
// text). The first matching rule wins; a statement no rule matches fails
// the check, so a new kind of statement must be placed here.
type classRule struct {
	class string
	re    *regexp.Regexp
}

var classRules = func() []classRule {
	rules := []struct {
		class string
		res   []string
	}{
		{classCheck, []string{`^/\* check \*/`}},
		{classDriver, []string{`^SELECT displayName\(\), version\(\), revision\(\), timezone\(\)$`, `^SELECT N$`, `^DESCRIBE TABLE `}},
		{classInsert, []string{`^INSERT INTO db\.(readings|reading_revisions|rejected_readings|alerts|profile_events|device_events|erased_users) \([^)]*\) FORMAT Native$`}},
		{classProjector, []string{
			`FROM system\.processes WHERE query LIKE`,
			`^SELECT log_partition, max\(log_offset\) FROM db\.\w+ WHERE log_partition IN`,
			`^SELECT log_offset FROM db\.\w+ WHERE log_partition =`,
			`^SELECT count\(\) FROM db\.erased_users$`,
			`^SELECT DISTINCT tenant_id, user_id FROM db\.erased_users$`,
			`^ALTER TABLE db\.\w+ DELETE WHERE`,
			`^SELECT pause_id, max\(until_ms\) FROM db\.replay_pauses`,
			`FROM system\.mutations WHERE`,
			`AS sgn FROM db\.\w+ WHERE tenant_id = \? AND \(user_id, event_id\) IN`,
			`^INSERT INTO db\.replay_pauses \(pause_id, kind, member, until_ms\) FORMAT Native$`,
		}},
		{classDDL, []string{
			`^CREATE (DATABASE|TABLE|MATERIALIZED VIEW) `,
			`^ALTER TABLE db\.\w+ (ADD|COMMENT) COLUMN `,
			`FROM system\.columns WHERE database =`,
			`^SELECT count\(\) FROM system\.tables WHERE database = \? AND name = \?$`,
			`^INSERT INTO db\.readings_daily(_values|_revisions)? \(.*\) SELECT .* FROM \(SELECT .* FROM db\.(readings|reading_revisions) FINAL WHERE`,
		}},
		{classReplay, []string{
			`^DROP TABLE IF EXISTS db\.\w+$`,
			`^RENAME TABLE `,
			`^SELECT name FROM system\.tables WHERE database = \?$`,
			`^SELECT count\(\) FROM db\.\w+$`,
			`murmurHash2_64\(event_id\)`,
			`^SELECT log_partition, max\(log_offset\) FROM db\.\w+ WHERE log_offset >= N GROUP BY log_partition$`,
			`^SELECT member FROM db\.replay_pauses`,
			`^SELECT count\(\), sum\(value\) FROM db\.readings WHERE`,
			`^SELECT countMerge\(readings\), sumMerge\(sum_value\) FROM db\.readings_daily WHERE`,
			`^SELECT sum\(readings\), sum\(value \* readings\) FROM db\.readings_daily_values WHERE`,
			`^INSERT INTO db\.\w+ \(.*\) SELECT .* FROM db\.\w+ WHERE log_partition = (\?|N)`,
		}},
		{classQuery, []string{`^SELECT `}},
	}
	var out []classRule
	for _, r := range rules {
		for _, re := range r.res {
			out = append(out, classRule{r.class, regexp.MustCompile(re)})
		}
	}
	return out
}()

var (
	reSpace     = regexp.MustCompile(`\s+`)
	reString    = regexp.MustCompile(`'(?:[^'\\]|\\.)*'`)
	reNumber    = regexp.MustCompile(`\b-?\d+(\.\d+)?\b`)
	reList      = regexp.MustCompile(`\((?:N|\?)(?:, (?:N|\?))+\)`)
	reEraseList = regexp.MustCompile(`(\(tenant_id = \? AND user_id = \?\))(?: OR \(tenant_id = \? AND user_id = \?\))+`)
)

// shape is a statement with its literals, lists and database names
// replaced, so that executions of one statement count once.
func shape(sql string, databases []string) string {
	s := strings.TrimSpace(reSpace.ReplaceAllString(sql, " "))
	// Longest names first: vitals_x_shadow before vitals_x.
	dbs := slices.Clone(databases)
	sort.Slice(dbs, func(i, j int) bool { return len(dbs[i]) > len(dbs[j]) })
	for i, db := range dbs {
		dbs[i] = regexp.QuoteMeta(db)
	}
	if len(dbs) > 0 {
		s = regexp.MustCompile(`\b(`+strings.Join(dbs, "|")+`)\b`).ReplaceAllString(s, "db")
	}
	s = reString.ReplaceAllString(s, "?")
	s = reNumber.ReplaceAllString(s, "N")
	s = reList.ReplaceAllString(s, "(…)")
	return reEraseList.ReplaceAllString(s, "$1 OR …")
}

func classify(shape string) string {
	for _, r := range classRules {
		if r.re.MatchString(shape) {
			return r.class
		}
	}
	return ""
}

// coverage is what the current engine ran during the check, by class.
type coverage struct {
	runs   map[string]int
	shapes map[string]map[string]bool
}

// coverageOf classifies statements; unclassified ones and failed ones
// (other than injected failures) are returned as problems.
func coverageOf(stmts []bridgeStatement, databases []string) (coverage, []string) {
	c := coverage{runs: map[string]int{}, shapes: map[string]map[string]bool{}}
	var problems []string
	for _, st := range stmts {
		sh := shape(st.SQL, databases)
		class := classify(sh)
		if class == "" {
			problems = append(problems, "no class for: "+sh)
			continue
		}
		if !st.OK && !strings.Contains(st.Error, "injected by the bridge") {
			problems = append(problems, fmt.Sprintf("failed on the current engine (%s): %s\n  %s", class, sh, st.Error))
		}
		c.runs[class]++
		if c.shapes[class] == nil {
			c.shapes[class] = map[string]bool{}
		}
		c.shapes[class][sh] = true
	}
	return c, problems
}

// report renders the coverage figures.
func (c coverage) report(version string, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ClickHouse check: every statement on 18.16 and on %s, answers compared (%s)\n", version, took.Round(time.Second))
	fmt.Fprintf(&b, "  %-10s %9s %10s\n", "class", "distinct", "executions")
	total, runs := 0, 0
	for _, cl := range classes {
		fmt.Fprintf(&b, "  %-10s %9d %10d\n", cl, len(c.shapes[cl]), c.runs[cl])
		total += len(c.shapes[cl])
		runs += c.runs[cl]
	}
	fmt.Fprintf(&b, "  %-10s %9d %10d\n", "total", total, runs)
	return b.String()
}

// writeReport logs the figures and the distinct statements, and writes the
// figures to $VITALS_CLICKHOUSE_CHECK_REPORT if set (make test prints it).
func (c coverage) writeReport(t *testing.T, summary string) {
	t.Helper()
	t.Log("\n" + summary)
	for _, cl := range classes {
		var list []string
		for sh := range c.shapes[cl] {
			list = append(list, sh)
		}
		sort.Strings(list)
		for _, sh := range list {
			if len(sh) > 240 {
				sh = sh[:240] + "…"
			}
			t.Logf("%s: %s", cl, sh)
		}
	}
	if path := os.Getenv("VITALS_CLICKHOUSE_CHECK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(summary), 0o644); err != nil {
			t.Errorf("write %s: %v", path, err)
		}
	}
}
