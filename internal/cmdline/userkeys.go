package cmdline

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/userkeys"
)

// OpenUserKeys opens the users' data-key store in s's PostgreSQL with cfg
// (s.UserKeys(), or that amended, as a rewrap does); the function closes
// the store and its pool.
func (s *Settings) OpenUserKeys(ctx context.Context, cfg userkeys.Config, log zerolog.Logger) (*userkeys.Store, func(), error) {
	pool, err := postgres.Open(ctx, s.PostgresURL)
	if err != nil {
		return nil, nil, err
	}
	store, err := userkeys.Open(ctx, pool, cfg, log)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return store, func() { store.Close(); pool.Close() }, nil
}
