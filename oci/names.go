package oci

import (
	"errors"
	"regexp"
	"strings"
)

// MaxNameLength bounds a repository name, as the reference registry does, so a
// name always fits in a URL, a log line and a database index.
const MaxNameLength = 255

// ErrNameInvalid reports a repository name outside the distribution spec's grammar.
var ErrNameInvalid = errors.New("invalid repository name")

// ErrTagInvalid reports a tag outside the distribution spec's grammar.
var ErrTagInvalid = errors.New("invalid tag")

// The grammar of the OCI distribution spec, "Pulling manifests".
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// ValidateName checks a repository name such as "team/app".
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLength || !nameRE.MatchString(name) {
		return ErrNameInvalid
	}
	return nil
}

// ValidateTag checks a tag such as "42" or "v1.2.3".
func ValidateTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return ErrTagInvalid
	}
	return nil
}

// Reference is the last path element of a manifest URL: a tag or a digest.
type Reference struct {
	Tag    string
	Digest Digest
}

// IsDigest reports whether the reference names content rather than a tag.
func (r Reference) IsDigest() bool { return r.Digest != "" }

// String returns the reference as it appears in a URL.
func (r Reference) String() string {
	if r.IsDigest() {
		return string(r.Digest)
	}
	return r.Tag
}

// ParseReference reads a tag or a digest. A digest always contains a colon,
// which a tag never may, so the two cannot be confused.
func ParseReference(s string) (Reference, error) {
	if strings.Contains(s, ":") {
		d, err := ParseDigest(s)
		if err != nil {
			return Reference{}, err
		}
		return Reference{Digest: d}, nil
	}
	if err := ValidateTag(s); err != nil {
		return Reference{}, err
	}
	return Reference{Tag: s}, nil
}
