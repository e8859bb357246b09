package auth

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
	// when it changes. A certificate stands for its key alone: neither
	// its dates nor a chain (x5c) are checked. A token's kid, if any,
	// must be a JWKS key's kid, or a PEM key's RFC 7638 thumbprint or
	// libtrust key ID.
	KeysFile string
	// Expiry is an access token's lifetime (default 5m).
	Expiry time.Duration
	// RefreshExpiry is a refresh token's lifetime (default 30 days).
	RefreshExpiry time.Duration
}

// Tokens verifies bearer tokens and, with a key, issues them.
type Tokens struct {
	TokenOptions
	// method is how Key signs.
	method jwt.SigningMethod
	// kid names Key in the tokens it signs: its RFC 7638 thumbprint.
	kid string
	// own is Key's public key; file, without Key, the trusted keys.
	own  []trustedKey
	file *watched[[]trustedKey]
}

const (
	// maxTokenSize bounds the tokens verify reads, before any parsing.
	maxTokenSize = 16 << 10
	// leeway is the clock skew allowed between an issuer and Berth.
	leeway = 30 * time.Second
	// refreshAudience, after the service, is a refresh token's audience:
	// a different one, so that no refresh token passes as an access token.
	refreshAudience = "#refresh"
)

// NewTokens checks the options and reads the trusted keys. onError hears
// of a later change to KeysFile that does not parse; the previous keys
// stay in force.
func NewTokens(o TokenOptions, onError func(error)) (*Tokens, error) {
	switch {
	case o.Service == "" || o.Issuer == "" || o.Realm == "":
		return nil, errors.New("token auth: the realm, service and issuer are required")
	case (o.Key == nil) == (o.KeysFile == ""):
		return nil, errors.New("token auth: give either a signing key or a trusted-keys file")
	case o.Expiry < 0 || o.RefreshExpiry < 0:
		return nil, errors.New("token auth: negative token lifetime")
	}
	if o.Expiry == 0 {
		o.Expiry = 5 * time.Minute
	}
	if o.RefreshExpiry == 0 {
		o.RefreshExpiry = 30 * 24 * time.Hour
	}
	t := &Tokens{TokenOptions: o}
	if o.KeysFile != "" {
		f, err := watch(o.KeysFile, parseTrustedKeys, onError)
		if err != nil {
			return nil, fmt.Errorf("token keys %s: %w", o.KeysFile, err)
		}
		t.file = f
		return t, nil
	}
	var err error
	if t.method, err = signingMethod(o.Key); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	k, err := newTrustedKey(o.Key.Public())
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	t.own, t.kid = []trustedKey{k}, k.ids[0]
	return t, nil
}

func (t *Tokens) issuing() bool { return t.Key != nil }

// trusted are the keys tokens may be signed with.
func (t *Tokens) trusted() []trustedKey {
	if t.file != nil {
		return t.file.get()
	}
	return t.own
}

// claims are a token's claims: the registered ones and, in an access
// token, the grants; in a refresh token, the stamp of its user's hash.
type claims struct {
	jwt.RegisteredClaims
	Access []Access `json:"access,omitzero"`
	Pwd    string   `json:"pwd,omitempty"`
}

// verify checks a bearer token and returns who holds it and what it grants.
func (t *Tokens) verify(raw string) (Identity, error) {
	c, err := t.parse(raw, t.Service)
	if err != nil {
		return Identity{}, err
	}
	// Non-nil even when empty: a token's grants, not the policy, decide.
	access := c.Access
	if access == nil {
		access = []Access{}
	}
	return Identity{Name: c.Subject, Method: MethodToken, Access: access}, nil
}

// verifyRefresh checks a refresh token and returns its user and the
// hashStamp it was issued with ("" in a token without one).
func (t *Tokens) verifyRefresh(raw string) (user, stamp string, err error) {
	c, err := t.parse(raw, t.Service+refreshAudience)
	if err != nil {
		return "", "", err
	}
	if c.Subject == "" {
		return "", "", fmt.Errorf("%w: refresh token without a subject", ErrUnauthenticated)
	}
	return c.Subject, c.Pwd, nil
}

// parse checks a token's size, signature, issuer, audience and times.
func (t *Tokens) parse(raw, audience string) (*claims, error) {
	if len(raw) > maxTokenSize {
		return nil, fmt.Errorf("%w: token longer than %d bytes", ErrUnauthenticated, maxTokenSize)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods(algorithms),
		jwt.WithIssuer(t.Issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithStrictDecoding(),
	)
	var c claims
	if _, err := p.ParseWithClaims(raw, &c, t.keys); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return &c, nil
}

// keys picks the trusted keys that may have signed tok: the one its kid
// names, or without a kid every key its algorithm fits.
func (t *Tokens) keys(tok *jwt.Token) (any, error) {
	if _, ok := tok.Header["crit"]; ok {
		return nil, errors.New("critical header parameters are not understood")
	}
	kid, named := tok.Header["kid"].(string)
	if _, given := tok.Header["kid"]; given && !named {
		return nil, errors.New("kid is not a string")
	}
	alg := tok.Method.Alg()
	var set jwt.VerificationKeySet
	for _, k := range t.trusted() {
		if k.fits(alg) && (!named || slices.Contains(k.ids, kid)) {
			set.Keys = append(set.Keys, k.pub)
		}
	}
	if len(set.Keys) == 0 {
		if named {
			return nil, fmt.Errorf("no trusted %s key with that kid", alg)
		}
		return nil, fmt.Errorf("no trusted %s key", alg)
	}
	return set, nil
}

// issue signs an access token granting access to sub ("" for an
// anonymous caller).
func (t *Tokens) issue(sub string, access []Access, now time.Time) (string, error) {
	if access == nil {
		access = []Access{}
	}
	return t.sign(sub, t.Service, t.Expiry, access, now, "")
}

// issueRefresh signs a refresh token for sub: it grants nothing, and only
// the issuer accepts it, in exchange for an access token, while hash is
// still sub's htpasswd hash.
func (t *Tokens) issueRefresh(sub string, hash []byte, now time.Time) (string, error) {
	return t.sign(sub, t.Service+refreshAudience, t.RefreshExpiry, nil, now, hashStamp(hash))
}

// hashStamp names a password hash in a refresh token, so that a new
// password ends the refresh tokens of the old: the first 16 bytes of the
// SHA-256 of the bcrypt hash, in base64url. It holds nothing to guess a
// password from: a guess is checked with the hash's salt, which it hides.
func hashStamp(hash []byte) string {
	sum := sha256.Sum256(hash)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func (t *Tokens) sign(sub, audience string, life time.Duration, access []Access, now time.Time, pwd string) (string, error) {
	tok := jwt.NewWithClaims(t.method, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.Issuer,
			Subject:   sub,
			Audience:  jwt.ClaimStrings{audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(life)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        rand.Text(),
		},
		Access: access,
		Pwd:    pwd,
	})
	tok.Header["kid"] = t.kid
	return tok.SignedString(t.Key)
}
