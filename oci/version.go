package oci

import (
	"fmt"
	"regexp"
	"strings"
)

// Ordering names a way of reading tags as versions. A tag that reads as a
// version is numbered; one that does not (latest, stable) is a moving tag.
type Ordering string

// The orderings.
const (
	// OrderInteger: 42, compared as a number of any size (10 > 9).
	OrderInteger Ordering = "integer"
	// OrderSemver: 1.2.3 with an optional v, fewer parts allowed (v1.2),
	// a pre-release sorting below its release, build metadata ignored.
	OrderSemver Ordering = "semver"
	// OrderPattern: a regular expression whose named groups hold numbers,
	// compared left to right (2024.11.26-42, build-42).
	OrderPattern Ordering = "pattern"
	// OrderLexical: every tag, compared byte by byte.
	OrderLexical Ordering = "lexical"
)

// Versioning reads tags as versions under one or more orderings, tried in
// turn; the default is integer, then semver.
type Versioning struct {
	orders  []Ordering
	pattern *regexp.Regexp
}

// DefaultVersioning reads integers, then semantic versions.
func DefaultVersioning() *Versioning {
	return &Versioning{orders: []Ordering{OrderInteger, OrderSemver}}
}

// NewVersioning returns the versioning of the given orderings; pattern is
// the regular expression of OrderPattern.
func NewVersioning(orders []Ordering, pattern string) (*Versioning, error) {
	v := &Versioning{}
	for _, o := range orders {
		switch o {
		case OrderInteger, OrderSemver, OrderLexical:
		case OrderPattern:
			re, err := regexp.Compile(`^(?:` + pattern + `)$`)
			if err != nil {
				return nil, fmt.Errorf("version pattern: %w", err)
			}
			if !hasNamedGroup(re) {
				return nil, fmt.Errorf("version pattern %q has no named group to compare", pattern)
			}
			v.pattern = re
		default:
			return nil, fmt.Errorf("unknown tag ordering %q (want integer, semver, pattern or lexical)", o)
		}
		v.orders = append(v.orders, o)
	}
	if len(v.orders) == 0 {
		return nil, fmt.Errorf("no tag ordering given")
	}
	return v, nil
}

func hasNamedGroup(re *regexp.Regexp) bool {
	for _, n := range re.SubexpNames() {
		if n != "" {
			return true
		}
	}
	return false
}

// Version is a tag read as a version.
type Version struct {
	Tag   string
	order Ordering
	nums  []string // decimal digits without leading zeros, most significant part first
	pre   []string // semver pre-release identifiers; nil for a release
}

var semverRE = regexp.MustCompile(`^v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$`)

// Parse reads tag as a version under the first ordering it fits.
func (v *Versioning) Parse(tag string) (Version, bool) {
	for _, o := range v.orders {
		switch o {
		case OrderInteger:
			if tag != "" && strings.Trim(tag, "0123456789") == "" {
				return Version{Tag: tag, order: o, nums: []string{trimZeros(tag)}}, true
			}
		case OrderSemver:
			if m := semverRE.FindStringSubmatch(tag); m != nil {
				ver := Version{Tag: tag, order: OrderSemver, nums: []string{m[1], trimZeros(m[2]), trimZeros(m[3])}}
				if m[4] != "" {
					ver.pre = strings.Split(m[4], ".")
				}
				return ver, true
			}
		case OrderPattern:
			if m := v.pattern.FindStringSubmatch(tag); m != nil {
				ver := Version{Tag: tag, order: o}
				for i, name := range v.pattern.SubexpNames() {
					if name == "" {
						continue
					}
					if strings.Trim(m[i], "0123456789") != "" {
						return Version{}, false
					}
					ver.nums = append(ver.nums, trimZeros(m[i]))
				}
				return ver, true
			}
		case OrderLexical:
			return Version{Tag: tag, order: o}, true
		}
	}
	return Version{}, false
}

// trimZeros drops leading zeros, keeping "" for zero or an absent part.
func trimZeros(s string) string { return strings.TrimLeft(s, "0") }

// Compare orders two versions: negative when a is older than b, positive
// when newer, 0 when they are the same version. Versions read under
// different orderings compare by their numbers, an integer N being N.0.0.
// Tags that are the same version (7 and 07) are told apart by their text,
// so the order is total.
func Compare(a, b Version) int {
	if a.order == OrderLexical || b.order == OrderLexical {
		return strings.Compare(a.Tag, b.Tag)
	}
	for i := range max(len(a.nums), len(b.nums)) {
		if c := compareDigits(part(a.nums, i), part(b.nums, i)); c != 0 {
			return c
		}
	}
	if c := comparePre(a.pre, b.pre); c != 0 {
		return c
	}
	return strings.Compare(a.Tag, b.Tag)
}

func part(nums []string, i int) string {
	if i < len(nums) {
		return nums[i]
	}
	return ""
}

// compareDigits compares decimal numbers written without leading zeros.
func compareDigits(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// comparePre follows semver: a release is newer than its pre-releases;
// identifiers compare numerically when both are numbers, else as text, and
// numbers sort below text.
func comparePre(a, b []string) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	for i := range min(len(a), len(b)) {
		an, bn := strings.Trim(a[i], "0123456789") == "", strings.Trim(b[i], "0123456789") == ""
		var c int
		switch {
		case an && bn:
			c = compareDigits(trimZeros(a[i]), trimZeros(b[i]))
		case an:
			c = -1
		case bn:
			c = 1
		default:
			c = strings.Compare(a[i], b[i])
		}
		if c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}
