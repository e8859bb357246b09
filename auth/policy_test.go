package auth

import (
	"path/filepath"
	"strings"
	"testing"
)

// matcherPolicy exercises every way a rule can name a user and a
// repository.
const matcherPolicy = `
groups:
  admins: [alice]
  ci: [robot, builder]
  nobody: []
anonymous: ["public/*", "docs"]
default: [pull]
rules:
  - groups: [admins]
    repositories: ["*"]
    actions: [pull, push, delete, admin]
  - groups: [ci]
    repositories: ["apps/*"]
    actions: [pull, push]
  - users: [robot]
    repositories: ["apps/*", "tools/?"]
    actions: [delete]
  - users: [carol]
    repositories: ["secret/*"]
    actions: [push]
  - users: ["*"]
    repositories: ["shared/*"]
    actions: [push]
  - groups: [nobody]
    repositories: ["*"]
    actions: [admin]
`

func mustParsePolicy(t *testing.T, src string) *compiledPolicy {
	t.Helper()
	p, err := ParsePolicy([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyAllowed(t *testing.T) {
	p := mustParsePolicy(t, matcherPolicy)
	for _, c := range []struct {
		name       string
		user, repo string
		act        Action
		want       bool
	}{
		{"group on *", "alice", "x/y/z", Admin, true},
		{"group on a glob", "robot", "apps/web", Push, true},
		{"union of a group's and a user's rules", "robot", "apps/web/api", Delete, true},
		{"another member has only the group's", "builder", "apps/web", Delete, false},
		{"no rule grants it", "robot", "apps/web", Admin, false},
		{"? is one character", "robot", "tools/x", Delete, true},
		{"? is not two", "robot", "tools/xy", Delete, false},
		{"default where no rule names the user", "robot", "tools/xy", Pull, true},
		{"default is all it grants", "robot", "other", Push, false},
		{"no default where a rule names the user", "carol", "secret/plans", Pull, false},
		{"the rule that names her", "carol", "secret/plans", Push, true},
		{"default elsewhere", "carol", "public/site", Pull, true},
		{"user * is any user", "dave", "shared/tmp", Push, true},
		{"user * names them, so no default", "dave", "shared/tmp", Pull, false},
		{"user * beside a group's rule", "alice", "shared/tmp", Pull, true},
		{"unknown user gets the default", "dave", "apps/web", Pull, true},
		{"an empty group names no one", "dave", "apps/web", Admin, false},
		{"not a repository name", "dave", "Apps/Web", Pull, false},
		{"a newline falls to no default", "dave", "shared/tmp\nx", Pull, false},
		{"anonymous pull on a glob", "", "public/site", Pull, true},
		{"anonymous pull on a name", "", "docs", Pull, true},
		{"* needs the slash before it", "", "public", Pull, false},
		{"anonymous push", "", "public/site", Push, false},
		{"anonymous elsewhere", "", "apps/web", Pull, false},
		{"anonymous is not user *", "", "shared/tmp", Push, false},
		{"anonymous gets no default", "", "other", Pull, false},
		{"an unknown action", "alice", "x", Action("fly"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := p.allowed(c.user, c.repo, c.act); got != c.want {
				t.Errorf("allowed(%q, %q, %s) = %v, want %v", c.user, c.repo, c.act, got, c.want)
			}
		})
	}
}

func TestPolicyAllowedEverywhere(t *testing.T) {
	p := mustParsePolicy(t, matcherPolicy)
	defaults := mustParsePolicy(t, `
default: [pull, admin]
rules:
  - users: [robot]
    repositories: ["apps/*"]
    actions: [admin]
`)
	for _, c := range []struct {
		name string
		p    *compiledPolicy
		user string
		act  Action
		want bool
	}{
		{"a group's rule on *", p, "alice", Admin, true},
		{"and every action of it", p, "alice", Pull, true},
		{"rules on globs only", p, "robot", Push, false},
		{"named by a rule, so no default", p, "robot", Pull, false},
		{"user * names everyone", p, "dave", Pull, false},
		{"anonymous", p, "", Pull, false},
		{"default when no rule names the user", defaults, "dave", Admin, true},
		{"nothing beyond the default", defaults, "dave", Push, false},
		// robot may admin everywhere (apps/* by the rule, the rest by
		// default), but only a rule on "*" counts: the answer errs on the
		// side of refusing.
		{"a rule on a glob beside the default", defaults, "robot", Admin, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.allowedEverywhere(c.user, c.act); got != c.want {
				t.Errorf("allowedEverywhere(%q, %s) = %v, want %v", c.user, c.act, got, c.want)
			}
		})
	}
}

func TestPolicyMoveNumberedTag(t *testing.T) {
	for _, c := range []struct {
		src  string
		want Action
	}{
		{"rules: []", Push},
		{"moveNumberedTag: delete", Delete},
	} {
		t.Run(c.src, func(t *testing.T) {
			if got := mustParsePolicy(t, c.src).move; got != c.want {
				t.Errorf("moveNumberedTag = %s, want %s", got, c.want)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	rule := func(fields string) string {
		return "groups: {ci: [robot]}\nrules:\n  - " + strings.ReplaceAll(fields, "; ", "\n    ") + "\n"
	}
	for _, c := range []struct{ name, src, want string }{
		{"unknown key", "rulez: []", "field rulez not found"},
		{"unknown key in a rule", rule("users: [a]; repositories: [x]; actions: [pull]; repos: [y]"), "field repos not found"},
		{"unknown action", rule("users: [a]; repositories: [x]; actions: [pull, fly]"), `rule 1: "fly" is not an action`},
		{"unknown default action", "default: [read]", `"read" is not an action`},
		{"unknown moveNumberedTag", "moveNumberedTag: promote", `"promote" is neither push nor delete`},
		// Delete and push again would get around it.
		{"moveNumberedTag beyond delete", "moveNumberedTag: admin", `"admin" is neither push nor delete`},
		{"unknown group", rule("groups: [admins]; repositories: [x]; actions: [pull]"), `rule 1: no group "admins"`},
		{"bad glob", rule("groups: [ci]; repositories: [Apps/*]; actions: [pull]"), `rule 1: "Apps/*" is neither`},
		{"bad anonymous glob", `anonymous: ["public//*"]`, `anonymous: "public//*" is neither`},
		{"rule without users", rule("repositories: [x]; actions: [pull]"), "rule 1: needs users or groups"},
		{"rule without repositories", rule("users: [a]; actions: [pull]"), "rule 1: needs"},
		{"rule without actions", rule("users: [a]; repositories: [x]"), "rule 1: needs"},
		{"a list where a map goes", "- rules", "cannot unmarshal"},
		{"a scalar where a list goes", "default: pull", "cannot unmarshal"},
		{"a key twice", "default: [pull]\ndefault: [push]", "already defined"},
		{"a second document", "default: [pull]\n---\nrules: []", "one YAML document"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(c.src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ParsePolicy(%q) = %v, want an error with %q", c.src, err, c.want)
			}
		})
	}
	for _, src := range []string{"", "# nothing yet\n", "rules: []\n---\n", ExamplePolicy} {
		if _, err := ParsePolicy([]byte(src)); err != nil {
			t.Errorf("ParsePolicy(%q) = %v, want no error", src, err)
		}
	}
}

// TestExamplePolicy checks that the example means what its comments say.
func TestExamplePolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	replaceFile(t, path, ExamplePolicy)
	p, err := OpenPolicy(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, repo string
		act        Action
		want       bool
	}{
		{"alice", "anything/at/all", Delete, true},
		{"robot", "apps/web", Push, true},
		{"robot", "tools/lint", Push, false},
		{"robot", "tools/lint", Pull, true},
		{"dave", "apps/web", Pull, true},
		{"dave", "apps/web", Push, false},
		{"", "public/site", Pull, true},
		{"", "apps/web", Pull, false},
	} {
		if got := p.Allowed(c.user, c.repo, c.act); got != c.want {
			t.Errorf("Allowed(%q, %q, %s) = %v, want %v", c.user, c.repo, c.act, got, c.want)
		}
	}
	if !p.AllowedEverywhere("alice", Admin) || p.AllowedEverywhere("robot", Admin) {
		t.Error("admin everywhere: want alice and not robot")
	}
	if got := p.moveNumbered(); got != Delete {
		t.Errorf("moveNumberedTag = %s, want delete", got)
	}
}
