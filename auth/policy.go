package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"

	"github.com/berthhq/berth/oci"
	"go.yaml.in/yaml/v3"
)

// PolicyFile is the policy file as written: who may do what, where.
//
//	groups:
//	  admins: [alice]
//	  ci: [robot]
//	anonymous: ["public/*"]   # anyone may pull these, without credentials
//	default: [pull]           # what a user may do where no rule names them
//	moveNumberedTag: delete   # moving a numbered tag needs this (default push)
//	rules:
//	  - groups: [admins]
//	    repositories: ["*"]
//	    actions: [pull, push, delete, admin]
//	  - users: [robot]
//	    repositories: ["apps/*"]
//	    actions: [pull, push]
//
// A user's rights on a repository are the union of every rule that names
// the user (directly, through a group, or with the user "*", any
// authenticated user) and matches the repository; where none does, the
// default. Globs are those of tag policies: `*` matches any run of
// characters, `/` included.
type PolicyFile struct {
	Groups          map[string][]string `yaml:"groups,omitempty"`
	Anonymous       []string            `yaml:"anonymous,omitempty"`
	Default         []Action            `yaml:"default,omitempty"`
	MoveNumberedTag Action              `yaml:"moveNumberedTag,omitempty"`
	Rules           []PolicyRule        `yaml:"rules"`
}

// PolicyRule grants actions on the repositories its globs match to the
// users and groups it names.
type PolicyRule struct {
	Users        []string `yaml:"users,omitempty"`
	Groups       []string `yaml:"groups,omitempty"`
	Repositories []string `yaml:"repositories"`
	Actions      []Action `yaml:"actions"`
}

// Policy is a compiled policy file, read again when the file changes.
type Policy struct {
	file *watched[*compiledPolicy]
}

// OpenPolicy reads a policy file. onError hears of a later change that
// does not parse or check; the previous policy stays in force.
func OpenPolicy(path string, onError func(error)) (*Policy, error) {
	f, err := watch(path, ParsePolicy, onError)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return &Policy{file: f}, nil
}

type compiledPolicy struct {
	anonymous []*regexp.Regexp
	defaults  []Action
	move      Action
	rules     []compiledRule
	groups    map[string][]string // user → groups
}

type compiledRule struct {
	users, groups []string
	globs         []string
	repos         []*regexp.Regexp
	actions       []Action
}

// ParsePolicy reads and checks a policy file's bytes; unknown keys,
// actions, groups and invalid globs are errors.
func ParsePolicy(b []byte) (*compiledPolicy, error) {
	var f PolicyFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// The decoder stops after one document: rules in a second one would be
	// ignored without a word.
	for {
		var extra any
		if err := dec.Decode(&extra); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		if extra != nil {
			return nil, errors.New("a policy file is one YAML document")
		}
	}
	return f.compile()
}

func (f *PolicyFile) compile() (*compiledPolicy, error) {
	p := &compiledPolicy{defaults: f.Default, move: f.MoveNumberedTag, groups: map[string][]string{}}
	if p.move == "" {
		p.move = Push
	}
	check := func(acts []Action, where string) error {
		for _, a := range acts {
			if _, err := ParseAction(string(a)); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		return nil
	}
	if err := check(f.Default, "default"); err != nil {
		return nil, err
	}
	// Delete and push again would move a numbered tag for anyone with
	// delete, so a right beyond delete could not be held to.
	if p.move != Push && p.move != Delete {
		return nil, fmt.Errorf("moveNumberedTag: %q is neither push nor delete", p.move)
	}
	globs := func(gs []string, where string) ([]*regexp.Regexp, error) {
		var res []*regexp.Regexp
		for _, g := range gs {
			if oci.ValidateGlob(g) != nil {
				return nil, fmt.Errorf("%s: %q is neither a repository name nor a glob", where, g)
			}
			res = append(res, oci.GlobRegexp(g))
		}
		return res, nil
	}
	var err error
	if p.anonymous, err = globs(f.Anonymous, "anonymous"); err != nil {
		return nil, err
	}
	for group, users := range f.Groups {
		for _, u := range users {
			p.groups[u] = append(p.groups[u], group)
		}
	}
	for i, r := range f.Rules {
		where := fmt.Sprintf("rule %d", i+1)
		if len(r.Users)+len(r.Groups) == 0 || len(r.Repositories) == 0 || len(r.Actions) == 0 {
			return nil, fmt.Errorf("%s: needs users or groups, repositories and actions", where)
		}
		for _, g := range r.Groups {
			if _, ok := f.Groups[g]; !ok {
				return nil, fmt.Errorf("%s: no group %q", where, g)
			}
		}
		if err := check(r.Actions, where); err != nil {
			return nil, err
		}
		repos, err := globs(r.Repositories, where)
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, compiledRule{users: r.Users, groups: r.Groups, globs: r.Repositories, repos: repos, actions: r.Actions})
	}
	return p, nil
}

// names reports whether the rule applies to user.
func (r *compiledRule) names(user string, groups []string) bool {
	if slices.Contains(r.users, user) || slices.Contains(r.users, "*") {
		return true
	}
	for _, g := range groups {
		if slices.Contains(r.groups, g) {
			return true
		}
	}
	return false
}

// Allowed reports whether user ("" for anonymous) may do act to the
// repository name.
func (p *Policy) Allowed(user, name string, act Action) bool {
	return p.file.get().allowed(user, name, act)
}

func (p *compiledPolicy) allowed(user, name string, act Action) bool {
	// What is not a repository name may match no glob where a name would
	// (the globs' `.` stops at a newline), and fall to the default: refuse
	// it here rather than trust every caller to have checked.
	if oci.ValidateName(name) != nil {
		return false
	}
	match := func(re *regexp.Regexp) bool { return re.MatchString(name) }
	// What anyone may pull, a user may too.
	if act == Pull && slices.ContainsFunc(p.anonymous, match) {
		return true
	}
	if user == "" {
		return false
	}
	groups := p.groups[user]
	matched := false
	for i := range p.rules {
		r := &p.rules[i]
		if !r.names(user, groups) || !slices.ContainsFunc(r.repos, match) {
			continue
		}
		if slices.Contains(r.actions, act) {
			return true
		}
		matched = true
	}
	return !matched && slices.Contains(p.defaults, act)
}

// AllowedEverywhere reports whether user may do act to every repository:
// a rule naming the user grants it under the glob "*", or no rule names
// the user and the default grants it.
func (p *Policy) AllowedEverywhere(user string, act Action) bool {
	return p.file.get().allowedEverywhere(user, act)
}

func (p *compiledPolicy) allowedEverywhere(user string, act Action) bool {
	if user == "" {
		return false
	}
	groups := p.groups[user]
	named := false
	for i := range p.rules {
		r := &p.rules[i]
		if !r.names(user, groups) {
			continue
		}
		if slices.Contains(r.globs, "*") && slices.Contains(r.actions, act) {
			return true
		}
		named = true
	}
	return !named && slices.Contains(p.defaults, act)
}

func (p *Policy) moveNumbered() Action { return p.file.get().move }
