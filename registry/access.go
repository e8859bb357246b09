package registry

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/berthhq/berth/auth"
)

// Who may do what. Every request is authenticated once, in dispatch; each
// endpoint needs one action on its repository (or, on the admin API, on
// every repository), checked before its handler runs.

type identityKey struct{}

// identity is who sent the request, as dispatch found.
func identity(r *http.Request) auth.Identity {
	id, _ := r.Context().Value(identityKey{}).(auth.Identity)
	return id
}

// actor names who asked for a change, for tag history and audit lines:
// the user, or for an anonymous caller the client's address.
func actor(r *http.Request) string {
	if id := identity(r); id.Name != "" {
		return id.Name
	}
	return auth.ClientAddress(r)
}

// authenticate reads the request's credentials into its context.
func (reg *Registry) authenticate(r *http.Request, rt route, v2 bool) (*http.Request, error) {
	id, err := reg.auth.Authenticate(r)
	if err != nil {
		user, _, _ := r.BasicAuth()
		auth.Audit(reg.log, r, id, "denied", "reason", "invalid credentials", "user", user, "path", r.URL.Path)
		e := newError(http.StatusUnauthorized, codeUnauthorized, "invalid credentials")
		e.header = http.Header{"Www-Authenticate": {reg.auth.Challenge(scopeOf(rt, v2, r.Method))}}
		return r, e
	}
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id)), nil
}

// v2Action is the action an /v2/ endpoint needs on its repository.
func v2Action(endpoint, method string) auth.Action {
	switch {
	case endpoint == epUploads || endpoint == epUpload || method == http.MethodPut:
		return auth.Push
	case method == http.MethodDelete:
		return auth.Delete
	}
	return auth.Pull
}

// scopeOf is the access a /v2/ request needs, as a challenge names it
// (v2 false: not a /v2/ request, none).
func scopeOf(rt route, v2 bool, method string) []auth.Access {
	switch {
	case !v2 || rt.endpoint == epBase:
		return nil
	case rt.endpoint == epCatalog:
		return []auth.Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	}
	act := v2Action(rt.endpoint, method)
	// A push is pull and push to the clients that ask for a token.
	actions := []string{string(act)}
	if act == auth.Push {
		actions = []string{"pull", "push"}
	}
	return []auth.Access{{Type: "repository", Name: rt.name, Actions: actions}}
}

// authorizeV2 checks that the caller may use a /v2/ endpoint: the base and
// the catalog need only an authenticated caller (the catalog then lists
// what the caller may pull), the others their action on the repository.
func (reg *Registry) authorizeV2(r *http.Request, rt route) error {
	if !reg.auth.Enabled() {
		return nil
	}
	id := identity(r)
	switch rt.endpoint {
	case epBase:
		if id.Anonymous() {
			return reg.refuse(r, id, nil)
		}
		return nil
	case epCatalog:
		if id.Anonymous() || !reg.auth.ListsCatalog(id) {
			return reg.refuse(r, id, scopeOf(rt, true, r.Method))
		}
		return nil
	}
	if reg.auth.Allowed(id, rt.name, v2Action(rt.endpoint, r.Method)) {
		return nil
	}
	return reg.refuse(r, id, scopeOf(rt, true, r.Method))
}

// authorizeAdmin checks that the caller may use an admin endpoint: reads of
// one repository need pull on it, changes to it admin on it, and the
// registry-wide endpoints admin on every repository. The API's description
// is public.
func (reg *Registry) authorizeAdmin(r *http.Request, rt adminRoute) error {
	if !reg.auth.Enabled() || rt.endpoint == adOpenAPI {
		return nil
	}
	id := identity(r)
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch rt.endpoint {
	case adRepository, adTags, adTag, adTagHistory, adRestore, adHistory, adVersions, adRollback, adRetention, adRepoStats:
		act := auth.Admin
		if read {
			act = auth.Pull
		}
		if reg.auth.Allowed(id, rt.name, act) {
			return nil
		}
		return reg.refuse(r, id, []auth.Access{{Type: "repository", Name: rt.name, Actions: []string{string(act)}}})
	}
	if reg.auth.AllowedEverywhere(id, auth.Admin) {
		return nil
	}
	return reg.refuse(r, id, []auth.Access{{Type: "registry", Name: "*", Actions: []string{string(auth.Admin)}}})
}

// refuse answers a request the caller may not make: 401 with a challenge
// to an anonymous caller or a token without the scope (clients then ask
// for credentials or a token with it), 403 DENIED to a user the policy
// refuses.
func (reg *Registry) refuse(r *http.Request, id auth.Identity, need []auth.Access) error {
	// Every client starts with an anonymous GET /v2/ to learn how to
	// authenticate: that is no denial worth a line.
	if need != nil || !id.Anonymous() {
		auth.Audit(reg.log, r, id, "denied", "method", r.Method, "path", r.URL.Path, "need", auth.FormatScope(need))
	}
	// An anonymous token holder is challenged, to log in; a user's token
	// refused on everything it needs is denied.
	if id.Anonymous() || id.Method == auth.MethodToken && (id.Name == "" || !refusedAll(id, need)) {
		e := newError(http.StatusUnauthorized, codeUnauthorized, "authentication required")
		challenge := reg.auth.Challenge(need)
		if !id.Anonymous() {
			e.Message = "the token does not grant " + auth.FormatScope(need)
			if strings.HasPrefix(challenge, "Bearer ") {
				challenge += `,error="insufficient_scope"`
			}
		}
		e.header = http.Header{"Www-Authenticate": {challenge}}
		return e
	}
	if need == nil {
		return newError(http.StatusForbidden, codeDenied, "you may not do this")
	}
	return newError(http.StatusForbidden, codeDenied, "you may not do this here: it needs "+auth.FormatScope(need))
}

// audit writes the audit line of a change that succeeded: a manifest push,
// a delete, a tag move, a policy or webhook change, a collection run.
// Logins and denials have theirs where they happen.
func (reg *Registry) audit(r *http.Request, status int, rt route, v2 bool) {
	if status >= 400 || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return
	}
	var event string
	if v2 {
		switch {
		case rt.endpoint == epManifest && r.Method == http.MethodPut:
			event = "push"
		case (rt.endpoint == epManifest || rt.endpoint == epBlob) && r.Method == http.MethodDelete:
			event = "delete"
		case rt.endpoint == epUploads && status == http.StatusCreated && r.URL.Query().Has("mount"):
			event = "mount"
		}
	} else if ar, ok := parseAdminRoute(r.URL.Path); ok {
		switch ar.endpoint {
		case adTag, adRestore, adRollback:
			event = "tag-move"
			if r.Method == http.MethodDelete {
				event = "delete"
			}
		case adRetention:
			event = "retention"
		case adPolicy:
			event = "policy-change"
		case adGC:
			event = "gc"
		case adWebhooks, adWebhook, adEnable, adRedeliver:
			event = "webhook-change"
		}
	}
	if event != "" {
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status}
		if from := r.URL.Query().Get("from"); event == "mount" {
			attrs = append(attrs, "from", from)
		}
		auth.Audit(reg.log, r, identity(r), event, attrs...)
	}
}

// idleBody is a request body that must keep sending: before each read the
// connection's read deadline moves to idle from now, so a body can be as
// long as it likes but not stall for longer than idle.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.idle)) // unsupported (HTTP/2 over h2c, a test recorder): no deadline
	return b.ReadCloser.Read(p)
}

// refusedAll reports whether the issuer, asked about every repository in
// need, refused everything on each: asking again would not help.
func refusedAll(id auth.Identity, need []auth.Access) bool {
	for _, e := range need {
		if e.Type != "repository" || !id.Refused(e.Name) {
			return false
		}
	}
	return len(need) > 0
}
