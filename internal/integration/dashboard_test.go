package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/sample/sampletest"
	"github.com/vitalshq/vitals/query/dashboard/dashboardtest"
)

// TestDashboardInBrowser runs the whole pipeline on part of the Fitbit
// sample, opens the query service's dashboard in headless Chromium with an
// analyst token, chooses a user and a range, then a cohort, and checks that
// every chart drew the data the JSON API returns for the same parameters
// (uPlot holds one point per returned day or bin and painted the series)
// and that every number in the tables equals the API's.
func TestDashboardInBrowser(t *testing.T) {
	s := newStack(t)
	browserPath, err := dashboardtest.ChromiumPath()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	started := time.Now()

	ingestURL := s.startPipeline(ctx)
	queryURL := s.startQuery(ctx)
	token := s.queryToken // an analyst token of the test's tenant

	// User A's first 6,000 readings as three days (the sample has one day
	// per user): chunk k moved k days later, so the days come in event-time
	// order. The other seven users' first 1,000 readings as they are.
	all := sampletest.HeartRates(t)
	var userA string
	var rowsA, others []sample.HeartRate
	perUser := map[string]int{}
	for _, r := range all {
		if userA == "" {
			userA = r.UserID()
		}
		n := perUser[r.UserID()]
		switch {
		case r.UserID() == userA && n < 6000:
			r.Time = r.Time.AddDate(0, 0, n/2000)
			rowsA = append(rowsA, r)
		case r.UserID() != userA && n < 1000:
			others = append(others, r)
		default:
			continue
		}
		perUser[r.UserID()] = n + 1
	}
	firsts := map[string]sample.HeartRate{}
	for _, r := range append(append([]sample.HeartRate{}, rowsA...), others...) {
		if _, ok := firsts[r.UserID()]; !ok {
			firsts[r.UserID()] = r
		}
	}
	var pairs []sample.HeartRate
	var profiles []any
	for u, r := range firsts {
		pairs = append(pairs, r)
		profiles = append(profiles, map[string]any{"event_id": u + "-registered", "user_id": u, "kind": "registered",
			"birth_year": 1985, "sex": "female", "region": "US-CA", "occurred_at": "2016-01-01T00:00:00Z"})
	}
	var resp ingest.BatchResponse
	if code := s.postJSON(ingestURL+"/v1/profile-events", map[string]any{"gateway_id": "gw-profiles", "events": profiles}, &resp); code != http.StatusOK || resp.Accepted != len(profiles) {
		t.Fatalf("profiles: status %d, %d of %d accepted", code, resp.Accepted, len(profiles))
	}
	s.pairDevices(ingestURL, pairs...)
	s.postReadings(ingestURL, "gw-dashboard", rowsA, 1000)
	s.postReadings(ingestURL, "gw-dashboard", others, 1000)

	dayA := rowsA[0].Time.UTC().Truncate(24 * time.Hour)
	userForm := dashboardtest.Form{Scope: "user", User: userA, Metric: "heart_rate", From: dayA.Format(time.DateOnly),
		To: dayA.AddDate(0, 0, 3).Format(time.DateOnly), P: "10,50,90", Bins: "auto", By: "sex"}
	// Over the whole sample the user's cohort (sex: every user is female)
	// has eight users with readings: large enough to be shown.
	userWideForm := userForm
	userWideForm.From, userWideForm.To = "2016-04-01", "2016-06-01"
	cohortForm := dashboardtest.Form{Scope: "cohort", Sex: "female", Metric: "heart_rate", From: "2016-04-01", To: "2016-06-01", P: "10,50,90", Bins: "20"}

	// Wait until the API counts every reading: of user A, and of the cohort.
	eventually(t, 90*time.Second, "every reading to be queryable", func() (bool, string) {
		a, errA := dashboardtest.Fetch(ctx, queryURL, token, userForm)
		c, errC := dashboardtest.Fetch(ctx, queryURL, token, cohortForm)
		if errA != nil || errC != nil {
			return false, fmt.Sprintf("user: %v; cohort: %v", errA, errC)
		}
		na, nc := count(a.Percentiles.Count), count(c.Percentiles.Count)
		if na > len(rowsA) || nc > len(rowsA)+len(others) {
			t.Fatalf("counted twice: user %d of %d, cohort %d of %d", na, len(rowsA), nc, len(rowsA)+len(others))
		}
		return na == len(rowsA) && nc == len(rowsA)+len(others), fmt.Sprintf("user %d of %d, cohort %d of %d", na, len(rowsA), nc, len(rowsA)+len(others))
	})
	t.Logf("pipeline ready after %s", time.Since(started).Round(time.Millisecond))

	b, err := dashboardtest.Start(ctx, browserPath)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Open(ctx, queryURL+"/dashboard/", token); err != nil {
		t.Fatal(err)
	}
	// Opened alone, the page shows the newest 30 days of data of the user
	// whose data is newest (ties: the first id), as GET /v1/overview tells it.
	newest, first, last := "", time.Time{}, time.Time{}
	lastOf := map[string]time.Time{}
	for _, r := range append(append([]sample.HeartRate{}, rowsA...), others...) {
		d := r.Time.UTC().Truncate(24 * time.Hour)
		if d.After(lastOf[r.UserID()]) {
			lastOf[r.UserID()] = d
		}
		if first.IsZero() || d.Before(first) {
			first = d
		}
		if d.After(last) {
			last = d
		}
	}
	for u, d := range lastOf {
		if d.Equal(last) && (newest == "" || u < newest) {
			newest = u
		}
	}
	from := last.AddDate(0, 0, -29)
	if from.Before(first) {
		from = first
	}
	openForm := dashboardtest.Form{Scope: "user", User: newest, Metric: "heart_rate", From: from.Format(time.DateOnly),
		To: last.AddDate(0, 0, 1).Format(time.DateOnly), P: "10,50,90", Bins: "auto", By: "age_band"}
	opened, err := b.Opened(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"scope": openForm.Scope, "user": openForm.User, "from": openForm.From, "to": openForm.To} {
		if opened.Form[k] != want {
			t.Errorf("opened the page: form %s = %q, want %q", k, opened.Form[k], want)
		}
	}
	if want, err := dashboardtest.Fetch(ctx, queryURL, token, openForm); err != nil {
		t.Error(err)
	} else {
		for _, e := range dashboardtest.Check(opened, want) {
			t.Errorf("opened the page: %s", e)
		}
	}
	for i, f := range []dashboardtest.Form{userForm, userWideForm, cohortForm} {
		snap, want := showStable(t, ctx, b, queryURL, token, f)
		if f.Scope == "user" {
			// The range holds user A's three days: every daily chart has three points.
			if n := len(want.Trends.Days); n != 3 {
				t.Errorf("trends of %s: %d days, want 3", f.User, n)
			}
		}
		if i == 1 && (want.Compare == nil || want.Compare.Suppressed) {
			t.Errorf("the API suppressed the comparison over the whole sample; the test expects eight users in the cohort")
		}
		for _, e := range dashboardtest.Check(snap, want) {
			t.Errorf("%s: %s", f.Scope, e)
		}
		t.Logf("view %d (%s %s to %s):\n%s", i, f.Scope, f.From, f.To, snap.Describe())
		if t.Failed() || os.Getenv("VITALS_DASHBOARD_SCREENSHOTS") != "" {
			if png, err := b.Screenshot(ctx); err == nil {
				name := fmt.Sprintf("%s/dashboard-integration-%d-%s.png", os.TempDir(), i, f.Scope)
				if os.WriteFile(name, png, 0o644) == nil {
					t.Logf("screenshot: %s", name)
				}
			}
		}
	}
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("browser console errors: %q", errs)
	}
	t.Logf("dashboard test took %s", time.Since(started).Round(time.Millisecond))
}

// showStable shows f on the page and fetches the API's answers before and
// after; it retries (twice) if the answers changed meanwhile, so the page
// and the answers it is compared with describe the same data.
func showStable(t *testing.T, ctx context.Context, b *dashboardtest.Browser, queryURL, token string, f dashboardtest.Form) (*dashboardtest.Snapshot, *dashboardtest.Answers) {
	t.Helper()
	for try := 0; ; try++ {
		before, err := dashboardtest.Fetch(ctx, queryURL, token, f)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := b.Show(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		after, err := dashboardtest.Fetch(ctx, queryURL, token, f)
		if err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(before, after) || try == 2 {
			return snap, after
		}
		t.Logf("%s: the API's answers changed while the page loaded; again", f.Scope)
	}
}

func count(v *float64) int {
	if v == nil {
		return 0
	}
	return int(*v)
}
