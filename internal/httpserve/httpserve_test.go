package httpserve

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/tlsconf"
	"github.com/vitalshq/vitals/internal/tlsconf/tlstest"
)

// Over TLS the handler is reached only through a verified handshake, in
// HTTP/1.1; a plaintext request to the port never reaches it.
func TestServeTLS(t *testing.T) {
	pki := tlstest.New(t)
	tc, err := tlsconf.Server(pki.Cert, pki.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, "health data over "+r.Proto)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeTLS(ctx, zerolog.Nop(), ln, h, time.Second, tc) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	addr := ln.Addr().String()

	ctc, err := tlsconf.Client(pki.CA, "")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ctc, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "health data over HTTP/1.1" || resp.TLS == nil {
		t.Fatalf("https: %d %q", resp.StatusCode, body)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "health data") {
			t.Fatalf("a plaintext request was served: %d %q", resp.StatusCode, body)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1 (the TLS request only)", n)
	}
}

// Run hands serve the listener it opened; an address it cannot listen on
// fails naming the service, before serve is called.
func TestRun(t *testing.T) {
	var served string
	serve := func(_ context.Context, ln net.Listener) error {
		served = ln.Addr().String()
		return ln.Close()
	}
	if err := Run(t.Context(), "query", "127.0.0.1:0", serve); err != nil || !strings.HasPrefix(served, "127.0.0.1:") {
		t.Fatalf("Run = %v, served on %q", err, served)
	}
	served = ""
	err := Run(t.Context(), "query", "127.0.0.1:-1", serve)
	if err == nil || !strings.HasPrefix(err.Error(), "query: listen 127.0.0.1:-1") || served != "" {
		t.Fatalf("Run on a bad address = %v, served on %q", err, served)
	}
}
