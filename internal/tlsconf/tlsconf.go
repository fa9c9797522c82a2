// Package tlsconf builds the TLS configurations of Vitals' connections:
// the ingest and query listeners (Server) and the clients of Kafka,
// ClickHouse, PostgreSQL and the query API (Client), with one set of
// defaults: TLS 1.2 at least, and for TLS 1.2 only forward-secret AEAD
// cipher suites (TLS 1.3's are all of that kind). A client never falls
// back to plaintext: a connection either completes a verified handshake
// or fails.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// MinVersion is the oldest protocol version accepted either way.
const MinVersion = tls.VersionTLS12

// cipherSuites are the TLS 1.2 suites offered and accepted: ECDHE key
// exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Client returns a client configuration that trusts the certificate
// authorities in caFile (PEM; empty: the system's) and checks the server's
// name against serverName (empty: the host dialled).
func Client(caFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: MinVersion, CipherSuites: cipherSuites, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls: certificate authorities: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: %s holds no PEM certificate", caFile)
		}
	}
	return c, nil
}

// Server returns a server configuration that serves the certificate chain
// in certFile with the key in keyFile (PEM). The files are read again when
// they change (checked at most every reloadCheck), so a renewed
// certificate is served without a restart; a renewal that cannot be read
// leaves the previous one in service.
func Server(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: a server needs both a certificate and a key file")
	}
	r := &reloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: MinVersion, CipherSuites: cipherSuites, GetCertificate: r.get,
		// HTTP/1.1 only: ingest paces request bodies and closes
		// connections with HTTP/1.1's semantics.
		NextProtos: []string{"http/1.1"}}, nil
}

// ServerIf is Server for a listener whose TLS is optional: nil (plain
// HTTP) when neither file is given, an error when only one is.
func ServerIf(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	return Server(certFile, keyFile)
}

// reloadCheck is how often a server looks at its certificate files (a
// variable for the tests).
var reloadCheck = 10 * time.Second

// reloader serves a certificate pair and re-reads it when its files change.
type reloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and modification times
	checked time.Time
}

// fileStamp identifies the current contents of the pair cheaply.
func (r *reloader) fileStamp() (string, error) {
	var stamp string
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		stamp += fmt.Sprintf("%d.%d;", st.Size(), st.ModTime().UnixNano())
	}
	return stamp, nil
}

func (r *reloader) load() error {
	stamp, err := r.fileStamp()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp, r.checked = &cert, stamp, time.Now()
	return nil
}

func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= reloadCheck {
		r.checked = time.Now()
		if stamp, err := r.fileStamp(); err == nil && stamp != r.stamp {
			_ = r.load() // a half-written renewal: keep serving the old one
		}
	}
	return r.cert, nil
}
