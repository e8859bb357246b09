package oci

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"

	"github.com/opencontainers/go-digest"
)

// Digest is a content address such as "sha256:ab…".
type Digest = digest.Digest

// ErrDigestInvalid reports a digest that is malformed or uses an algorithm
// Berth does not accept.
var ErrDigestInvalid = errors.New("invalid digest")

// ParseDigest validates a digest string. Only the algorithms the image spec
// registers for interoperability, sha256 and sha512, are accepted.
func ParseDigest(s string) (Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", ErrDigestInvalid
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
		return d, nil
	}
	return "", ErrDigestInvalid
}

// Algorithm names a digest algorithm such as "sha256".
type Algorithm = digest.Algorithm

// The accepted algorithms.
const (
	SHA256 = digest.SHA256
	SHA512 = digest.SHA512
)

// NewHash returns an empty hash for an accepted algorithm.
func NewHash(alg Algorithm) hash.Hash {
	if alg == digest.SHA512 {
		return sha512.New()
	}
	return sha256.New()
}

// FromBytes returns the sha256 digest of b.
func FromBytes(b []byte) Digest { return digest.FromBytes(b) }

// DigestOf formats a finished hash as a digest of the given algorithm.
func DigestOf(alg Algorithm, h hash.Hash) Digest {
	return digest.NewDigest(alg, h)
}
