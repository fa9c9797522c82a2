package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	labOnce     sync.Once
	labPath     string
	labBuildErr error
)

// labBinary builds cmd/vitals-lab once per test run, next to the vitals
// binary whose roles it runs.
func labBinary(t *testing.T) string {
	t.Helper()
	vitals := vitalsBinary(t)
	labOnce.Do(func() {
		labPath = filepath.Join(filepath.Dir(vitals), "vitals-lab")
		out, err := exec.Command("go", goBuild(labPath, "github.com/vitalshq/vitals/cmd/vitals-lab")...).CombinedOutput()
		if err != nil {
			labBuildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if labBuildErr != nil {
		t.Fatal(labBuildErr)
	}
	return labPath
}

// TestChaosShort is the CI version of make chaos: `vitals-lab chaos
// --chaos-short` streams simulated users with every kind of injected data
// fault (corrections and withdrawals of acknowledged readings among them)
// through a pipeline of child processes while the processor,
// projector and ingest are killed with SIGKILL six times, a second
// processor joins and leaves, and ClickHouse and PostgreSQL are stopped for
// a few seconds. The command exits non-zero unless every event ingest
// acknowledged has exactly the outcome the manifest expects.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the local stack (make up)")
	}
	bin, lab := vitalsBinary(t), labBinary(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	logDir := t.TempDir()
	cmd := exec.CommandContext(ctx, lab, "chaos", "--vitals-binary", bin, "--chaos-short", "--simulate-rate", "1500", "--simulate-users", "1500",
		"--chaos-stack-script", filepath.Join(root, "deploy", "stack.sh"), "--chaos-log-dir", logDir, "--chaos-settle", "90s")
	cmd.Env = append(os.Environ(), "VITALS_LOG_FORMAT=json", "VITALS_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("vitals-lab chaos --chaos-short took %s:\n%s", time.Since(start).Round(time.Second), out.String())
	racesInLogs(t, logDir)
	if strings.Contains(out.String(), raceMark) {
		t.Errorf("vitals-lab reported a data race")
	}
	if err != nil {
		t.Fatalf("chaos run failed: %v", err)
	}
	for _, want := range []string{"VERIFIED", "kill -9 processor", "kill -9 projector", "kill -9 ingest", "clickhouse stopped", "postgres stopped", "second processor joins",
		"correction", "withdrawal", "stale_revision", "conflicting_repeat"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
