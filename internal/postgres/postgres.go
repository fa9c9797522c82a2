// Package postgres opens the PostgreSQL pool the processor (state) and
// ingest (API keys) share, with the bounds every network call here has.
package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultURL is every role's default PostgreSQL URL: the database
// deploy/postgres.sh creates on loopback.
const DefaultURL = "postgres://vitals:vitals@127.0.0.1:15432/vitals?sslmode=disable"

// ConnectTimeout bounds each connection attempt unless the URL sets
// connect_timeout itself.
const ConnectTimeout = 5 * time.Second

// Open parses url and returns a pool; connections are made lazily.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}
