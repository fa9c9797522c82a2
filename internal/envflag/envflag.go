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
	if v, ok := s.lookup(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not an integer", s.EnvName(name), v))
		}
		def = n
	}
	s.IntVar(p, name, def, s.usage(name, usage))
}

// Bool defines a boolean flag; the environment accepts what strconv.ParseBool does.
func (s *Set) Bool(p *bool, name string, def bool, usage string) {
	if v, ok := s.lookup(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a boolean", s.EnvName(name), v))
		}
		def = b
	}
	s.BoolVar(p, name, def, s.usage(name, usage))
}

// Duration defines a duration flag ("500ms", "10s").
func (s *Set) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := s.lookup(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: %w", s.EnvName(name), v, err))
		} else {
			def = d
		}
	}
	s.DurationVar(p, name, def, s.usage(name, usage))
}

// Time defines a time flag in RFC 3339 ("2000-01-01T00:00:00Z").
func (s *Set) Time(p *time.Time, name string, def time.Time, usage string) {
	if v, ok := s.lookup(name); ok {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: want an RFC 3339 time: %w", s.EnvName(name), v, err))
		} else {
			def = t
		}
	}
	s.TextVar(p, name, def, s.usage(name, usage))
}

// Parse parses args after reporting any malformed environment variable.
func (s *Set) Parse(args []string) error {
	if len(s.errs) > 0 {
		return s.errs[0]
	}
	return s.FlagSet.Parse(args)
}
