package replay

import (
	"slices"
	"strconv"
	"testing"
)

// TestResolveTables checks which tables a selection rebuilds.
func TestResolveTables(t *testing.T) {
	all := Rebuildable
	for _, tc := range []struct {
		name    string
		in      []string
		want    []string
		wantErr bool
	}{
		{"empty means all", nil, all, false},
		{"all", []string{"all"}, all, false},
		{"readings brings its rollups and the erasures", []string{"readings"}, []string{"readings", "reading_revisions", "readings_daily", "readings_daily_revisions", "readings_daily_values", "erased_users"}, false},
		{"the rollup brings readings", []string{"readings_daily"}, []string{"readings", "reading_revisions", "readings_daily", "readings_daily_revisions", "readings_daily_values", "erased_users"}, false},
		{"the value rollup brings readings", []string{"readings_daily_values"}, []string{"readings", "reading_revisions", "readings_daily", "readings_daily_revisions", "readings_daily_values", "erased_users"}, false},
		{"the revisions bring readings", []string{"reading_revisions"}, []string{"readings", "reading_revisions", "readings_daily", "readings_daily_revisions", "readings_daily_values", "erased_users"}, false},
		{"alerts alone still replays the erasures", []string{" alerts "}, []string{"alerts", "erased_users"}, false},
		{"order follows the swap order", []string{"device_events", "rejected_readings"}, []string{"rejected_readings", "device_events", "erased_users"}, false},
		{"unknown table", []string{"readings", "nope"}, nil, true},
		{"the pause table is not a projection", []string{"replay_pauses"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveTables(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPositions checks the offset arithmetic progress and catch-up rely on.
func TestPositions(t *testing.T) {
	start := positions{"a": {0: 10, 1: 0}}
	end := positions{"a": {0: 20, 1: 5}}
	for _, tc := range []struct {
		name      string
		at        positions
		done      int64
		reachedIt bool
	}{
		{"nothing committed", positions{}, 0, false},
		{"behind the start counts as nothing", positions{"a": {0: 3}}, 0, false},
		{"part way", positions{"a": {0: 15, 1: 5}}, 10, false},
		{"at the end", positions{"a": {0: 20, 1: 5}}, 15, true},
		{"past the end is capped", positions{"a": {0: 25, 1: 9}}, 15, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.at.done(start, end); got != tc.done {
				t.Errorf("done = %d, want %d", got, tc.done)
			}
			if got := tc.at.reached(end); got != tc.reachedIt {
				t.Errorf("reached = %v, want %v", got, tc.reachedIt)
			}
		})
	}
	if got := start.span(end); got != 15 {
		t.Errorf("span = %d, want 15", got)
	}
	// raise keeps the later position of each partition and adds missing ones.
	p := positions{"a": {0: 12, 1: 4}}
	p.raise(positions{"a": {0: 11, 1: 5, 2: 7}, "b": {0: 1}})
	if p["a"][0] != 12 || p["a"][1] != 5 || p["a"][2] != 7 || p["b"][0] != 1 {
		t.Errorf("raise: %v", p)
	}
}

// TestMurmur64MatchesClickHouse compares with values ClickHouse 18.16
// returned for SELECT murmurHash2_64(s).
func TestMurmur64MatchesClickHouse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"", 0},
		{"a", 510903276987443985},
		{"abcdefgh", 12671724553504926360},
		{"fitbit-2022484408-2016-05-02T00:00:05Z-hr", 14335495222702838078},
	} {
		if got := murmur64([]byte(tc.in)); got != tc.want {
			t.Errorf("murmur64(%q) = %d, ClickHouse says %d", tc.in, got, tc.want)
		}
	}
	// sum(murmurHash2_64(toString(number))) FROM numbers(1000): the sums
	// verification compares wrap around the same way.
	var sum uint64
	for i := range 1000 {
		sum += murmur64([]byte(strconv.Itoa(i)))
	}
	if sum != 8520987462159103944 {
		t.Errorf("sum over 0..999 = %d, ClickHouse says 8520987462159103944", sum)
	}
}
