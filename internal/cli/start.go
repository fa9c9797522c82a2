package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// role is the lifecycle every role shares.
type role interface {
	Run(ctx context.Context) error
	Close()
}

// runRoles runs roles until ctx ends or one fails, then closes them all.
func runRoles(ctx context.Context, log zerolog.Logger, roles ...role) error {
	defer func() {
		for _, r := range roles {
			r.Close()
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range roles {
		g.Go(func() error { return r.Run(gctx) })
	}
	err := g.Wait()
	log.Info().Msg("shut down")
	return err
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
