// Package cmdline is the command-line wiring that the vitals binary (the
// product's roles and the operator's commands, internal/cli) and the
// vitals-lab binary (benchmarks, simulator, fault injection, lab/) share:
// the subcommand dispatcher, the flags of every role with their VITALS_*
// environment variables (Settings), and small helpers for commands that
// talk to a running pipeline. Nothing here is written twice for the two
// binaries.
package cmdline

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// Version is set at build time with -ldflags "-X ...cmdline.Version=...".
var Version = "dev"

// Command is one subcommand of a binary.
type Command struct {
	Name    string
	Summary string
	// Run gets the arguments after the command's name; flag.ErrHelp
	// (from -h) exits 0.
	Run func(ctx context.Context, args []string, stdout io.Writer) error
}

// Main runs the subcommand args[0] of program prog (e.g. "vitals") with a
// context that SIGINT and SIGTERM cancel, and returns the process exit
// code: 0, 1 on an error, 2 on a usage error. A "version" command is added
// to cmds.
func Main(prog string, cmds []Command, args []string, stdout, stderr io.Writer) int {
	cmds = append(cmds, Command{"version", "print the version", func(_ context.Context, _ []string, w io.Writer) error {
		_, err := fmt.Fprintln(w, prog, Version)
		return err
	}})
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, prog, cmds)
		if len(args) < 1 {
			return 2
		}
		return 0
	}
	for _, c := range cmds {
		if c.Name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.Run(ctx, args[1:], stdout)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// Stopped by a signal while starting: nothing was half done.
			fmt.Fprintf(stderr, "%s %s: stopped before it was running\n", prog, c.Name)
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s %s: %v\n", prog, c.Name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", prog, args[0])
	usage(stderr, prog, cmds)
	return 2
}

func usage(w io.Writer, prog string, cmds []Command) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", prog)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set by the environment variable VITALS_<FLAG>, e.g. VITALS_KAFKA_BROKERS.")
}

// Invocation is this process's exact command line, quoted where needed,
// for reports that must say how they were made.
func Invocation() string {
	parts := make([]string, len(os.Args))
	for i, a := range os.Args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\") {
			a = strconv.Quote(a)
		}
		parts[i] = a
	}
	return strings.Join(parts, " ")
}
