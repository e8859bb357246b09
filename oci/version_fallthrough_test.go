package oci

import "testing"

// TestPatternFallThrough: a tag the pattern matches with a named group that
// is not a number is tried under the next ordering.
func TestPatternFallThrough(t *testing.T) {
	v, err := NewVersioning([]Ordering{OrderPattern, OrderSemver}, `(?P<n>[0-9a-z.]+)-build`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Parse("1.2.3-build"); !ok {
		t.Errorf("1.2.3-build is not read as semver after the pattern's group matched no number")
	}
	if _, ok := v.Parse("12-build"); !ok {
		t.Errorf("12-build is not read under the pattern")
	}
}
