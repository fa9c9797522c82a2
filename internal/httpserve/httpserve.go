// Package httpserve runs an HTTP server for the lifetime of a context, with
// the timeouts every Vitals endpoint needs and a graceful shutdown.
package httpserve

import (
	"context"
	"crypto/tls"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Serve serves h on ln until ctx ends, then stops accepting connections and
// waits up to grace for in-flight requests to finish.
func Serve(ctx context.Context, log zerolog.Logger, ln net.Listener, h http.Handler, grace time.Duration) error {
	return ServeTLS(ctx, log, ln, h, grace, nil)
}

// ServeTLS is Serve over TLS with tc (tlsconf.Server); a nil tc serves
// plain HTTP. Over TLS only HTTP/1.1 is spoken, as in plain HTTP: ingest
// paces bodies and closes connections with HTTP/1.1's semantics.
func ServeTLS(ctx context.Context, log zerolog.Logger, ln net.Listener, h http.Handler, grace time.Duration, tc *tls.Config) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      grace + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		// The server's own complaints (failed TLS handshakes, plaintext
		// sent to an HTTPS port: mostly scanners) go to our logger at
		// debug, not to the standard library's global one.
		ErrorLog: stdlog.New(debugWriter{log.With().Str("component", "http").Logger()}, "", 0),
	}
	errc := make(chan error, 1)
	if tc != nil {
		srv.TLSConfig = tc
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no HTTP/2
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	log.Info().Str("addr", ln.Addr().String()).Bool("tls", tc != nil).Msg("listening")
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info().Msg("stopped accepting; in-flight requests finished")
	return nil
}

// Run listens on addr and serves there with serve (a service's Serve,
// which tests call with a listener of their own) until ctx ends; service
// names the service in a listen error.
func Run(ctx context.Context, service, addr string, serve func(context.Context, net.Listener) error) error {
	ln, err := Listen(addr)
	if err != nil {
		return fmt.Errorf("%s: %w", service, err)
	}
	return serve(ctx, ln)
}

// Listen opens a TCP listener, naming the address in the error.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

// debugWriter writes the standard logger's lines to a zerolog logger at
// debug level.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
