package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// Policy says how a repository's tags read as versions and how long they
// are kept. A rule sets some fields; the others come from less specific
// rules, and in the end from the registry's defaults.
type Policy struct {
	// Ordering and Pattern: which tags are numbered, and their order.
	Ordering []oci.Ordering `json:"ordering,omitempty" yaml:"ordering"`
	Pattern  string         `json:"pattern,omitempty" yaml:"pattern"`
	// ImmutableNumbered: a numbered tag keeps the manifest it was pushed with.
	ImmutableNumbered *bool `json:"immutableNumbered,omitempty" yaml:"immutableNumbered"`
	// RefuseLower: a new numbered tag must be newer than the newest.
	RefuseLower *bool      `json:"refuseLower,omitempty" yaml:"refuseLower"`
	Retention   *Retention `json:"retention,omitempty" yaml:"retention"`
}

// Retention says which numbered tags to keep; retention deletes the others,
// but never the newest. A rule left out keeps nothing by itself; with no
// rule at all, nothing is deleted.
type Retention struct {
	KeepNewest      *int      `json:"keepNewest,omitempty" yaml:"keepNewest"`           // the newest N versions
	KeepYoungerThan *Duration `json:"keepYoungerThan,omitempty" yaml:"keepYoungerThan"` // tags pushed within this long
	KeepPattern     *string   `json:"keepPattern,omitempty" yaml:"keepPattern"`         // tags this regular expression matches
}

// Duration is a time.Duration written as text ("720h") in JSON and YAML.
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return &badDuration{string(b)}
	}
	*d = Duration(v)
	return nil
}

type badDuration struct{ text string }

func (e *badDuration) Error() string {
	return fmt.Sprintf("%q is not a duration (write it as 720h, 90m or 1h30m)", e.text)
}

// PolicyRule is a policy for the repositories a glob matches: `*` matches
// any run of characters, `/` included, and `?` one character.
type PolicyRule struct {
	Repositories string `json:"repositories" yaml:"repositories"`
	Source       string `json:"source,omitempty" yaml:"-"` // config or api
	Policy       Policy `json:"policy" yaml:",inline"`
}

// overlay returns p with the fields that q sets taken from q.
func (p Policy) overlay(q Policy) Policy {
	if q.Ordering != nil {
		p.Ordering, p.Pattern = q.Ordering, q.Pattern
	}
	if q.ImmutableNumbered != nil {
		p.ImmutableNumbered = q.ImmutableNumbered
	}
	if q.RefuseLower != nil {
		p.RefuseLower = q.RefuseLower
	}
	if r := q.Retention; r != nil {
		merged := Retention{}
		if p.Retention != nil {
			merged = *p.Retention
		}
		if r.KeepNewest != nil {
			merged.KeepNewest = r.KeepNewest
		}
		if r.KeepYoungerThan != nil {
			merged.KeepYoungerThan = r.KeepYoungerThan
		}
		if r.KeepPattern != nil {
			merged.KeepPattern = r.KeepPattern
		}
		p.Retention = &merged
	}
	return p
}

// check reports what is wrong with a policy, as a POLICY_INVALID error.
func (p Policy) check() error {
	invalid := func(format string, a ...any) error {
		return newError(400, codePolicyInvalid, fmt.Sprintf(format, a...))
	}
	if p.Ordering != nil {
		if _, err := oci.NewVersioning(p.Ordering, p.Pattern); err != nil {
			return invalid("%v", err)
		}
	}
	// Without it, the pattern would be ignored.
	if p.Pattern != "" && !slices.Contains(p.Ordering, oci.OrderPattern) {
		return invalid("a pattern needs the ordering it belongs to (ordering: [pattern])")
	}
	if r := p.Retention; r != nil {
		if r.KeepNewest != nil && *r.KeepNewest < 1 {
			return invalid("retention.keepNewest must be at least 1")
		}
		if r.KeepYoungerThan != nil && *r.KeepYoungerThan <= 0 {
			return invalid("retention.keepYoungerThan must be a positive duration")
		}
		if r.KeepPattern != nil {
			if _, err := regexp.Compile(*r.KeepPattern); err != nil {
				return invalid("retention.keepPattern: %v", err)
			}
		}
	}
	return nil
}

// tagPolicy is a repository's effective policy, every field set, ready to use.
type tagPolicy struct {
	Policy
	rules      []PolicyRule // the rules that matched, least specific first
	versioning *oci.Versioning
}

// tagRules is what metadata needs of the policy to change a tag.
func (p *tagPolicy) tagRules() metadata.TagRules {
	return metadata.TagRules{Versioning: p.versioning, ImmutableNumbered: *p.ImmutableNumbered, RefuseLower: *p.RefuseLower}
}

// keepPattern compiles retention.keepPattern (nil when unset) for a
// retention run, rather than on every push that resolves the policy.
func (p *tagPolicy) keepPattern() *regexp.Regexp {
	if k := p.Retention.KeepPattern; k != nil {
		return regexp.MustCompile(*k) // checked when the rule was configured or stored
	}
	return nil
}

// policies resolves repositories' policies from the defaults, the rules of
// the configuration and the rules stored through the admin API.
type policies struct {
	defaults Policy
	config   []PolicyRule
	db       *metadata.DB
	// compiled caches the rules for the stored ones it was built from: a
	// push reads the (small) policies table, and compiles nothing unless
	// it changed.
	compiled atomic.Pointer[compiledRules]
}

type compiledRules struct {
	stored []metadata.PolicyRecord
	rules  []compiledRule
}

type compiledRule struct {
	PolicyRule
	match       *regexp.Regexp
	specificity int // literal characters; an exact name is the most specific
}

func compileRule(r PolicyRule) (compiledRule, error) {
	if err := r.Policy.check(); err != nil {
		return compiledRule{}, err
	}
	re, literal := globRegexp(r.Repositories)
	return compiledRule{r, re, literal}, nil
}

// globRegexp compiles a glob (oci.GlobRegexp) and counts its literal
// characters (1<<20 when it has no wildcard).
func globRegexp(glob string) (*regexp.Regexp, int) {
	literal := utf8.RuneCountInString(glob) - strings.Count(glob, "*") - strings.Count(glob, "?")
	if !strings.ContainsAny(glob, "*?") {
		literal = 1 << 20
	}
	return oci.GlobRegexp(glob), literal
}

// rules returns the configured and stored rules, compiled, from the cache
// while the stored ones are unchanged.
func (ps *policies) rules(ctx context.Context) ([]compiledRule, error) {
	stored, err := ps.db.Policies(ctx)
	if err != nil {
		return nil, err
	}
	if c := ps.compiled.Load(); c != nil && slices.Equal(c.stored, stored) {
		return c.rules, nil
	}
	var rules []compiledRule
	for _, r := range ps.config {
		r.Source = "config"
		cr, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("policy for %s in the configuration: %w", r.Repositories, err)
		}
		rules = append(rules, cr)
	}
	for _, s := range stored {
		r := PolicyRule{Repositories: s.Repositories, Source: "api"}
		if err := json.Unmarshal([]byte(s.Body), &r.Policy); err != nil {
			return nil, fmt.Errorf("stored policy for %s: %w", s.Repositories, err)
		}
		cr, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("stored policy for %s: %w", s.Repositories, err)
		}
		rules = append(rules, cr)
	}
	// Least specific first, so that overlaying in order lets the most
	// specific win; at equal specificity the API's rule wins over the
	// configuration's (the sort is stable).
	slices.SortStableFunc(rules, func(a, b compiledRule) int { return a.specificity - b.specificity })
	ps.compiled.Store(&compiledRules{stored, rules})
	return rules, nil
}

// forRepository returns the effective policy of a repository.
func (ps *policies) forRepository(ctx context.Context, repo string) (*tagPolicy, error) {
	rules, err := ps.rules(ctx)
	if err != nil {
		return nil, err
	}
	return ps.resolve(rules, repo)
}

// resolve returns the effective policy of a repository under rules (from
// ps.rules, read once by callers that resolve many repositories).
func (ps *policies) resolve(rules []compiledRule, repo string) (*tagPolicy, error) {
	var err error
	p := &tagPolicy{Policy: ps.defaults}
	for _, r := range rules {
		if r.match.MatchString(repo) {
			p.Policy = p.Policy.overlay(r.Policy)
			p.rules = append(p.rules, r.PolicyRule)
		}
	}
	if p.versioning, err = oci.NewVersioning(p.Ordering, p.Pattern); err != nil {
		return nil, err // the defaults and every rule were checked
	}
	if p.Retention == nil {
		p.Retention = &Retention{}
	}
	return p, nil
}
