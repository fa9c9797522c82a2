// Command testprogress reads `go test -json` on stdin and prints what a
// person watching `make test` needs: one line per package as it finishes
// (like go test's own "ok" and "FAIL" lines), one line per top-level test
// of the slow packages (-slow, a comma-separated list of import path
// suffixes; by default internal/integration) as each test finishes, and
// the whole output of every test and package that failed. Lines that are
// not JSON (build errors) pass through. It exits 1 if anything failed, so
// with `set -o pipefail` make fails exactly when a test does.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Elapsed    float64
	Output     string
}

func main() {
	slow := flag.String("slow", "internal/integration", "comma-separated import path suffixes whose tests are shown one by one as they finish")
	flag.Parse()
	r := newReport(os.Stdout, strings.Split(*slow, ","))
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testprogress:", err)
		os.Exit(1)
	}
	if r.failed {
		os.Exit(1)
	}
}

// report keeps each test's and package's output until it is known
// whether it failed.
type report struct {
	w      io.Writer
	slow   []string
	output map[string][]string // by package, and package + "\x00" + test
	failed bool
}

func newReport(w io.Writer, slow []string) *report {
	return &report{w: w, slow: slow, output: map[string][]string{}}
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(r.w, string(line))
			continue
		}
		r.handle(e)
	}
	return sc.Err()
}

func (r *report) handle(e event) {
	key := e.Package
	if e.Test != "" {
		key += "\x00" + e.Test
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.w, e.Output)
	case "build-fail":
		r.failed = true
	case "output":
		r.output[key] = append(r.output[key], e.Output)
		if top, _, sub := strings.Cut(e.Test, "/"); sub {
			// A subtest's output is shown with its top-level test's.
			k := e.Package + "\x00" + top
			r.output[k] = append(r.output[k], e.Output)
		}
	case "pass", "fail", "skip":
		r.finish(e, key)
	}
}

func (r *report) finish(e event, key string) {
	defer delete(r.output, key)
	if e.Action == "fail" {
		r.failed = true
	}
	switch {
	case e.Test == "":
		if e.Action == "fail" {
			// The package's own output: a panic, a timeout, TestMain.
			fmt.Fprint(r.w, strings.Join(r.output[key], ""))
		}
		status := map[string]string{"pass": "ok  ", "fail": "FAIL", "skip": "?   "}[e.Action]
		fmt.Fprintf(r.w, "%s\t%s\t%.3fs\n", status, e.Package, e.Elapsed)
	case strings.Contains(e.Test, "/"):
		// Subtests are reported with their top-level test.
	case e.Action == "fail":
		fmt.Fprintf(r.w, "--- FAIL: %s (%.2fs) in %s\n%s", e.Test, e.Elapsed, e.Package, strings.Join(r.output[key], ""))
	case r.isSlow(e.Package):
		fmt.Fprintf(r.w, "    %-4s %s (%.1fs)\n", strings.ToUpper(e.Action), e.Test, e.Elapsed)
	}
}

func (r *report) isSlow(pkg string) bool {
	for _, s := range r.slow {
		if s != "" && strings.HasSuffix(pkg, s) {
			return true
		}
	}
	return false
}
