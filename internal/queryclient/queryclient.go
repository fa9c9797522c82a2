// Package queryclient asks a running query service, for the vitals query
// commands (and the query benchmark): the URL parameters each command
// takes, the request with an analyst token, and the answers rendered as
// text tables.
package queryclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/vitalshq/vitals/query"
)

// Commands are the `vitals query <name>` commands, each an endpoint of
// the query API.
var Commands = []string{"percentiles", "distribution", "compare", "cohorts", "trends", "summary", "alerts"}

// TokenEnv holds the analyst token the client sends; a flag would show it
// in the process list.
const TokenEnv = "VITALS_QUERY_TOKEN"

// Param is a URL parameter the commands take as a flag of the same name
// (dashes become underscores in the URL).
type Param struct {
	Name, Usage string
	// Only lists the commands that take it; nil: every command.
	Only []string
}

// Params are the commands' parameters.
var Params = []Param{
	{"metric", "metric, e.g. heart_rate (required except for summary and alerts)", nil},
	{"from", "start, RFC 3339 or YYYY-MM-DD (default: 30 days before to)", nil},
	{"to", "end, exclusive, RFC 3339 or YYYY-MM-DD (default: now)", nil},
	{"user", "a user: the scope, or the user to compare", nil},
	{"age-band", "cohort filter, e.g. 30-39", nil},
	{"sex", "cohort filter: female, male, other, unknown", nil},
	{"region", "cohort filter, ISO 3166 code, e.g. DE", nil},
	{"device-model", "cohort filter, e.g. fitbit-charge-hr", nil},
	{"consistency", "consistency token of an ingest response (read-your-writes)", nil},
	{"wait", "how long to wait for the consistency token, e.g. 5s", nil},
	{"as-of", "answer as the system knew it at this moment (RFC 3339): revisions recorded later left out", nil},
	{"p", "percentiles, e.g. 50,90,99", []string{"percentiles"}},
	{"per", "day: percentiles per day as well", []string{"percentiles"}},
	{"bins", "histogram bins: a number or auto", []string{"distribution"}},
	{"by", "cohort dimension: age_band, sex, region, device_model", []string{"compare", "cohorts"}},
	{"period", "week, month, quarter or year before to", []string{"trends"}},
}

// Path is the API path and query of command sub with parameters v
// (summary takes its user in the path).
func Path(sub string, v url.Values) (string, error) {
	path := "/v1/" + sub
	if sub == "alerts" {
		path = "/v1/alerts/summary"
	}
	if sub == "summary" {
		u := v.Get("user")
		if u == "" {
			return "", errors.New("query summary needs --user")
		}
		v.Del("user")
		path = "/v1/users/" + url.PathEscape(u) + "/summary"
	}
	return path + "?" + v.Encode(), nil
}

// Get GETs u, a query API URL, with an analyst token and returns the
// body of a 200 answer; any other status becomes an error carrying the
// API's message.
func Get(ctx context.Context, u, token string, timeout time.Duration) ([]byte, error) {
	return GetWith(ctx, http.DefaultClient, u, token, timeout)
}

// GetWith is Get with client, e.g. one that trusts a private certificate
// authority for an HTTPS query service.
func GetWith(ctx context.Context, client *http.Client, u, token string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("query: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e query.APIError
		if json.Unmarshal(body, &e) == nil && e.Code != "" {
			if e.Parameter != "" {
				return nil, fmt.Errorf("query: %d %s (%s): %s", resp.StatusCode, e.Code, e.Parameter, e.Message)
			}
			return nil, fmt.Errorf("query: %d %s: %s", resp.StatusCode, e.Code, e.Message)
		}
		return nil, fmt.Errorf("query: status %d", resp.StatusCode)
	}
	return body, nil
}

// num formats an optional figure.
func num(p *float64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'f', -1, 64)
}

// Print renders an answer of command sub as text tables; nothing for a
// command it does not know.
func Print(w io.Writer, sub string, body []byte) error {
	p, ok := printers[sub]
	if !ok {
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	defer tw.Flush()
	return p(w, tw, body)
}

// printer writes an answer's title lines to w and its tables to tw, which
// Print flushes after it.
type printer func(w, tw io.Writer, body []byte) error

var printers = map[string]printer{
	"percentiles":  as(printPercentiles),
	"distribution": as(printDistribution),
	"compare":      as(printCompare),
	"cohorts":      as(printCohorts),
	"trends":       as(printTrends),
	"summary":      as(printSummary),
	"alerts":       as(printAlerts),
}

// as decodes the answer into a T for show.
func as[T any](show func(w, tw io.Writer, r *T)) printer {
	return func(w, tw io.Writer, body []byte) error {
		var r T
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("query: decode answer: %w", err)
		}
		show(w, tw, &r)
		return nil
	}
}

// header is the title line of a scoped answer, and why it is suppressed.
func header(w io.Writer, metric, unit string, from, to time.Time, stale, suppressed bool, reason string) {
	fmt.Fprintf(w, "%s (%s), %s to %s", metric, unit, from.Format(time.RFC3339), to.Format(time.RFC3339))
	if stale {
		fmt.Fprint(w, ", STALE: the pipeline had not stored the write yet")
	}
	fmt.Fprintln(w)
	if suppressed {
		fmt.Fprintln(w, "suppressed:", reason)
	}
}

func printPercentiles(w, tw io.Writer, r *query.PercentilesResult) {
	header(w, r.Metric, r.Unit, r.From, r.To, r.Stale, r.Suppressed, r.Reason)
	fmt.Fprint(tw, "day\treadings\t")
	for _, p := range r.Percentiles {
		fmt.Fprintf(tw, "p%g\t", p.P)
	}
	fmt.Fprintln(tw)
	row := func(day string, n uint64, ps []query.Percentile) {
		fmt.Fprintf(tw, "%s\t%d\t", day, n)
		for _, p := range ps {
			fmt.Fprintf(tw, "%g\t", p.Value)
		}
		fmt.Fprintln(tw)
	}
	for _, d := range r.Days {
		row(d.Day, d.Count, d.Percentiles)
	}
	row("all", r.Count, r.Percentiles)
}

func printDistribution(w, tw io.Writer, r *query.DistributionResult) {
	header(w, r.Metric, r.Unit, r.From, r.To, r.Stale, r.Suppressed, r.Reason)
	fmt.Fprintln(tw, "readings\tmin\tq1\tmedian\tq3\tmax\tmean\tstddev\t")
	fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n\n", r.Count, num(r.Min), num(r.Q1), num(r.Median), num(r.Q3), num(r.Max), num(r.Mean), num(r.Stddev))
	fmt.Fprintln(tw, "lower\tupper\treadings\t")
	for _, b := range r.Histogram {
		fmt.Fprintf(tw, "%g\t%g\t%d\t\n", b.Lower, b.Upper, b.Count)
	}
}

func printCompare(w, tw io.Writer, r *query.CompareResult) {
	header(w, r.Metric, r.Unit, r.From, r.To, r.Stale, r.Suppressed, r.Reason)
	fmt.Fprintln(tw, "\tusers\treadings\tmean\tmedian\t")
	fmt.Fprintf(tw, "user %s\t1\t%d\t%s\t%s\t\n", r.User.ID, r.User.Count, num(r.User.Mean), num(r.User.Median))
	fmt.Fprintf(tw, "%s=%s\t%d\t%d\t%s\t%s\t\n", r.By, r.Cohort.Value, r.Cohort.Users, r.Cohort.Count, num(r.Cohort.Mean), num(r.Cohort.Median))
	fmt.Fprintf(tw, "percent difference\t%s\tpercentile rank\t%s\t\t\n", num(r.PercentDifference), num(r.PercentileRank))
}

func printCohorts(w, tw io.Writer, r *query.CohortsResult) {
	header(w, r.Metric, r.Unit, r.From, r.To, r.Stale, false, "")
	fmt.Fprintf(tw, "%s\tusers\treadings\tmean\tmedian\tp10\tp90\tstddev\t\n", r.By)
	for _, c := range r.Cohorts {
		if c.Suppressed {
			fmt.Fprintf(tw, "%s\t%d\tsuppressed\t\t\t\t\t\t\n", c.Value, c.Users)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n", c.Value, c.Users, c.Count, num(c.Mean), num(c.Median), num(c.P10), num(c.P90), num(c.Stddev))
	}
}

func printTrends(w, tw io.Writer, r *query.TrendsResult) {
	header(w, r.Metric, r.Unit, r.From, r.To, r.Stale, r.Suppressed, r.Reason)
	fmt.Fprintln(tw, "day\treadings\tavg\tmin\tmax\tstddev\t")
	for _, d := range r.Days {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%g\t%g\t%s\t\n", d.Day, d.Count, d.Avg, d.Min, d.Max, num(d.Stddev))
	}
}

func printSummary(w, tw io.Writer, r *query.SummaryResult) {
	fmt.Fprintf(w, "user %s: open alerts critical %d, warning %d, info %d\n", r.User, r.OpenAlerts["critical"], r.OpenAlerts["warning"], r.OpenAlerts["info"])
	fmt.Fprintln(tw, "metric\treadings\tlatest\tunit\tmeasured at\t")
	for i, l := range r.Latest {
		fmt.Fprintf(tw, "%s\t%d\t%g\t%s\t%s\t\n", l.Metric, r.Counts[i].Count, l.Value, l.Unit, l.MeasuredAt.Format(time.RFC3339))
	}
}

func printAlerts(w, tw io.Writer, r *query.AlertSummaryResult) {
	fmt.Fprintf(w, "alerts %s to %s, as of %s\n", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.AsOf.Format(time.RFC3339))
	if r.Suppressed {
		fmt.Fprintln(w, "suppressed:", r.Reason)
		return
	}
	fmt.Fprintln(tw, "day\tcritical\twarning\tinfo\twithdrawn\t")
	for _, d := range append(r.Days, r.Total) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", d.Day, d.Critical, d.Warning, d.Info, d.Withdrawn)
	}
}
