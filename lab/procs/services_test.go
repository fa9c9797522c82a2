package procs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       float64
		ok         bool
	}{
		{"plain", "42 (java) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 30 0 100 0 0", 3.0, true},
		{"spaces and parens in the name", "7 (postgres: a (b) c) S 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0", 0.03, true},
		{"truncated", "7 (x) S 1 2", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "stat")
			if err := os.WriteFile(p, []byte(tc.stat), 0o644); err != nil {
				t.Fatal(err)
			}
			got, ok := statCPU(p)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("statCPU = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestMachineCPUAdvances(t *testing.T) {
	a := MachineCPU()
	if a <= 0 {
		t.Fatalf("MachineCPU = %v, want the busy seconds since boot", a)
	}
	x := 0
	for i := range 50_000_000 { // busy for a few tens of milliseconds
		x += i
	}
	_ = x
	if b := MachineCPU(); b < a {
		t.Fatalf("MachineCPU went back from %v to %v", a, b)
	}
}

func TestServiceSampleSince(t *testing.T) {
	before := ServiceSample{ServicePostgres: {10: 5, 11: 2}, ServiceKafka: {20: 100}}
	after := ServiceSample{ServicePostgres: {10: 6.5, 12: 0.25}, ServiceKafka: {20: 103}, ServiceClickHouse: {}}
	got := after.Since(before)
	// Backend 11 exited (counts nothing), 12 started (counts from zero).
	want := map[string]float64{ServicePostgres: 1.75, ServiceKafka: 3, ServiceClickHouse: 0}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %v, want %v", name, got[name], w)
		}
	}
}
