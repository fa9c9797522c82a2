package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"start","Package":"m/a"}`,
		`{"Action":"run","Package":"m/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"m/a","Test":"TestOK","Output":"quiet detail\n"}`,
		`{"Action":"pass","Package":"m/a","Test":"TestOK","Elapsed":0.5}`,
		`{"Action":"output","Package":"m/a","Test":"TestBad/sub","Output":"    want 1, got 2\n"}`,
		`{"Action":"fail","Package":"m/a","Test":"TestBad/sub","Elapsed":0.1}`,
		`{"Action":"fail","Package":"m/a","Test":"TestBad","Elapsed":0.2}`,
		`{"Action":"fail","Package":"m/a","Elapsed":1.5}`,
		`{"Action":"run","Package":"m/internal/integration","Test":"TestSlow"}`,
		`{"Action":"output","Package":"m/internal/integration","Test":"TestSlow","Output":"log line\n"}`,
		`{"Action":"pass","Package":"m/internal/integration","Test":"TestSlow","Elapsed":42}`,
		`{"Action":"pass","Package":"m/internal/integration","Elapsed":43}`,
		`# m/b`,
	}, "\n")
	var out strings.Builder
	r := newReport(&out, []string{"internal/integration"})
	if err := r.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	want := "--- FAIL: TestBad (0.20s) in m/a\n    want 1, got 2\n" +
		"FAIL\tm/a\t1.500s\n" +
		"    PASS TestSlow (42.0s)\n" +
		"ok  \tm/internal/integration\t43.000s\n" +
		"# m/b\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if !r.failed {
		t.Error("a failed test did not fail the report")
	}
}

func TestReportAllPassed(t *testing.T) {
	r := newReport(&strings.Builder{}, nil)
	if err := r.read(strings.NewReader(`{"Action":"pass","Package":"m/a","Elapsed":1}`)); err != nil {
		t.Fatal(err)
	}
	if r.failed {
		t.Error("passing packages failed the report")
	}
}
