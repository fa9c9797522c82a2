package dashboardtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The API's answers, as far as the dashboard shows them. Numbers that may be
// null are pointers.

// PercentileValue is one {"p","value"}.
type PercentileValue struct {
	P     float64  `json:"p"`
	Value *float64 `json:"value"`
}

// Suppression is part of every answer about a cohort: a cohort with too
// few users is not shown.
type Suppression struct {
	Suppressed bool   `json:"suppressed"`
	Reason     string `json:"reason"`
}

// Trends is the answer of /v1/trends.
type Trends struct {
	Suppression
	Unit string `json:"unit"`
	Days []struct {
		Day    string   `json:"day"`
		Count  *float64 `json:"count"`
		Avg    *float64 `json:"avg"`
		Min    *float64 `json:"min"`
		Max    *float64 `json:"max"`
		Stddev *float64 `json:"stddev"`
	} `json:"days"`
}

// Distribution is the answer of /v1/distribution.
type Distribution struct {
	Suppression
	Count     *float64 `json:"count"`
	Min       *float64 `json:"min"`
	Q1        *float64 `json:"q1"`
	Median    *float64 `json:"median"`
	Q3        *float64 `json:"q3"`
	Max       *float64 `json:"max"`
	Mean      *float64 `json:"mean"`
	Stddev    *float64 `json:"stddev"`
	Histogram []struct {
		Lower *float64 `json:"lower"`
		Upper *float64 `json:"upper"`
		Count *float64 `json:"count"`
	} `json:"histogram"`
}

// Percentiles is the answer of /v1/percentiles with per=day.
type Percentiles struct {
	Suppression
	Count       *float64          `json:"count"`
	Percentiles []PercentileValue `json:"percentiles"`
	Days        []struct {
		Day         string            `json:"day"`
		Count       *float64          `json:"count"`
		Percentiles []PercentileValue `json:"percentiles"`
	} `json:"days"`
}

// Compare is the answer of /v1/compare.
type Compare struct {
	By   string `json:"by"`
	User struct {
		ID     string   `json:"id"`
		Count  *float64 `json:"count"`
		Mean   *float64 `json:"mean"`
		Median *float64 `json:"median"`
	} `json:"user"`
	Cohort *struct {
		Value  *string  `json:"value"`
		Users  *float64 `json:"users"`
		Count  *float64 `json:"count"`
		Mean   *float64 `json:"mean"`
		Median *float64 `json:"median"`
	} `json:"cohort"`
	PercentDifference *float64 `json:"percent_difference"`
	PercentileRank    *float64 `json:"percentile_rank"`
	Suppressed        bool     `json:"suppressed"`
	Reason            string   `json:"reason"`
}

// Answers are the four answers behind one Show.
type Answers struct {
	Trends       Trends
	Distribution Distribution
	Percentiles  Percentiles
	// Compare is nil when the form's scope is not one user.
	Compare *Compare
}

// Params are the query parameters the page sends for a Form.
func (f Form) Params() (common url.Values, distribution, percentiles, compare url.Values) {
	common = url.Values{"metric": {f.Metric}, "from": {f.From}, "to": {f.To}}
	switch f.Scope {
	case "", "user":
		common.Set("user", f.User)
	case "cohort":
		for k, v := range map[string]string{"age_band": f.AgeBand, "sex": f.Sex, "region": f.Region, "device_model": f.DeviceModel} {
			if v != "" {
				common.Set(k, v)
			}
		}
	}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range common {
			v[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	bins := f.Bins
	if bins == "" {
		bins = "auto"
	}
	distribution = with("bins", bins)
	percentiles = with("p", f.P, "per", "day")
	if common.Get("user") != "" {
		by := f.By
		if by == "" {
			by = "age_band"
		}
		compare = url.Values{"metric": {f.Metric}, "from": {f.From}, "to": {f.To}, "user": {f.User}, "by": {by}}
	}
	return common, distribution, percentiles, compare
}

// Fetch asks the API at base (e.g. http://127.0.0.1:8081) the same four
// questions the page asks for f, with the analyst token, and decodes the
// answers. f must name Metric, From, To and P (the page's defaults are not
// applied here).
func Fetch(ctx context.Context, base, token string, f Form) (*Answers, error) {
	common, dist, pct, cmp := f.Params()
	var a Answers
	if err := get(ctx, base+"/v1/trends?"+common.Encode(), token, &a.Trends); err != nil {
		return nil, err
	}
	if err := get(ctx, base+"/v1/distribution?"+dist.Encode(), token, &a.Distribution); err != nil {
		return nil, err
	}
	if err := get(ctx, base+"/v1/percentiles?"+pct.Encode(), token, &a.Percentiles); err != nil {
		return nil, err
	}
	if cmp != nil {
		a.Compare = new(Compare)
		if err := get(ctx, base+"/v1/compare?"+cmp.Encode(), token, a.Compare); err != nil {
			return nil, err
		}
	}
	return &a, nil
}

func get(ctx context.Context, u, token string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("request %s: %w", u, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %.300s", req.URL.Path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode: %w", req.URL.Path, err)
	}
	return nil
}

// Check compares what the page shows with the API's answers and returns
// every difference: each chart's status, that a chart with data was drawn
// (uPlot holds one point per day or bin in every series, and the canvas has
// pixels of the series colour), and every table cell (its raw value equal
// to the API's, its text equal to that value as displayed: integers exactly,
// other numbers to 2 decimals).
func Check(s *Snapshot, a *Answers) []string {
	k := &checker{s: s}
	k.trends(a.Trends)
	k.distribution(a.Distribution)
	k.percentiles(a.Percentiles)
	k.compare(a.Compare)
	return k.errs
}

// checker gathers the differences Check finds, chart by chart.
type checker struct {
	s    *Snapshot
	errs []string
}

func (k *checker) bad(format string, args ...any) {
	k.errs = append(k.errs, fmt.Sprintf(format, args...))
}

// status expects the chart's status to be want.
func (k *checker) status(name, want string) {
	if c := k.s.Charts[name]; c.Status != want {
		k.bad("%s: status %q (%s), want %q", name, c.Status, c.Message, want)
	}
}

// drawn expects the chart plotted with series series of points points
// each, and pixels of the series colour on its canvas.
func (k *checker) drawn(name string, points, series int) {
	c := k.s.Charts[name]
	if c.Status != "ok" {
		k.bad("%s: status %q (%s), want ok", name, c.Status, c.Message)
		return
	}
	if !c.Plotted || len(c.SeriesLengths) != series {
		k.bad("%s: uPlot has %d series, want %d (x and %d data series)", name, len(c.SeriesLengths), series, series-1)
		return
	}
	for i, n := range c.SeriesLengths {
		if n != points {
			k.bad("%s: uPlot series %d (%s) has %d points, the API returned %d", name, i, c.SeriesLabels[i], n, points)
		}
	}
	if c.CanvasWidth == 0 || c.CanvasHeight == 0 || c.ColorPixels == 0 {
		k.bad("%s: nothing drawn: canvas %dx%d, %d pixels of the series colour", name, c.CanvasWidth, c.CanvasHeight, c.ColorPixels)
	}
}

// fits expects a day axis to fit its days: half a day either side of the
// first and last, whatever the range asked for (one day once spanned two
// years).
func (k *checker) fits(name string, days []string) {
	c := k.s.Charts[name]
	if len(days) == 0 || !c.Plotted {
		return
	}
	first, err1 := time.Parse(time.DateOnly, days[0])
	last, err2 := time.Parse(time.DateOnly, days[len(days)-1])
	if err1 != nil || err2 != nil {
		k.bad("%s: days %q and %q are not dates", name, days[0], days[len(days)-1])
		return
	}
	lo, hi := float64(first.Unix()-43200), float64(last.Unix()+43200)
	if math.Abs(c.XMin-lo) > 1 || math.Abs(c.XMax-hi) > 1 {
		k.bad("%s: the day axis spans %s to %s; the data, %s to %s, wants half a day either side", name,
			time.Unix(int64(c.XMin), 0).UTC(), time.Unix(int64(c.XMax), 0).UTC(), days[0], days[len(days)-1])
	}
}

// dayChart expects a chart over days to be empty, or else drawn with a
// point per day in each of its series and an axis that fits the days.
func (k *checker) dayChart(name string, days []string, series int, empty bool) {
	if empty {
		k.status(name, "empty")
		return
	}
	k.drawn(name, len(days), series)
	k.fits(name, days)
}

// rows expects a table's body (or its foot) to hold want, cell by cell.
func (k *checker) rows(name, table string, want [][]any, foot bool) {
	t, ok := k.s.Charts[name].Tables[table]
	if !ok {
		k.bad("%s: no table %s", table, table)
		return
	}
	got := t.Rows
	if foot {
		got = t.Foot
	}
	if len(got) != len(want) {
		k.bad("%s: %d rows, the API returned %d", table, len(got), len(want))
		return
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			k.bad("%s row %d: %d cells, want %d", table, i, len(got[i]), len(want[i]))
			continue
		}
		for j, w := range want[i] {
			if msg := cellDiff(got[i][j], w); msg != "" {
				k.bad("%s row %d column %d: %s", table, i, j, msg)
			}
		}
	}
}

// suppressed reports whether the API suppressed the chart's answer, and
// if so expects the page to say why and show no figures.
func (k *checker) suppressed(name string, sup Suppression) bool {
	if !sup.Suppressed {
		return false
	}
	c := k.s.Charts[name]
	if c.Status != "suppressed" || c.Plotted || !strings.Contains(c.Message, sup.Reason) {
		k.bad("%s: suppressed by the API: status %q, plotted %v, message %q does not give the reason %q", name, c.Status, c.Plotted, c.Message, sup.Reason)
	}
	for id, t := range c.Tables {
		if len(t.Rows)+len(t.Foot) > 0 {
			k.bad("%s: suppressed by the API, but table %s shows %d rows", name, id, len(t.Rows)+len(t.Foot))
		}
	}
	return true
}

func (k *checker) trends(t Trends) {
	var trows [][]any
	var days []string
	for _, d := range t.Days {
		trows = append(trows, []any{d.Day, d.Count, d.Avg, d.Min, d.Max, d.Stddev})
		days = append(days, d.Day)
	}
	if k.suppressed("trends", t.Suppression) {
		return
	}
	k.dayChart("trends", days, 4, len(days) == 0)
	k.rows("trends", "trends-table", trows, false)
}

func (k *checker) distribution(d Distribution) {
	if k.suppressed("distribution", d.Suppression) {
		return
	}
	k.rows("distribution", "distribution-summary", [][]any{{d.Count, d.Min, d.Q1, d.Median, d.Q3, d.Max, d.Mean, d.Stddev}}, false)
	var drows [][]any
	for _, b := range d.Histogram {
		drows = append(drows, []any{b.Lower, b.Upper, b.Count})
	}
	k.rows("distribution", "distribution-table", drows, false)
	if d.Count == nil || *d.Count == 0 || len(d.Histogram) == 0 {
		k.status("distribution", "empty")
	} else {
		k.drawn("distribution", len(d.Histogram), 2)
	}
}

// percentiles checks the percentiles per day: the header names the
// percentiles asked for, a row per day, the whole range in the foot.
func (k *checker) percentiles(p Percentiles) {
	if k.suppressed("percentiles", p.Suppression) {
		return
	}
	ps := make([]float64, 0, len(p.Percentiles))
	header := []string{"day", "count"}
	for _, v := range p.Percentiles {
		ps = append(ps, v.P)
		header = append(header, "p"+strconv.FormatFloat(v.P, 'g', -1, 64))
	}
	if got := k.s.Charts["percentiles"].Tables["percentiles-table"].Header; strings.Join(got, ",") != strings.Join(header, ",") {
		k.bad("percentiles-table header %v, want %v", got, header)
	}
	at := func(list []PercentileValue, p float64) *float64 {
		for _, v := range list {
			if v.P == p {
				return v.Value
			}
		}
		return nil
	}
	var prows [][]any
	var days []string
	for _, day := range p.Days {
		r := []any{day.Day, day.Count}
		for _, q := range ps {
			r = append(r, at(day.Percentiles, q))
		}
		prows = append(prows, r)
		days = append(days, day.Day)
	}
	k.rows("percentiles", "percentiles-table", prows, false)
	foot := []any{"whole range", p.Count}
	for _, q := range ps {
		foot = append(foot, at(p.Percentiles, q))
	}
	k.rows("percentiles", "percentiles-table", [][]any{foot}, true)
	k.dayChart("percentiles", days, 1+len(ps), len(days) == 0 || len(ps) == 0)
}

// compare checks the user against their cohort; c is nil when the scope
// is not one user, and the chart is then skipped.
func (k *checker) compare(c *Compare) {
	if c == nil {
		k.status("compare", "skipped")
		return
	}
	var users, count, mean, median *float64
	value := "–"
	if c.Cohort != nil {
		users, count, mean, median = c.Cohort.Users, c.Cohort.Count, c.Cohort.Mean, c.Cohort.Median
		if c.Cohort.Value != nil {
			value = *c.Cohort.Value
		}
	}
	k.rows("compare", "compare-table", [][]any{
		{"user " + c.User.ID, nil, c.User.Count, c.User.Mean, c.User.Median},
		{fmt.Sprintf("cohort %s = %s", c.By, value), users, count, mean, median},
	}, false)
	if sum := k.s.Charts["compare"].Tables["compare-summary"].Rows; len(sum) != 1 || len(sum[0]) != 2 {
		k.bad("compare-summary: %d rows, want 1 of 2 cells", len(sum))
	} else {
		if msg := cellDiffSuffix(sum[0][0], c.PercentDifference, "%"); msg != "" {
			k.bad("compare-summary percent difference: %s", msg)
		}
		if msg := cellDiff(sum[0][1], c.PercentileRank); msg != "" {
			k.bad("compare-summary percentile rank: %s", msg)
		}
	}
	switch {
	case c.Suppressed:
		k.status("compare", "suppressed")
		if ch := k.s.Charts["compare"]; ch.Plotted || !strings.Contains(ch.Message, c.Reason) {
			k.bad("compare: suppressed cohort: plotted=%v, message %q does not give the reason %q", ch.Plotted, ch.Message, c.Reason)
		}
	case c.User.Count == nil || *c.User.Count == 0:
		k.status("compare", "empty")
	default:
		k.drawn("compare", 2, 3)
	}
}

func cellDiff(c Cell, want any) string { return cellDiffSuffix(c, want, "") }

// cellDiffSuffix compares a cell with an API value: a string (a day or a
// label) must be the cell's value and text; a number must be the raw value
// exactly, and the text must read as that number (2 decimals, suffix
// appended); a null must be an empty value shown as "–".
func cellDiffSuffix(c Cell, want any, suffix string) string {
	switch w := want.(type) {
	case string:
		if c.Text != w {
			return fmt.Sprintf("shows %q, want %q", c.Text, w)
		}
		return ""
	case *float64:
		if w == nil {
			if c.Value != "" || c.Text != "–" {
				return fmt.Sprintf("shows %q (value %q), the API returned null", c.Text, c.Value)
			}
			return ""
		}
		v, err := strconv.ParseFloat(c.Value, 64)
		if err != nil || v != *w {
			return fmt.Sprintf("holds %q, the API returned %v", c.Value, *w)
		}
		text, ok := strings.CutSuffix(c.Text, suffix)
		shown, err := strconv.ParseFloat(text, 64)
		if !ok || err != nil || math.Abs(shown-*w) > 0.005+1e-9*math.Abs(*w) {
			return fmt.Sprintf("shows %q for %v", c.Text, *w)
		}
		return ""
	case nil:
		if c.Value != "" || c.Text != "–" {
			return fmt.Sprintf("shows %q, want –", c.Text)
		}
		return ""
	}
	return fmt.Sprintf("cannot compare with %T", want)
}
