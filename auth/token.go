package auth

import (
	"crypto"
	"errors"
	"time"
)

// TokenOptions configure bearer tokens (the distribution token spec).
type TokenOptions struct {
	// Realm is where clients get tokens: the built-in issuer's URL
	// (<public URL>/auth/token) or an external issuer's.
	Realm string
	// Service names this registry: the challenge's service, and the
	// audience every token must carry.
	Service string
	// Issuer is the iss claim tokens carry (and must carry).
	Issuer string
	// Key, when set, makes Berth the issuer: /auth/token signs with it, and
	// tokens are verified with its public key.
	Key crypto.Signer
	// KeysFile, without Key, trusts an external issuer: a PEM file of
	// certificates or public keys, or a JWKS document. It is read again
	// when it changes.
	KeysFile string
	// Expiry is an access token's lifetime (default 5m).
	Expiry time.Duration
	// RefreshExpiry is a refresh token's lifetime (default 30 days).
	RefreshExpiry time.Duration
}

// Tokens verifies bearer tokens and, with a key, issues them.
type Tokens struct {
	TokenOptions
}

// NewTokens checks the options and reads the trusted keys.
func NewTokens(o TokenOptions, onError func(error)) (*Tokens, error) {
	return nil, errors.New("TODO")
}

func (t *Tokens) issuing() bool { return t.Key != nil }

// verify checks a bearer token and returns who holds it and what it grants.
func (t *Tokens) verify(raw string) (Identity, error) {
	return Identity{}, ErrUnauthenticated
}
