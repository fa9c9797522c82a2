package cmdline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vitalshq/vitals/query"
)

// WaitHealthy waits up to 30 s for base/healthz to answer 200.
func WaitHealthy(ctx context.Context, base string) error {
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

// GetJSON GETs u, a query API URL, with an analyst token and returns the
// body of a 200 answer; any other status becomes an error carrying the
// API's message.
func GetJSON(ctx context.Context, u, token string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("query: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e query.APIError
		if json.Unmarshal(body, &e) == nil && e.Code != "" {
			if e.Parameter != "" {
				return nil, fmt.Errorf("query: %d %s (%s): %s", resp.StatusCode, e.Code, e.Parameter, e.Message)
			}
			return nil, fmt.Errorf("query: %d %s: %s", resp.StatusCode, e.Code, e.Message)
		}
		return nil, fmt.Errorf("query: status %d", resp.StatusCode)
	}
	return body, nil
}
