package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	certPEM, key := issue(t, tmpl, nil)
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: certPEM}
}

// issue signs tmpl with ca (nil: itself) and returns the certificate and a
// new key, in PEM.
func issue(t *testing.T, tmpl *x509.Certificate, ca *testCA) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key
}

func keyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// serverPair is a certificate for 127.0.0.1 with the given serial number,
// and its key.
func (ca *testCA) serverPair(t *testing.T, serial int64) (certPEM, key []byte) {
	t.Helper()
	c, k := issue(t, &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "registry"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca)
	return c, keyPEM(t, k)
}

// clientCert is a client certificate for the common name cn.
func (ca *testCA) clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	c, k := issue(t, &x509.Certificate{
		SerialNumber: big.NewInt(100), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca)
	pair, err := tls.X509KeyPair(c, keyPEM(t, k))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// serveTLS serves h with cfg on 127.0.0.1 and returns the server's URL.
// It is an http.Server rather than httptest's: StartTLS gives the config
// a certificate of its own, which Go serves to clients that send no
// server name instead of asking GetCertificate.
func serveTLS(t *testing.T, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A clone: http.Server writes to its TLSConfig (the protocols it offers).
	// Refused handshakes are what some tests expect: not worth a log line.
	srv := &http.Server{Handler: h, TLSConfig: cfg.Clone(), ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	return "https://" + ln.Addr().String()
}

// tlsClient trusts ca, opens a connection per request and offers certs.
func tlsClient(ca *testCA, cfg *tls.Config) *http.Client {
	cfg.RootCAs = x509.NewCertPool()
	cfg.RootCAs.AddCert(ca.cert)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// get fetches url and returns the body and the serial number of the
// certificate the server showed.
func get(t *testing.T, c *http.Client, url string) (body string, serial int64, err error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, err
	}
	return string(b), resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
}

func writePair(t *testing.T, dir string, cert, key []byte) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	replaceFile(t, certFile, string(cert))
	replaceFile(t, keyFile, string(key))
	return certFile, keyFile
}

func ok(http.ResponseWriter, *http.Request) {}

func TestTLSCertificateReload(t *testing.T) {
	ca := newTestCA(t, "test CA")
	dir := t.TempDir()
	cert1, key1 := ca.serverPair(t, 1)
	certFile, keyFile := writePair(t, dir, cert1, key1)
	var errs errorCount
	f, err := openTLSFiles(certFile, keyFile, "", errs.onError)
	if err != nil {
		t.Fatal(err)
	}
	f.cert.recheck, f.key.recheck = 0, 0
	url := serveTLS(t, f.config(), http.HandlerFunc(ok))
	client := tlsClient(ca, &tls.Config{})

	cert2, key2 := ca.serverPair(t, 2)
	cert3, key3 := ca.serverPair(t, 3)
	for _, c := range []struct {
		name   string
		change func(t *testing.T)
		serial int64
		errors int // reported so far
	}{
		{"the first pair", func(t *testing.T) {}, 1, 0},
		{"renewed", func(t *testing.T) { writePair(t, dir, cert2, key2) }, 2, 0},
		{"a certificate without its key: the old pair", func(t *testing.T) { replaceFile(t, certFile, string(cert3)) }, 2, 1},
		{"and its key", func(t *testing.T) { replaceFile(t, keyFile, string(key3)) }, 3, 1},
		{"not PEM: the old pair", func(t *testing.T) { replaceFile(t, keyFile, "-----BEGIN garbage") }, 3, 2},
		{"a removed key: the old pair", func(t *testing.T) { os.Remove(keyFile) }, 3, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.change(t)
			for range 2 {
				_, serial, err := get(t, client, url)
				if err != nil {
					t.Fatal(err)
				}
				if serial != c.serial {
					t.Errorf("the server shows certificate %d, want %d", serial, c.serial)
				}
			}
			if errs.n != c.errors {
				t.Errorf("%d errors reported, want %d", errs.n, c.errors)
			}
		})
	}
}

func TestTLSVersions(t *testing.T) {
	ca := newTestCA(t, "test CA")
	cert, key := ca.serverPair(t, 1)
	certFile, keyFile := writePair(t, t.TempDir(), cert, key)
	cfg, err := TLSConfig(certFile, keyFile, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
	url := serveTLS(t, cfg, http.HandlerFunc(ok))
	for _, c := range []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, false},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := get(t, tlsClient(ca, &tls.Config{MinVersion: c.min, MaxVersion: c.max}), url)
			if (err == nil) != c.ok {
				t.Errorf("connecting: %v, want success %v", err, c.ok)
			}
		})
	}
}

func TestTLSClientCertificates(t *testing.T) {
	serverCA, clientCA, otherCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "other CA")
	dir := t.TempDir()
	cert, key := serverCA.serverPair(t, 1)
	certFile, keyFile := writePair(t, dir, cert, key)
	caFile := filepath.Join(dir, "clients.pem")
	replaceFile(t, caFile, string(clientCA.pem))
	cfg, err := TLSConfig(certFile, keyFile, caFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := openHtpasswd(t, nil, htpasswdLine(t, "alice", "a1"))
	withCerts, err := New(Options{Method: MethodBasic, Htpasswd: h, ClientCerts: true})
	if err != nil {
		t.Fatal(err)
	}
	withoutCerts, err := New(Options{Method: MethodBasic, Htpasswd: h})
	if err != nil {
		t.Fatal(err)
	}
	who := func(a *Authenticator) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := a.Authenticate(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			fmt.Fprintf(w, "%q %q", id.Name, id.Method)
		})
	}
	urlWith, urlWithout := serveTLS(t, cfg, who(withCerts)), serveTLS(t, cfg, who(withoutCerts))

	robot := clientCA.clientCert(t, "robot")
	for _, c := range []struct {
		name  string
		url   string
		cert  tls.Certificate
		basic bool
		want  string // the identity, or "refused"
	}{
		{"a verified certificate", urlWith, robot, false, `"robot" "tls"`},
		{"no certificate", urlWith, tls.Certificate{}, false, `"" ""`},
		{"basic credentials come first", urlWith, robot, true, `"alice" "basic"`},
		{"a certificate of another CA", urlWith, otherCA.clientCert(t, "robot"), false, "refused"},
		{"a certificate without a name", urlWith, clientCA.clientCert(t, ""), false, `"" ""`},
		{"certificates not asked for", urlWithout, robot, false, `"" ""`},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Sent whatever the server asks for: from Certificates, Go
			// sends none the server's CAs did not sign.
			client := tlsClient(serverCA, &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &c.cert, nil
			}})
			req, err := http.NewRequest("GET", c.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.basic {
				req.SetBasicAuth("alice", "a1")
			}
			got := "refused"
			resp, err := client.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				got = string(b)
			}
			if got != c.want {
				t.Errorf("identity %s (%v), want %s", got, err, c.want)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	ca := newTestCA(t, "test CA")
	dir := t.TempDir()
	cert1, key1 := ca.serverPair(t, 1)
	_, key2 := ca.serverPair(t, 2)
	certFile, keyFile := writePair(t, dir, cert1, key1)
	otherKey := filepath.Join(dir, "other.key")
	replaceFile(t, otherKey, string(key2))
	notPEM := filepath.Join(dir, "not.pem")
	replaceFile(t, notPEM, "hello")
	for _, c := range []struct {
		name                   string
		cert, key, ca, wantErr string
	}{
		{"no certificate file", filepath.Join(dir, "missing"), keyFile, "", "no such file"},
		{"no key file", certFile, filepath.Join(dir, "missing"), "", "no such file"},
		{"another certificate's key", certFile, otherKey, "", "private key does not match"},
		{"no client CA file", certFile, keyFile, filepath.Join(dir, "missing"), "no such file"},
		{"a client CA file without certificates", certFile, keyFile, notPEM, "no PEM certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := TLSConfig(c.cert, c.key, c.ca, nil)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("TLSConfig: %v, want an error with %q", err, c.wantErr)
			}
		})
	}
}
