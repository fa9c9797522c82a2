package query

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/rs/zerolog"
)

func TestParsePercentiles(t *testing.T) {
	tests := []struct {
		in      string
		want    []float64
		wantErr bool
	}{
		{"", []float64{50, 90, 99}, false},
		{"50", []float64{50}, false},
		{"0, 99.9,100", []float64{0, 99.9, 100}, false},
		{"101", nil, true},
		{"-1", nil, true},
		{"NaN", nil, true},
		{"p50", nil, true},
		{"1,2,3,4", nil, true}, // more than the limit of 3 used here
		{"50,", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePercentiles(tc.in, 3)
			if (err != nil) != tc.wantErr || (!tc.wantErr && !reflect.DeepEqual(got, tc.want)) {
				t.Fatalf("ParsePercentiles(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

// Invalid requests are answered 400 naming the parameter, before any SQL
// is built (the service here has no ClickHouse connection at all).
func TestPercentilesRejectsBadParameters(t *testing.T) {
	s := &Service{cfg: DefaultConfig(), log: zerolog.Nop()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/users/{user}/percentiles", s.userPercentiles)
	const ok = "metric=heart_rate&from=2016-05-02T00:00:00Z&to=2016-05-03T00:00:00Z"
	tests := []struct {
		name, path, param string
	}{
		{"bad user", "/v1/users/a%20b/percentiles?" + ok, "user"},
		{"sql in user", "/v1/users/x';DROP%20TABLE/percentiles?" + ok, "user"},
		{"unknown metric", "/v1/users/u/percentiles?metric=mood&from=2016-05-02T00:00:00Z&to=2016-05-03T00:00:00Z", "metric"},
		{"missing from", "/v1/users/u/percentiles?metric=heart_rate&to=2016-05-03T00:00:00Z", "from"},
		{"bad to", "/v1/users/u/percentiles?metric=heart_rate&from=2016-05-02T00:00:00Z&to=tomorrow", "to"},
		{"empty range", "/v1/users/u/percentiles?metric=heart_rate&from=2016-05-03T00:00:00Z&to=2016-05-03T00:00:00Z", "to"},
		{"bad p", "/v1/users/u/percentiles?" + ok + "&p=50,150", "p"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			var e APIError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("status %d body %q", rec.Code, rec.Body)
			}
			if rec.Code != http.StatusBadRequest || e.Code != "invalid_parameter" || e.Parameter != tc.param || e.Message == "" {
				t.Fatalf("got %d %+v; want 400 naming %s", rec.Code, e, tc.param)
			}
		})
	}
}
