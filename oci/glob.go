package oci

import (
	"regexp"
	"strings"
)

// GlobRegexp compiles a glob of repository names: `*` matches any run of
// characters, `/` included (so "team/*" covers "team/a/b"), and `?` one
// character. Everything else matches itself.
func GlobRegexp(glob string) *regexp.Regexp {
	var re strings.Builder
	for _, c := range glob {
		switch c {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return regexp.MustCompile("^" + re.String() + "$")
}

// ValidateGlob checks that a glob names repositories: it is a repository
// name, or one with `*` and `?` standing for some of its characters.
func ValidateGlob(glob string) error {
	// Wildcards stand for name characters: a name must result.
	return ValidateName(strings.NewReplacer("*", "a", "?", "a").Replace(glob))
}
