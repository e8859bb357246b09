package test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// authServer is a Berth that asks for credentials, with the passwords of its htpasswd file's users.
type authServer struct {
	*server
	method    string            // basic or token
	passwords map[string]string // by user name
}

// authOptions configure startAuthBerth.
type authOptions struct {
	Method string   // --auth.method: basic or token
	Users  []string // written to the htpasswd file, each with a random password
	Policy string   // the policy file's YAML; "" for none (every user may do everything)
	Flags  []string // more `berth serve` flags
}

// startAuthBerth starts Berth with an htpasswd file (and a policy file if given). Its public URL is
// its own address, so that the built-in token issuer's realm is one clients on this machine reach.
func startAuthBerth(t testing.TB, o authOptions) *authServer {
	t.Helper()
	dir := t.TempDir()
	a := &authServer{method: o.Method, passwords: map[string]string{}}
	var lines []string
	for _, u := range o.Users {
		a.passwords[u] = hex.EncodeToString(randBytes(t, 12))
		// Cost 5 is what htpasswd -B writes.
		hash, err := bcrypt.GenerateFromPassword([]byte(a.passwords[u]), 5)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, u+":"+string(hash))
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	writeFile(t, htpasswd, []byte(strings.Join(lines, "\n")+"\n"))
	flags := []string{"--auth.method", o.Method, "--auth.htpasswd", htpasswd}
	if o.Policy != "" {
		policy := filepath.Join(dir, "policy.yaml")
		writeFile(t, policy, []byte(o.Policy))
		flags = append(flags, "--auth.policy", policy)
	}
	a.server = startBerth(t, serverOptions{Flags: append(flags, o.Flags...), PublicURL: true})
	return a
}

// as returns the server as seen by user: its URL carries the user's basic credentials, so that
// every helper taking a *server (getManifest, pushBlob, testImage.push…) sends them. Berth takes
// basic credentials under either method.
func (a *authServer) as(t testing.TB, user string) *server {
	t.Helper()
	pass, ok := a.passwords[user]
	if !ok {
		t.Fatalf("no user %s", user)
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	return &server{Host: a.Host, URL: u.String(), Data: a.Data, kind: a.kind, logs: a.logs}
}

// basic is the Authorization header of user's credentials.
func (a *authServer) basic(t testing.TB, user string) string {
	t.Helper()
	pass, ok := a.passwords[user]
	if !ok {
		t.Fatalf("no user %s", user)
	}
	return basicAuth(user, pass)
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// tokenAnswer is the built-in issuer's JSON answer.
type tokenAnswer struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token"`
}

// token asks the built-in issuer for a bearer token for user with the scopes
// ("repository:apps/x:pull,push") and returns the Authorization header that carries it.
func (a *authServer) token(t testing.TB, user string, scopes ...string) string {
	t.Helper()
	q := url.Values{"service": {"berth"}, "scope": scopes}
	resp, body := httpDo(t, http.MethodGet, a.URL+"/auth/token?"+q.Encode(), nil, map[string]string{"Authorization": a.basic(t, user)})
	expectStatus(t, resp, body, http.StatusOK)
	var ans tokenAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("GET /auth/token: %v\n%s", err, truncate(body))
	}
	if ans.Token == "" || ans.AccessToken != ans.Token || ans.ExpiresIn <= 0 || ans.IssuedAt == "" {
		t.Fatalf("GET /auth/token: want token, the same access_token, expires_in and issued_at: %s", truncate(body))
	}
	return "Bearer " + ans.Token
}

// header builds a request header map from an Authorization value ("" for none) and key, value pairs.
func header(authorization string, kv ...string) map[string]string {
	h := map[string]string{}
	if authorization != "" {
		h["Authorization"] = authorization
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// challengeParam matches one auth-param of a WWW-Authenticate challenge.
var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// expectChallenge checks a 401's WWW-Authenticate: Basic under basic authentication; under token
// authentication, Bearer with the built-in issuer's realm, the service, and the scope (if not "").
func (a *authServer) expectChallenge(t testing.TB, resp *http.Response, scope string) {
	t.Helper()
	h := resp.Header.Get("WWW-Authenticate")
	if a.method == "basic" {
		if !strings.HasPrefix(h, "Basic ") {
			t.Fatalf("%s %s: WWW-Authenticate %q, want a Basic challenge", resp.Request.Method, resp.Request.URL, h)
		}
		return
	}
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(h, -1) {
		params[m[1]] = m[2]
	}
	if !strings.HasPrefix(h, "Bearer ") || params["realm"] != a.URL+"/auth/token" || params["service"] != "berth" ||
		(scope != "" && params["scope"] != scope) {
		t.Fatalf("%s %s: WWW-Authenticate %q, want Bearer realm=%q,service=\"berth\" and scope %q",
			resp.Request.Method, resp.Request.URL, h, a.URL+"/auth/token", scope)
	}
}

// auditLines returns the server's audit log lines (msg=audit), each as its key=value pairs.
func auditLines(s *server) []map[string]string {
	var out []map[string]string
	for _, line := range strings.Split(s.logs.String(), "\n") {
		kv := logfmt(line)
		if kv["msg"] == "audit" {
			out = append(out, kv)
		}
	}
	return out
}

// logfmtPair matches key=value or key="quoted value" in a line of slog's text format.
var logfmtPair = regexp.MustCompile(`([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

func logfmt(line string) map[string]string {
	kv := map[string]string{}
	for _, m := range logfmtPair.FindAllStringSubmatch(line, -1) {
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			if err := json.Unmarshal([]byte(v), &v); err != nil {
				v = m[2]
			}
		}
		kv[m[1]] = v
	}
	return kv
}

// TestAuthAudit: a login at the built-in issuer and a refused pull each leave an audit line that
// names the event, who and from where.
func TestAuthAudit(t *testing.T) {
	t.Parallel()
	a := startAuthBerth(t, authOptions{Method: "token", Users: []string{"alice", "robot"}, Policy: `
rules:
  - {users: [alice], repositories: ["*"], actions: [pull, push, delete, admin]}
  - {users: [robot], repositories: ["apps/*"], actions: [pull]}
`})
	img := newTestImage(t)
	img.push(t, a.as(t, "alice"), "secret/y", "v1")

	a.token(t, "robot", "repository:apps/x:pull")
	resp, body := httpDo(t, http.MethodGet, a.URL+"/v2/secret/y/manifests/v1", nil,
		header(a.basic(t, "robot"), "Accept", manifestAccept))
	expectOCIError(t, resp, body, http.StatusForbidden, "DENIED")

	want := []map[string]string{
		{"event": "login", "actor": "robot", "address": "127.0.0.1"},
		{"event": "denied", "actor": "robot", "address": "127.0.0.1"},
	}
	has := func(lines []map[string]string, w map[string]string) bool {
		return slices.ContainsFunc(lines, func(l map[string]string) bool {
			for k, v := range w {
				if l[k] != v {
					return false
				}
			}
			return true
		})
	}
	// The server's log reaches the test through a pipe, a moment after the
	// answer may have.
	poll(t, fmt.Sprintf("audit lines with %v", want), func() bool {
		lines := auditLines(a.server)
		return !slices.ContainsFunc(want, func(w map[string]string) bool { return !has(lines, w) })
	})
}
