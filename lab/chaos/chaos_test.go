package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/lab/procs"
)

func TestSchedule(t *testing.T) {
	roles := Roles{
		Ingest:          procs.New("ingest", "true", nil, nil, nil, zerolog.Nop()),
		Processor:       procs.New("processor", "true", nil, nil, nil, zerolog.Nop()),
		Projector:       procs.New("projector", "true", nil, nil, nil, zerolog.Nop()),
		SecondProcessor: procs.New("processor-2", "true", nil, nil, nil, zerolog.Nop()),
		Leader:          func(context.Context) (string, error) { return "kafka-1", nil },
	}
	noStack := func(context.Context, string, string) error { return nil }
	tests := []struct {
		name      string
		plan      Plan
		kills     map[string]int
		outages   []string
		lastStart time.Duration
	}{
		{"full", Full(), map[string]int{"processor": 4, "projector": 4, "ingest": 4},
			[]string{"second processor joins", "kafka restarted", "clickhouse stopped 1m0s", "postgres stopped 30s"}, 6 * time.Minute * 9 / 10},
		{"short", Short(), map[string]int{"processor": 2, "projector": 2, "ingest": 2},
			[]string{"second processor joins", "clickhouse stopped 6s", "postgres stopped 4s"}, 35 * time.Second * 9 / 10},
		{"cluster", ClusterShort(), map[string]int{"processor": 2, "projector": 2, "ingest": 2},
			[]string{"partition leader killed 12s", "clickhouse-s2r1 stopped 20s"}, 60 * time.Second * 9 / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := tt.plan.schedule(roles, noStack, zerolog.Nop())
			kills := map[string]int{}
			var names []string
			for i, s := range steps {
				if i > 0 && s.at < steps[i-1].at {
					t.Errorf("steps out of order: %s at %s after %s", s.name, s.at, steps[i-1].at)
				}
				if s.at > tt.lastStart {
					t.Errorf("%s at %s: later than %s", s.name, s.at, tt.lastStart)
				}
				if role, ok := strings.CutPrefix(s.name, "kill -9 "); ok {
					kills[role]++
					continue
				}
				names = append(names, s.name)
			}
			for role, n := range tt.kills {
				if kills[role] != n {
					t.Errorf("%d kills of %s, want %d", kills[role], role, n)
				}
			}
			for _, want := range tt.outages {
				found := false
				for _, n := range names {
					found = found || strings.HasPrefix(n, want)
				}
				if !found {
					t.Errorf("no %q among %q", want, names)
				}
			}
		})
	}
}
