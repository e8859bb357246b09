package oci_test

import (
	"testing"

	"github.com/berthhq/berth/oci"
)

func TestGlobRegexp(t *testing.T) {
	for _, c := range []struct {
		glob, name string
		want       bool
	}{
		{"team/app", "team/app", true},
		{"team/app", "team/app2", false},
		{"team/*", "team/app", true},
		{"team/*", "team/a/b", true}, // * crosses /
		{"team/*", "other/app", false},
		{"*", "a/b/c", true},
		{"*/app", "x/y/app", true},
		{"app?", "app1", true},
		{"app?", "app12", false},
		{"app?", "app", false},
		{"a.b", "axb", false}, // . is literal
	} {
		if got := oci.GlobRegexp(c.glob).MatchString(c.name); got != c.want {
			t.Errorf("GlobRegexp(%q) matches %q = %v, want %v", c.glob, c.name, got, c.want)
		}
	}
}

func TestValidateGlob(t *testing.T) {
	for _, g := range []string{"team/app", "team/*", "*", "*/app", "app-?", "a*b/c?d"} {
		if err := oci.ValidateGlob(g); err != nil {
			t.Errorf("ValidateGlob(%q) = %v, want nil", g, err)
		}
	}
	for _, g := range []string{"", "Team/*", "team//*", "/*", "*/", "team/[ab]", "a b*"} {
		if err := oci.ValidateGlob(g); err == nil {
			t.Errorf("ValidateGlob(%q) = nil, want an error", g)
		}
	}
}
