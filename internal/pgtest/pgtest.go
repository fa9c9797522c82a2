// Package pgtest gives a package's tests the local stack's PostgreSQL.
package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool returns a pool of the PostgreSQL at $VITALS_PG_URL, which make
// test sets, and a context that ends after timeout; both end with the
// test. Without the variable the test is skipped, so that go test ./...
// outside make test does not fail for want of the stack.
func Pool(t testing.TB, timeout time.Duration) (context.Context, *pgxpool.Pool) {
	t.Helper()
	url := os.Getenv("VITALS_PG_URL")
	if url == "" {
		t.Skip("VITALS_PG_URL not set (make test sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return ctx, pool
}
