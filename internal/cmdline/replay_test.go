package cmdline

import (
	"testing"
	"time"

	"github.com/vitalshq/vitals/replay"
)

func TestProgressBar(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    replay.Progress
		want string
	}{
		{"start", replay.Progress{Phase: "rebuild", Total: 100}, "rebuild   [..........]   0.0% 0/100 0 rec/s ETA -- "},
		{"half, with rate and eta", replay.Progress{Phase: "rebuild", Done: 50, Total: 100, Rate: 10, ETA: 5 * time.Second},
			"rebuild   [#####.....]  50.0% 50/100 10 rec/s ETA 5s "},
		{"done", replay.Progress{Phase: "reprocess", Done: 100, Total: 100, Rate: 12.4}, "reprocess [##########] 100.0% 100/100 12 rec/s ETA 0s "},
		{"nothing to do", replay.Progress{Phase: "rebuild"}, "rebuild   [##########] 100.0% 0/0 0 rec/s ETA 0s "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := progressBar(tc.p, 10); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
