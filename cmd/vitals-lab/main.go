// Command vitals-lab is the Vitals lab: benchmarks (bench), the fleet
// simulator (simulate) and fault injection (chaos), apart from the product
// binary. Commands that need a pipeline of their own run the roles as
// child processes of the vitals binary (--vitals-binary; by default the
// one next to this binary, else bin/vitals). docs/lab.md describes them.
package main

import (
	"os"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/lab/bench"
	"github.com/vitalshq/vitals/lab/chaos"
	"github.com/vitalshq/vitals/lab/simulate"
)

func main() {
	os.Exit(cmdline.Main("vitals-lab", []cmdline.Command{
		{Name: "bench", Summary: "benchmarks: bench ingest|processor|projector|replay|query|e2e", Run: bench.Command},
		{Name: "simulate", Summary: "stream simulated users with injected faults to ingest and write the expected outcomes; simulate verify checks them", Run: simulate.Command},
		{Name: "chaos", Summary: "kill and stop parts of a pipeline of its own while simulate streams, then verify nothing was lost or doubled", Run: chaos.Command},
	}, os.Args[1:], os.Stdout, os.Stderr))
}
