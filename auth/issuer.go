package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/berthhq/berth/oci"
)

// TokenPath is where the registry serves TokenHandler: the built-in
// issuer's realm is the registry's public URL followed by TokenPath.
const TokenPath = "/auth/token"

// maxTokenForm bounds the body of an OAuth2 token request.
const maxTokenForm = 64 << 10

// TokenHandler is the built-in token issuer, to be served at TokenPath;
// nil unless the Authenticator signs tokens itself.
func (a *Authenticator) TokenHandler() http.Handler {
	if a == nil || a.method != MethodToken || !a.tokens.issuing() {
		return nil
	}
	return http.HandlerFunc(a.serveToken)
}

// tokenRequest is a token request of either flow, read but not yet
// authenticated.
type tokenRequest struct {
	// grant is the OAuth2 grant_type: "password" or "refresh_token"; for
	// a GET, "basic" or "anonymous".
	grant          string
	user, password string
	refresh        string
	scope          []Access
	// offline asks for a refresh token besides the access token.
	offline bool
	client  string
}

// tokenResponse answers both flows: GET clients read token (or
// access_token), OAuth2 clients access_token and scope.
type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	Scope        string `json:"scope"`
	ExpiresIn    int64  `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// tokenError is a refused token request: its status and its OAuth2
// error code (RFC 6749, section 5.2).
type tokenError struct {
	status int
	code   string
	msg    string
}

func (e *tokenError) Error() string { return e.msg }

func badRequest(code, format string, args ...any) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

func invalidGrant(msg string) *tokenError {
	return &tokenError{status: http.StatusUnauthorized, code: "invalid_grant", msg: msg}
}

// serveToken issues a token: GET is the token flow, POST the OAuth2 one.
//
// https://distribution.github.io/distribution/spec/auth/token/
// https://distribution.github.io/distribution/spec/auth/oauth/
func (a *Authenticator) serveToken(w http.ResponseWriter, r *http.Request) {
	// Tokens and refresh tokens are credentials (RFC 6749, section 5.1).
	w.Header().Set("Cache-Control", "no-store")
	resp, err := a.token(w, r)
	if err == nil {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	var te *tokenError
	if !errors.As(err, &te) {
		a.log.Error("token issuer", "err", err)
		te = &tokenError{status: http.StatusInternalServerError, code: "server_error", msg: "the token could not be issued"}
	}
	if te.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="Berth"`)
	}
	if r.Method == http.MethodPost {
		writeJSON(w, te.status, map[string]string{"error": te.code, "error_description": te.msg})
		return
	}
	code := strings.ToUpper(te.code)
	if te.status == http.StatusUnauthorized {
		code = "UNAUTHORIZED"
	}
	writeJSON(w, te.status, map[string]any{"errors": []map[string]string{{"code": code, "message": te.msg}}})
}

// token authenticates a token request and signs what it may have.
func (a *Authenticator) token(w http.ResponseWriter, r *http.Request) (*tokenResponse, error) {
	req, err := a.readTokenRequest(w, r)
	if err != nil {
		return nil, err
	}
	// A refresh token is bound to the hash read before the password is
	// checked: if the password changes meanwhile, a login with the old
	// one gets a token bound to the old hash, refused at its first use.
	hash, _ := a.htpasswd.hashOf(req.user)
	user, err := a.login(req)
	if err != nil {
		Audit(a.log, r, Identity{Name: user, Method: MethodBasic}, "login", "result", "denied", "grant", req.grant, "scope", FormatScope(req.scope), "client", req.client)
		return nil, err
	}
	grants := a.grant(user, req.scope)
	now := time.Now()
	resp := &tokenResponse{
		Scope:     FormatScope(grants),
		ExpiresIn: int64(a.tokens.Expiry / time.Second),
		IssuedAt:  now.UTC().Format(time.RFC3339),
	}
	if resp.AccessToken, err = a.tokens.issue(user, grants, now); err != nil {
		return nil, err
	}
	// A token too large to verify is refused now rather than at its use.
	if len(resp.AccessToken) > maxTokenSize {
		return nil, badRequest("invalid_scope", "the scope is too large for one token")
	}
	resp.Token = resp.AccessToken
	if req.offline && user != "" {
		if resp.RefreshToken, err = a.tokens.issueRefresh(user, hash, now); err != nil {
			return nil, err
		}
	}
	if user != "" {
		Audit(a.log, r, Identity{Name: user, Method: MethodBasic}, "login", "result", "ok", "grant", req.grant, "scope", resp.Scope, "client", req.client)
	}
	return resp, nil
}

// readTokenRequest reads either flow's parameters and checks their form,
// not the credentials.
func (a *Authenticator) readTokenRequest(w http.ResponseWriter, r *http.Request) (*tokenRequest, error) {
	req := &tokenRequest{}
	var q url.Values
	switch r.Method {
	case http.MethodGet:
		q = r.URL.Query()
		req.grant = "anonymous"
		if r.Header.Get("Authorization") != "" {
			user, pass, ok := r.BasicAuth()
			if !ok {
				return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", msg: "only basic credentials get a token"}
			}
			req.grant, req.user, req.password = "basic", user, pass
		}
		if account := q.Get("account"); account != "" && req.user != "" && account != req.user {
			return nil, badRequest("invalid_request", "the account is not the credentials' user")
		}
		req.offline = q.Get("offline_token") == "true"
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenForm)
		if err := r.ParseForm(); err != nil {
			return nil, badRequest("invalid_request", "the form: %v", err)
		}
		q = r.PostForm
		req.grant = q.Get("grant_type")
		switch req.grant {
		case "password":
			req.user, req.password = q.Get("username"), q.Get("password")
			if req.user == "" {
				return nil, badRequest("invalid_request", "the password grant needs a username")
			}
			req.offline = q.Get("access_type") == "offline"
		case "refresh_token":
			if req.refresh = q.Get("refresh_token"); req.refresh == "" {
				return nil, badRequest("invalid_request", "the refresh_token grant needs a refresh_token")
			}
		case "":
			return nil, badRequest("invalid_request", "grant_type is missing (a form body, application/x-www-form-urlencoded)")
		default:
			return nil, badRequest("unsupported_grant_type", "grant_type %q is neither password nor refresh_token", req.grant)
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		return nil, &tokenError{status: http.StatusMethodNotAllowed, code: "invalid_request", msg: "a token request is a GET or a POST"}
	}
	if s := q.Get("service"); s != a.tokens.Service {
		return nil, badRequest("invalid_request", "service %q is not this registry's (%q)", s, a.tokens.Service)
	}
	// The OAuth2 flow requires client_id, but it proves nothing: it is
	// only written to the audit line, and a client that omits it is served.
	req.client = q.Get("client_id")
	var err error
	if req.scope, err = ParseScope(strings.Join(q["scope"], " ")); err != nil {
		return nil, badRequest("invalid_scope", "%v", err)
	}
	return req, nil
}

// login checks a token request's credentials and returns its user, ""
// for an anonymous caller. On an error the user, if known, is returned
// too, for the audit line.
func (a *Authenticator) login(req *tokenRequest) (string, error) {
	switch req.grant {
	case "refresh_token":
		user, stamp, err := a.tokens.verifyRefresh(req.refresh)
		if err != nil {
			return "", invalidGrant("the refresh token is invalid or expired")
		}
		// A user removed from the htpasswd file, or whose password changed,
		// loses their refresh tokens; so do tokens without a stamp, which
		// Berth issued before it stamped them.
		if hash, ok := a.htpasswd.hashOf(user); !ok || stamp != hashStamp(hash) {
			return user, invalidGrant("the refresh token is no longer valid")
		}
		return user, nil
	case "basic", "password":
		if !a.htpasswd.Verify(req.user, req.password) {
			return req.user, invalidGrant("invalid user name or password")
		}
		return req.user, nil
	}
	return "", nil
}

// grant keeps, of each requested entry, the actions user ("" for an
// anonymous caller) may do: never more than was asked.
func (a *Authenticator) grant(user string, want []Access) []Access {
	id := Identity{}
	if user != "" {
		id = Identity{Name: user, Method: MethodBasic}
	}
	granted := []Access{}
	for _, e := range want {
		asked := e.Actions
		if slices.Contains(asked, "*") {
			asked = []string{string(Pull), string(Push), string(Delete), string(Admin)}
		}
		var acts []string
		switch {
		case e.Type == "repository":
			for _, act := range asked {
				if a.Allowed(id, e.Name, Action(act)) {
					acts = append(acts, act)
				}
			}
		// The catalog goes to every user; the registry filters its list.
		case e.Type == "registry" && e.Name == "catalog" && user != "":
			if slices.Contains(e.Actions, "*") {
				acts = []string{"*"}
			}
		case e.Type == "registry" && e.Name == "*" && user != "":
			for _, act := range asked {
				if a.AllowedEverywhere(id, Action(act)) {
					acts = append(acts, act)
				}
			}
		}
		// A repository asked for and refused stays, with no actions: the
		// registry tells a token that was asked and refused (fall back, or
		// 403) from one that was never asked (challenge for it).
		if len(acts) > 0 || e.Type == "repository" {
			granted = append(granted, Access{Type: e.Type, Name: e.Name, Actions: append([]string{}, acts...)})
		}
	}
	return granted
}

// ParseScope reads a token request's scope: entries type:name:actions
// separated by spaces, such as "repository:team/app:pull,push". The type
// is before the first ':' and the actions after the last, so a name may
// hold a ':'. Entries naming the same resource are merged.
func ParseScope(s string) ([]Access, error) {
	var scope []Access
	index := map[[2]string]int{}
	for _, entry := range strings.Fields(s) {
		typ, rest, _ := strings.Cut(entry, ":")
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return nil, fmt.Errorf("scope %q is not type:name:actions", entry)
		}
		name, actions := rest[:i], rest[i+1:]
		switch typ {
		case "repository":
			if err := oci.ValidateName(name); err != nil {
				return nil, fmt.Errorf("scope %q: %w", entry, err)
			}
		case "registry":
			if name == "" {
				return nil, fmt.Errorf("scope %q names no resource", entry)
			}
		default:
			return nil, fmt.Errorf("scope %q: type %q is neither repository nor registry", entry, typ)
		}
		key := [2]string{typ, name}
		n, ok := index[key]
		if !ok {
			n, index[key] = len(scope), len(scope)
			scope = append(scope, Access{Type: typ, Name: name})
		}
		for _, act := range strings.Split(actions, ",") {
			if _, err := ParseAction(act); err != nil && act != "*" {
				return nil, fmt.Errorf("scope %q: %w", entry, err)
			}
			if !slices.Contains(scope[n].Actions, act) {
				scope[n].Actions = append(scope[n].Actions, act)
			}
		}
	}
	return scope, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
