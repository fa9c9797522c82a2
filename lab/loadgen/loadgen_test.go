package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/sample/sampletest"
	"github.com/vitalshq/vitals/schemas"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestPercentileNearestRank(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, ms(i))
	}
	ten := hundred[:10]
	for _, c := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{hundred, 50, ms(50)},
		{hundred, 90, ms(90)},
		{hundred, 99, ms(99)},
		{hundred, 99.9, ms(100)},
		{hundred, 100, ms(100)},
		{hundred, 0, ms(1)},
		{hundred, 1, ms(1)},
		{hundred, 1.5, ms(2)},
		{ten, 50, ms(5)},
		{ten, 51, ms(6)},
		{ten, 90, ms(9)},
		{ten, 99, ms(10)},
		{ten, -5, ms(1)},
		{ten, 150, ms(10)},
		{hundred[:1], 50, ms(1)},
		{hundred[:1], 99, ms(1)},
		{nil, 50, 0},
	} {
		if got := Percentile(c.sorted, c.p); got != c.want {
			t.Errorf("n=%d p=%g: got %v, want %v", len(c.sorted), c.p, got, c.want)
		}
	}
}

func TestRecorderSummaryAndCap(t *testing.T) {
	r := NewRecorder(1000)
	// 1000..1 ms, unsorted on purpose, then 5 past the cap.
	for i := 1000; i >= 1; i-- {
		r.Add(ms(i))
	}
	for range 5 {
		r.Add(time.Hour)
	}
	if r.Len() != 1000 || r.Dropped() != 5 {
		t.Fatalf("len %d dropped %d", r.Len(), r.Dropped())
	}
	other := NewRecorder(10)
	other.Add(ms(1))
	r.Merge(other) // full: dropped
	s := r.Summary()
	if s.Count != 1000 || s.Min != ms(1) || s.Max != ms(1000) || s.P50 != ms(500) || s.P90 != ms(900) || s.P99 != ms(990) {
		t.Fatalf("summary %+v", s)
	}
	if s.Mean != 500500*time.Microsecond || s.P99Ms != 990 || s.MeanMs != 500.5 {
		t.Fatalf("mean %v / %g ms, p99 %g ms", s.Mean, s.MeanMs, s.P99Ms)
	}
	if r.Dropped() != 6 {
		t.Fatalf("dropped %d after merge", r.Dropped())
	}
}

func TestParseAccepted(t *testing.T) {
	for body, want := range map[string]int{
		`{"accepted":500,"rejected":0,"items":[]}`:       500,
		`{"accepted": 7 ,"rejected":1}`:                  7,
		"{\"accepted\":\n0}":                             0,
		`{"code":"overloaded","message":"x"}`:            -1,
		`{"accepted":"5"}`:                               -1,
		`{"accepted":12,"items":[{"accepted":99}]}` + "": 12,
	} {
		n, ok := ParseAccepted([]byte(body))
		if (want < 0 && ok) || (want >= 0 && (!ok || n != want)) {
			t.Errorf("%s: got %d %v, want %d", body, n, ok, want)
		}
	}
}

// TestReadingBodies checks that bodies decode, carry distinct event ids in
// the past, and stay valid and distinct after the round is patched.
func TestReadingBodies(t *testing.T) {
	rows := sampletest.HeartRates(t)
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, format := range []string{FormatJSON, FormatAvro} {
		bodies, err := ReadingBodies(rows, ReadingsOptions{Bodies: 3, Batch: 50, Users: 7, Format: format, RunID: "abcd1234", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		users := map[string]bool{}
		check := func(round uint64) {
			for bi := range bodies {
				b := &bodies[bi]
				if round > 0 {
					b.setRound(round)
				}
				ids, us, times := decodeBody(t, format, b.Data)
				if len(ids) != 50 || b.Items != 50 || len(b.Patch) != 50 {
					t.Fatalf("%s: %d ids, %d items, %d patches", format, len(ids), b.Items, len(b.Patch))
				}
				for i, id := range ids {
					if seen[id] {
						t.Fatalf("%s round %d: duplicate event id %s", format, round, id)
					}
					seen[id] = true
					users[us[i]] = true
					if want := fmt.Sprintf("bench-abcd1234-%08x-", round); !strings.HasPrefix(id, want) {
						t.Fatalf("%s: id %s, want prefix %s", format, id, want)
					}
					if !times[i].Before(now) || now.Sub(times[i]) > 48*time.Hour {
						t.Fatalf("%s: measured_at %v not within two days before %v", format, times[i], now)
					}
				}
			}
		}
		check(0)
		check(1)
		check(0x1234abcd)
		if len(seen) != 3*3*50 || len(users) != 7 {
			t.Fatalf("%s: %d distinct ids, %d users", format, len(seen), len(users))
		}
	}
}

func decodeBody(t *testing.T, format string, data []byte) (ids, users []string, times []time.Time) {
	t.Helper()
	if format == FormatAvro {
		var b schemas.ReadingBatch
		if err := schemas.MustCodec(schemas.NameReadingBatch).Decode(data, &b); err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Readings {
			ids, users, times = append(ids, r.EventID), append(users, r.UserID), append(times, time.UnixMilli(r.MeasuredAt))
		}
		return
	}
	var b struct {
		Readings []struct {
			EventID    string    `json:"event_id"`
			UserID     string    `json:"user_id"`
			MeasuredAt time.Time `json:"measured_at"`
		} `json:"readings"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.Readings {
		ids, users, times = append(ids, r.EventID), append(users, r.UserID), append(times, r.MeasuredAt)
	}
	return
}

// fakeIngest answers like ingest: it reads the body, counts the readings
// and answers {"accepted": n, ...}, remembering every event id it saw.
type fakeIngest struct {
	mu   sync.Mutex
	ids  map[string]int
	fail bool // answer 503 instead
}

func (f *fakeIngest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Readings []struct {
			EventID string `json:"event_id"`
		} `json:"readings"`
	}
	if r.Header.Get("Authorization") != "Bearer k" {
		http.Error(w, "no key", http.StatusUnauthorized)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if f.fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"code":"overloaded"}`)
		return
	}
	f.mu.Lock()
	for _, it := range b.Readings {
		f.ids[it.EventID]++
	}
	f.mu.Unlock()
	fmt.Fprintf(w, `{"accepted":%d,"rejected":0,"items":[]}`, len(b.Readings))
}

func testConfig(t *testing.T, url string, clients int, warmup, window time.Duration) Config {
	rows := sampletest.HeartRates(t)
	bodies, err := ReadingBodies(rows, ReadingsOptions{Bodies: 2 * clients, Batch: 20, Users: 100, Format: FormatJSON, RunID: "t", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		URL:    url,
		Header: http.Header{"Authorization": {"Bearer k"}, "Content-Type": {"application/json"}},
		Bodies: bodies, Clients: clients, Warmup: warmup, Duration: window, Timeout: 5 * time.Second, Grace: 200 * time.Millisecond,
		Progress: 300 * time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t)),
	}
}

// TestRunIsBounded runs the generator for 1 s against a fast fake and
// checks that it stops by itself on time, counts consistently, and never
// sent the same event id twice.
func TestRunIsBounded(t *testing.T) {
	f := &fakeIngest{ids: map[string]int{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := testConfig(t, srv.URL, 4, 200*time.Millisecond, time.Second)
	var opened, closed time.Time
	cfg.OnWindow = func(open bool) {
		if open {
			opened = time.Now()
		} else {
			closed = time.Now()
		}
	}
	start := time.Now()
	res, err := Run(t.Context(), cfg)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// Generous upper bounds: the machine may be busy with other builds.
	if took < 1200*time.Millisecond || took > 3*time.Second {
		t.Fatalf("run took %v; want about 1.2s", took)
	}
	if opened.IsZero() || !closed.After(opened) || closed.Sub(opened) > 2*time.Second {
		t.Fatalf("window opened %v, closed %v", opened, closed)
	}
	if res.Errors != 0 || res.WarmupErrors != 0 {
		t.Fatalf("errors: %+v", res)
	}
	if res.Requests < 10 || res.WarmupRequests < 1 {
		t.Fatalf("too few requests: %d in the window, %d in warm-up", res.Requests, res.WarmupRequests)
	}
	if res.AcceptedReadings != 20*res.Requests || int64(res.Latency.Count) != res.Requests {
		t.Fatalf("accepted %d for %d requests, %d latency samples", res.AcceptedReadings, res.Requests, res.Latency.Count)
	}
	if d := closed.Sub(opened); res.Window < d-50*time.Millisecond || res.Window > d+50*time.Millisecond ||
		res.ReadingsPerSec != float64(res.AcceptedReadings)/res.WindowSeconds {
		t.Fatalf("window %gs, rate %g for %d readings", res.WindowSeconds, res.ReadingsPerSec, res.AcceptedReadings)
	}
	if res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
		t.Fatalf("latency %+v", res.Latency)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, n := range f.ids {
		if n > 1 {
			t.Fatalf("event id %s sent %d times", id, n)
		}
	}
	if int64(len(f.ids)) < res.AcceptedReadings+res.WarmupReadings {
		t.Fatalf("server saw %d ids, generator counted %d", len(f.ids), res.AcceptedReadings+res.WarmupReadings)
	}
}

// TestRunStopsOnHangingServer: a server that never answers cannot hold the
// run past its window and grace; the cut-off requests are counted, not as
// errors.
func TestRunStopsOnHangingServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := testConfig(t, srv.URL, 3, 100*time.Millisecond, 500*time.Millisecond)
	start := time.Now()
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 800*time.Millisecond || took > 3*time.Second {
		t.Fatalf("run took %v against a hanging server", took)
	}
	if res.Requests != 0 || res.Errors != 0 || res.Drained != 0 || res.CutOff != 3 {
		t.Fatalf("requests %d errors %d drained %d cut off %d", res.Requests, res.Errors, res.Drained, res.CutOff)
	}
}

// TestRunCountsErrors: non-200 answers are errors, with their kind.
func TestRunCountsErrors(t *testing.T) {
	f := &fakeIngest{ids: map[string]int{}, fail: true}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg := testConfig(t, srv.URL, 2, 0, 300*time.Millisecond)
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Errors == 0 || res.ErrorKinds["status_503"] != int(res.Errors) || len(res.ErrorExamples) == 0 {
		t.Fatalf("%+v", res)
	}
	// Errors back off, so a failing server is not hammered.
	if res.Errors > 2*int64(300*time.Millisecond/errorSleep)+2 {
		t.Fatalf("%d errors in 300ms from 2 clients: no back-off", res.Errors)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	if _, err := Run(t.Context(), Config{Clients: 2, Bodies: make([]Body, 1), Duration: time.Second}); err == nil {
		t.Fatal("fewer bodies than clients accepted")
	}
}
