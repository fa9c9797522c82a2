package eventlog

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/tlsconf/tlstest"
)

func TestSecurityValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Security
		bad  string // part of the error; "" for valid
	}{
		{"plaintext", Security{}, ""},
		{"plaintext named", Security{Protocol: "plaintext"}, ""},
		{"tls", Security{Protocol: SSL, CAFile: "ca.pem"}, ""},
		{"sasl over tls", Security{Protocol: SASLSSL, Username: "u", Password: "p"}, ""},
		{"sha-256", Security{Protocol: SASLSSL, Username: "u", Password: "p", Mechanism: "scram-sha-256"}, ""},
		{"a CA without TLS", Security{CAFile: "ca.pem"}, "PLAINTEXT"},
		{"a user without SASL_SSL", Security{Username: "u", Password: "p"}, "PLAINTEXT"},
		{"a user over SSL", Security{Protocol: SSL, Username: "u", Password: "p"}, "SASL_SSL"},
		{"SASL_PLAINTEXT", Security{Protocol: "SASL_PLAINTEXT", Username: "u", Password: "p"}, "unencrypted"},
		{"no password", Security{Protocol: SASLSSL, Username: "u"}, "password"},
		{"PLAIN mechanism", Security{Protocol: SASLSSL, Username: "u", Password: "p", Mechanism: "PLAIN"}, "mechanism"},
		{"unknown protocol", Security{Protocol: "TLS"}, "want PLAINTEXT"},
	} {
		err := tc.s.Validate()
		if (err == nil) != (tc.bad == "") || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.bad)
		}
	}
}

// firstBytes listens on a loopback port and records the first bytes of
// every connection made to it.
type firstBytes struct {
	ln  net.Listener
	mu  sync.Mutex
	got [][]byte
}

func listenFirstBytes(t *testing.T) *firstBytes {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &firstBytes{ln: ln}
	tlstest.Serve(t, ln, func(c net.Conn) {
		b := make([]byte, 8)
		n, _ := io.ReadFull(c, b)
		f.mu.Lock()
		f.got = append(f.got, b[:n])
		f.mu.Unlock()
	})
	return f
}

func (f *firstBytes) conns() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.got...)
}

func ping(t *testing.T, c Config) error {
	t.Helper()
	c.DialTimeout, c.RequestTimeout = time.Second, time.Second
	cl, err := kgo.NewClient(c.ClientOpts(zerolog.Nop())...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

// A client configured for TLS opens every connection with a TLS
// handshake: against a broker port that does not speak TLS it fails
// rather than sending a Kafka request in clear. A contradictory
// configuration does not connect at all.
func TestNoPlaintextFallback(t *testing.T) {
	pki := tlstest.New(t)
	srv := listenFirstBytes(t)
	c := DefaultConfig()
	c.Brokers = []string{srv.ln.Addr().String()}
	c.Security = Security{Protocol: SASLSSL, Username: "vitals", Password: "secret", CAFile: pki.CA}
	if err := ping(t, c); err == nil {
		t.Fatal("a TLS client talked to a plaintext port")
	}
	conns := srv.conns()
	if len(conns) == 0 {
		t.Fatal("the client never connected")
	}
	for _, b := range conns {
		// A TLS record: handshake (22), version 3.x. A plaintext Kafka
		// request would start with its 4-byte length and api key 18.
		if len(b) < 3 || b[0] != 22 || b[1] != 3 {
			t.Errorf("a connection began %x, not with a TLS handshake", b)
		}
		if strings.Contains(string(b), "secret") {
			t.Errorf("the password was sent in clear: %q", b)
		}
	}

	bad := listenFirstBytes(t)
	c.Brokers = []string{bad.ln.Addr().String()}
	c.Security = Security{CAFile: pki.CA} // TLS settings, protocol left PLAINTEXT
	err := ping(t, c)
	if err == nil || !strings.Contains(err.Error(), "PLAINTEXT") {
		t.Errorf("contradictory settings: %v", err)
	}
	if n := len(bad.conns()); n != 0 {
		t.Errorf("contradictory settings still made %d connections", n)
	}
	c.Security = Security{Protocol: SSL, CAFile: "/nonexistent/ca.pem"}
	if err := ping(t, c); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Errorf("an unreadable CA: %v", err)
	}
}
