// Command vitals is the Vitals pipeline: one binary with a subcommand per
// role (ingest, processor, projector, query), `run` for all of them in one
// process, and `demo` for the bundled sample. `vitals help` lists them.
package main

import (
	"os"

	"github.com/vitalshq/vitals/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
