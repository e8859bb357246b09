package auth

import (
	"crypto/elliptic"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/oci"
	"golang.org/x/crypto/bcrypt"
)

const testPolicy = `
groups:
  admins: [alice]
anonymous: ["public/*"]
rules:
  - groups: [admins]
    repositories: ["*"]
    actions: [pull, push, delete, admin]
  - users: [bob]
    repositories: ["apps/*"]
    actions: [pull]
`

// password is a test user's password.
func password(user string) string { return user + "-secret" }

// syncBuffer collects the audit lines the server's goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// issuer is a built-in token issuer served on 127.0.0.1, over htpasswd
// and policy files the test may edit.
type issuer struct {
	url              string
	tokens           *Tokens
	htpasswd, policy string
	log              *syncBuffer
	edits            time.Time
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	dir := t.TempDir()
	is := &issuer{htpasswd: filepath.Join(dir, "htpasswd"), policy: filepath.Join(dir, "policy.yaml"), log: &syncBuffer{}, edits: time.Now()}
	is.edit(t, is.htpasswd, htpasswd(t, "alice", "bob"))
	is.edit(t, is.policy, testPolicy)
	h, err := OpenHtpasswd(is.htpasswd, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenPolicy(is.policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Edits take effect at once.
	h.file.recheck, p.file.recheck = 0, 0
	is.tokens = issuing(t, ecKey(t, elliptic.P256()))
	a, err := New(Options{Method: MethodToken, Htpasswd: h, Policy: p, Token: is.tokens, Logger: slog.New(slog.NewTextHandler(is.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.TokenHandler())
	t.Cleanup(srv.Close)
	is.url = srv.URL + TokenPath
	return is
}

// htpasswd is an htpasswd file of users, hashed at bcrypt's least cost
// to keep tests fast.
func htpasswd(t *testing.T, users ...string) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(password(u)), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + ":" + string(hash) + "\n")
	}
	return b.String()
}

// edit writes a file with a later modification time than its last, so
// that the watcher sees the change whatever the file system's clock.
func (is *issuer) edit(t *testing.T, path, contents string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
	is.edits = is.edits.Add(time.Minute)
	if err := os.Chtimes(path, is.edits, is.edits); err != nil {
		t.Fatal(err)
	}
}

// params are a token request's parameters: the right service, then kv
// pairs; a service among them replaces it.
func params(kv ...string) url.Values {
	v := url.Values{"service": {testService}}
	for i := 0; i < len(kv); i += 2 {
		if kv[i] == "service" {
			v.Del("service")
		}
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// tokenBody is any answer of the issuer.
type tokenBody struct {
	Token            string `json:"token"`
	AccessToken      string `json:"access_token"`
	Scope            string `json:"scope"`
	ExpiresIn        int    `json:"expires_in"`
	IssuedAt         string `json:"issued_at"`
	RefreshToken     string `json:"refresh_token"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	Errors           []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// do sends a GET (with basic credentials unless user is "") or, with
// post, a form POST.
func (is *issuer) do(t *testing.T, post bool, user, pass string, p url.Values) (*http.Response, tokenBody) {
	t.Helper()
	var req *http.Request
	var err error
	if post {
		req, err = http.NewRequest(http.MethodPost, is.url, strings.NewReader(p.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, err = http.NewRequest(http.MethodGet, is.url+"?"+p.Encode(), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body tokenBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: body: %v", resp.Status, err)
	}
	return resp, body
}

// check checks a 200's body: its token verifies with exactly the grants
// want, for user; it returns the access token.
func (is *issuer) check(t *testing.T, post bool, body tokenBody, user string, want []Access) string {
	t.Helper()
	if !post && body.Token != body.AccessToken {
		t.Error("token and access_token differ")
	}
	id, err := is.tokens.verify(body.AccessToken)
	if err != nil {
		t.Fatalf("the issued token does not verify: %v", err)
	}
	if want == nil {
		want = []Access{}
	}
	if id.Name != user || !reflect.DeepEqual(id.Access, want) {
		t.Errorf("token for %q grants %v, want %q with %v", id.Name, id.Access, user, want)
	}
	if body.Scope != FormatScope(want) {
		t.Errorf("scope = %q, want %q", body.Scope, FormatScope(want))
	}
	if body.ExpiresIn != 3600 {
		t.Errorf("expires_in = %d, want 3600", body.ExpiresIn)
	}
	if _, err := time.Parse(time.RFC3339, body.IssuedAt); err != nil {
		t.Errorf("issued_at: %v", err)
	}
	return body.AccessToken
}

func repo(name string, actions ...string) Access {
	return Access{Type: "repository", Name: name, Actions: append([]string{}, actions...)}
}

func TestIssuer(t *testing.T) {
	is := newIssuer(t)
	accessToken, err := is.tokens.issue("alice", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	catalog := Access{Type: "registry", Name: "catalog", Actions: []string{"*"}}
	var many []string
	for i := range 300 {
		many = append(many, fmt.Sprintf("repository:team/app-%d:pull,push,delete", i))
	}
	for _, c := range []struct {
		name       string
		post       bool
		user, pass string
		params     url.Values
		status     int
		code       string   // of an error: GET's errors code, POST's OAuth2 error
		access     []Access // granted, for a 200
		refresh    bool
	}{
		{name: "basic", user: "alice", pass: "alice-secret", params: params("scope", "repository:apps/web:pull,push"),
			status: 200, access: []Access{repo("apps/web", "pull", "push")}},
		{name: "scope escalation", user: "bob", pass: "bob-secret", params: params("scope", "repository:apps/web:pull,push,delete"),
			status: 200, access: []Access{repo("apps/web", "pull")}},
		// Refused, and kept with no actions: the token was asked about it.
		{name: "nothing allowed", user: "bob", pass: "bob-secret", params: params("scope", "repository:secret/db:pull"),
			status: 200, access: []Access{repo("secret/db")}},
		{name: "every action asked", user: "bob", pass: "bob-secret", params: params("scope", "repository:apps/web:*"),
			status: 200, access: []Access{repo("apps/web", "pull")}},
		{name: "several scopes", user: "alice", pass: "alice-secret",
			params: params("scope", "repository:a/b:pull", "scope", "repository:c:push registry:catalog:*", "scope", "repository:a/b:delete"),
			status: 200, access: []Access{repo("a/b", "pull", "delete"), repo("c", "push"), catalog}},
		{name: "anonymous", params: params("scope", "repository:public/site:pull,push repository:apps/web:pull"),
			status: 200, access: []Access{repo("public/site", "pull"), repo("apps/web")}},
		{name: "anonymous catalog", params: params("scope", "registry:catalog:*"), status: 200},
		{name: "catalog", user: "bob", pass: "bob-secret", params: params("scope", "registry:catalog:*"),
			status: 200, access: []Access{catalog}},
		{name: "registry admin", user: "alice", pass: "alice-secret", params: params("scope", "registry:*:admin"),
			status: 200, access: []Access{{Type: "registry", Name: "*", Actions: []string{"admin"}}}},
		{name: "registry admin refused", user: "bob", pass: "bob-secret", params: params("scope", "registry:*:admin"), status: 200},
		{name: "docker login", user: "alice", pass: "alice-secret", params: params("account", "alice", "offline_token", "true", "client_id", "docker"),
			status: 200, refresh: true},
		{name: "anonymous offline", params: params("offline_token", "true", "scope", "repository:public/site:pull"),
			status: 200, access: []Access{repo("public/site", "pull")}},
		{name: "wrong password", user: "alice", pass: "bob-secret", params: params("scope", "repository:apps/web:pull"),
			status: 401, code: "UNAUTHORIZED"},
		{name: "unknown user", user: "mallory", pass: "x", params: params(), status: 401, code: "UNAUTHORIZED"},
		{name: "account not the user", user: "alice", pass: "alice-secret", params: params("account", "bob"), status: 400, code: "INVALID_REQUEST"},
		{name: "other service", user: "alice", pass: "alice-secret", params: params("service", "elsewhere"), status: 400, code: "INVALID_REQUEST"},
		{name: "no service", params: params("service", ""), status: 400, code: "INVALID_REQUEST"},
		{name: "invalid name", params: params("scope", "repository:Apps/Web:pull"), status: 400, code: "INVALID_SCOPE"},
		{name: "too many grants for one token", user: "alice", pass: "alice-secret", params: params("scope", strings.Join(many, " ")),
			status: 400, code: "INVALID_SCOPE"},
		{name: "plugin scope", params: params("scope", "repository(plugin):apps/web:pull"), status: 400, code: "INVALID_SCOPE"},

		{name: "password grant", post: true, params: params("grant_type", "password", "username", "bob", "password", "bob-secret",
			"access_type", "offline", "client_id", "docker", "scope", "repository:apps/web:pull,push"),
			status: 200, access: []Access{repo("apps/web", "pull")}, refresh: true},
		{name: "password grant, online", post: true, params: params("grant_type", "password", "username", "alice", "password", "alice-secret",
			"scope", "repository:apps/web:push"),
			status: 200, access: []Access{repo("apps/web", "push")}},
		{name: "password grant, wrong password", post: true, params: params("grant_type", "password", "username", "alice", "password", "nope"),
			status: 401, code: "invalid_grant"},
		{name: "password grant, no username", post: true, params: params("grant_type", "password", "password", "alice-secret"),
			status: 400, code: "invalid_request"},
		{name: "refresh grant, garbage", post: true, params: params("grant_type", "refresh_token", "refresh_token", "garbage"),
			status: 401, code: "invalid_grant"},
		{name: "refresh grant, an access token", post: true, params: params("grant_type", "refresh_token", "refresh_token", accessToken),
			status: 401, code: "invalid_grant"},
		{name: "other grant", post: true, params: params("grant_type", "client_credentials"), status: 400, code: "unsupported_grant_type"},
		{name: "no grant", post: true, params: params(), status: 400, code: "invalid_request"},
		{name: "other service, post", post: true, params: params("grant_type", "password", "username", "alice", "password", "alice-secret", "service", "elsewhere"),
			status: 400, code: "invalid_request"},
		{name: "bad scope, post", post: true, params: params("grant_type", "password", "username", "alice", "password", "alice-secret", "scope", "repository:x:fly"),
			status: 400, code: "invalid_scope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := is.do(t, c.post, c.user, c.pass, c.params)
			if resp.StatusCode != c.status {
				t.Fatalf("status %s (%+v), want %d", resp.Status, body, c.status)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("the answer may be cached")
			}
			if c.status != http.StatusOK {
				code := body.Error
				if !c.post && len(body.Errors) == 1 {
					code = body.Errors[0].Code
				}
				if code != c.code {
					t.Errorf("error %+v, want code %s", body, c.code)
				}
				if c.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
					t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
				}
				return
			}
			user := c.user
			if c.post {
				user = c.params.Get("username")
			}
			is.check(t, c.post, body, user, c.access)
			if (body.RefreshToken != "") != c.refresh {
				t.Fatalf("refresh token given = %v, want %v", body.RefreshToken != "", c.refresh)
			}
			if c.refresh {
				if got, _, err := is.tokens.verifyRefresh(body.RefreshToken); err != nil || got != user {
					t.Errorf("the refresh token is for %q (%v), want %q", got, err, user)
				}
			}
		})
	}

	t.Run("method", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPut, is.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("PUT: %s", resp.Status)
		}
	})
}

// TestIssuerAudit checks the audit lines of logins: one for each, with
// the user and the outcome, and never a password or a token.
func TestIssuerAudit(t *testing.T) {
	is := newIssuer(t)
	is.do(t, false, "alice", password("alice"), params("scope", "repository:apps/web:pull", "offline_token", "true"))
	is.do(t, false, "mallory", "guess", params())
	is.do(t, true, "", "", params("grant_type", "password", "username", "bob", "password", password("bob"), "access_type", "offline"))
	is.do(t, false, "", "", params("scope", "repository:public/site:pull"))
	log := is.log.String()
	if lines := strings.Count(log, "event=login"); lines != 3 {
		t.Errorf("%d login lines, want 3 (anonymous callers do not log in):\n%s", lines, log)
	}
	for _, want := range []string{
		`event=login actor=alice address=127.0.0.1 result=ok grant=basic scope=repository:apps/web:pull`,
		`event=login actor=mallory address=127.0.0.1 result=denied`,
		`event=login actor=bob address=127.0.0.1 result=ok grant=password`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the audit lines:\n%s", want, log)
		}
	}
	for _, user := range []string{"alice", "bob"} {
		if strings.Contains(log, password(user)) {
			t.Errorf("a password is logged:\n%s", log)
		}
	}
	// Every JWT starts with the base64 of `{"`.
	if strings.Contains(log, "eyJ") {
		t.Errorf("a token is logged:\n%s", log)
	}
}

// TestIssuerRefresh follows a refresh token: each use recomputes the
// grants from the current policy, and a user removed from the htpasswd
// file can no longer use theirs.
func TestIssuerRefresh(t *testing.T) {
	is := newIssuer(t)
	_, login := is.do(t, false, "bob", "bob-secret", params("account", "bob", "offline_token", "true", "client_id", "docker"))
	if login.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	refresh := params("grant_type", "refresh_token", "refresh_token", login.RefreshToken, "client_id", "docker", "scope", "repository:apps/web:pull,push")

	resp, body := is.do(t, true, "", "", refresh)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %s %+v", resp.Status, body)
	}
	is.check(t, true, body, "bob", []Access{repo("apps/web", "pull")})
	if body.RefreshToken != "" {
		t.Error("a refresh gives another refresh token")
	}

	is.edit(t, is.policy, strings.Replace(testPolicy, "actions: [pull]", "actions: [pull, push]", 1))
	resp, body = is.do(t, true, "", "", refresh)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh after the policy edit: %s %+v", resp.Status, body)
	}
	is.check(t, true, body, "bob", []Access{repo("apps/web", "pull", "push")})

	is.edit(t, is.htpasswd, htpasswd(t, "alice"))
	resp, body = is.do(t, true, "", "", refresh)
	if resp.StatusCode != http.StatusUnauthorized || body.Error != "invalid_grant" {
		t.Errorf("refresh of a removed user: %s %+v", resp.Status, body)
	}
}

// TestRefreshAfterPasswordChange checks that a refresh token lasts as
// long as its user's password: a stolen docker identitytoken must not
// outlive a password reset.
func TestRefreshAfterPasswordChange(t *testing.T) {
	is := newIssuer(t)
	refresh := func(t *testing.T, token string, want int) {
		t.Helper()
		resp, body := is.do(t, true, "", "", params("grant_type", "refresh_token", "refresh_token", token, "scope", "repository:apps/web:pull"))
		if resp.StatusCode != want || want != http.StatusOK && body.Error != "invalid_grant" {
			t.Errorf("refresh: %s %s, want %d", resp.Status, body.Error, want)
		}
	}
	_, login := is.do(t, false, "bob", "bob-secret", params("offline_token", "true"))
	if login.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	b, err := os.ReadFile(is.htpasswd)
	if err != nil {
		t.Fatal(err)
	}
	_, bob, ok := strings.Cut(string(b), "\nbob:")
	if !ok {
		t.Fatalf("no bob in the htpasswd file:\n%s", b)
	}

	// Another user's new password, bob's line kept as it was.
	is.edit(t, is.htpasswd, htpasswd(t, "alice")+"bob:"+bob)
	refresh(t, login.RefreshToken, http.StatusOK)

	hash, err := bcrypt.GenerateFromPassword([]byte("a brand new password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	is.edit(t, is.htpasswd, htpasswd(t, "alice")+"bob:"+string(hash)+"\n")
	refresh(t, login.RefreshToken, http.StatusUnauthorized)

	_, login = is.do(t, false, "bob", "a brand new password", params("offline_token", "true"))
	refresh(t, login.RefreshToken, http.StatusOK)

	// A refresh token of a Berth that did not stamp them.
	unstamped, err := is.tokens.sign("bob", testService+refreshAudience, time.Hour, nil, time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, unstamped, http.StatusUnauthorized)
}

func TestTokenHandlerOnlyWhenIssuing(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	pemFile := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(pemFile, publicPEM(t, key.Public()), 0o644); err != nil {
		t.Fatal(err)
	}
	external, err := NewTokens(TokenOptions{Realm: testRealm, Service: testService, Issuer: testIssuer, KeysFile: pemFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &Htpasswd{}
	for _, c := range []struct {
		name string
		o    Options
	}{
		{"none", Options{}},
		{"basic", Options{Method: MethodBasic, Htpasswd: h, Token: issuing(t, key)}},
		{"external issuer", Options{Method: MethodToken, Token: external}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := New(c.o)
			if err != nil {
				t.Fatal(err)
			}
			if a.TokenHandler() != nil {
				t.Error("a token handler without a key to sign with")
			}
		})
	}
	if (*Authenticator)(nil).TokenHandler() != nil {
		t.Error("a nil Authenticator has a token handler")
	}
}

func TestParseScope(t *testing.T) {
	for _, c := range []struct {
		scope string
		want  []Access // nil: an error, unless scope is blank
	}{
		{"", nil},
		{"  ", nil},
		{"repository:team/app:pull", []Access{repo("team/app", "pull")}},
		{"repository:team/app:pull,push repository:other:delete", []Access{repo("team/app", "pull", "push"), repo("other", "delete")}},
		{"repository:a:pull repository:a:push,pull", []Access{repo("a", "pull", "push")}},
		{"repository:a:*", []Access{repo("a", "*")}},
		{"registry:catalog:*", []Access{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}},
		{"registry:*:admin", []Access{{Type: "registry", Name: "*", Actions: []string{"admin"}}}},
		{"registry:host:5000/x:pull", []Access{{Type: "registry", Name: "host:5000/x", Actions: []string{"pull"}}}},
		{"repository:host:5000/x:pull", nil},
		{"repository:a", nil},
		{"repository:a:", nil},
		{"repository:a:pull,,push", nil},
		{"repository:a:fly", nil},
		{"repository::pull", nil},
		{"repository:A:pull", nil},
		{"registry::pull", nil},
		{"image:a:pull", nil},
		{"repository(plugin):a:pull", nil},
		{"pull", nil},
	} {
		t.Run(c.scope, func(t *testing.T) {
			got, err := ParseScope(c.scope)
			if c.want == nil && strings.TrimSpace(c.scope) != "" {
				if err == nil {
					t.Errorf("ParseScope = %v, want an error", got)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("ParseScope = %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

// FuzzParseScope checks that ParseScope never panics, that what it
// accepts is valid, and that FormatScope writes it back the same.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"repository:team/app:pull,push", "registry:catalog:*", "repository:a:pull repository:a:push", "registry:a:b:c:pull", "repository:a::pull", " \t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		scope, err := ParseScope(s)
		if err != nil {
			return
		}
		for _, e := range scope {
			if e.Type == "repository" && oci.ValidateName(e.Name) != nil || e.Type != "repository" && (e.Type != "registry" || e.Name == "") {
				t.Fatalf("accepted %+v", e)
			}
			for _, act := range e.Actions {
				if _, err := ParseAction(act); err != nil && act != "*" {
					t.Fatalf("accepted action %q", act)
				}
			}
		}
		again, err := ParseScope(FormatScope(scope))
		if err != nil || !reflect.DeepEqual(again, scope) {
			t.Fatalf("ParseScope(FormatScope(%v)) = %v, %v", scope, again, err)
		}
	})
}
