package auth

import (
	"crypto"
	"crypto/tls"
	"net/http"
)

func (a *Authenticator) TokenHandler() http.Handler { return nil }

func LoadOrCreateKey(path string) (crypto.Signer, error) { return nil, nil }

func TLSConfig(certFile, keyFile, clientCAFile string, onError func(error)) (*tls.Config, error) {
	return nil, nil
}
