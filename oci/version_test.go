package oci

import (
	"slices"
	"strings"
	"testing"
)

func TestVersionOrder(t *testing.T) {
	tests := []struct {
		name    string
		orders  []Ordering
		pattern string
		tags    string // in ascending version order
		moving  string // tags that are not versions
	}{
		{"integers past 9", []Ordering{OrderInteger}, "", "1 2 9 10 11 99 100 123456789012345678901234567890", "latest v1 1.0 -1"},
		{"leading zeros", []Ordering{OrderInteger}, "", "0 1 007 7 08 10", ""},
		{"semver", []Ordering{OrderSemver}, "", "0.9.0 1.0.0-alpha 1.0.0-alpha.1 1.0.0-alpha.beta 1.0.0-beta 1.0.0-beta.2 1.0.0-beta.11 1.0.0-rc.1 1.0.0 v1.0.1 1.2 v1.10.0 2", "latest 1.2.3.4 01.2.3 v 1.2.3-"},
		{"default: integers and semver together", nil, "", "1 1.5.0 2 v2.0.1 10 10.0.1-rc.1 10.0.1", "latest stable"},
		{"pattern", []Ordering{OrderPattern}, `(?P<y>\d{4})\.(?P<m>\d\d)\.(?P<d>\d\d)-(?P<n>\d+)`, "2024.11.26-9 2024.11.26-42 2024.12.01-1 2025.01.02-3", "2024.11.26 latest"},
		{"lexical", []Ordering{OrderLexical}, "", "10 9 a b", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := DefaultVersioning()
			if tt.orders != nil {
				var err error
				if v, err = NewVersioning(tt.orders, tt.pattern); err != nil {
					t.Fatal(err)
				}
			}
			want := strings.Fields(tt.tags)
			var vs []Version
			for i := len(want) - 1; i >= 0; i-- { // parse in reverse so sorting has work to do
				ver, ok := v.Parse(want[i])
				if !ok {
					t.Fatalf("%q is not read as a version", want[i])
				}
				vs = append(vs, ver)
			}
			slices.SortFunc(vs, Compare)
			var got []string
			for _, ver := range vs {
				got = append(got, ver.Tag)
			}
			if !slices.Equal(got, want) {
				t.Errorf("sorted: %v\nwant:   %v", got, want)
			}
			for _, tag := range strings.Fields(tt.moving) {
				if _, ok := v.Parse(tag); ok {
					t.Errorf("%q is read as a version; it is a moving tag", tag)
				}
			}
		})
	}
}

func TestNewVersioningErrors(t *testing.T) {
	for _, tt := range []struct {
		orders  []Ordering
		pattern string
	}{
		{[]Ordering{"calendar"}, ""},
		{nil, ""},
		{[]Ordering{OrderPattern}, `(\d+)`},     // no named group
		{[]Ordering{OrderPattern}, `(?P<n>\d+`}, // does not compile
		{[]Ordering{OrderInteger, OrderLexical}, ""},
	} {
		if _, err := NewVersioning(tt.orders, tt.pattern); err == nil {
			t.Errorf("NewVersioning(%v, %q) accepted", tt.orders, tt.pattern)
		}
	}
}

func TestNext(t *testing.T) {
	v := DefaultVersioning()
	for tag, want := range map[string]string{
		"42": "43", "99": "100", "007": "008", "v1.4.9": "v1.4.10", "1.0.0-rc.1": "1.0.0-rc.2",
		"2024.11.26-42": "2024.11.26-43", "99999999999999999999999": "100000000000000000000000",
	} {
		got, ok := Next(tag)
		if !ok || got != want {
			t.Errorf("Next(%q) = %q, %v; want %q", tag, got, ok, want)
		}
		a, _ := v.Parse(tag)
		b, _ := v.Parse(got)
		if a.Key != nil && Compare(b, a) <= 0 {
			t.Errorf("Next(%q) = %q is not newer", tag, got)
		}
	}
	if got, ok := Next("latest"); ok {
		t.Errorf("Next(latest) = %q, want no next", got)
	}
}
