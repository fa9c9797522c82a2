package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/envflag"
)

// startFlags registers how long a role keeps trying to start while what it
// depends on (Kafka, PostgreSQL, ClickHouse) is unreachable.
func (s *settings) startFlags(fs *envflag.Set) {
	fs.Duration(&s.startTimeout, "start-timeout", 2*time.Minute, "how long a role retries its start while Kafka, PostgreSQL or ClickHouse is unreachable (0: try once)")
}

// construct calls a role's constructor until it succeeds, ctx ends or
// timeout passes, waiting with capped exponential backoff between tries. A
// running role rides an outage out; one started during the outage (after a
// crash, by a supervisor) must wait for it the same way rather than exit in
// a restart loop. A constructor that fails for a reason that will not pass
// (a bad flag) fails every try and is reported when the time is up.
func construct[T any](ctx context.Context, log zerolog.Logger, what string, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(timeout)
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := fn(ctx)
		if err == nil {
			if attempt > 1 {
				log.Info().Str("role", what).Int("attempts", attempt).Msg("started")
			}
			return v, nil
		}
		if ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			var zero T
			return zero, fmt.Errorf("start %s (%d attempts): %w", what, attempt, err)
		}
		log.Warn().Err(err).Str("role", what).Int("attempt", attempt).Dur("backoff", backoff).Msg("cannot start yet; retrying")
		select {
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("start %s: %w", what, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
