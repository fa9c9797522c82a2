package envflag

import (
	"testing"
	"time"
)

func TestEnvironmentSetsDefaultsAndFlagsWin(t *testing.T) {
	t.Setenv("VT_KAFKA_BROKERS", "env:1")
	t.Setenv("VT_BATCH", "7")
	t.Setenv("VT_WAIT", "3s")
	tests := []struct {
		name    string
		args    []string
		brokers string
		batch   int
		wait    time.Duration
	}{
		{"environment", nil, "env:1", 7, 3 * time.Second},
		{"flags win", []string{"-kafka-brokers", "flag:2", "-batch", "9", "-wait", "1m"}, "flag:2", 9, time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := New("t", "VT")
			var brokers, other string
			var batch int
			var wait time.Duration
			fs.String(&brokers, "kafka-brokers", "def:0", "brokers")
			fs.String(&other, "other", "unset", "not in the environment")
			fs.Int(&batch, "batch", 1, "batch")
			fs.Duration(&wait, "wait", time.Second, "wait")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if brokers != tc.brokers || batch != tc.batch || wait != tc.wait || other != "unset" {
				t.Fatalf("got %q %d %s %q", brokers, batch, wait, other)
			}
		})
	}
}

func TestMalformedEnvironmentIsAnError(t *testing.T) {
	for _, tc := range []struct{ env, value string }{{"VT_BATCH", "seven"}, {"VT_WAIT", "soon"}, {"VT_ON", "maybe"}, {"VT_SINCE", "yesterday"}} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			fs := New("t", "VT")
			var batch int
			var wait time.Duration
			var on bool
			var since time.Time
			fs.Int(&batch, "batch", 1, "batch")
			fs.Duration(&wait, "wait", time.Second, "wait")
			fs.Bool(&on, "on", false, "on")
			fs.Time(&since, "since", time.Time{}, "since")
			if err := fs.Parse(nil); err == nil {
				t.Fatalf("%s=%s accepted", tc.env, tc.value)
			}
		})
	}
}
