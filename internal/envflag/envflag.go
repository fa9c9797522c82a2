// Package envflag binds command-line flags to environment variables: every
// flag -name has an environment variable PREFIX_NAME that sets its default,
// and an explicit flag wins over the environment. The usage text shows both,
// so the configuration is documented where it is declared.
package envflag

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Set wraps a flag.FlagSet with environment defaults.
type Set struct {
	*flag.FlagSet
	prefix string
	errs   []error
}

// New returns a flag set whose environment variables start with prefix
// (e.g. "VITALS").
func New(name, prefix string) *Set {
	return &Set{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), prefix: prefix}
}

// EnvName is the environment variable for a flag name: "kafka-brokers"
// becomes "VITALS_KAFKA_BROKERS".
func (s *Set) EnvName(flagName string) string {
	return s.prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (s *Set) lookup(name string) (string, bool) {
	return os.LookupEnv(s.EnvName(name))
}

func (s *Set) usage(name, usage string) string {
	return fmt.Sprintf("%s (env %s)", usage, s.EnvName(name))
}

// String defines a string flag.
func (s *Set) String(p *string, name, def, usage string) {
	if v, ok := s.lookup(name); ok {
		def = v
	}
	s.StringVar(p, name, def, s.usage(name, usage))
}

// Int defines an int flag.
func (s *Set) Int(p *int, name string, def int, usage string) {
	s.IntVar(p, name, envDefault(s, name, def, strconv.Atoi, "an integer"), s.usage(name, usage))
}

// Bool defines a boolean flag; the environment accepts what strconv.ParseBool does.
func (s *Set) Bool(p *bool, name string, def bool, usage string) {
	s.BoolVar(p, name, envDefault(s, name, def, strconv.ParseBool, "a boolean"), s.usage(name, usage))
}

// Duration defines a duration flag ("500ms", "10s").
func (s *Set) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	s.DurationVar(p, name, envDefault(s, name, def, time.ParseDuration, "a duration"), s.usage(name, usage))
}

// Time defines a time flag in RFC 3339 ("2000-01-01T00:00:00Z").
func (s *Set) Time(p *time.Time, name string, def time.Time, usage string) {
	parse := func(v string) (time.Time, error) { return time.Parse(time.RFC3339, v) }
	s.TextVar(p, name, envDefault(s, name, def, parse, "an RFC 3339 time"), s.usage(name, usage))
}

// envDefault is flag name's default: its environment variable as parse
// reads it, else def. A malformed variable keeps def and is kept for
// Parse to report, so that every flag is still defined.
func envDefault[T any](s *Set, name string, def T, parse func(string) (T, error), want string) T {
	v, ok := s.lookup(name)
	if !ok {
		return def
	}
	x, err := parse(v)
	if err != nil {
		s.errs = append(s.errs, fmt.Errorf("%s=%q: want %s: %w", s.EnvName(name), v, want, err))
		return def
	}
	return x
}

// Parse parses args after reporting any malformed environment variable.
func (s *Set) Parse(args []string) error {
	if len(s.errs) > 0 {
		return s.errs[0]
	}
	return s.FlagSet.Parse(args)
}
