// Package logging builds the one zerolog logger a process passes down to
// every component. There is no global logger: whoever needs to log is handed
// one.
//
// Logs never carry health values, API keys or passwords; components log
// identifiers, counts and reasons.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// New returns a logger writing to w at the given level ("trace" .. "error")
// in the given format: "json" for machines, "console" for people.
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("log level %q: %w", level, err)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want json or console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// DefaultFormat is console on a terminal and json otherwise.
func DefaultFormat() string {
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return "console"
	}
	return "json"
}
