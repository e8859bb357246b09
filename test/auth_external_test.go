package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestAuthExternalIssuer: with --auth.token.trust, Berth takes tokens of
// another issuer, verified against its JWKS, challenges clients with that
// issuer's realm, issues none itself, and follows a key rotation in the
// JWKS file without a restart.
func TestAuthExternalIssuer(t *testing.T) {
	t.Parallel()
	jwks := filepath.Join(t.TempDir(), "issuer.jwks")
	writeJWKS := func(keys map[string]*ecdsa.PrivateKey) {
		var entries []string
		for kid, k := range keys {
			b := func(n []byte) string { return base64.RawURLEncoding.EncodeToString(n) }
			x, y := make([]byte, 32), make([]byte, 32)
			k.X.FillBytes(x)
			k.Y.FillBytes(y)
			entries = append(entries, fmt.Sprintf(`{"kty":"EC","crv":"P-256","kid":%q,"use":"sig","alg":"ES256","x":%q,"y":%q}`, kid, b(x), b(y)))
		}
		if err := os.WriteFile(jwks+".new", []byte(`{"keys":[`+strings.Join(entries, ",")+`]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(jwks+".new", jwks); err != nil {
			t.Fatal(err)
		}
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	first, second := newKey(), newKey()
	writeJWKS(map[string]*ecdsa.PrivateKey{"first": first})
	const realm = "https://auth.example.com/token"
	s := startBerth(t, serverOptions{Flags: []string{"--auth.method", "token", "--auth.token.trust", jwks,
		"--auth.token.realm", realm, "--auth.token.issuer", "external", "--auth.token.service", "registry.example.com"}})

	sign := func(kid string, key *ecdsa.PrivateKey, scope string) map[string]string {
		parts := strings.SplitN(scope, ":", 3)
		claims := jwt.MapClaims{"iss": "external", "aud": "registry.example.com", "sub": "ci",
			"exp": time.Now().Add(5 * time.Minute).Unix(), "nbf": time.Now().Add(-time.Minute).Unix(),
			"access": []map[string]any{{"type": parts[0], "name": parts[1], "actions": strings.Split(parts[2], ",")}}}
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
		tok.Header["kid"] = kid
		raw, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return header("Bearer " + raw)
	}

	resp, body := httpDo(t, http.MethodGet, s.URL+"/v2/apps/x/tags/list", nil, nil)
	expectOCIError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED")
	if want := `Bearer realm="` + realm + `",service="registry.example.com",scope="repository:apps/x:pull"`; resp.Header.Get("WWW-Authenticate") != want {
		t.Errorf("challenge %q, want %q", resp.Header.Get("WWW-Authenticate"), want)
	}
	resp, body = httpDo(t, http.MethodGet, s.URL+"/auth/token?service=registry.example.com", nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the built-in issuer answered %d with an external one trusted: %s", resp.StatusCode, body)
	}

	layer := []byte("pushed with an external token")
	digest := digestOf(layer)
	resp, body = httpDo(t, http.MethodPost, s.URL+"/v2/apps/x/blobs/uploads/?digest="+digest, layer, sign("first", first, "repository:apps/x:pull,push"))
	expectStatus(t, resp, body, http.StatusCreated)
	resp, body = httpDo(t, http.MethodGet, s.URL+"/v2/apps/x/blobs/"+digest, nil, sign("first", first, "repository:apps/x:pull"))
	expectStatus(t, resp, body, http.StatusOK)
	resp, body = httpDo(t, http.MethodGet, s.URL+"/v2/apps/y/blobs/"+digest, nil, sign("first", first, "repository:apps/x:pull"))
	expectOCIError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED")
	resp, body = httpDo(t, http.MethodGet, s.URL+"/v2/apps/x/blobs/"+digest, nil, sign("second", second, "repository:apps/x:pull"))
	expectOCIError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED")

	// The issuer rotates to a second key; Berth reads the file again within seconds.
	writeJWKS(map[string]*ecdsa.PrivateKey{"second": second})
	poll(t, "a token of the rotated key accepted", func() bool {
		resp, _ := httpDo(t, http.MethodGet, s.URL+"/v2/apps/x/blobs/"+digest, nil, sign("second", second, "repository:apps/x:pull"))
		return resp.StatusCode == http.StatusOK
	})
	resp, body = httpDo(t, http.MethodGet, s.URL+"/v2/apps/x/blobs/"+digest, nil, sign("first", first, "repository:apps/x:pull"))
	expectOCIError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED")
}
