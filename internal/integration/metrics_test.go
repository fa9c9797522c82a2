package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vitalshq/vitals/internal/promreg"
	"github.com/vitalshq/vitals/internal/sample/sampletest"
	"github.com/vitalshq/vitals/projector"
)

// dashboardFile is the Grafana dashboard shipped for Vitals.
const dashboardFile = "../../deploy/grafana/vitals.json"

// TestMetricsServedForDashboard runs the four roles in one process on one
// registry, as `vitals run` does, pushes readings through to a query, and
// then scrapes each role's /metrics over HTTP: every endpoint must serve
// every metric name the Grafana dashboard's PromQL uses, and every Vitals
// metric must pass client_golang's lint (names, units, suffixes).
func TestMetricsServedForDashboard(t *testing.T) {
	want := dashboardMetricNames(t)
	s, ctx := newStackFor(t, 4*time.Minute)
	reg := promreg.New()

	icfg := s.ingestConfig()
	icfg.Registry = reg
	ingestURL, _ := s.startIngestWith(ctx, icfg)

	pcfg := s.processorConfig()
	pcfg.Registry, pcfg.MetricsAddr = reg, freeAddr(t)
	pcfg.CheckpointInterval = time.Second
	s.startProcessor(ctx, pcfg)

	jcfg := projector.DefaultConfig()
	jcfg.Kafka, jcfg.Warehouse, jcfg.Group, jcfg.PostgresURL = s.kafka, s.wh, s.id+"-projector", s.pgURL
	jcfg.FlushInterval = 200 * time.Millisecond
	jcfg.Registry, jcfg.MetricsAddr = reg, freeAddr(t)
	pj, err := projector.New(ctx, jcfg, s.log)
	if err != nil {
		t.Fatal(err)
	}
	s.run("projector", pj.Run, pj.Close)

	qcfg := s.queryConfig()
	qcfg.Registry = reg
	queryURL := s.startQueryWith(ctx, qcfg)

	all := sampletest.HeartRates(t)
	rows := all[:300]
	s.pairDevices(ingestURL, rows[0])
	s.postReadings(ingestURL, "gw-metrics", rows, 100)
	expectDayPercentiles(t, queryURL, rows, []float64{50}, 90*time.Second)

	endpoints := map[string]string{
		"ingest":    ingestURL + "/metrics",
		"processor": "http://" + pcfg.MetricsAddr + "/metrics",
		"projector": "http://" + jcfg.MetricsAddr + "/metrics",
		"query":     queryURL + "/metrics",
	}
	// The lag gauges appear after the first checkpoint and the first
	// committed batch whose fetch saw the log end.
	eventually(t, 60*time.Second, "every role's /metrics to serve every name the dashboard uses", func() (bool, string) {
		var missing []string
		for role, url := range endpoints {
			served, err := scrapeNames(url)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", role, err)
			}
			for _, n := range want {
				if !served[n] {
					missing = append(missing, role+":"+n)
				}
			}
		}
		return len(missing) == 0, "missing " + strings.Join(missing, ", ")
	})

	served, err := scrapeNames(endpoints["ingest"])
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"vitals_ingest_", "vitals_processor_", "vitals_projector_", "vitals_query_"} {
		var names []string
		for n := range served {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if strings.HasPrefix(n, prefix) && (base == n || !served[base]) {
				names = append(names, n) // families, not a histogram's series
			}
		}
		slices.Sort(names)
		t.Logf("%s*: %s", prefix, strings.Join(names, " "))
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "vitals_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	classic := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	for _, f := range families {
		if !classic.MatchString(f.GetName()) {
			t.Errorf("metric name %q is not in the classic character set every Prometheus accepts", f.GetName())
		}
	}
}

// freeAddr returns a loopback address with a port free a moment ago, for
// roles that take a listen address rather than a listener.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	defer ln.Close()
	return ln.Addr().String()
}

// scrapeNames GETs a /metrics endpoint and returns every sample name it
// serves: a histogram family x serves x_bucket, x_sum and x_count.
func scrapeNames(url string) (map[string]bool, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for name, f := range families {
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	return names, nil
}

// grafanaDashboard is the part of a Grafana dashboard's JSON model that
// holds PromQL: panels (rows may nest theirs), their targets, and the
// template variables' queries.
type grafanaDashboard struct {
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	Title   string         `json:"title"`
	Type    string         `json:"type"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardMetricNames reads the dashboard and returns, sorted, every
// metric name its PromQL uses. Every panel but a row must query something.
func dashboardMetricNames(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	seen := map[string]bool{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				names := exprMetricNames(tg.Expr)
				if len(names) == 0 {
					t.Errorf("panel %q: no metric name in %q", p.Title, tg.Expr)
				}
				for _, n := range names {
					seen[n] = true
				}
			}
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	for _, v := range d.Templating.List {
		if m := labelValues.FindStringSubmatch(v.Definition); v.Type == "query" && m != nil {
			seen[m[1]] = true
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) == 0 {
		t.Fatalf("%s uses no metric", dashboardFile)
	}
	return names
}

var (
	// Parts of a PromQL expression that hold no metric name: strings,
	// label matchers, range and subquery durations, the label lists of
	// grouping and vector matching, and offsets.
	promqlNoNames = []*regexp.Regexp{
		regexp.MustCompile(`"(?:[^"\\]|\\.)*"`),
		regexp.MustCompile(`\{[^}]*\}`),
		regexp.MustCompile(`\[[^\]]*\]`),
		regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
		regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`),
	}
	// promqlToken is an identifier or a number; numbers come first so
	// that the e of 1e3 is not taken for a name.
	promqlToken    = regexp.MustCompile(`[0-9][0-9.eE+]*|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "Inf", "NaN"}
)

// exprMetricNames returns the metric names a PromQL expression selects:
// the identifiers left once the parts that hold none are removed, other
// than keywords and function names (those followed by a parenthesis).
func exprMetricNames(expr string) []string {
	for _, re := range promqlNoNames {
		expr = re.ReplaceAllString(expr, " ")
	}
	var names []string
	for _, loc := range promqlToken.FindAllStringIndex(expr, -1) {
		tok := expr[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || slices.Contains(promqlKeywords, tok) {
			continue
		}
		if rest := strings.TrimLeft(expr[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function
		}
		if !slices.Contains(names, tok) {
			names = append(names, tok)
		}
	}
	return names
}

// The name extraction the dashboard check relies on (no stack needed).
func TestExprMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (endpoint) (rate(vitals_ingest_items_total{job=~"$job"}[$__rate_interval]))`:                                             {"vitals_ingest_items_total"},
		`histogram_quantile(0.99, sum by (le, endpoint) (rate(vitals_query_request_seconds_bucket{job=~"$job", endpoint!="x{y}"}[5m])))`: {"vitals_query_request_seconds_bucket"},
		`sum(rate(a_sum[1m])) / sum without (instance) (rate(a_count[1m])) > bool 1e3`:                                                   {"a_sum", "a_count"},
		`x * on (instance) group_left (job) y offset 5m or vector(0)`:                                                                    {"x", "y"},
		`process_resident_memory_bytes`: {"process_resident_memory_bytes"},
	} {
		if got := exprMetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("exprMetricNames(%q) = %q, want %q", expr, got, want)
		}
	}
	names := dashboardMetricNames(t)
	t.Logf("the dashboard uses %d metric names: %s", len(names), strings.Join(names, " "))
}
