package oci

import "testing"

func TestPatternFallThrough(t *testing.T) {
	v, err := NewVersioning([]Ordering{OrderPattern, OrderSemver}, `(?P<n>[0-9a-z.]+)-build`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Parse("1.2.3-build"); !ok {
		t.Errorf("1.2.3-build: the pattern matched with a group that is not digits, and semver (next in the list) was never tried")
	}
	n, ok := Next("9")
	t.Logf("Next(9) = %q %v", n, ok)
	long := ""
	for range 128 {
		long += "9"
	}
	n, ok = Next(long)
	t.Logf("Next(128 nines) has %d characters (ValidateTag: %v)", len(n), ValidateTag(n))
}
