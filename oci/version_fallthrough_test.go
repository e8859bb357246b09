package oci

import (
	"bytes"
	"testing"
)

// TestPatternFallThrough: a tag the pattern matches with a named group that
// is not a number is tried under the next ordering.
func TestPatternFallThrough(t *testing.T) {
	const pattern = `(?P<n>[0-9a-z.]+)-build`
	v, err := NewVersioning([]Ordering{OrderPattern, OrderSemver}, pattern)
	if err != nil {
		t.Fatal(err)
	}
	patternOnly, err := NewVersioning([]Ordering{OrderPattern}, pattern)
	if err != nil {
		t.Fatal(err)
	}
	semverOnly, err := NewVersioning([]Ordering{OrderSemver}, "")
	if err != nil {
		t.Fatal(err)
	}
	// Both tags are semver too: each is checked against the key of the ordering it must be read under.
	for _, c := range []struct {
		tag   string
		under *Versioning
		what  string
	}{
		{"1.2.3-build", semverOnly, "as semver after the pattern's group matched no number"},
		{"12-build", patternOnly, "under the pattern"},
	} {
		got, ok := v.Parse(c.tag)
		want, wantOK := c.under.Parse(c.tag)
		if !ok || !wantOK || !bytes.Equal(got.Key, want.Key) {
			t.Errorf("%s is not read %s: key %x (%v), want %x (%v)", c.tag, c.what, got.Key, ok, want.Key, wantOK)
		}
	}
}
