package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// newPolicies returns the policies of a registry with the given default
// policy and configured rules, over a fresh database.
func newPolicies(t *testing.T, defaults Policy, config ...PolicyRule) (*policies, *metadata.DB) {
	t.Helper()
	db := newServer(t).db
	return New(Options{DB: db, Policy: defaults, PolicyRules: config}).policies, db
}

// storePolicy stores a rule as the admin API does.
func storePolicy(t *testing.T, db *metadata.DB, repositories string, p Policy) {
	t.Helper()
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(t.Context(), func(tx *metadata.Tx) error {
		return tx.SetPolicy(t.Context(), repositories, string(body), "tester")
	}); err != nil {
		t.Fatal(err)
	}
}

func effective(t *testing.T, ps *policies, repo string) *tagPolicy {
	t.Helper()
	p, err := ps.forRepository(t.Context(), repo)
	if err != nil {
		t.Fatalf("forRepository(%s): %v", repo, err)
	}
	return p
}

// policyText is a policy as JSON, to compare policies whole.
func policyText(t *testing.T, p Policy) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func keep(newest int, youngerThan time.Duration, pattern string) *Retention {
	r := &Retention{}
	if newest != 0 {
		r.KeepNewest = &newest
	}
	if youngerThan != 0 {
		r.KeepYoungerThan = ptr(Duration(youngerThan))
	}
	if pattern != "" {
		r.KeepPattern = &pattern
	}
	return r
}

func orderings(o ...oci.Ordering) []oci.Ordering { return o }

// TestPolicyResolution: a repository's policy is the defaults overlaid by
// every rule that matches it, least specific first. Specificity is the
// number of literal characters, an exact name beating every glob; at equal
// specificity the admin API's rule wins over the configuration's. Each
// field, each retention field too, comes from the most specific rule that
// sets it.
func TestPolicyResolution(t *testing.T) {
	ps, db := newPolicies(t, Policy{RefuseLower: ptr(true), Retention: keep(99, 0, "")},
		PolicyRule{Repositories: "*", Policy: Policy{Retention: keep(10, 720*time.Hour, "")}},
		PolicyRule{Repositories: "team/*", Policy: Policy{ImmutableNumbered: ptr(false), Retention: keep(0, 0, "^v")}},
		PolicyRule{Repositories: "team/app", Policy: Policy{RefuseLower: ptr(true), Ordering: orderings(oci.OrderSemver)}},
	)
	storePolicy(t, db, "t*", Policy{ImmutableNumbered: ptr(true), RefuseLower: ptr(true)})
	storePolicy(t, db, "team/app", Policy{RefuseLower: ptr(false)})
	storePolicy(t, db, "team/?pp", Policy{Retention: keep(3, 0, "")})
	storePolicy(t, db, "team/app*", Policy{Ordering: orderings(oci.OrderInteger)})

	for _, tt := range []struct {
		repo   string
		policy string
		rules  string // source:glob, in the order applied
		scheme string // of the versioning
	}{
		// Every layer: config * < api t* < config team/* < api team/?pp
		// < api team/app* < config team/app < api team/app.
		{"team/app",
			`{"ordering":["semver"],"immutableNumbered":false,"refuseLower":false,"retention":{"keepNewest":3,"keepYoungerThan":"720h0m0s","keepPattern":"^v"}}`,
			"config:* api:t* config:team/* api:team/?pp api:team/app* config:team/app api:team/app", "semver"},
		{"team/apple",
			`{"ordering":["integer"],"immutableNumbered":false,"refuseLower":true,"retention":{"keepNewest":10,"keepYoungerThan":"720h0m0s","keepPattern":"^v"}}`,
			"config:* api:t* config:team/* api:team/app*", "integer"},
		// * matches across /, ? one character only.
		{"team/sub/app",
			`{"ordering":["integer","semver"],"immutableNumbered":false,"refuseLower":true,"retention":{"keepNewest":10,"keepYoungerThan":"720h0m0s","keepPattern":"^v"}}`,
			"config:* api:t* config:team/*", "integer,semver"},
		{"tools",
			`{"ordering":["integer","semver"],"immutableNumbered":true,"refuseLower":true,"retention":{"keepNewest":10,"keepYoungerThan":"720h0m0s"}}`,
			"config:* api:t*", "integer,semver"},
		// The registry's defaults, then the configured default policy.
		{"app",
			`{"ordering":["integer","semver"],"immutableNumbered":true,"refuseLower":true,"retention":{"keepNewest":10,"keepYoungerThan":"720h0m0s"}}`,
			"config:*", "integer,semver"},
	} {
		p := effective(t, ps, tt.repo)
		if got := policyText(t, p.Policy); got != tt.policy {
			t.Errorf("policy of %s:\n%s\nwant\n%s", tt.repo, got, tt.policy)
		}
		var rules []string
		for _, r := range p.rules {
			rules = append(rules, r.Source+":"+r.Repositories)
		}
		if got := strings.Join(rules, " "); got != tt.rules {
			t.Errorf("rules of %s: %s, want %s", tt.repo, got, tt.rules)
		}
		// What a push gets of it.
		if r := p.tagRules(); r.ImmutableNumbered != *p.ImmutableNumbered || r.RefuseLower != *p.RefuseLower ||
			r.Versioning.Scheme() != tt.scheme {
			t.Errorf("tag rules of %s: %+v with scheme %s, want %s", tt.repo, r, r.Versioning.Scheme(), tt.scheme)
		}
	}
	if keep := effective(t, ps, "team/app").keepPattern(); keep == nil || !keep.MatchString("v1") || keep.MatchString("1") {
		t.Errorf("keepPattern of team/app compiled to %v", keep)
	}
}

// TestPolicyCheck: check refuses what cannot work, as POLICY_INVALID.
func TestPolicyCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    Policy
		ok   bool
	}{
		{"empty", Policy{}, true},
		{"everything", Policy{Ordering: orderings(oci.OrderPattern, oci.OrderSemver), Pattern: `(?P<date>[0-9]{8})-(?P<build>[0-9]+)`,
			ImmutableNumbered: ptr(true), RefuseLower: ptr(false), Retention: keep(5, time.Hour, "^v1\\.")}, true},
		{"unknown ordering", Policy{Ordering: orderings("calendar")}, false},
		{"lexical with another", Policy{Ordering: orderings(oci.OrderLexical, oci.OrderInteger)}, false},
		{"no ordering in the list", Policy{Ordering: []oci.Ordering{}}, false},
		{"pattern without ordering", Policy{Pattern: `(?P<n>[0-9]+)`}, false},
		{"pattern with orderings that do not use it", Policy{Ordering: orderings(oci.OrderInteger), Pattern: `(?P<n>[0-9]+)`}, false},
		{"pattern ordering without a pattern", Policy{Ordering: orderings(oci.OrderPattern)}, false},
		{"pattern without a named group", Policy{Ordering: orderings(oci.OrderPattern), Pattern: `([0-9]+)`}, false},
		{"pattern that does not compile", Policy{Ordering: orderings(oci.OrderPattern), Pattern: `(?P<n>[0-9]+`}, false},
		{"keepNewest 0", Policy{Retention: &Retention{KeepNewest: ptr(0)}}, false},
		{"keepNewest negative", Policy{Retention: &Retention{KeepNewest: ptr(-1)}}, false},
		{"keepNewest 1", Policy{Retention: &Retention{KeepNewest: ptr(1)}}, true},
		{"keepYoungerThan negative", Policy{Retention: &Retention{KeepYoungerThan: ptr(Duration(-time.Hour))}}, false},
		{"keepYoungerThan 0", Policy{Retention: &Retention{KeepYoungerThan: ptr(Duration(0))}}, false},
		{"keepPattern that does not compile", Policy{Retention: keep(0, 0, "v[1")}, false},
		{"empty retention", Policy{Retention: &Retention{}}, true},
	} {
		err := tt.p.check()
		if tt.ok {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.Code != codePolicyInvalid || ae.Status != http.StatusBadRequest {
			t.Errorf("%s: check() = %v, want a 400 %s", tt.name, err, codePolicyInvalid)
		}
		// The configuration is checked the same way.
		if err := ValidatePolicyRules([]PolicyRule{{Repositories: "team/*", Policy: tt.p}}); err == nil || !strings.Contains(err.Error(), "team/*") {
			t.Errorf("%s: ValidatePolicyRules = %v, want an error naming the rule", tt.name, err)
		}
	}
}

// TestValidatePolicyRules: a rule names repositories by a name or a glob.
func TestValidatePolicyRules(t *testing.T) {
	for _, glob := range []string{"app", "team/app", "*", "team/*", "*/app", "team/?pp", "**", "a.b-c_d/e"} {
		if err := ValidatePolicyRules([]PolicyRule{{Repositories: glob}}); err != nil {
			t.Errorf("%q: %v", glob, err)
		}
	}
	for _, glob := range []string{"", "Team/*", "team//app", "team/", "/app", "-app", "team/*:1", "team app", "*/"} {
		err := ValidatePolicyRules([]PolicyRule{{Repositories: "app"}, {Repositories: glob}})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", glob)) {
			t.Errorf("%q: ValidatePolicyRules = %v, want an error naming it", glob, err)
		}
	}
}

// TestPolicyCache: the rules are compiled once for the stored ones, and
// again only once those change.
func TestPolicyCache(t *testing.T) {
	ps, db := newPolicies(t, Policy{}, PolicyRule{Repositories: "team/*", Policy: Policy{RefuseLower: ptr(true)}})
	refuses := func(repo string) bool { t.Helper(); return *effective(t, ps, repo).RefuseLower }
	if !refuses("team/app") || refuses("app") {
		t.Fatal("the configured rule does not apply")
	}
	compiled := ps.compiled.Load()
	refuses("team/app")
	if ps.compiled.Load() != compiled {
		t.Error("the rules were compiled again while the stored ones were unchanged")
	}

	storePolicy(t, db, "app", Policy{RefuseLower: ptr(true)})
	if !refuses("app") {
		t.Fatal("a stored rule is not seen")
	}
	recompiled := ps.compiled.Load()
	if recompiled == compiled {
		t.Error("the cache was not refreshed")
	}
	storePolicy(t, db, "app", Policy{RefuseLower: ptr(false)}) // replaced
	if refuses("app") || !refuses("team/app") {
		t.Fatal("a replaced stored rule is not seen")
	}
	if err := db.InTx(t.Context(), func(tx *metadata.Tx) error { return tx.DeletePolicy(t.Context(), "app") }); err != nil {
		t.Fatal(err)
	}
	storePolicy(t, db, "team/*", Policy{RefuseLower: ptr(false)}) // the API's, over the configuration's
	if refuses("team/app") {
		t.Fatal("a deleted or added stored rule is not seen")
	}

	// A stored rule that does not check (written around the API) is an
	// error of every resolution, not a silent default.
	if err := db.InTx(t.Context(), func(tx *metadata.Tx) error {
		return tx.SetPolicy(t.Context(), "bad", `{"retention":{"keepNewest":0}}`, "tester")
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.forRepository(t.Context(), "app"); err == nil || !strings.Contains(err.Error(), "stored policy for bad") {
		t.Errorf("forRepository with an invalid stored rule = %v", err)
	}
}

func TestGlobRegexp(t *testing.T) {
	for _, tt := range []struct {
		glob, name string
		match      bool
	}{
		{"team/*", "team/app", true},
		{"team/*", "team/a/b/c", true}, // * crosses /
		{"team/*", "team", false},
		{"team/*", "teams/app", false},
		{"*", "a/b", true},
		{"*/app", "team/sub/app", true},
		{"*/app", "team/apps", false},
		{"team/?pp", "team/app", true},
		{"team/?pp", "team/pp", false}, // ? is exactly one character
		{"team/?pp", "team/aapp", false},
		{"team/a?p", "team/a/p", true},
		{"a.b", "axb", false}, // other characters are literal
		{"a.b", "a.b", true},
		{"app", "app", true},
		{"app", "app2", false},
		{"app", "my/app", false},
	} {
		re, _ := globRegexp(tt.glob)
		if got := re.MatchString(tt.name); got != tt.match {
			t.Errorf("glob %q matches %q: %v, want %v", tt.glob, tt.name, got, tt.match)
		}
	}
	for glob, want := range map[string]int{"*": 0, "team/*": 5, "t?m/*": 3, "team/app": 1 << 20, "a": 1 << 20} {
		if _, got := globRegexp(glob); got != want {
			t.Errorf("specificity of %q = %d, want %d", glob, got, want)
		}
	}
}
