package oci

import (
	"bytes"
	"fmt"
	"math/big"
	"regexp"
	"slices"
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
	// Every tag reads as lexical, and text order does not mix with numbers.
	if slices.Contains(v.orders, OrderLexical) && len(v.orders) > 1 {
		return nil, fmt.Errorf("the lexical ordering reads every tag, so it cannot be combined with others")
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

// Scheme names the orderings and pattern: version keys made under one
// scheme compare only with keys made under the same scheme.
func (v *Versioning) Scheme() string {
	s := make([]string, len(v.orders))
	for i, o := range v.orders {
		s[i] = string(o)
		if o == OrderPattern {
			s[i] += "(" + v.pattern.String() + ")"
		}
	}
	return strings.Join(s, ",")
}

// Version is a tag read as a version. Key orders versions as bytes, so a
// database can sort and index them: Compare is bytes.Compare of the keys.
type Version struct {
	Tag string
	Key []byte
}

var semverRE = regexp.MustCompile(`^v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$`)

// Parse reads tag as a version under the first ordering it fits.
func (v *Versioning) Parse(tag string) (Version, bool) {
	for _, o := range v.orders {
		switch o {
		case OrderInteger:
			if tag != "" && isDigits(tag) {
				return numbered(tag, []string{tag}, nil), true
			}
		case OrderSemver:
			if m := semverRE.FindStringSubmatch(tag); m != nil {
				var pre []string
				if m[4] != "" {
					pre = strings.Split(m[4], ".")
				}
				return numbered(tag, m[1:4], pre), true
			}
		case OrderPattern:
			if m := v.pattern.FindStringSubmatch(tag); m != nil {
				var nums []string
				for i, name := range v.pattern.SubexpNames() {
					if name == "" {
						continue
					}
					if !isDigits(m[i]) {
						nums = nil
						break
					}
					nums = append(nums, m[i])
				}
				if nums != nil {
					return numbered(tag, nums, nil), true
				}
			}
		case OrderLexical:
			return Version{Tag: tag, Key: []byte(tag)}, true
		}
	}
	return Version{}, false
}

func isDigits(s string) bool { return strings.Trim(s, "0123456789") == "" }

// numbered builds the key of a version made of numbers, compared left to
// right (a missing part is 0, so 7 is 7.0.0), then of semver pre-release
// identifiers (a release sorts above its pre-releases), then of the tag
// itself, so that 7 and 07 differ and the order is total:
//
//	key  = num* 0x00 (0x02 | 0x01 ident* 0x00) tag
//	num  = len+1 digits        (no leading zeros; a longer number is larger)
//	ident = 0x01 len+1 digits  (numeric identifiers sort below text)
//	      | 0x02 text 0x00
//
// Tags are at most 128 characters, so a length fits in a byte.
func numbered(tag string, nums, pre []string) Version {
	for i := range nums {
		nums[i] = strings.TrimLeft(nums[i], "0")
	}
	for len(nums) > 0 && nums[len(nums)-1] == "" {
		nums = nums[:len(nums)-1]
	}
	key := make([]byte, 0, 2*len(tag)+8)
	for _, n := range nums {
		key = append(append(key, byte(len(n)+1)), n...)
	}
	key = append(key, 0)
	if pre == nil {
		key = append(key, 2)
	} else {
		key = append(key, 1)
		for _, id := range pre {
			if isDigits(id) {
				id = strings.TrimLeft(id, "0")
				key = append(append(key, 1, byte(len(id)+1)), id...)
			} else {
				key = append(append(key, 2), id...)
				key = append(key, 0)
			}
		}
		key = append(key, 0)
	}
	return Version{Tag: tag, Key: append(key, tag...)}
}

// Compare orders two versions read under one Versioning: negative when a is
// older than b, positive when newer, 0 only for the same tag.
func Compare(a, b Version) int { return bytes.Compare(a.Key, b.Key) }

// Next is the tag one number above tag: its last run of digits plus one
// (42 → 43, v1.4.9 → v1.4.10, 2024.11.26-42 → 2024.11.26-43). It reports
// false for a tag without digits.
func Next(tag string) (string, bool) {
	end := strings.LastIndexAny(tag, "0123456789") + 1
	if end == 0 {
		return "", false
	}
	start := strings.LastIndexFunc(tag[:end], func(r rune) bool { return r < '0' || r > '9' }) + 1
	n, ok := new(big.Int).SetString(tag[start:end], 10)
	if !ok {
		return "", false
	}
	digits := n.Add(n, big.NewInt(1)).String()
	if w := end - start; len(digits) < w { // keep the width: 007 → 008
		digits = strings.Repeat("0", w-len(digits)) + digits
	}
	return tag[:start] + digits + tag[end:], true
}
