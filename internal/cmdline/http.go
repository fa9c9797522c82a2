package cmdline

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// WaitHealthy waits up to 30 s for base/healthz to answer 200.
func WaitHealthy(ctx context.Context, base string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	return Poll(ctx, 100*time.Millisecond, 30*time.Second, func() (bool, error) {
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %d", resp.StatusCode)
	}, base+" did not become healthy")
}

// Poll calls try every interval until it reports true, for up to timeout;
// then it fails with failure and try's last error, which says why not
// (try returns one with every false).
func Poll(ctx context.Context, interval, timeout time.Duration, try func() (bool, error), failure string) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := try()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", failure, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
