package queryclient

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/vitalshq/vitals/query"
)

func TestPath(t *testing.T) {
	got, err := Path("summary", url.Values{"user": {"u 1"}, "metric": {"heart_rate"}})
	if err != nil || got != "/v1/users/u%201/summary?metric=heart_rate" {
		t.Errorf("summary: %q, %v", got, err)
	}
	if _, err := Path("summary", url.Values{}); err == nil {
		t.Error("summary without a user: no error")
	}
	if got, _ := Path("cohorts", url.Values{"by": {"sex"}}); got != "/v1/cohorts?by=sex" {
		t.Errorf("cohorts: %q", got)
	}
}

func TestPrintPercentiles(t *testing.T) {
	body, err := json.Marshal(query.PercentilesResult{Count: 3, Percentiles: []query.Percentile{{P: 50, Value: 71}, {P: 99, Value: 118}}})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := Print(&out, "percentiles", body); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"p50", "p99", "all", "71", "118"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := Print(&out, "percentiles", []byte("{")); err == nil {
		t.Error("a broken answer printed without an error")
	}
}
