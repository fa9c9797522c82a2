package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/postgres"
)

// tempKey creates an API key in the configured tenant for a gateway that
// lives as long as one command (demo, bench), and a function that revokes
// it.
func tempKey(ctx context.Context, s *settings, name string) (string, func(), error) {
	return tempCredential(ctx, s, credential.GatewayKeys, name)
}

// tempCredential creates a credential of kind in the configured tenant
// that lives as long as one command, and a function that revokes it.
func tempCredential(ctx context.Context, s *settings, kind credential.Kind, name string) (string, func(), error) {
	pool, err := postgres.Open(ctx, s.pgURL)
	if err != nil {
		return "", nil, err
	}
	store, err := credential.NewStore(ctx, pool, kind, 0)
	if err != nil {
		pool.Close()
		return "", nil, err
	}
	full, c, err := store.Create(ctx, s.tenant, name)
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

// waitHealthy waits up to 30 s for base/healthz to answer 200.
func waitHealthy(ctx context.Context, base string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not become healthy: %v", base, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
