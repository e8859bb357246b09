package auth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
)

// TLSConfig returns a server's TLS configuration: TLS 1.2 at least, and the
// certificate and key of certFile and keyFile, read again when either
// changes (a renewed certificate needs no restart). With clientCAFile, a
// client certificate is verified against its CAs when the client gives
// one; Options.ClientCerts makes its common name an identity. The CA file
// is read once. onError hears of a new certificate and key that do not
// make a pair; the previous pair is served meanwhile.
//
// The configuration has no Certificates, so that every handshake asks
// GetCertificate: serve it with http.Server.ServeTLS(l, "", "") or
// tls.NewListener, not through something that adds a certificate of its
// own.
func TLSConfig(certFile, keyFile, clientCAFile string, onError func(error)) (*tls.Config, error) {
	f, err := openTLSFiles(certFile, keyFile, clientCAFile, onError)
	if err != nil {
		return nil, err
	}
	return f.config(), nil
}

// tlsFiles are the files of a TLS configuration.
type tlsFiles struct {
	cert, key *watched[[]byte]
	clientCAs *x509.CertPool // nil without a client CA file
	onError   func(error)

	mu              sync.Mutex
	certPEM, keyPEM []byte           // the contents last tried, good or bad
	pair            *tls.Certificate // the last good pair
}

func openTLSFiles(certFile, keyFile, clientCAFile string, onError func(error)) (*tlsFiles, error) {
	read := func(b []byte) ([]byte, error) { return b, nil }
	f := &tlsFiles{onError: onError}
	var err error
	if f.cert, err = watch(certFile, read, onError); err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	if f.key, err = watch(keyFile, read, onError); err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	if _, err := f.current(); err != nil {
		return nil, err
	}
	if clientCAFile != "" {
		if f.clientCAs, err = readCertPool(clientCAFile); err != nil {
			return nil, fmt.Errorf("tls client CAs: %w", err)
		}
	}
	return f, nil
}

func (f *tlsFiles) config() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: f.certificate}
	if f.clientCAs != nil {
		// IfGiven: clients without a certificate still log in otherwise.
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = f.clientCAs
	}
	return c
}

// certificate is the GetCertificate callback.
func (f *tlsFiles) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	pair, err := f.current()
	if err != nil && f.onError != nil {
		f.onError(err)
	}
	return pair, nil
}

// current returns the last good pair, after trying the files' contents if
// they changed since the last try; err is that try's failure. The
// certificate and key are rarely written at once: between the two writes
// they are no pair, the old one is served, and the second write mends it.
func (f *tlsFiles) current() (*tls.Certificate, error) {
	certPEM, keyPEM := f.cert.get(), f.key.get()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pair != nil && bytes.Equal(certPEM, f.certPEM) && bytes.Equal(keyPEM, f.keyPEM) {
		return f.pair, nil
	}
	f.certPEM, f.keyPEM = certPEM, keyPEM
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return f.pair, fmt.Errorf("tls certificate %s and key %s: %w", f.cert.path, f.key.path, err)
	}
	f.pair = &pair
	return f.pair, nil
}

func readCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}
