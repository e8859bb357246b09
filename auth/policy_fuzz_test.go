package auth

import (
	"slices"
	"testing"

	"github.com/berthhq/berth/oci"
	"go.yaml.in/yaml/v3"
)

// FuzzPolicyMatch checks the compiled policy against refAllowed, a slow and
// obvious reading of the policy file, and against invariants that hold
// whatever the file says.
func FuzzPolicyMatch(f *testing.F) {
	for _, src := range []string{ExamplePolicy, matcherPolicy, "default: [pull, push]", ""} {
		for _, q := range [][3]string{
			{"alice", "x/y", "admin"}, {"robot", "apps/web", "push"}, {"robot", "tools/x", "delete"},
			{"carol", "secret/a", "pull"}, {"dave", "shared/a", "push"}, {"", "public/a", "pull"},
			{"", "docs", "push"}, {"*", "a", "pull"}, {"dave", "a\n", "pull"}, {"dave", "public/a", "pull"},
		} {
			f.Add([]byte(src), q[0], q[1], q[2])
		}
	}
	f.Fuzz(func(t *testing.T, src []byte, user, name, action string) {
		p, err := ParsePolicy(src)
		if err != nil {
			return
		}
		var file PolicyFile
		if err := yaml.Unmarshal(src, &file); err != nil {
			t.Fatalf("ParsePolicy accepted what yaml.Unmarshal refuses: %v", err)
		}
		act := Action(action)
		got := p.allowed(user, name, act)
		if want := refAllowed(&file, user, name, act); got != want {
			t.Fatalf("allowed(%q, %q, %q) = %v, the reference says %v", user, name, act, got, want)
		}
		switch {
		case got && oci.ValidateName(name) != nil:
			t.Fatalf("allowed on %q, which is not a repository name", name)
		case got && user == "" && act != Pull:
			t.Fatalf("anonymous may %q", act)
		case user != "" && oci.ValidateName(name) == nil && !refNamed(&file, user, name) &&
			got != (slices.Contains(file.Default, act) || act == Pull && refAnonymous(&file, name)):
			t.Fatalf("allowed(%q, %q, %q) = %v where no rule names the user, want the default %v", user, name, act, got, file.Default)
		case p.allowedEverywhere(user, act) && oci.ValidateName(name) == nil && !got:
			t.Fatalf("%q may %q everywhere but not on %q", user, act, name)
		}
	})
}

// refAllowed reads the policy file as its documentation does.
func refAllowed(f *PolicyFile, user, name string, act Action) bool {
	if oci.ValidateName(name) != nil {
		return false
	}
	if act == Pull && refAnonymous(f, name) {
		return true // a user may pull what anyone may
	}
	if user == "" {
		return false
	}
	if !refNamed(f, user, name) {
		return slices.Contains(f.Default, act)
	}
	for _, r := range f.Rules {
		if refRuleNames(f, r, user) && slices.ContainsFunc(r.Repositories, func(g string) bool { return refGlob(g, name) }) && slices.Contains(r.Actions, act) {
			return true
		}
	}
	return false
}

// refAnonymous reports whether anyone may pull name.
func refAnonymous(f *PolicyFile, name string) bool {
	return slices.ContainsFunc(f.Anonymous, func(g string) bool { return refGlob(g, name) })
}

// refNamed reports whether a rule names user and matches name.
func refNamed(f *PolicyFile, user, name string) bool {
	return slices.ContainsFunc(f.Rules, func(r PolicyRule) bool {
		return refRuleNames(f, r, user) && slices.ContainsFunc(r.Repositories, func(g string) bool { return refGlob(g, name) })
	})
}

func refRuleNames(f *PolicyFile, r PolicyRule, user string) bool {
	if slices.Contains(r.Users, user) || slices.Contains(r.Users, "*") {
		return true
	}
	return slices.ContainsFunc(r.Groups, func(g string) bool { return slices.Contains(f.Groups[g], user) })
}

// refGlob matches a repository name (ASCII) against a glob without regular
// expressions: '*' any run of characters, '?' one, the rest themselves. On
// a mismatch after a '*', the star takes one more character and the match
// resumes after it.
func refGlob(glob, name string) bool {
	g, n := 0, 0
	star, resume := -1, 0
	for n < len(name) {
		switch {
		case g < len(glob) && glob[g] == '*':
			star, resume = g, n
			g++
		case g < len(glob) && (glob[g] == '?' || glob[g] == name[n]):
			g++
			n++
		case star >= 0:
			resume++
			g, n = star+1, resume
		default:
			return false
		}
	}
	for g < len(glob) && glob[g] == '*' {
		g++
	}
	return g == len(glob)
}

func TestRefGlob(t *testing.T) {
	for _, c := range []struct {
		glob, name string
		want       bool
	}{
		{"team/app", "team/app", true},
		{"team/app", "team/app2", false},
		{"team/*", "team/a/b", true},
		{"team/*", "team/", true},
		{"team/*", "team", false},
		{"*", "", true},
		{"*/app", "x/y/app", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"app?", "app1", true},
		{"app?", "app", false},
		{"?", "", false},
	} {
		if got := refGlob(c.glob, c.name); got != c.want {
			t.Errorf("refGlob(%q, %q) = %v, want %v", c.glob, c.name, got, c.want)
		}
	}
}
