package projector

import (
	"slices"
	"testing"

	"github.com/vitalshq/vitals/internal/eventlog"
)

func TestChooseSinks(t *testing.T) {
	all := sinks(eventlog.TopicsWithPrefix("t"))
	for _, tc := range []struct {
		name    string
		tables  []string
		want    []string // tables of the chosen sinks
		wantErr bool
	}{
		{"none means all", nil, []string{"readings", "rejected_readings", "alerts", "profile_events", "device_events", "erased_users"}, false},
		{"readings, its rollup (no topic) and erasures", []string{"readings", "readings_daily", "erased_users"}, []string{"readings", "erased_users"}, false},
		{"without the erasures", []string{"readings"}, nil, true},
		{"unknown table", []string{"erased_users", "nope"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseSinks(all, tc.tables)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			var names []string
			for _, s := range got {
				names = append(names, s.table)
			}
			if !tc.wantErr && !slices.Equal(names, tc.want) {
				t.Errorf("got %v, want %v", names, tc.want)
			}
		})
	}
}
