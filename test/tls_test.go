package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testCA signs the certificates of a TLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate for 127.0.0.1 (server) or for the user cn
// (client), and its key, both PEM.
func (ca *testCA) issue(t *testing.T, serial int64, cn string, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	if client {
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// TestTLS: berth serves HTTPS with the configured certificate, refuses TLS
// 1.1, takes a verified client certificate as its common name's user, and
// serves a replaced certificate without a restart.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		// Write and rename, as a certificate manager does: never half a file.
		if err := os.WriteFile(p+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key := ca.issue(t, 10, "127.0.0.1", false)
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	s := startBerth(t, serverOptions{HTTPS: true, Flags: []string{
		"--tls.cert", write("server.crt", cert), "--tls.key", write("server.key", key), "--tls.client-ca", write("ca.crt", ca.pem),
		"--auth.method", "basic", "--auth.htpasswd", write("htpasswd", []byte("alice:"+string(h)+"\n")), "--auth.client-certs"}})

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	get := func(cfg *tls.Config, user string) (*http.Response, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequest("GET", s.URL+"/v2/", nil)
		if user != "" {
			req.SetBasicAuth(user, "pw")
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	status := func(cfg *tls.Config, user string) int {
		t.Helper()
		resp, err := get(cfg, user)
		if err != nil {
			t.Fatalf("GET /v2/ over TLS: %v", err)
		}
		return resp.StatusCode
	}

	if got := status(&tls.Config{RootCAs: roots}, ""); got != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", got)
	}
	if got := status(&tls.Config{RootCAs: roots}, "alice"); got != http.StatusOK {
		t.Errorf("basic credentials over TLS: %d, want 200", got)
	}
	cc, ck := ca.issue(t, 11, "robot", true)
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	if got := status(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}, ""); got != http.StatusOK {
		t.Errorf("a client certificate of the trusted authority: %d, want 200", got)
	}
	other := newTestCA(t)
	oc, okey := other.issue(t, 12, "mallory", true)
	if bad, err := tls.X509KeyPair(oc, okey); err != nil {
		t.Fatal(err)
	} else if resp, err := get(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{bad}}, ""); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("a client certificate of another authority was accepted")
	}
	if _, err := get(&tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}, ""); err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}

	// A renewed certificate (serial 20) is served without a restart: the
	// files are looked at every two seconds.
	cert, key = ca.issue(t, 20, "127.0.0.1", false)
	write("server.key", key)
	write("server.crt", cert)
	poll(t, "the renewed certificate served", func() bool {
		conn, err := tls.Dial("tcp", s.Host, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64() == 20
	})
}
