package cmdline

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/postgres"
)

// TempKey creates an API key in the configured tenant for a gateway that
// lives as long as one command (demo, bench, simulate), and a function
// that revokes it.
func (s *Settings) TempKey(ctx context.Context, name string) (string, func(), error) {
	return s.TempCredential(ctx, credential.GatewayKeys, name)
}

// KeyOr is key when a flag gave one, else a TempKey named name; the
// function revokes the key it created (nothing for a given one).
func (s *Settings) KeyOr(ctx context.Context, key, name string) (string, func(), error) {
	if key != "" {
		return key, func() {}, nil
	}
	return s.TempKey(ctx, name)
}

// TempCredential creates a credential of kind in the configured tenant
// that lives as long as one command, and a function that revokes it.
func (s *Settings) TempCredential(ctx context.Context, kind credential.Kind, name string) (string, func(), error) {
	pool, err := postgres.Open(ctx, s.PostgresURL)
	if err != nil {
		return "", nil, err
	}
	store, err := credential.NewStore(ctx, pool, kind, 0)
	if err != nil {
		pool.Close()
		return "", nil, err
	}
	full, c, err := store.Create(ctx, s.Tenant, name)
	if err != nil {
		pool.Close()
		return "", nil, err
	}
	return full, func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := store.Revoke(rctx, c.ID); err != nil {
			fmt.Fprintln(os.Stderr, "could not revoke", kind.Noun, c.ID, ":", err)
		}
		pool.Close()
	}, nil
}
