package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatewayRun is what one tenant's clients saw.
type gatewayRun struct {
	mu       sync.Mutex
	status   map[int]int
	readings int
	latency  []time.Duration
}

func (g *gatewayRun) add(code, readings int, took time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.status == nil {
		g.status = map[int]int{}
	}
	g.status[code]++
	if code == http.StatusOK {
		g.readings += readings
		g.latency = append(g.latency, took)
	}
}

func (g *gatewayRun) pct(p float64) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.latency) == 0 {
		return 0
	}
	l := slices.Clone(g.latency)
	slices.Sort(l)
	return l[min(len(l)-1, int(p/100*float64(len(l))))]
}

// readingsBody is a JSON batch of n heart-rate readings with event ids
// unique to (tag, seq).
func readingsBody(tag string, seq, n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"gateway_id":"gw-` + tag + `","readings":[`)
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"event_id":"%s-%d-%d","user_id":"%s-u%d","device_id":"w","metric":"heart_rate","value":%d,"unit":"/min","measured_at":"%s"}`,
			tag, seq, i, tag, i%50, 60+i%40, at.Add(time.Duration(seq*n+i)*time.Second).Format(time.RFC3339))
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func postBody(ctx context.Context, client *http.Client, url, key string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// steadyGateway posts a 500-reading batch from each of clients every
// interval until ctx ends: a gateway with a steady flow of readings.
func steadyGateway(ctx context.Context, url, key, tag string, clients int, interval time.Duration, g *gatewayRun) *sync.WaitGroup {
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				body := readingsBody(fmt.Sprintf("%s-c%d", tag, c), seq, 500)
				start := time.Now()
				code, err := postBody(ctx, client, url, key, body)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					code = -1
				}
				g.add(code, 500, time.Since(start))
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	return &wg
}

// TestTenantCannotStarveAnother is the fairness load test: tenant A opens
// 64 requests whose bodies stall after one byte, and floods from 24 clients
// back to back, while tenant B's gateway posts a steady 10,000 readings/s
// (1,000/s under the race detector).
// B must keep its throughput and never see a 503 or 429; A gets 429s (its
// share is full) and 408s (its stalled bodies are cut off).
func TestTenantCannotStarveAnother(t *testing.T) {
	s, ctx := newStackFor(t, 2*time.Minute)
	base, _ := s.startIngest(ctx)
	url := base + "/v1/readings"
	keyA, keyB := s.newKey(ctx, s.tenant+"-a"), s.newKey(ctx, s.tenant+"-b")
	// 2 clients × 500 readings every 100 ms; under the race detector, which
	// slows ingest about tenfold, every second: the claim is relative (B
	// under abuse against B alone at the same offered rate).
	phase, interval := 8*time.Second, 100*time.Millisecond
	if raceBuild {
		interval = time.Second
	}
	offered := 2 * 500 * int(phase/interval)

	// B alone.
	alone := &gatewayRun{}
	pctx, stop := context.WithTimeout(ctx, phase)
	steadyGateway(pctx, url, keyB, "b-alone", 2, interval, alone).Wait()
	stop()

	// B while A stalls and floods.
	abused, flood := &gatewayRun{}, &gatewayRun{}
	var stalledAnswers sync.Map // status -> count
	actx, stopA := context.WithCancel(ctx)
	var wgA sync.WaitGroup
	var stallsOpened atomic.Int64
	for range 64 {
		wgA.Add(1)
		go func() { // a client whose body never comes, reconnecting when cut off
			defer wgA.Done()
			for actx.Err() == nil {
				code := stalledRequest(actx, base, keyA)
				stallsOpened.Add(1)
				n, _ := stalledAnswers.LoadOrStore(code, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				if code == http.StatusTooManyRequests {
					select { // told to come back later: the client does
					case <-actx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		}()
	}
	for c := range 24 {
		wgA.Add(1)
		go func() {
			defer wgA.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for seq := 0; actx.Err() == nil; seq++ {
				start := time.Now()
				// Small batches: the flood is of requests, and the log
				// need not take millions of readings for it.
				code, err := postBody(actx, client, url, keyA, readingsBody(fmt.Sprintf("a-flood-%d", c), seq, 50))
				if actx.Err() != nil {
					return
				}
				if err != nil {
					code = -1
				}
				flood.add(code, 50, time.Since(start))
			}
		}()
	}
	time.Sleep(time.Second) // A's stalls and flood in place
	pctx, stop = context.WithTimeout(ctx, phase)
	steadyGateway(pctx, url, keyB, "b-abused", 2, interval, abused).Wait()
	stop()
	stopA()
	wgA.Wait()

	stalled := map[int]int64{}
	stalledAnswers.Range(func(k, v any) bool { stalled[k.(int)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("tenant B alone:      %d of %d offered readings accepted in %s, statuses %v, latency p50 %s p99 %s",
		alone.readings, offered, phase, alone.status, alone.pct(50), alone.pct(99))
	t.Logf("tenant B under abuse: %d of %d offered readings accepted in %s, statuses %v, latency p50 %s p99 %s",
		abused.readings, offered, phase, abused.status, abused.pct(50), abused.pct(99))
	t.Logf("tenant A flooding (24 clients): statuses %v, %d readings accepted; stalling (64 clients): %d requests, answers %v",
		flood.status, flood.readings, stallsOpened.Load(), stalled)

	for name, g := range map[string]*gatewayRun{"alone": alone, "under abuse": abused} {
		if g.status[http.StatusServiceUnavailable] > 0 || g.status[http.StatusTooManyRequests] > 0 || g.status[-1] > 0 {
			t.Errorf("tenant B %s: statuses %v; want every batch answered 200", name, g.status)
		}
	}
	// A steady gateway posts on its schedule: it keeps its throughput when
	// it gets (nearly) every batch in, as it did alone.
	if abused.readings < alone.readings*9/10 {
		t.Errorf("tenant B accepted %d readings under abuse, %d alone: it lost more than a tenth of its throughput", abused.readings, alone.readings)
	}
	if flood.status[http.StatusTooManyRequests] == 0 {
		t.Errorf("tenant A's flood was never told to slow down: statuses %v", flood.status)
	}
	if stalled[http.StatusRequestTimeout] == 0 {
		t.Errorf("tenant A's stalled bodies were never cut off: answers %v", stalled)
	}
}

// stalledRequest sends headers and one byte of a 100 KB body, then
// nothing, and returns the status ingest answers with (0 if none).
func stalledRequest(ctx context.Context, base, key string) int {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		return 0
	}
	defer c.Close()
	go func() { <-ctx.Done(); c.Close() }()
	fmt.Fprintf(c, "POST /v1/readings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", key)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(c, buf, 12)
	var code int
	if _, err := fmt.Sscanf(string(buf[:n]), "HTTP/1.1 %d", &code); err != nil {
		return 0
	}
	return code
}
