package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the smallest RSA key Berth signs with or trusts.
const minRSABits = 2048

// LoadOrCreateKey reads the token issuer's private key from a PEM file
// (PKCS #8, SEC 1 EC or PKCS #1 RSA). If the file does not exist, it
// creates an ECDSA P-256 key there first.
func LoadOrCreateKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	return key, nil
}

// createKey writes a new key to a temporary file and renames it into
// place, so that a crash never leaves a half-written key behind.
func createKey(path string) (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	// CreateTemp makes the file 0600: only the registry reads its key.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	return key, nil
}

// parsePrivateKey reads the first private key of a PEM file, skipping
// other blocks such as the EC PARAMETERS openssl writes before a key.
func parsePrivateKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil, errors.New("no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%T cannot sign", key)
		}
		if _, err := signingMethod(signer); err != nil {
			return nil, err
		}
		return signer, nil
	}
}

// signingMethod is the JWT algorithm a key signs with; it also refuses
// keys Berth does not sign with, such as signers other than in-memory keys.
func signingMethod(key crypto.Signer) (jwt.SigningMethod, error) {
	if err := checkPublicKey(key.Public()); err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return jwt.GetSigningMethod(curveAlg(k.Curve.Params().Name)), nil
	case *rsa.PrivateKey:
		return jwt.SigningMethodRS256, nil
	case ed25519.PrivateKey:
		return jwt.SigningMethodEdDSA, nil
	}
	return nil, fmt.Errorf("a %T key cannot sign tokens (ECDSA, RSA or Ed25519)", key)
}

// trustedKey is a public key tokens may be signed with.
type trustedKey struct {
	// ids are the kid header values that name the key.
	ids []string
	// alg, from a JWKS, is the one algorithm the key may be used with;
	// "" allows every one that fits the key's type.
	alg string
	pub crypto.PublicKey
}

// newTrustedKey names pub by its RFC 7638 thumbprint and, for issuers
// built on docker/libtrust such as docker_auth, its libtrust key ID.
func newTrustedKey(pub crypto.PublicKey) (trustedKey, error) {
	thumb, err := thumbprint(pub)
	if err != nil {
		return trustedKey{}, err
	}
	k := trustedKey{ids: []string{thumb}, pub: pub}
	if id := libtrustID(pub); id != "" {
		k.ids = append(k.ids, id)
	}
	return k, nil
}

// fits reports whether a token signed with alg may be checked with k:
// an algorithm of another key type is refused before any signature check,
// which is what defeats algorithm confusion.
func (k trustedKey) fits(alg string) bool {
	if !slices.Contains(algorithms, alg) || k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return alg == curveAlg(pub.Curve.Params().Name)
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// curveAlg is the one JWT algorithm that signs with an ECDSA curve.
func curveAlg(curve string) string {
	switch curve {
	case "P-256":
		return "ES256"
	case "P-384":
		return "ES384"
	case "P-521":
		return "ES512"
	}
	return ""
}

// algorithms are the JWT algorithms verify accepts at all: no "none", and
// no HMAC, whose secret would be a public key.
var algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// checkPublicKey refuses public keys Berth does not verify with.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits is shorter than %d", k.N.BitLen(), minRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		if curveAlg(k.Curve.Params().Name) == "" {
			return fmt.Errorf("ECDSA curve %s is not P-256, P-384 or P-521", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("a %T key cannot verify tokens (ECDSA, RSA or Ed25519)", pub)
}

// parseTrustedKeys reads a trusted-keys file: a JWKS document, or PEM
// certificates and public keys. A file that names no key is an error,
// since it would refuse every token.
func parseTrustedKeys(b []byte) ([]trustedKey, error) {
	var keys []trustedKey
	var err error
	if trimmed := bytes.TrimSpace(b); len(trimmed) > 0 && trimmed[0] == '{' {
		keys, err = parseJWKS(trimmed)
	} else {
		keys, err = parsePEMKeys(b)
	}
	if err == nil && len(keys) == 0 {
		err = errors.New("no public keys")
	}
	return keys, err
}

func parsePEMKeys(b []byte) ([]trustedKey, error) {
	var keys []trustedKey
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return keys, nil
		}
		var pub any
		var err error
		switch block.Type {
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		default:
			// A private key here is a mistake worth hearing about.
			return nil, fmt.Errorf("PEM block %q is not a certificate or public key", block.Type)
		}
		if err == nil {
			err = checkPublicKey(pub)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", len(keys)+1, block.Type, err)
		}
		k, err := newTrustedKey(pub)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
}

// jwk is one key of a JWKS document (RFC 7517), the members Berth reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// parseJWKS reads the signing keys of a JWKS document. Keys for
// encryption and of other types (symmetric ones above all) are skipped:
// an issuer's document may well hold them.
func parseJWKS(b []byte) ([]trustedKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var keys []trustedKey
	for i, j := range doc.Keys {
		if j.Use != "" && j.Use != "sig" || j.Alg != "" && !slices.Contains(algorithms, j.Alg) {
			continue
		}
		pub, err := j.public()
		if err == nil && pub != nil {
			err = checkPublicKey(pub)
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i+1, j.Kid, err)
		}
		if pub == nil {
			continue
		}
		k, err := newTrustedKey(pub)
		if err != nil {
			return nil, err
		}
		if j.Kid != "" {
			k.ids = []string{j.Kid}
		}
		if j.Alg != "" {
			if !k.fits(j.Alg) {
				return nil, fmt.Errorf("JWKS key %d (kid %q): alg %s does not fit a %s key", i+1, j.Kid, j.Alg, j.Kty)
			}
			k.alg = j.Alg
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// public decodes the key; nil and no error for a type Berth ignores.
func (j jwk) public() (crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding.DecodeString
	switch j.Kty {
	case "RSA":
		n, err := b64(j.N)
		if err != nil {
			return nil, fmt.Errorf("n: %w", err)
		}
		e, err := b64(j.E)
		if err != nil {
			return nil, fmt.Errorf("e: %w", err)
		}
		// An exponent past 2^31 is no RSA key anyone uses.
		if len(e) == 0 || len(e) > 4 || new(big.Int).SetBytes(e).Int64() > 1<<31-1 {
			return nil, errors.New("e out of range")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[j.Crv]
		if curve == nil {
			return nil, fmt.Errorf("curve %q is not P-256, P-384 or P-521", j.Crv)
		}
		x, errX := b64(j.X)
		y, errY := b64(j.Y)
		size := (curve.Params().BitSize + 7) / 8
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return nil, fmt.Errorf("x and y must be %d bytes, base64url", size)
		}
		return ecdsa.ParseUncompressedPublicKey(curve, slices.Concat([]byte{4}, x, y))
	case "OKP":
		x, err := b64(j.X)
		if j.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("only Ed25519 OKP keys, x of 32 bytes base64url")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, nil
}

// thumbprint is pub's RFC 7638 JWK thumbprint: the SHA-256 of its
// required members, in lexical order without spaces, base64url.
func thumbprint(pub crypto.PublicKey) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var members string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E)).Bytes()
		members = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(e), b64(k.N.Bytes()))
	case *ecdsa.PublicKey:
		// The point's coordinates at full length, as RFC 7518 requires.
		p, err := k.Bytes()
		if err != nil {
			return "", err
		}
		x, y := p[1:1+len(p)/2], p[1+len(p)/2:]
		members = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, k.Curve.Params().Name, b64(x), b64(y))
	case ed25519.PublicKey:
		members = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, b64(k))
	default:
		return "", fmt.Errorf("no thumbprint for a %T key", pub)
	}
	sum := sha256.Sum256([]byte(members))
	return b64(sum[:]), nil
}

// libtrustID is the key ID of docker/libtrust: the SHA-256 of the DER
// public key, cut to 240 bits, in base32 groups of four joined by ':'.
func libtrustID(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	s := base32.StdEncoding.EncodeToString(sum[:30])
	groups := make([]string, 0, len(s)/4)
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	return strings.Join(groups, ":")
}
