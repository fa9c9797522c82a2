package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitalshq/vitals/query/dashboard"
	"github.com/vitalshq/vitals/query/dashboard/dashboardtest"
)

func TestHandlerServesEmbeddedFiles(t *testing.T) {
	srv := httptest.NewServer(dashboard.Handler())
	defer srv.Close()
	for _, c := range []struct {
		path, status, contentType string
	}{
		{"/dashboard/", "200", "text/html"},
		{"/dashboard/app.js", "200", "text/javascript"},
		{"/dashboard/app.css", "200", "text/css"},
		{"/dashboard/vendor/uPlot.iife.min.js", "200", "text/javascript"},
		{"/dashboard/vendor/uPlot.min.css", "200", "text/css"},
		{"/dashboard/vendor/", "404", ""}, // no directory listing
		{"/dashboard/missing.js", "404", ""},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := strconv.Itoa(resp.StatusCode); got != c.status {
			t.Errorf("%s: status %s, want %s", c.path, got, c.status)
			continue
		}
		if c.status != "200" {
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.contentType) {
			t.Errorf("%s: Content-Type %q, want %s", c.path, ct, c.contentType)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", c.path, csp)
		}
		if len(body) == 0 {
			t.Errorf("%s: empty body", c.path)
		}
	}
}

// TestNoExternalResources checks that the page loads nothing from another
// origin: every src and href of the HTML is relative (or a data: URL), and the scripts name
// no absolute URL.
func TestNoExternalResources(t *testing.T) {
	files := dashboard.Files()
	html, err := fs.ReadFile(files, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(html), -1) {
		if u, err := url.Parse(m[1]); err != nil || (u.IsAbs() && u.Scheme != "data") || u.Host != "" || strings.HasPrefix(m[1], "/") {
			t.Errorf("index.html loads %q: only relative paths and data: URLs are allowed", m[1])
		}
	}
	for _, name := range []string{"app.js", "app.css"} {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`https?://`).Find(b); m != nil {
			t.Errorf("%s names an absolute URL", name)
		}
	}
	for _, name := range []string{"vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "vendor/uPlot.LICENSE"} {
		if _, err := fs.Stat(files, name); err != nil {
			t.Errorf("vendored file: %v", err)
		}
	}
}

// fakeAPI answers the four endpoints the page uses with numbers derived from
// the request, so the test can ask it the same question again, and records
// each request's query.
type fakeAPI struct {
	token string
	mu    sync.Mutex
	seen  map[string]url.Values // path -> last query
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"code":"unauthorized","message":"a valid analyst token is required"}`)
		return
	}
	q := r.URL.Query()
	f.mu.Lock()
	f.seen[r.URL.Path] = q
	f.mu.Unlock()
	if r.URL.Path == "/v1/overview" {
		// Data from 2016-04-10 to 2016-04-15 (the page's default range,
		// the 30 days before today, holds none of it); u-1's is the newest.
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"metric":"heart_rate","unit":"/min","first_day":"2016-04-10","last_day":"2016-04-15","readings":9000,
			"users":[{"id":"lonely","readings":50,"last_day":"2016-04-12"},{"id":"u-1","readings":8950,"last_day":"2016-04-15"}],"users_truncated":false,
			"cohorts":{"age_band":[{"value":"30-39","users":12}],"sex":[{"value":"female","users":7},{"value":"male","users":5}],"region":[{"value":"DE","users":12}],"device_model":[{"value":"unknown","users":12}]}}`)
		return
	}
	from, err := time.Parse("2006-01-02", q.Get("from"))
	if err != nil || q.Get("metric") == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"code":"invalid_parameter","parameter":"from","message":"from must be a date"}`)
		return
	}
	// A cohort with sex=none has no readings; one with region=tiny is too
	// small to show.
	empty := q.Get("sex") == "none"
	if q.Get("region") == "tiny" && r.URL.Path != "/v1/compare" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"metric":"heart_rate","unit":"/min","count":null,"days":[],"histogram":[],"percentiles":[],"suppressed":true,"reason":"cohort region=tiny has 2 users, fewer than 5"}`)
		return
	}
	// Up to four days of data, within [from, to): the spo2 case asks for
	// one day, whose chart must still fit it.
	ndays := 4
	if to, err := time.Parse("2006-01-02", q.Get("to")); err == nil {
		ndays = min(ndays, int(to.Sub(from).Hours()/24))
	}
	if empty {
		ndays = 0
	}
	day := func(i int) string { return from.AddDate(0, 0, i).Format("2006-01-02") }
	var out any
	switch r.URL.Path {
	case "/v1/trends":
		days := []map[string]any{}
		for i := 0; i < ndays; i++ {
			d := map[string]any{"day": day(i), "count": 100 + i, "avg": 70.123456 + float64(i), "min": 50 + i, "max": 120.5 + float64(i), "stddev": 9.87654}
			if i == 2 {
				d["count"], d["avg"], d["min"], d["max"], d["stddev"] = 1, 66.0, 66, 66, nil // one reading: no stddev
			}
			days = append(days, d)
		}
		out = map[string]any{"metric": q.Get("metric"), "unit": "/min", "days": days, "stale": false}
	case "/v1/distribution":
		bins := []map[string]any{}
		count := 0
		if !empty {
			for i := 0; i < 6; i++ {
				bins = append(bins, map[string]any{"lower": 40 + 10*i, "upper": 50 + 10*i, "count": (i + 1) * (7 - i)})
				count += (i + 1) * (7 - i)
			}
			out = map[string]any{"metric": q.Get("metric"), "unit": "/min", "count": count, "min": 41, "q1": 61.5, "median": 72,
				"q3": 80.25, "max": 99, "mean": 71.333333, "stddev": 12.0456, "histogram": bins}
		} else {
			out = map[string]any{"metric": q.Get("metric"), "unit": "/min", "count": 0, "min": nil, "q1": nil, "median": nil,
				"q3": nil, "max": nil, "mean": nil, "stddev": nil, "histogram": bins}
		}
	case "/v1/percentiles":
		var ps []float64
		for _, s := range strings.Split(q.Get("p"), ",") {
			p, _ := strconv.ParseFloat(s, 64)
			ps = append(ps, p)
		}
		values := func(shift float64) []map[string]any {
			out := []map[string]any{}
			for _, p := range ps {
				out = append(out, map[string]any{"p": p, "value": 50 + p/2 + shift})
			}
			return out
		}
		days := []map[string]any{}
		for i := 0; i < ndays; i++ {
			days = append(days, map[string]any{"day": day(i), "count": 100 + i, "percentiles": values(float64(i) + 0.25)})
		}
		total, overall := 406, values(1.5)
		if empty {
			total, overall = 0, []map[string]any{}
		}
		out = map[string]any{"metric": q.Get("metric"), "unit": "/min", "count": total, "percentiles": overall, "days": days, "stale": false}
	case "/v1/compare":
		user := q.Get("user")
		if user == "lonely" {
			out = map[string]any{"metric": q.Get("metric"), "unit": "/min", "by": q.Get("by"),
				"user":               map[string]any{"id": user, "count": 50, "mean": 70.5, "median": 70},
				"cohort":             map[string]any{"value": "F", "users": nil, "count": nil, "mean": nil, "median": nil},
				"percent_difference": nil, "percentile_rank": nil, "suppressed": true, "reason": "cohort sex=F has fewer than 5 users"}
		} else {
			out = map[string]any{"metric": q.Get("metric"), "unit": "/min", "by": q.Get("by"),
				"user":               map[string]any{"id": user, "count": 406, "mean": 75.25, "median": 74},
				"cohort":             map[string]any{"value": "30-39", "users": 12, "count": 9000, "mean": 71.1, "median": 70},
				"percent_difference": 5.836849, "percentile_rank": 64.2, "suppressed": false, "reason": ""}
		}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// TestDashboardInBrowser drives the page in headless Chromium against the
// fake API: a user (all four charts), a user whose cohort is suppressed, a
// cohort without readings, everyone (no comparison) and a wrong token.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: needs Chromium (deploy/install-chromium.sh)")
	}
	path, err := dashboardtest.ChromiumPath()
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{token: "good-token", seen: map[string]url.Values{}}
	mux := http.NewServeMux()
	mux.Handle("GET "+dashboard.Prefix, dashboard.Handler())
	mux.Handle("GET /v1/", api)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	b, err := dashboardtest.Start(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Logf("browser started in %s", time.Since(start).Round(time.Millisecond))
	if err := b.Open(ctx, srv.URL+"/dashboard/", api.token); err != nil {
		t.Fatal(err)
	}

	t.Run("opens on the newest data", func(t *testing.T) {
		s, err := b.Opened(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f := dashboardtest.Form{Scope: "user", User: "u-1", Metric: "heart_rate", From: "2016-04-10", To: "2016-04-16", P: "10,50,90", Bins: "auto", By: "age_band"}
		for k, want := range map[string]string{"scope": f.Scope, "user": f.User, "from": f.From, "to": f.To} {
			if s.Form[k] != want {
				t.Errorf("form %s = %q, want %q (the newest user, the data's days)", k, s.Form[k], want)
			}
		}
		want, err := dashboardtest.Fetch(ctx, srv.URL, api.token, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range dashboardtest.Check(s, want) {
			t.Error(e)
		}
		// Check itself sees a difference: the same page against answers
		// whose first day counts one reading more, and whose user
		// comparison is missing.
		if len(want.Trends.Days) == 0 {
			t.Fatal("the newest user's trends have no days")
		}
		wrong := *want
		wrong.Trends.Days = slices.Clone(want.Trends.Days)
		n := *wrong.Trends.Days[0].Count + 1
		wrong.Trends.Days[0].Count, wrong.Compare = &n, nil
		if errs := dashboardtest.Check(s, &wrong); len(errs) < 2 {
			t.Errorf("Check of a page against altered answers found %d differences, want at least 2 (a count, the comparison): %q", len(errs), errs)
		}
		if t.Failed() {
			t.Log(s.Describe())
		}
	})

	for _, f := range []dashboardtest.Form{
		{Scope: "user", User: "u-1", Metric: "heart_rate", From: "2016-04-12", To: "2016-04-16", P: "10,50,90", By: "age_band"},
		{Scope: "user", User: "lonely", Metric: "heart_rate", From: "2016-04-12", To: "2016-04-16", P: "5,50,95,99.9", Bins: "6", By: "sex"},
		{Scope: "cohort", Sex: "none", Metric: "heart_rate", From: "2016-04-12", To: "2016-04-16", P: "50"},
		{Scope: "cohort", Region: "tiny", Metric: "heart_rate", From: "2016-04-12", To: "2016-04-16", P: "50,90"},
		{Scope: "tenant", Metric: "spo2", From: "2016-04-12", To: "2016-04-13", P: "10,90"},
	} {
		t.Run(f.Scope+"-"+f.User+f.Sex+f.Region, func(t *testing.T) {
			s, err := b.Show(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			want, err := dashboardtest.Fetch(ctx, srv.URL, api.token, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range dashboardtest.Check(s, want) {
				t.Error(e)
			}
			// The page asked the same questions as Fetch.
			common, dist, pct, cmp := f.Params()
			api.mu.Lock()
			for p, q := range map[string]url.Values{"/v1/trends": common, "/v1/distribution": dist, "/v1/percentiles": pct, "/v1/compare": cmp} {
				if q != nil && api.seen[p].Encode() != q.Encode() {
					t.Errorf("%s: the page asked %q, Fetch asks %q", p, api.seen[p].Encode(), q.Encode())
				}
			}
			api.mu.Unlock()
			if t.Failed() {
				t.Log(s.Describe())
			}
			if t.Failed() || os.Getenv("VITALS_DASHBOARD_SCREENSHOTS") != "" {
				saveScreenshot(t, ctx, b)
			}
		})
	}
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("console errors: %q", errs)
	}

	t.Run("wrong token", func(t *testing.T) {
		if err := b.Open(ctx, srv.URL+"/dashboard/", "wrong"); err != nil {
			t.Fatal(err)
		}
		s, err := b.Show(ctx, dashboardtest.Form{Scope: "user", User: "u-1", Metric: "heart_rate", From: "2016-04-12", To: "2016-04-16", P: "50"})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range dashboardtest.Charts {
			c := s.Charts[name]
			if c.Status != "error" || !strings.Contains(c.Message, "401") || c.Plotted || len(c.Tables[name+"-table"].Rows) != 0 {
				t.Errorf("%s: status %q message %q plotted %v: want an error naming 401 and nothing drawn", name, c.Status, c.Message, c.Plotted)
			}
		}
	})
	t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond))
}

func saveScreenshot(t *testing.T, ctx context.Context, b *dashboardtest.Browser) {
	png, err := b.Screenshot(ctx)
	if err != nil {
		t.Log(err)
		return
	}
	name := fmt.Sprintf("%s/dashboard-%s.png", os.TempDir(), strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.WriteFile(name, png, 0o644); err == nil {
		t.Logf("screenshot: %s", name)
	}
}
