package integration

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// goBuild is the go build command line for a child-process binary: with
// -race when the tests run with it.
func goBuild(out, pkg string) []string {
	args := []string{"build"}
	if raceBuild {
		args = append(args, "-race")
	}
	return append(args, "-o", out, pkg)
}

// raceMark starts the race detector's report in a process's output.
const raceMark = "WARNING: DATA RACE"

// raceWatch passes a child process's output on to w and fails t, when the
// test ends, if the race detector reported in it, quoting the report. A
// killed process never exits with the detector's status, so its output is
// the only witness.
func raceWatch(t *testing.T, w io.Writer) io.Writer {
	rw := &raceWriter{w: w}
	t.Cleanup(func() {
		rw.mu.Lock()
		defer rw.mu.Unlock()
		if rw.report != nil {
			t.Errorf("a child process reported a data race:\n%s", rw.report)
		}
	})
	return rw
}

// raceWriter keeps the first race report (up to 16 KiB) of what passes.
type raceWriter struct {
	w      io.Writer
	mu     sync.Mutex
	tail   []byte // the end of the last write, for a mark split across writes
	report []byte // from the first mark on; nil until one is seen
}

func (r *raceWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	switch {
	case r.report != nil:
		r.report = append(r.report, p[:max(0, min(len(p), 16<<10-len(r.report)))]...)
	default:
		joined := append(r.tail, p...)
		if i := bytes.Index(joined, []byte(raceMark)); i >= 0 {
			r.report = append([]byte{}, joined[i:min(len(joined), i+16<<10)]...)
		}
		r.tail = append(r.tail[:0], joined[max(0, len(joined)-len(raceMark)):]...)
	}
	r.mu.Unlock()
	return r.w.Write(p)
}

// racesInLogs fails t if any file under dir holds a race report: the
// output of child processes that a lab tool started and logged.
func racesInLogs(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), raceMark) {
			t.Errorf("%s holds a data race report", path)
		}
		return nil
	})
}

// TestRaceWriterFindsSplitMark: the watcher finds a report whose mark is
// split across writes and keeps a bounded copy of it.
func TestRaceWriterFindsSplitMark(t *testing.T) {
	var out bytes.Buffer
	rw := &raceWriter{w: &out}
	for _, p := range []string{"ok line\n==================\nWARNING: DATA", " RACE\nRead at 0x00c by goroutine 7:\n", strings.Repeat("x", 20<<10)} {
		if _, err := rw.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if rw.report == nil || !bytes.HasPrefix(rw.report, []byte(raceMark+"\nRead at")) || len(rw.report) > 16<<10 {
		t.Fatalf("report %d bytes starting %q; want the report from its mark, at most 16 KiB", len(rw.report), rw.report[:min(len(rw.report), 40)])
	}
	if out.Len() != len("ok line\n==================\nWARNING: DATA RACE\nRead at 0x00c by goroutine 7:\n")+20<<10 {
		t.Fatalf("passed on %d bytes", out.Len())
	}
	clean := &raceWriter{w: io.Discard}
	_, _ = clean.Write([]byte("level=info msg=\"no WARNING here: DATA is fine\"\n"))
	if clean.report != nil {
		t.Fatalf("a report found in output without one: %q", clean.report)
	}
}
