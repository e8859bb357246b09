package test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenRows: real tokens used beyond what they grant, and tokens made by the test: re-signed with
// the server's own key (from its data directory) but expired, early, for another service or
// issuer; signed with another key; edited; unsigned; signed with HMAC keyed by the public key.
func (a *adversary) tokenRows(t *testing.T) []adversarialRow {
	pullX := func(t *testing.T) string { return a.token(t, "robot", "repository:apps/x:pull") }
	const manifestX, manifestY = "/v2/apps/x/manifests/v1", "/v2/secret/y/manifests/v1"
	// widened grants secret/y as well, which robot's policy never gives.
	widened := func(_ map[string]any, c jwt.MapClaims) {
		c["access"] = []map[string]any{
			{"type": "repository", "name": "apps/x", "actions": []string{"pull"}},
			{"type": "repository", "name": "secret/y", "actions": []string{"pull", "push", "delete"}},
		}
	}
	now := time.Now().Unix()
	expired := func(t *testing.T) string {
		return a.reissue(t, func(_ map[string]any, c jwt.MapClaims) {
			c["exp"], c["nbf"], c["iat"] = now-60, now-600, now-600
		}, nil, nil)
	}
	return []adversarialRow{
		a.served("control: robot's pull token for apps/x", manifestX, pullX),
		a.insufficient("apps/x pull token used on apps/w", "GET", "/v2/apps/w/manifests/v1", pullX, "repository:apps/w:pull"),
		a.insufficient("apps/x pull token used on secret/y", "GET", manifestY, pullX, "repository:secret/y:pull"),
		a.insufficient("apps/x pull token used to push to apps/x", "POST", "/v2/apps/x/blobs/uploads/", pullX, "repository:apps/x:pull,push"),
		{"token asked for secret/y", func(t *testing.T) {
			q := url.Values{"service": {"berth"}, "scope": {"repository:secret/y:pull"}}
			resp, body := httpDo(t, http.MethodGet, a.URL+"/auth/token?"+q.Encode(), nil, header(a.basic(t, "robot")))
			if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
				return // refusing the token outright is as good as a token that grants nothing
			}
			expectStatus(t, resp, body, http.StatusOK)
			var ans tokenAnswer
			if err := json.Unmarshal(body, &ans); err != nil {
				t.Fatal(err)
			}
			// The issuer says it was asked about secret/y and granted nothing, so the registry
			// denies rather than challenges again.
			if grants := mustJSONString(t, tokenClaims(t, ans.Token)["access"]); grants != `[{"actions":[],"name":"secret/y","type":"repository"}]` {
				t.Fatalf("robot's token grants %s", grants)
			}
			a.refused("", "GET", manifestY, fixed("Bearer "+ans.Token), 403, "DENIED", "").try(t)
		}},
		a.refused("refresh token as a bearer token", "GET", manifestX, func(t *testing.T) string {
			return "Bearer " + a.refreshToken(t, "robot", "repository:apps/x:pull")
		}, 401, "UNAUTHORIZED", ""),
		a.served("control: a token re-signed with the server's key", manifestX, func(t *testing.T) string {
			return a.reissue(t, func(map[string]any, jwt.MapClaims) {}, nil, nil)
		}),
		a.refused("expired token", "GET", manifestX, expired, 401, "UNAUTHORIZED", ""),
		// A client holding an expired token learns from the challenge which scope to ask for again.
		a.refused("expired token: the challenge names the scope needed", "GET", manifestX, expired, 401, "UNAUTHORIZED", "repository:apps/x:pull"),
		a.refused("token not valid for an hour", "GET", manifestX, func(t *testing.T) string {
			return a.reissue(t, func(_ map[string]any, c jwt.MapClaims) {
				c["exp"], c["nbf"], c["iat"] = now+7200, now+3600, now+3600
			}, nil, nil)
		}, 401, "UNAUTHORIZED", ""),
		a.refused("token for another service", "GET", manifestX, func(t *testing.T) string {
			return a.reissue(t, func(_ map[string]any, c jwt.MapClaims) { c["aud"] = "another-registry" }, nil, nil)
		}, 401, "UNAUTHORIZED", ""),
		a.refused("token from another issuer", "GET", manifestX, func(t *testing.T) string {
			return a.reissue(t, func(_ map[string]any, c jwt.MapClaims) { c["iss"] = "mallory" }, nil, nil)
		}, 401, "UNAUTHORIZED", ""),
		a.refused("widened token signed with another key", "GET", manifestY, func(t *testing.T) string {
			return a.reissue(t, widened, nil, otherKey(t, a.serverKey(t)))
		}, 401, "UNAUTHORIZED", ""),
		a.refused("widened payload, original signature", "GET", manifestY, func(t *testing.T) string {
			parts := strings.Split(strings.TrimPrefix(pullX(t), "Bearer "), ".")
			c := tokenClaims(t, strings.Join(parts, "."))
			widened(nil, c)
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(mustJSONString(t, c)))
			return "Bearer " + strings.Join(parts, ".")
		}, 401, "UNAUTHORIZED", ""),
		a.refused("widened token with alg none", "GET", manifestY, func(t *testing.T) string {
			return a.reissue(t, widened, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)
		}, 401, "UNAUTHORIZED", ""),
		a.refused("widened token, HS256 keyed with the server's public key", "GET", manifestY, func(t *testing.T) string {
			der, err := x509.MarshalPKIXPublicKey(a.serverKey(t).Public())
			if err != nil {
				t.Fatal(err)
			}
			return a.reissue(t, widened, jwt.SigningMethodHS256, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		}, 401, "UNAUTHORIZED", ""),
	}
}

// reissue takes a real pull token of robot for apps/x, lets edit change its header and claims,
// and signs it again with method (nil: the token's own) and key (nil: the server's, read from its
// data directory).
func (a *adversary) reissue(t *testing.T, edit func(header map[string]any, claims jwt.MapClaims), method jwt.SigningMethod, key any) string {
	t.Helper()
	raw := strings.TrimPrefix(a.token(t, "robot", "repository:apps/x:pull"), "Bearer ")
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser().ParseUnverified(raw, claims)
	if err != nil {
		t.Fatalf("the issuer's token is no JWT: %v", err)
	}
	if method == nil {
		method = tok.Method
	}
	if key == nil {
		key = a.serverKey(t)
	}
	claims["jti"] = "reissued-" + base64.RawURLEncoding.EncodeToString(randBytes(t, 8))
	edit(tok.Header, claims)
	tok.Header["alg"] = method.Alg()
	s, err := (&jwt.Token{Header: tok.Header, Claims: claims, Method: method}).SignedString(key)
	if err != nil {
		t.Fatalf("signing a token with %s: %v", method.Alg(), err)
	}
	return "Bearer " + s
}

// serverKey reads the built-in issuer's signing key from the server's data directory.
func (a *adversary) serverKey(t testing.TB) crypto.Signer {
	t.Helper()
	p := filepath.Join(a.Data, "auth-token-key.pem")
	block, _ := pem.Decode(readFile(t, p))
	if block == nil {
		t.Fatalf("%s holds no PEM block", p)
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	signer, ok := key.(crypto.Signer)
	if err != nil || !ok {
		t.Fatalf("%s: %s block is no private key: %v", p, block.Type, err)
	}
	return signer
}

// otherKey makes a key of the same kind as k.
func otherKey(t testing.TB, k crypto.Signer) crypto.Signer {
	t.Helper()
	var other crypto.Signer
	var err error
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		other, err = ecdsa.GenerateKey(k.Curve, rand.Reader)
	case *rsa.PrivateKey:
		other, err = rsa.GenerateKey(rand.Reader, k.N.BitLen())
	case ed25519.PrivateKey:
		_, other, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("signing key of type %T", k)
	}
	if err != nil {
		t.Fatal(err)
	}
	return other
}

// refreshToken asks the built-in issuer for an offline token and returns its refresh_token.
func (a *adversary) refreshToken(t testing.TB, user, scope string) string {
	t.Helper()
	q := url.Values{"service": {"berth"}, "scope": {scope}, "offline_token": {"true"}, "client_id": {"berth-e2e"}}
	resp, body := httpDo(t, http.MethodGet, a.URL+"/auth/token?"+q.Encode(), nil, header(a.basic(t, user)))
	expectStatus(t, resp, body, http.StatusOK)
	var ans tokenAnswer
	if err := json.Unmarshal(body, &ans); err != nil || ans.RefreshToken == "" {
		t.Fatalf("GET /auth/token with offline_token=true: no refresh_token (%v): %s", err, truncate(body))
	}
	return ans.RefreshToken
}

// tokenClaims decodes a JWT's claims without verifying it.
func tokenClaims(t testing.TB, raw string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, c); err != nil {
		t.Fatalf("not a JWT: %v", err)
	}
	return c
}

func mustJSONString(t testing.TB, v any) string { return string(mustJSON(t, v)) }
