// Package tlstest makes certificates for tests: a certificate authority
// and a server certificate for 127.0.0.1 and localhost that it signed,
// written as PEM files (what deploy/tls.sh makes for the local stack).
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Files are the PEM files of a test PKI.
type Files struct {
	CA        string // the authority's certificate
	Cert, Key string // the server's certificate and key
	OtherCA   string // an unrelated authority, which must not be trusted
	serial    int64
	caCert    *x509.Certificate
	caKey     *ecdsa.PrivateKey
	dir       string
}

// New writes a fresh PKI into a temporary directory of t.
func New(t testing.TB) *Files {
	t.Helper()
	f := &Files{dir: t.TempDir()}
	f.CA, f.caCert, f.caKey = f.authority(t, "ca.pem", "vitals test CA")
	f.OtherCA, _, _ = f.authority(t, "other-ca.pem", "unrelated CA")
	f.Cert, f.Key = f.Issue(t, "server")
	return f
}

func (f *Files) next() *big.Int {
	f.serial++
	return big.NewInt(f.serial)
}

func (f *Files) authority(t testing.TB, name, cn string) (string, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: f.next(), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return f.write(t, name, "CERTIFICATE", der), cert, key
}

// Issue writes a new server certificate and key for 127.0.0.1 and
// localhost signed by the authority, under name, and returns their paths.
func (f *Files) Issue(t testing.TB, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: f.next(), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, &k.PublicKey, f.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return f.write(t, name+".pem", "CERTIFICATE", der), f.write(t, name+".key", "PRIVATE KEY", kder)
}

func (f *Files) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Serve accepts connections on ln until the test ends, each handled by
// handle on its own goroutine with a 5 s deadline, then closed: a
// loopback server for a test to dial.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			}()
		}
	}()
}
