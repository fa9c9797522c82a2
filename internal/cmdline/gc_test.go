package cmdline

import (
	"runtime/debug"
	"testing"
)

// A projector process collects at --projector-gc-percent (400 by default),
// unless GOGC says otherwise or the flag is 0.
func TestApplyProjectorGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		gogc string
		args []string
		want int // what the process's GC target is after
	}{
		{"", nil, 400},
		{"", []string{"--projector-gc-percent", "250"}, 250},
		{"", []string{"--projector-gc-percent", "0"}, 100},
		{"150", nil, 100}, // GOGC is the runtime's to read at start; left alone
	} {
		t.Setenv("GOGC", tc.gogc)
		debug.SetGCPercent(100)
		fs, s := AllFlags("vitals test")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		s.ApplyProjectorGC()
		if got := debug.SetGCPercent(100); got != tc.want {
			t.Errorf("GOGC=%q %v: GC target %d, want %d", tc.gogc, tc.args, got, tc.want)
		}
	}
}
