package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
)

// Action is something a caller does to a repository.
type Action string

// The actions a policy grants and a token carries.
const (
	Pull   Action = "pull"
	Push   Action = "push"
	Delete Action = "delete"
	// Admin is the admin API: on one repository for its tag endpoints, on
	// every repository ("*") for the registry-wide ones.
	Admin Action = "admin"
)

var actions = []Action{Pull, Push, Delete, Admin}

// ParseAction checks that s names an action.
func ParseAction(s string) (Action, error) {
	if a := Action(s); slices.Contains(actions, a) {
		return a, nil
	}
	return "", fmt.Errorf("%q is not an action (pull, push, delete, admin)", s)
}

// Identity is who is asking. The zero value is an anonymous caller.
type Identity struct {
	// Name is the user name; "" for an anonymous caller.
	Name string
	// Method is how the caller proved it: MethodBasic, MethodToken or
	// MethodClientCert; "" for an anonymous caller.
	Method Method
	// Access, for a bearer token, is all the token grants; the policy is not
	// asked. Nil for other methods.
	Access []Access
}

// Anonymous reports whether the caller gave no credentials.
func (id Identity) Anonymous() bool { return id.Name == "" && id.Method == "" }

// Access is one entry of a token's access claim: a resource and the actions
// granted on it ("repository", a name, pull and push).
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// ErrUnauthenticated is returned for credentials that were given and are
// wrong: an unknown user, a wrong password, a bad or expired token.
var ErrUnauthenticated = errors.New("auth: invalid credentials")

// Method is how clients authenticate.
type Method string

// The methods.
const (
	// MethodNone turns authentication off: everyone may do everything.
	MethodNone Method = "none"
	// MethodBasic asks for HTTP basic credentials checked against the
	// htpasswd file.
	MethodBasic Method = "basic"
	// MethodToken asks for a bearer token from the realm, the built-in
	// issuer or an external one.
	MethodToken Method = "token"
	// MethodClientCert is an identity's method when a verified TLS client
	// certificate named it (Options.ClientCerts), beside either of the
	// above.
	MethodClientCert Method = "tls"
)

// Options configure an Authenticator.
type Options struct {
	Method Method
	// Htpasswd checks basic credentials: on every request with
	// MethodBasic, at the built-in issuer with MethodToken. Admin CLI
	// clients may send basic credentials under either method.
	Htpasswd *Htpasswd
	// Policy says what authenticated users may do; nil lets every
	// authenticated user do everything, and anonymous callers nothing.
	Policy *Policy
	// Token configures bearer tokens for MethodToken.
	Token *Tokens
	// ClientCerts makes a verified TLS client certificate's common name an
	// identity, with method "tls".
	ClientCerts bool
	// Logger receives the audit lines of logins at the token issuer.
	Logger *slog.Logger
}

// Authenticator answers the two questions of every request: who, and may
// they. It is safe for concurrent use.
type Authenticator struct {
	method      Method
	htpasswd    *Htpasswd
	policy      *Policy
	tokens      *Tokens
	clientCerts bool
	log         *slog.Logger
}

// New returns an Authenticator; it checks that the options fit together.
func New(o Options) (*Authenticator, error) {
	a := &Authenticator{method: o.Method, htpasswd: o.Htpasswd, policy: o.Policy, tokens: o.Token, clientCerts: o.ClientCerts, log: o.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	switch o.Method {
	case MethodNone, "":
		a.method = MethodNone
	case MethodBasic:
		if o.Htpasswd == nil {
			return nil, errors.New("auth: basic authentication needs an htpasswd file")
		}
	case MethodToken:
		if o.Token == nil {
			return nil, errors.New("auth: token authentication needs token options")
		}
		if o.Token.issuing() && o.Htpasswd == nil {
			return nil, errors.New("auth: the built-in token issuer needs an htpasswd file")
		}
	default:
		return nil, fmt.Errorf("auth: %q is not a method (none, basic, token)", o.Method)
	}
	return a, nil
}

// Enabled reports whether requests are checked at all.
func (a *Authenticator) Enabled() bool { return a != nil && a.method != MethodNone }

// Authenticate reads a request's credentials. No credentials is the
// anonymous Identity and no error; wrong ones are ErrUnauthenticated.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if !a.Enabled() {
		return Identity{}, nil
	}
	h := r.Header.Get("Authorization")
	switch {
	case h == "":
	case hasScheme(h, "Bearer") && a.method == MethodToken:
		return a.tokens.verify(h[len("Bearer "):])
	case hasScheme(h, "Basic"):
		user, pass, ok := r.BasicAuth()
		if !ok || a.htpasswd == nil || !a.htpasswd.Verify(user, pass) {
			return Identity{}, ErrUnauthenticated
		}
		return Identity{Name: user, Method: MethodBasic}, nil
	default:
		return Identity{}, ErrUnauthenticated
	}
	if a.clientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		if cn := r.TLS.VerifiedChains[0][0].Subject.CommonName; cn != "" {
			return Identity{Name: cn, Method: MethodClientCert}, nil
		}
	}
	return Identity{}, nil
}

func hasScheme(h, scheme string) bool {
	return len(h) > len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) && h[len(scheme)] == ' '
}

// Allowed reports whether id may do act to the repository name. With
// authentication off, everyone may do everything.
func (a *Authenticator) Allowed(id Identity, name string, act Action) bool {
	if !a.Enabled() {
		return true
	}
	if id.Access != nil {
		return granted(id.Access, "repository", name, act)
	}
	if a.policy == nil {
		return !id.Anonymous()
	}
	return a.policy.Allowed(id.Name, name, act)
}

// AllowedEverywhere reports whether id may do act to every repository: the
// right the registry-wide admin endpoints (garbage collection, webhooks,
// policies) need.
func (a *Authenticator) AllowedEverywhere(id Identity, act Action) bool {
	if !a.Enabled() {
		return true
	}
	if id.Access != nil {
		return granted(id.Access, "registry", "*", act)
	}
	if a.policy == nil {
		return !id.Anonymous()
	}
	return a.policy.AllowedEverywhere(id.Name, act)
}

// MoveNumberedTag is the action moving a numbered tag to another manifest
// needs, push unless the policy asks for more.
func (a *Authenticator) MoveNumberedTag() Action {
	if a.Enabled() && a.policy != nil {
		return a.policy.moveNumbered()
	}
	return Push
}

// ListsCatalog reports whether id may list repositories at all; the list
// is then filtered by Allowed(…, Pull).
func (a *Authenticator) ListsCatalog(id Identity) bool {
	if !a.Enabled() || id.Access == nil {
		return true
	}
	return granted(id.Access, "registry", "catalog", "*")
}

// UserMay reports whether id's user may do act to the repository name,
// whatever their token was asked for: for the catalog, which lists what the
// caller may pull, and for moving a numbered tag, a right clients do not
// ask a token for. For a token of Berth's own issuer the policy decides for
// its user; another issuer's token decides by its grants.
func (a *Authenticator) UserMay(id Identity, name string, act Action) bool {
	if a.Enabled() && id.Method == MethodToken && a.tokens.issuing() {
		if id.Name == "" {
			id = Identity{} // an anonymous token holder is anonymous
		}
		id.Access = nil
	}
	return a.Allowed(id, name, act)
}

// Asked reports whether id holds a token that was asked about the
// repository name, granted or refused; a caller with no token has not been
// asked about anything. A client that did not ask is challenged to, rather
// than refused.
func (id Identity) Asked(name string) bool {
	return slices.ContainsFunc(id.Access, func(e Access) bool { return e.Type == "repository" && e.Name == name })
}

// Refused reports whether id holds a token whose issuer was asked about the
// repository name and granted nothing on it.
func (id Identity) Refused(name string) bool {
	return id.Asked(name) && !slices.ContainsFunc(id.Access, func(e Access) bool {
		return e.Type == "repository" && e.Name == name && len(e.Actions) > 0
	})
}

// granted reports whether access grants act on the resource.
func granted(access []Access, typ, name string, act Action) bool {
	for _, e := range access {
		if e.Type == typ && e.Name == name && (slices.Contains(e.Actions, string(act)) || slices.Contains(e.Actions, "*")) {
			return true
		}
	}
	return false
}

// Challenge is the WWW-Authenticate header of a 401 for a request that
// needs the given access (nil: just the API's root).
func (a *Authenticator) Challenge(need []Access) string {
	if a.method != MethodToken {
		return `Basic realm="Berth"`
	}
	c := fmt.Sprintf(`Bearer realm=%q,service=%q`, a.tokens.Realm, a.tokens.Service)
	if len(need) > 0 {
		c += fmt.Sprintf(`,scope=%q`, FormatScope(need))
	}
	return c
}

// FormatScope writes access as a token request's scope: each entry as
// type:name:action,action, entries separated by spaces; entries without
// actions grant nothing and are left out.
func FormatScope(access []Access) string {
	var parts []string
	for _, e := range access {
		if len(e.Actions) > 0 {
			parts = append(parts, e.Type+":"+e.Name+":"+strings.Join(e.Actions, ","))
		}
	}
	return strings.Join(parts, " ")
}

// ClientAddress is the caller's IP address, for limits and audit lines.
func ClientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Audit writes an audit line: a login, a denial, a delete, a tag move, a
// policy change. Each names the event, the actor and the client's address,
// so that one filter (msg=audit) shows who did what from where.
func Audit(log *slog.Logger, r *http.Request, id Identity, event string, attrs ...any) {
	actor := id.Name
	if actor == "" {
		actor = "anonymous"
	}
	log.Info("audit", append([]any{"event", event, "actor", actor, "address", ClientAddress(r)}, attrs...)...)
}
