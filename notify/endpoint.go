package notify

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// The payload formats an endpoint can receive.
const (
	FormatDistribution = "distribution" // the reference registry's envelope
	FormatHarbor       = "harbor"       // Harbor's PUSH_ARTIFACT / DELETE_ARTIFACT
	FormatCloudEvents  = "cloudevents"  // CloudEvents 1.0, structured mode
)

// The media types of the distribution format: one envelope, two names for it.
const (
	DistributionMediaTypeV2 = "application/vnd.docker.distribution.events.v2+json" // the default
	DistributionMediaTypeV1 = "application/vnd.docker.distribution.events.v1+json" // for receivers that only know v1
)

// Endpoint is a webhook receiver: where deliveries go, how they are written
// and signed, and which events it wants. Every filter that is set must pass;
// an empty one lets everything through.
type Endpoint struct {
	Name   string `json:"name" yaml:"name"` // unique
	URL    string `json:"url" yaml:"url"`
	Format string `json:"format" yaml:"format"` // FormatDistribution, FormatHarbor or FormatCloudEvents
	// DistributionMediaType is the Content-Type of the distribution format:
	// DistributionMediaTypeV2 when empty, or DistributionMediaTypeV1.
	DistributionMediaType string `json:"distributionMediaType,omitempty" yaml:"distributionMediaType"`
	// Secrets are the signing keys, newest first: "whsec_<base64>" (Standard
	// Webhooks) or any other string, whose bytes are the key.
	Secrets []string          `json:"secrets,omitempty" yaml:"secrets"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers"` // added to every delivery

	// Repositories are globs (oci.GlobRegexp): `*` crosses `/`.
	Repositories []string `json:"repositories,omitempty" yaml:"repositories"`
	Actions      []string `json:"actions,omitempty" yaml:"actions"` // metadata.Action* values
	NumberedOnly bool     `json:"numberedOnly,omitempty" yaml:"numberedOnly"`
	// TagPattern is a regular expression the tag must match (unanchored, as
	// regexp.MatchString; write ^…$ for a whole tag). An event without a tag,
	// a manifest delete, never matches it.
	TagPattern string   `json:"tagPattern,omitempty" yaml:"tagPattern"`
	MediaTypes []string `json:"mediaTypes,omitempty" yaml:"mediaTypes"` // of the manifest, exactly
}

// actions are the event actions an endpoint may filter on.
var actions = []string{
	metadata.ActionPush, metadata.ActionMove, metadata.ActionDelete, metadata.ActionRestore,
	metadata.ActionRollback, metadata.ActionRetention, metadata.ActionManifestDelete,
	metadata.ActionBlobPush, metadata.ActionBlobPull,
}

// signed are the headers every delivery carries, which static headers
// may not replace.
var signed = map[string]bool{"Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
	"X-Signature": true, "Idempotency-Key": true, "Content-Type": true}

// ValidHeader reports whether name and value make a header net/http will
// send: the name a token (RFC 9110), the value without control characters
// other than tab. A static header that is not would fail every delivery.
func ValidHeader(name, value string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if c > 0x7e || c <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return !strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f })
}

// blobAction reports whether an action is a blob's: those go only to
// endpoints that list them, since every pull would make one.
func blobAction(a string) bool { return a == metadata.ActionBlobPush || a == metadata.ActionBlobPull }

// Validate reports the first thing wrong with an endpoint, naming the field.
func (ep Endpoint) Validate() error {
	if ep.Name == "" {
		return errors.New("webhook endpoint: a name is required")
	}
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("webhook endpoint %s: %s", ep.Name, fmt.Sprintf(format, a...))
	}
	u, err := url.Parse(ep.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("url %q is not an http or https URL", ep.URL)
	}
	switch ep.Format {
	case FormatDistribution:
		switch ep.DistributionMediaType {
		case "", DistributionMediaTypeV2, DistributionMediaTypeV1:
		default:
			return invalid("distributionMediaType %q is neither %s nor %s",
				ep.DistributionMediaType, DistributionMediaTypeV2, DistributionMediaTypeV1)
		}
	case FormatHarbor, FormatCloudEvents:
		if ep.DistributionMediaType != "" {
			return invalid("distributionMediaType applies to the distribution format only, not %s", ep.Format)
		}
	default:
		return invalid("format %q is not one of %s, %s, %s", ep.Format, FormatDistribution, FormatHarbor, FormatCloudEvents)
	}
	for k, v := range ep.Headers {
		if !ValidHeader(k, v) {
			return invalid("headers: %q: %q is not a valid HTTP header", k, v)
		}
		if signed[http.CanonicalHeaderKey(k)] {
			return invalid("headers: %s is set by Berth on every delivery", k)
		}
	}
	// Every delivery is signed, so that a receiver can tell it is Berth's.
	if len(ep.Secrets) == 0 {
		return invalid("secrets: at least one signing secret is needed")
	}
	for i, s := range ep.Secrets {
		if err := CheckSecret(s); err != nil {
			return invalid("secrets[%d]: %v", i, err)
		}
	}
	for _, g := range ep.Repositories {
		if oci.ValidateGlob(g) != nil {
			return invalid("repositories: %q is neither a repository name nor a glob", g)
		}
	}
	for _, a := range ep.Actions {
		if !slices.Contains(actions, a) {
			return invalid("actions: %q is not one of %v", a, actions)
		}
		if blobAction(a) && ep.Format == FormatHarbor {
			return invalid("actions: Harbor's format has no event for %s", a)
		}
	}
	if _, err := regexp.Compile(ep.TagPattern); err != nil {
		return invalid("tagPattern: %v", err)
	}
	return nil
}

// Matches reports whether an event passes the endpoint's filters. The
// endpoint must be valid: a pattern that does not compile matches nothing.
// It compiles the patterns on each call; the Router keeps them compiled.
func (ep Endpoint) Matches(e metadata.Event) bool { return ep.compile().matches(e) }

// matcher is an endpoint's filters with their patterns compiled.
type matcher struct {
	ep    Endpoint
	tag   *regexp.Regexp   // nil if TagPattern is empty
	repos []*regexp.Regexp // one per glob of Repositories
	bad   bool             // TagPattern does not compile: nothing matches
}

func (ep Endpoint) compile() matcher {
	m := matcher{ep: ep}
	if ep.TagPattern != "" {
		re, err := regexp.Compile(ep.TagPattern)
		m.tag, m.bad = re, err != nil
	}
	for _, g := range ep.Repositories {
		m.repos = append(m.repos, oci.GlobRegexp(g))
	}
	return m
}

func (m matcher) matches(e metadata.Event) bool {
	ep := m.ep
	if (len(ep.Actions) > 0 || blobAction(e.Action)) && !slices.Contains(ep.Actions, e.Action) {
		return false
	}
	if ep.NumberedOnly && !e.Numbered {
		return false
	}
	if len(ep.MediaTypes) > 0 && !slices.Contains(ep.MediaTypes, e.MediaType) {
		return false
	}
	if m.bad || m.tag != nil && (e.Tag == "" || !m.tag.MatchString(e.Tag)) {
		return false
	}
	if len(m.repos) > 0 && !slices.ContainsFunc(m.repos, func(re *regexp.Regexp) bool {
		return re.MatchString(e.Repository)
	}) {
		return false
	}
	return true
}
