package oci

import (
	"math/big"
	"math/rand"
	"regexp"
	"strings"
	"testing"
)

// refVer is a version as the reference comparator of the property tests
// reads it, independently of the keys.
type refVer struct {
	nums []*big.Int
	pre  []string // nil: release
	tag  string
}

func refParseSemver(tag string) refVer {
	s := strings.TrimPrefix(tag, "v")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	var pre []string
	if i := strings.IndexByte(s, '-'); i >= 0 {
		pre = strings.Split(s[i+1:], ".")
		s = s[:i]
	}
	var nums []*big.Int
	for _, p := range strings.Split(s, ".") {
		n, _ := new(big.Int).SetString(p, 10)
		nums = append(nums, n)
	}
	return refVer{nums, pre, tag}
}

func numAt(ns []*big.Int, i int) *big.Int {
	if i < len(ns) {
		return ns[i]
	}
	return big.NewInt(0)
}

func allDigits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

func refCompare(a, b refVer) int {
	for i := 0; i < max(len(a.nums), len(b.nums)); i++ {
		if c := numAt(a.nums, i).Cmp(numAt(b.nums, i)); c != 0 {
			return c
		}
	}
	switch {
	case a.pre == nil && b.pre != nil:
		return 1
	case a.pre != nil && b.pre == nil:
		return -1
	}
	for i := 0; i < min(len(a.pre), len(b.pre)); i++ {
		x, y := a.pre[i], b.pre[i]
		dx, dy := allDigits(x), allDigits(y)
		switch {
		case dx && dy:
			bx, _ := new(big.Int).SetString(x, 10)
			by, _ := new(big.Int).SetString(y, 10)
			if c := bx.Cmp(by); c != 0 {
				return c
			}
		case dx:
			return -1
		case dy:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	if c := len(a.pre) - len(b.pre); c != 0 {
		return c
	}
	return strings.Compare(a.tag, b.tag)
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func randNum(r *rand.Rand) string {
	switch r.Intn(6) {
	case 0:
		return "0"
	case 1:
		return "0" + string(rune('0'+r.Intn(10)))
	case 2:
		var b strings.Builder
		b.WriteByte(byte('1' + r.Intn(9)))
		for i := r.Intn(30); i > 0; i-- {
			b.WriteByte(byte('0' + r.Intn(10)))
		}
		return b.String()
	}
	return string(rune('0' + r.Intn(10)))
}

func noLead(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" {
		return "0"
	}
	return t
}

func randIdent(r *rand.Rand) string {
	alpha := []string{"alpha", "beta", "rc", "a", "b", "-", "x-y", "A", "Z", "a1", "1a", "RC"}
	if r.Intn(2) == 0 {
		return randNum(r)
	}
	return alpha[r.Intn(len(alpha))]
}

func randTag(r *rand.Rand) string {
	if r.Intn(4) == 0 {
		return randNum(r)
	}
	var b strings.Builder
	if r.Intn(2) == 0 {
		b.WriteByte('v')
	}
	parts := 1 + r.Intn(3)
	for i := 0; i < parts; i++ {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(noLead(randNum(r)))
	}
	if r.Intn(2) == 0 {
		b.WriteByte('-')
		for i := 1 + r.Intn(3); i > 0; i-- {
			b.WriteString(randIdent(r))
			if i > 1 {
				b.WriteByte('.')
			}
		}
	}
	if r.Intn(5) == 0 {
		b.WriteString("+build.")
		b.WriteString(randNum(r))
	}
	return b.String()
}

// TestKeyOrderProperty: the byte order of version keys is the order of an
// independent comparator (big integers, semver precedence) on random tags.
func TestKeyOrderProperty(t *testing.T) {
	v := DefaultVersioning()
	r := rand.New(rand.NewSource(1))
	tags := []string{}
	for i := 0; i < 600; i++ {
		tag := randTag(r)
		if len(tag) > 128 {
			continue
		}
		if _, ok := v.Parse(tag); !ok {
			continue
		}
		tags = append(tags, tag)
	}
	expectKeyOrder(t, v, tags, refParseSemver)
}

// TestPatternKeyProperty: the same for a pattern ordering.
func TestPatternKeyProperty(t *testing.T) {
	v, err := NewVersioning([]Ordering{OrderPattern}, `(?P<y>[0-9]+)\.(?P<m>[0-9]+)\.(?P<d>[0-9]+)-(?P<b>[0-9]+)`)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(2))
	var tags []string
	for i := 0; i < 400; i++ {
		tags = append(tags, randNum(r)+"."+randNum(r)+"."+randNum(r)+"-"+randNum(r))
	}
	re := regexp.MustCompile(`^([0-9]+)\.([0-9]+)\.([0-9]+)-([0-9]+)$`)
	ref := func(tag string) refVer {
		m := re.FindStringSubmatch(tag)
		var ns []*big.Int
		for _, s := range m[1:] {
			n, _ := new(big.Int).SetString(s, 10)
			ns = append(ns, n)
		}
		return refVer{ns, nil, tag}
	}
	expectKeyOrder(t, v, tags, ref)
}

// expectKeyOrder fails unless Compare on the tags as v parses them orders every pair as the
// reference comparator does on the tags as ref reads them.
func expectKeyOrder(t *testing.T, v *Versioning, tags []string, ref func(tag string) refVer) {
	t.Helper()
	parsed := make([]Version, len(tags))
	refs := make([]refVer, len(tags))
	for i, tag := range tags {
		var ok bool
		if parsed[i], ok = v.Parse(tag); !ok {
			t.Fatalf("%q does not parse", tag)
		}
		refs[i] = ref(tag)
	}
	fails := 0
	for i := range tags {
		for j := range tags {
			if got, want := sign(Compare(parsed[i], parsed[j])), sign(refCompare(refs[i], refs[j])); got != want {
				fails++
				if fails < 10 {
					t.Errorf("%q vs %q: key %d, reference %d", tags[i], tags[j], got, want)
				}
			}
		}
	}
	if fails > 0 {
		t.Errorf("%d mismatches of %d", fails, len(tags)*len(tags))
	}
}
