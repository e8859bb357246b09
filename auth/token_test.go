package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testService = "registry.test"
	testIssuer  = "berth-test"
	testRealm   = "https://registry.test/auth/token"
)

func ecKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issuing returns Tokens that sign with key.
func issuing(t testing.TB, key crypto.Signer) *Tokens {
	t.Helper()
	tk, err := NewTokens(TokenOptions{Realm: testRealm, Service: testService, Issuer: testIssuer, Key: key, Expiry: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// trusting returns Tokens that trust the keys file holding contents.
func trusting(t testing.TB, contents []byte) *Tokens {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, contents, 0o644); err != nil {
		t.Fatal(err)
	}
	tk, err := NewTokens(TokenOptions{Realm: testRealm, Service: testService, Issuer: testIssuer, KeysFile: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func publicPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func certPEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// jwkJSON writes pub as a JWK.
func jwkJSON(t testing.TB, pub crypto.PublicKey, kid, alg string) map[string]string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	j := map[string]string{"kid": kid, "use": "sig"}
	if alg != "" {
		j["alg"] = alg
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		j["kty"], j["n"], j["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		p, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		n := len(p) / 2
		j["kty"], j["crv"], j["x"], j["y"] = "EC", k.Curve.Params().Name, b64(p[1:1+n]), b64(p[1+n:])
	case ed25519.PublicKey:
		j["kty"], j["crv"], j["x"] = "OKP", "Ed25519", b64(k)
	}
	return j
}

func jwks(t testing.TB, keys ...map[string]string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// good are the claims of a valid access token, for tests to spoil.
func good() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":    testIssuer,
		"sub":    "alice",
		"aud":    testService,
		"exp":    now.Add(time.Hour).Unix(),
		"nbf":    now.Unix(),
		"iat":    now.Unix(),
		"access": []Access{{Type: "repository", Name: "apps/web", Actions: []string{"pull"}}},
	}
}

// with returns good's claims changed by edit.
func with(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := good()
	edit(c)
	return c
}

// sign signs claims with alg and key; header entries are added (a nil
// value removes one).
func sign(t testing.TB, alg jwt.SigningMethod, key any, claims jwt.Claims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(alg, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func thumb(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	s, err := thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	pubPEM := publicPEM(t, key.Public())
	kid := map[string]any{"kid": thumb(t, key.Public())}
	other := ecKey(t, elliptic.P256())
	rsaOther := rsaKey(t)
	own := issuing(t, key)
	refresh, err := own.issueRefresh("alice", []byte("a hash"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, jwt.SigningMethodES256, key, good(), kid)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"berth-test","sub":"root","aud":"registry.test","exp":9999999999}`)) + "." + parts[2]
	huge := with(func(c jwt.MapClaims) {
		c["access"] = []Access{{Type: "repository", Name: strings.Repeat("a", maxTokenSize), Actions: []string{"pull"}}}
	})

	for _, c := range []struct {
		name, token string
	}{
		{"no token", ""},
		{"garbage", "not a token"},
		{"two parts", parts[0] + "." + parts[1]},
		{"expired", sign(t, jwt.SigningMethodES256, key, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), kid)},
		{"no expiry", sign(t, jwt.SigningMethodES256, key, with(func(c jwt.MapClaims) { delete(c, "exp") }), kid)},
		{"not yet valid", sign(t, jwt.SigningMethodES256, key, with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), kid)},
		{"wrong audience", sign(t, jwt.SigningMethodES256, key, with(func(c jwt.MapClaims) { c["aud"] = "elsewhere" }), kid)},
		{"no audience", sign(t, jwt.SigningMethodES256, key, with(func(c jwt.MapClaims) { delete(c, "aud") }), kid)},
		{"wrong issuer", sign(t, jwt.SigningMethodES256, key, with(func(c jwt.MapClaims) { c["iss"] = "mallory" }), kid)},
		{"no issuer", sign(t, jwt.SigningMethodES256, key, with(func(c jwt.MapClaims) { delete(c, "iss") }), kid)},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good(), nil)},
		{"alg none with kid", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good(), kid)},
		{"HS256 keyed with the public key PEM", sign(t, jwt.SigningMethodHS256, pubPEM, good(), nil)},
		{"HS256 keyed with the public key PEM, with kid", sign(t, jwt.SigningMethodHS256, pubPEM, good(), kid)},
		{"RS256 against an EC key", sign(t, jwt.SigningMethodRS256, rsaOther, good(), kid)},
		{"RS256 against an EC key, no kid", sign(t, jwt.SigningMethodRS256, rsaOther, good(), nil)},
		{"ES384 header on the EC P-256 key", sign(t, jwt.SigningMethodES384, ecKey(t, elliptic.P384()), good(), kid)},
		{"unknown kid", sign(t, jwt.SigningMethodES256, key, good(), map[string]any{"kid": "someone-else"})},
		{"kid not a string", sign(t, jwt.SigningMethodES256, key, good(), map[string]any{"kid": 7})},
		{"critical header", sign(t, jwt.SigningMethodES256, key, good(), map[string]any{"crit": []string{"exp"}, "exp": 1})},
		{"signed by another key", sign(t, jwt.SigningMethodES256, other, good(), kid)},
		{"signed by another key, no kid", sign(t, jwt.SigningMethodES256, other, good(), nil)},
		{"tampered claims", tampered},
		{"no signature", parts[0] + "." + parts[1] + "."},
		{"oversized", sign(t, jwt.SigningMethodES256, key, huge, kid)},
		{"refresh token as access token", refresh},
	} {
		for verifier, tk := range map[string]*Tokens{"built-in": own, "PEM file": trusting(t, pubPEM)} {
			t.Run(c.name+"/"+verifier, func(t *testing.T) {
				id, err := tk.verify(c.token)
				if !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("verify = %+v, %v; want ErrUnauthenticated", id, err)
				}
				t.Log(err)
			})
		}
	}
}

func TestVerifyAcceptsGoodTokens(t *testing.T) {
	ec := ecKey(t, elliptic.P256())
	ec384 := ecKey(t, elliptic.P384())
	rs := rsaKey(t)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	want := good()["access"].([]Access)
	keysFile := jwks(t,
		jwkJSON(t, rs.Public(), "rsa-1", ""),
		jwkJSON(t, ec384.Public(), "ec-1", "ES384"),
		jwkJSON(t, ed.Public(), "ed-1", ""),
		map[string]string{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, // skipped, never trusted
		jwkJSON(t, rsaKey(t).Public(), "encryption", "RSA-OAEP"),        // skipped
	)
	certs := append(certPEM(t, ec), publicPEM(t, rs.Public())...)

	for _, c := range []struct {
		name  string
		tk    *Tokens
		token string
	}{
		{"built-in, its kid", issuing(t, ec), sign(t, jwt.SigningMethodES256, ec, good(), map[string]any{"kid": thumb(t, ec.Public())})},
		{"built-in, no kid", issuing(t, ec), sign(t, jwt.SigningMethodES256, ec, good(), nil)},
		{"built-in Ed25519", issuing(t, ed), sign(t, jwt.SigningMethodEdDSA, ed, good(), nil)},
		{"leeway on exp", issuing(t, ec), sign(t, jwt.SigningMethodES256, ec, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-10 * time.Second).Unix() }), nil)},
		{"leeway on nbf", issuing(t, ec), sign(t, jwt.SigningMethodES256, ec, with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(10 * time.Second).Unix() }), nil)},
		{"audience list", issuing(t, ec), sign(t, jwt.SigningMethodES256, ec, with(func(c jwt.MapClaims) { c["aud"] = []string{"other", testService} }), nil)},
		{"PEM certificate, thumbprint kid", trusting(t, certs), sign(t, jwt.SigningMethodES256, ec, good(), map[string]any{"kid": thumb(t, ec.Public())})},
		{"PEM certificate, libtrust kid", trusting(t, certs), sign(t, jwt.SigningMethodES256, ec, good(), map[string]any{"kid": libtrustID(ec.Public())})},
		{"PEM certificate, x5c and no kid", trusting(t, certs), sign(t, jwt.SigningMethodES256, ec, good(), map[string]any{"x5c": []string{"ignored"}})},
		{"PEM public key, RS256", trusting(t, certs), sign(t, jwt.SigningMethodRS256, rs, good(), nil)},
		{"PEM public key, PS512", trusting(t, certs), sign(t, jwt.SigningMethodPS512, rs, good(), nil)},
		{"JWKS RSA kid", trusting(t, keysFile), sign(t, jwt.SigningMethodRS256, rs, good(), map[string]any{"kid": "rsa-1"})},
		{"JWKS EC P-384 kid", trusting(t, keysFile), sign(t, jwt.SigningMethodES384, ec384, good(), map[string]any{"kid": "ec-1"})},
		{"JWKS Ed25519 kid", trusting(t, keysFile), sign(t, jwt.SigningMethodEdDSA, ed, good(), map[string]any{"kid": "ed-1"})},
		{"JWKS no kid", trusting(t, keysFile), sign(t, jwt.SigningMethodEdDSA, ed, good(), nil)},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := c.tk.verify(c.token)
			if err != nil {
				t.Fatal(err)
			}
			if id.Name != "alice" || id.Method != "token" || !reflect.DeepEqual(id.Access, want) {
				t.Errorf("verify = %+v", id)
			}
		})
	}

	t.Run("JWKS kid of another key", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodRS256, rs, good(), map[string]any{"kid": "ed-1"})
		if _, err := trusting(t, keysFile).verify(tok); err == nil {
			t.Error("a token naming another key's kid is accepted")
		}
	})
	t.Run("JWKS alg pins the algorithm", func(t *testing.T) {
		pinned := trusting(t, jwks(t, jwkJSON(t, rs.Public(), "rsa-1", "RS256")))
		if _, err := pinned.verify(sign(t, jwt.SigningMethodPS256, rs, good(), map[string]any{"kid": "rsa-1"})); err == nil {
			t.Error("a PS256 token passes for a key pinned to RS256")
		}
	})
}

func TestIssuedTokens(t *testing.T) {
	tk := issuing(t, ecKey(t, elliptic.P256()))
	now := time.Now()
	access := []Access{{Type: "repository", Name: "apps/web", Actions: []string{"pull", "push"}}}
	for _, c := range []struct {
		name   string
		sub    string
		access []Access
		want   Identity
	}{
		{"user", "alice", access, Identity{Name: "alice", Method: "token", Access: access}},
		{"anonymous, no grants", "", nil, Identity{Method: "token", Access: []Access{}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, err := tk.issue(c.sub, c.access, now)
			if err != nil {
				t.Fatal(err)
			}
			id, err := tk.verify(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(id, c.want) {
				t.Errorf("verify = %#v, want %#v", id, c.want)
			}
			if _, _, err := tk.verifyRefresh(raw); err == nil {
				t.Error("an access token passes as a refresh token")
			}
		})
	}
	t.Run("refresh", func(t *testing.T) {
		raw, err := tk.issueRefresh("alice", []byte("a hash"), now)
		if err != nil {
			t.Fatal(err)
		}
		if user, stamp, err := tk.verifyRefresh(raw); err != nil || user != "alice" || stamp != hashStamp([]byte("a hash")) {
			t.Errorf("verifyRefresh = %q, %q, %v", user, stamp, err)
		}
	})
	t.Run("header", func(t *testing.T) {
		raw, err := tk.issue("alice", nil, now)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
		if err != nil {
			t.Fatal(err)
		}
		if tok.Header["alg"] != "ES256" || tok.Header["kid"] != thumb(t, tk.Key.Public()) {
			t.Errorf("header = %v", tok.Header)
		}
		c := tok.Claims.(jwt.MapClaims)
		for _, claim := range []string{"iss", "aud", "exp", "nbf", "iat", "jti", "access"} {
			if _, ok := c[claim]; !ok {
				t.Errorf("no %s claim in %v", claim, c)
			}
		}
	})
}

func TestNewTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key := ecKey(t, elliptic.P256())
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keys := write("keys.pem", publicPEM(t, key.Public()))
	base := TokenOptions{Realm: testRealm, Service: testService, Issuer: testIssuer}
	for _, c := range []struct {
		name string
		edit func(*TokenOptions)
	}{
		{"no service", func(o *TokenOptions) { o.Key, o.Service = key, "" }},
		{"no issuer", func(o *TokenOptions) { o.Key, o.Issuer = key, "" }},
		{"no realm", func(o *TokenOptions) { o.Key, o.Realm = key, "" }},
		{"no key", func(o *TokenOptions) {}},
		{"key and keys file", func(o *TokenOptions) { o.Key, o.KeysFile = key, keys }},
		{"negative expiry", func(o *TokenOptions) { o.Key, o.Expiry = key, -time.Second }},
		{"short RSA key", func(o *TokenOptions) { o.Key = small }},
		{"missing keys file", func(o *TokenOptions) { o.KeysFile = filepath.Join(dir, "nope") }},
		{"empty keys file", func(o *TokenOptions) { o.KeysFile = write("empty", nil) }},
		{"private key in keys file", func(o *TokenOptions) {
			o.KeysFile = write("private", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		}},
		{"short RSA key in keys file", func(o *TokenOptions) { o.KeysFile = write("small", publicPEM(t, small.Public())) }},
		{"JWKS without keys", func(o *TokenOptions) { o.KeysFile = write("nokeys.json", []byte(`{"keys":[]}`)) }},
		{"JWKS only symmetric", func(o *TokenOptions) {
			o.KeysFile = write("oct.json", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
		}},
		{"JWKS point off the curve", func(o *TokenOptions) {
			j := jwkJSON(t, key.Public(), "k", "")
			j["y"] = j["x"]
			o.KeysFile = write("offcurve.json", jwks(t, j))
		}},
		{"JWKS alg of another key type", func(o *TokenOptions) {
			o.KeysFile = write("alg.json", jwks(t, jwkJSON(t, key.Public(), "k", "RS256")))
		}},
		{"not JSON", func(o *TokenOptions) { o.KeysFile = write("bad.json", []byte(`{"keys":`)) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := base
			c.edit(&o)
			if _, err := NewTokens(o, nil); err == nil {
				t.Error("NewTokens succeeds")
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		o := base
		o.Key = key
		tk, err := NewTokens(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tk.Expiry != 5*time.Minute || tk.RefreshExpiry != 30*24*time.Hour || !tk.issuing() {
			t.Errorf("options = %+v", tk.TokenOptions)
		}
	})
}

// TestKeysFileReload edits the trusted-keys file under a running
// verifier: a new key is trusted at the next look, a broken edit is
// reported and the last good keys stay.
func TestKeysFileReload(t *testing.T) {
	a, b := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P256())
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, publicPEM(t, a.Public()), 0o644); err != nil {
		t.Fatal(err)
	}
	var reported []error
	tk, err := NewTokens(TokenOptions{Realm: testRealm, Service: testService, Issuer: testIssuer, KeysFile: path}, func(err error) {
		reported = append(reported, err)
	})
	if err != nil {
		t.Fatal(err)
	}
	tk.file.recheck = 0
	byA := sign(t, jwt.SigningMethodES256, a, good(), nil)
	byB := sign(t, jwt.SigningMethodES256, b, good(), map[string]any{"kid": "b"})
	edits := time.Now()
	edit := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// A later modification time, however coarse the file system's clock.
		edits = edits.Add(time.Minute)
		if err := os.Chtimes(path, edits, edits); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, wantA, wantB bool) {
		t.Helper()
		if _, err := tk.verify(byA); (err == nil) != wantA {
			t.Errorf("%s: key a trusted = %v, want %v", step, err == nil, wantA)
		}
		if _, err := tk.verify(byB); (err == nil) != wantB {
			t.Errorf("%s: key b trusted = %v, want %v", step, err == nil, wantB)
		}
	}

	check("PEM of a", true, false)
	edit(jwks(t, jwkJSON(t, b.Public(), "b", "ES256")))
	check("JWKS of b", false, true)
	edit([]byte("not keys"))
	check("broken edit", false, true)
	if len(reported) == 0 {
		t.Error("the broken edit is not reported")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token.key")
	created, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := created.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("created a %T key", created)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d files, want the key alone", len(entries))
	}
	loaded, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !created.(*ecdsa.PrivateKey).Equal(loaded) {
		t.Error("the key read back is another key")
	}

	ec := ecKey(t, elliptic.P384())
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	rs := rsaKey(t)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		pem  string
		want crypto.PublicKey // nil: an error
	}{
		{"SEC 1 after EC PARAMETERS", string(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 5, 43, 129, 4, 0, 34}})) +
			string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})), ec.Public()},
		{"PKCS #1 RSA", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rs)})), rs.Public()},
		{"PKCS #8 Ed25519", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})), ed.Public()},
		{"no key", string(publicPEM(t, ec.Public())), nil},
		{"garbage", "not a key", nil},
		{"broken key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")})), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, []byte(c.pem), 0o600); err != nil {
				t.Fatal(err)
			}
			key, err := LoadOrCreateKey(path)
			if c.want == nil {
				if err == nil {
					t.Error("LoadOrCreateKey succeeds")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.want.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("another key is read")
			}
		})
	}
	t.Run("no directory", func(t *testing.T) {
		if _, err := LoadOrCreateKey(filepath.Join(dir, "missing", "token.key")); err == nil {
			t.Error("LoadOrCreateKey succeeds")
		}
	})
}

// TestThumbprint checks the example of RFC 7638, section 3.1.
func TestThumbprint(t *testing.T) {
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	got := thumb(t, &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("thumbprint = %s, want %s", got, want)
	}
	if id := libtrustID(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}); len(id) != 59 || strings.Count(id, ":") != 11 {
		t.Errorf("libtrust ID %q is not 12 groups of 4", id)
	}
}

// FuzzVerifyToken feeds verify arbitrary strings: it must not panic, and
// whatever it accepts must carry a signature by the key.
func FuzzVerifyToken(f *testing.F) {
	key := ecKey(f, elliptic.P256())
	tk := issuing(f, key)
	now := time.Now()
	access := []Access{{Type: "repository", Name: "apps/web", Actions: []string{"pull"}}}
	valid, err := tk.issue("alice", access, now)
	if err != nil {
		f.Fatal(err)
	}
	refresh, err := tk.issueRefresh("alice", []byte("a hash"), now)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		valid, refresh, "", "a.b.c", "..", valid + "x", strings.ToUpper(valid),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good(), nil),
		sign(f, jwt.SigningMethodHS256, publicPEM(f, key.Public()), good(), nil),
		sign(f, jwt.SigningMethodES256, ecKey(f, elliptic.P256()), good(), nil),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := tk.verify(raw)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("verify error %v is not ErrUnauthenticated", err)
			}
			return
		}
		// An independent check of the ES256 signature, with the standard
		// library alone.
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token of %d parts", len(parts))
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || len(sig) != 64 {
			t.Fatalf("accepted a token whose signature is %d bytes (%v)", len(sig), err)
		}
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(&key.PublicKey, digest[:], r, s) {
			t.Fatal("accepted a token the key did not sign")
		}
		if id.Method != "token" || id.Access == nil {
			t.Fatalf("accepted token gives %+v", id)
		}
	})
}
