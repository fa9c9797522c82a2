package queryclient

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/query"
)

func fp(v float64) *float64 { return &v }

// printAnswers are an answer of each command, keyed by command, plus a
// suppressed alert summary and a command Print does not know.
func printAnswers() map[string]any {
	t0 := time.Date(2016, 4, 12, 0, 0, 0, 0, time.UTC)
	return map[string]any{
		"percentiles":  query.PercentilesResult{Count: 3, Percentiles: []query.Percentile{{P: 50, Value: 71}}, Days: []query.DayPercentiles{{Day: "2016-04-12", Count: 3, Percentiles: []query.Percentile{{P: 50, Value: 71}}}}},
		"distribution": query.DistributionResult{Count: 4, Min: fp(60), Q1: fp(61), Median: fp(65.5), Q3: fp(70), Max: fp(90), Mean: fp(66), Histogram: []query.Bin{{Lower: 60, Upper: 75, Count: 3}, {Lower: 75, Upper: 90, Count: 1}}},
		"compare":      query.CompareResult{Span: query.Span{Metric: "heart_rate", Unit: "/min", From: t0, To: t0.Add(24 * time.Hour)}, By: "sex", User: query.UserFigures{ID: "u1", Count: 5, Mean: fp(70)}, Cohort: query.CohortFigures{Value: "female", Users: 6, Count: 50, Mean: fp(72), Median: fp(71)}, PercentDifference: fp(-2.7), PercentileRank: fp(40), Stale: true},
		"cohorts":      query.CohortsResult{Span: query.Span{Metric: "heart_rate"}, By: "sex", Cohorts: []query.CohortRow{{Value: "female", Users: 6, Count: 50, Mean: fp(72)}, {Value: "male", Users: 2, Suppressed: true}}},
		"trends":       query.TrendsResult{Days: []query.TrendDay{{Day: "2016-04-12", Count: 4, Avg: 66.25, Min: 60, Max: 90, Stddev: fp(3.5)}}},
		"summary":      query.SummaryResult{User: "u1", Latest: []query.Latest{{Metric: "heart_rate", Value: 70, Unit: "/min", MeasuredAt: t0}}, Counts: []query.MetricCount{{Metric: "heart_rate", Count: 9}}, OpenAlerts: map[string]uint64{"critical": 1}},
		"alerts":       query.AlertSummaryResult{From: t0, To: t0, AsOf: t0, Days: []query.AlertDay{{Day: "2016-04-12", Critical: 1, Withdrawn: 2}}, Total: query.AlertDay{Day: "total", Critical: 1}},
		"alerts-sup":   query.AlertSummaryResult{Suppressed: true, Reason: "few"},
		"unknown":      query.AlertSummaryResult{},
	}
}

// TestPrintEveryCommand prints an answer of every command, a suppressed
// one and an unknown command, and a broken answer for each, and compares
// the text with testdata/print.golden (VITALS_UPDATE_GOLDEN=1 rewrites it).
func TestPrintEveryCommand(t *testing.T) {
	var all strings.Builder
	for _, sub := range []string{"percentiles", "distribution", "compare", "cohorts", "trends", "summary", "alerts", "alerts-sup", "unknown"} {
		body, _ := json.Marshal(printAnswers()[sub])
		name := strings.TrimSuffix(sub, "-sup")
		all.WriteString("== " + sub + "\n")
		if err := Print(&all, name, body); err != nil {
			t.Fatal(err)
		}
		err := Print(&all, name, []byte("{"))
		all.WriteString("broken: ")
		if err != nil {
			all.WriteString(err.Error())
		}
		all.WriteString("\n")
	}
	const golden = "testdata/print.golden"
	if os.Getenv("VITALS_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(golden, []byte(all.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if all.String() != string(want) {
		t.Errorf("printed:\n%s\nwant (%s):\n%s", all.String(), golden, want)
	}
}
