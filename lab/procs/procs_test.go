package procs

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestSupervise kills and lets exit a supervised process and checks that
// it comes back each time, that only the unasked exit counts as a crash,
// and that Usage reads /proc.
func TestSupervise(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		kill        bool
		wantCrashes bool
	}{
		{"killed with SIGKILL", []string{"30"}, true, false},
		{"exits by itself", []string{"0.2"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			p := New("sleeper", "sleep", tt.args, nil, nil, zerolog.Nop())
			if err := p.Supervise(ctx); err != nil {
				t.Fatal(err)
			}
			first := p.Pid()
			if u := p.Usage(); u.PeakRSSBytes <= 0 {
				t.Errorf("peak RSS %d, want > 0", u.PeakRSSBytes)
			}
			if tt.kill {
				if err := p.Kill9(); err != nil {
					t.Fatal(err)
				}
			}
			for ctx.Err() == nil && (p.Pid() == first || p.Pid() == 0) {
				time.Sleep(20 * time.Millisecond)
			}
			starts, crashes := p.Counts()
			if starts < 2 || (crashes > 0) != tt.wantCrashes {
				t.Errorf("starts %d, crashes %d; want a restart and crashes %v", starts, crashes, tt.wantCrashes)
			}
			_ = p.Stop(5 * time.Second) // a sleep killed by SIGTERM exits non-zero
		})
	}
}
