package tlsconf

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/internal/tlsconf/tlstest"
)

// serve accepts TLS connections on a loopback port and writes "ok" on
// each that completes a handshake.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	tlstest.Serve(t, ln, func(c net.Conn) {
		if err := c.(*tls.Conn).Handshake(); err == nil {
			_, _ = io.WriteString(c, "ok\n")
		}
	})
	return ln.Addr().String()
}

// serveNew makes a PKI and serves its server certificate with Server's
// settings.
func serveNew(t *testing.T) (*tlstest.Files, string) {
	t.Helper()
	pki := tlstest.New(t)
	srv, err := Server(pki.Cert, pki.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pki, serve(t, srv)
}

func dial(addr string, cfg *tls.Config) (*tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return nil, err
	}
	st := c.ConnectionState()
	return &st, nil
}

func TestClientTrustsOnlyItsAuthority(t *testing.T) {
	pki, addr := serveNew(t)
	good, err := Client(pki.CA, "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := dial(addr, good)
	if err != nil || st.Version < tls.VersionTLS12 {
		t.Fatalf("client of the right authority: %v %+v", err, st)
	}
	for name, cfg := range map[string]func() (*tls.Config, error){
		"the system's authorities": func() (*tls.Config, error) { return Client("", "") },
		"another authority":        func() (*tls.Config, error) { return Client(pki.OtherCA, "") },
		"another server name":      func() (*tls.Config, error) { return Client(pki.CA, "kafka.example.com") },
	} {
		c, err := cfg()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dial(addr, c); err == nil {
			t.Errorf("a client trusting %s connected", name)
		}
	}
	if _, err := Client(pki.Key, ""); err == nil {
		t.Error("a file without certificates was taken as an authority")
	}
}

func TestServerRefusesOldProtocolsAndWeakSuites(t *testing.T) {
	pki, addr := serveNew(t)
	ca, _ := Client(pki.CA, "")
	old := ca.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := dial(addr, old); err == nil {
		t.Error("a TLS 1.1 client connected")
	}
	cbc := ca.Clone()
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
	if _, err := dial(addr, cbc); err == nil {
		t.Error("a client offering only CBC suites connected")
	}
	// A plaintext client gets no answer it can read as data.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	if strings.Contains(string(b), "ok") {
		t.Errorf("a plaintext client was answered: %q", b)
	}
}

func TestServerPicksUpARenewedCertificate(t *testing.T) {
	reloadCheck = 0
	defer func() { reloadCheck = 10 * time.Second }()
	pki, addr := serveNew(t)
	ca, _ := Client(pki.CA, "")
	first, err := dial(addr, ca)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := pki.Issue(t, "renewed")
	for _, p := range [][2]string{{cert, pki.Cert}, {key, pki.Key}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Modification times may be equal at a coarse clock: sizes differ or
	// the stamp changes with the content written later; make sure.
	later := time.Now().Add(time.Second)
	_ = os.Chtimes(pki.Cert, later, later)
	second, err := dial(addr, ca)
	if err != nil {
		t.Fatal(err)
	}
	if first.PeerCertificates[0].SerialNumber.Cmp(second.PeerCertificates[0].SerialNumber) == 0 {
		t.Error("the renewed certificate was not served")
	}
}
