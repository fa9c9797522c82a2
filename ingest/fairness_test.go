package ingest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/quota"
)

// ackProducer acknowledges every record, from any goroutine.
type ackProducer struct {
	mu sync.Mutex
	n  int64
}

func (p *ackProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	r.Offset = p.n
	p.n++
	p.mu.Unlock()
	promise(r, nil)
}

const keyA, keyB = "vk_tenant_a", "vk_tenant_b"

// fairServer serves ingest on a real listener (the body pace needs a
// connection's read deadline) with tenants a and b.
func fairServer(t *testing.T, tune func(*Config)) (*Server, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxBatchItems = 4
	tune(&cfg)
	s := mustServer(cfg, &ackProducer{}, fakeKeys{keyA: {ID: "a", Tenant: "a"}, keyB: {ID: "b", Tenant: "b"}})
	s.now = func() time.Time { return testNow }
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// stall opens a request of key whose body never comes: headers, a
// Content-Length of 100,000 and one byte. It returns the connection, to
// read the answer from.
func stall(t *testing.T, base, key string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/readings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", key)
	return c
}

func postBatch(t *testing.T, base, key string, items int) (*http.Response, string) {
	t.Helper()
	var raws []string
	for i := range items {
		raws = append(raws, string(item(map[string]any{"event_id": fmt.Sprintf("e-%d", i)})))
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/readings", strings.NewReader(`{"gateway_id":"gw","readings":[`+strings.Join(raws, ",")+`]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestStalledBodyIsCutOffAndHoldsNoSlot: a client that sends its headers
// and then nothing is answered 408 body_too_slow once the grace and the
// minimum rate allow no more, and meanwhile holds none of the server's
// slots.
func TestStalledBodyIsCutOffAndHoldsNoSlot(t *testing.T) {
	s, base := fairServer(t, func(c *Config) { c.MinBodyRate, c.BodyGrace = 1000, 300*time.Millisecond })
	c := stall(t, base, keyA)
	time.Sleep(100 * time.Millisecond)
	if n := len(s.inflight); n != 0 {
		t.Fatalf("a body still arriving holds %d of the server's slots", n)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "body_too_slow") {
		t.Fatalf("stalled body: %d %s; want 408 body_too_slow", resp.StatusCode, body)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("answered after %s; the grace was 300 ms", waited)
	}
	// The tenant's share was given back: it can post again.
	if resp, body := postBatch(t, base, keyA, 2); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the cut-off: %d %s", resp.StatusCode, body)
	}
}

// TestTenantShares: tenant a at its requests in flight, or past its items
// per second, is answered 429 with Retry-After; tenant b is not affected.
func TestTenantShares(t *testing.T) {
	_, base := fairServer(t, func(c *Config) {
		c.PerTenant = quota.Limits{Concurrent: 2, Rate: 4, Burst: 4}
		c.BodyGrace = time.Minute // the stalled bodies stay for the test
	})
	stall(t, base, keyA)
	stall(t, base, keyA)
	time.Sleep(100 * time.Millisecond)
	resp, body := postBatch(t, base, keyA, 1)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "concurrency") {
		t.Fatalf("a's third request in flight: %d Retry-After %q %s; want 429 for concurrency", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for i := range 2 {
		if resp, body := postBatch(t, base, keyB, 2); resp.StatusCode != http.StatusOK {
			t.Fatalf("b's batch %d while a is at its share: %d %s", i, resp.StatusCode, body)
		}
	}
	// b has spent its 4 items; its next batch waits for the rate.
	resp, body = postBatch(t, base, keyB, 4)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "rate") {
		t.Fatalf("b past 4 items/s: %d Retry-After %q %s; want 429 for rate", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	time.Sleep(1100 * time.Millisecond)
	if resp, body := postBatch(t, base, keyB, 4); resp.StatusCode != http.StatusOK {
		t.Fatalf("b after its Retry-After: %d %s", resp.StatusCode, body)
	}
}
