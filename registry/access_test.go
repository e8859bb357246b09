package registry

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthhq/berth/auth"
	"golang.org/x/crypto/bcrypt"
)

// accessPolicy: admins do everything; dev pushes to apps/*; reader pulls
// apps/*; anyone pulls public/*; moving a numbered tag needs delete.
const accessPolicy = `
groups: {admins: [root]}
anonymous: ["public/*"]
moveNumberedTag: delete
rules:
  - {groups: [admins], repositories: ["*"], actions: [pull, push, delete, admin]}
  - {users: [dev], repositories: ["apps/*"], actions: [pull, push]}
  - {users: [reader], repositories: ["apps/*"], actions: [pull]}
`

// withAuth turns on basic authentication for the users root, dev and
// reader (password "pw-"+name) under accessPolicy.
func withAuth(t testing.TB, limits Limits) serverOption {
	return withAuthOf(t, auth.MethodBasic, accessPolicy, limits)
}

// withAuthOf turns on authentication by method for the users root, dev and
// reader (password "pw-"+name) under policy; with tokens, Berth issues
// them at /auth/token for the service "berth".
func withAuthOf(t testing.TB, method auth.Method, policy string, limits Limits) serverOption {
	dir := t.TempDir()
	var lines []string
	for _, u := range []string{"root", "dev", "reader"} {
		h, err := bcrypt.GenerateFromPassword([]byte("pw-"+u), bcrypt.MinCost) // fast: many requests check it
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, u+":"+string(h))
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ht, err := auth.OpenHtpasswd(write("htpasswd", strings.Join(lines, "\n")), nil)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := auth.OpenPolicy(write("policy.yaml", policy), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := auth.Options{Method: method, Htpasswd: ht, Policy: pol}
	if method == auth.MethodToken {
		key, err := auth.LoadOrCreateKey(filepath.Join(dir, "token.key"))
		if err != nil {
			t.Fatal(err)
		}
		if o.Token, err = auth.NewTokens(auth.TokenOptions{Realm: "http://berth.test/auth/token", Service: "berth", Issuer: "berth", Key: key}, nil); err != nil {
			t.Fatal(err)
		}
	}
	a, err := auth.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return func(s *serverSetup) {
		s.reg.Auth, s.reg.Limits = a, limits
		s.reg.Policy.ImmutableNumbered = ptr(false) // numbered tags move, for those who may
	}
}

// TestAccess: each endpoint asks for its right, refusals change nothing,
// and an anonymous caller is challenged where a user is denied.
func TestAccess(t *testing.T) {
	s := newServer(t, withAuth(t, Limits{}))
	root := s.as("root")
	_, web1 := root.pushImage("apps/web", "1", []byte("web layer"))
	root.pushImage("public/lib", "1", []byte("lib layer"))
	secretLayer := root.pushBlob("secret/x", []byte("secret layer"))
	root.pushImage("secret/x", "1", []byte("secret layer"))
	_, other := root.pushImage("apps/web", "other", []byte("another layer"))
	otherManifest := root.do("GET", "/v2/apps/web/manifests/other", nil, "Accept", "application/vnd.oci.image.manifest.v1+json").body

	refused := []struct {
		name, user, method, path string
		status                   int
		code                     string
	}{
		{"anonymous base", "", "GET", "/v2/", 401, codeUnauthorized},
		{"wrong password", "nobody", "GET", "/v2/", 401, codeUnauthorized},
		{"anonymous pull", "", "GET", "/v2/apps/web/manifests/1", 401, codeUnauthorized},
		{"anonymous catalog", "", "GET", "/v2/_catalog", 401, codeUnauthorized},
		{"pull without a rule", "dev", "GET", "/v2/secret/x/manifests/1", 403, codeDenied},
		{"blob without a rule", "reader", "GET", "/v2/secret/x/blobs/" + string(secretLayer), 403, codeDenied},
		{"tags without a rule", "dev", "GET", "/v2/secret/x/tags/list", 403, codeDenied},
		{"referrers without a rule", "dev", "GET", "/v2/secret/x/referrers/" + string(web1), 403, codeDenied},
		{"tag history without a rule", "dev", "GET", "/v2/secret/x/_oci/tag-history/1", 403, codeDenied},
		{"push with pull only", "reader", "POST", "/v2/apps/web/blobs/uploads/", 403, codeDenied},
		{"delete with push", "dev", "DELETE", "/v2/apps/web/manifests/" + string(other), 403, codeDenied},
		{"anonymous push to a public repository", "", "POST", "/v2/public/lib/blobs/uploads/", 401, codeUnauthorized},
		{"registry-wide admin", "dev", "POST", "/admin/v1/gc", 403, codeDenied},
		{"repository admin", "dev", "DELETE", "/admin/v1/repositories/apps/web/tags/other", 403, codeDenied},
		{"rollback", "dev", "POST", "/admin/v1/repositories/apps/web/rollback", 403, codeDenied},
		{"admin read without pull", "reader", "GET", "/admin/v1/repositories/secret/x/tags", 403, codeDenied},
		{"webhooks", "reader", "GET", "/admin/v1/webhooks", 403, codeDenied},
		{"registry-wide stats", "reader", "GET", "/admin/v1/stats", 403, codeDenied},
		{"repository stats without pull", "dev", "GET", "/admin/v1/repositories/secret/x/stats", 403, codeDenied},
	}
	before := s.snapshot()
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			r := s.as(c.user).do(c.method, c.path, nil)
			r.expect(t, c.status, c.code)
			if c.status == 401 && r.Header.Get("WWW-Authenticate") != `Basic realm="Berth"` {
				t.Errorf("401 with WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
			}
		})
	}
	// Moving numbered tag 1 needs delete: dev may push, not move it.
	s.as("dev").do("PUT", "/v2/apps/web/manifests/1", otherManifest, "Content-Type", "application/vnd.oci.image.manifest.v1+json").
		expect(t, http.StatusForbidden, codeDenied)
	if after := s.snapshot(); after != before {
		t.Errorf("refused requests changed the registry:\nbefore %s\nafter  %s", before, after)
	}

	allowed := []struct{ name, user, method, path string }{
		{"anonymous public pull", "", "GET", "/v2/public/lib/manifests/1"},
		{"pull by rule", "reader", "GET", "/v2/apps/web/manifests/1"},
		{"base", "reader", "GET", "/v2/"},
		{"admin read with pull", "reader", "GET", "/admin/v1/repositories/apps/web/tags"},
		{"registry-wide admin", "root", "GET", "/admin/v1/gc"},
		{"registry-wide stats", "root", "GET", "/admin/v1/stats"},
		{"repository stats with pull", "reader", "GET", "/admin/v1/repositories/apps/web/stats"},
		{"the API's description", "", "GET", "/admin/v1/openapi.yaml"},
	}
	for _, c := range allowed {
		t.Run(c.name, func(t *testing.T) {
			s.as(c.user).do(c.method, c.path, nil).expect(t, http.StatusOK, "")
		})
	}
	s.as("dev").do("PUT", "/v2/apps/web/manifests/2", otherManifest, "Content-Type", "application/vnd.oci.image.manifest.v1+json").
		expect(t, http.StatusCreated, "")
	root.do("PUT", "/v2/apps/web/manifests/1", otherManifest, "Content-Type", "application/vnd.oci.image.manifest.v1+json").
		expect(t, http.StatusCreated, "")

	t.Run("catalog lists what the caller may pull", func(t *testing.T) {
		for user, want := range map[string][]string{
			"reader": {"apps/web", "public/lib"},
			"root":   {"apps/web", "public/lib", "secret/x"},
		} {
			var got struct{ Repositories []string }
			r := s.as(user).do("GET", "/v2/_catalog?n=1", nil)
			r.expect(t, http.StatusOK, "")
			for page := r; ; {
				decode(t, page.body, &got)
				want = slices.DeleteFunc(want, func(n string) bool { return slices.Contains(got.Repositories, n) })
				next := page.Header.Get("Link")
				if next == "" {
					break
				}
				page = s.as(user).do("GET", strings.TrimSuffix(strings.TrimPrefix(strings.Fields(next)[0], "<"), ">;"), nil)
			}
			if len(want) > 0 {
				t.Errorf("%s's catalog misses %v", user, want)
			}
		}
	})

	t.Run("a mount from a repository the caller may not pull uploads instead", func(t *testing.T) {
		r := s.as("dev").do("POST", "/v2/apps/web/blobs/uploads/?mount="+string(secretLayer)+"&from=secret/x", nil)
		r.expect(t, http.StatusAccepted, "")
		s.as("dev").do("HEAD", "/v2/apps/web/blobs/"+string(secretLayer), nil).expect(t, http.StatusNotFound, "")
	})

	t.Run("tag history names the user", func(t *testing.T) {
		var h struct{ Events []struct{ Actor string } }
		r := root.do("GET", "/admin/v1/repositories/apps/web/tags/2/history", nil)
		r.expect(t, http.StatusOK, "")
		decode(t, r.body, &h)
		if len(h.Events) == 0 || h.Events[0].Actor != "dev" {
			t.Errorf("history of tag 2: %s, want an event by dev", r.body)
		}
	})
}

// TestUploadSessionCap: over its cap of open sessions a client gets 429
// with Retry-After; finishing one frees a place.
func TestUploadSessionCap(t *testing.T) {
	s := newServer(t, withAuth(t, Limits{Uploads: 2}))
	dev := s.as("dev")
	var open []string
	for range 2 {
		r := dev.do("POST", "/v2/apps/web/blobs/uploads/", nil)
		r.expect(t, http.StatusAccepted, "")
		open = append(open, r.Header.Get("Location"))
	}
	r := dev.do("POST", "/v2/apps/other/blobs/uploads/", nil)
	r.expect(t, http.StatusTooManyRequests, codeTooManyRequests)
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	s.as("root").do("POST", "/v2/apps/web/blobs/uploads/", nil).expect(t, http.StatusAccepted, "")
	dev.do("DELETE", open[0], nil).expect(t, http.StatusNoContent, "")
	dev.do("POST", "/v2/apps/web/blobs/uploads/", nil).expect(t, http.StatusAccepted, "")
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

// TestRateLimit: past its burst a client gets 429 TOOMANYREQUESTS with
// Retry-After, before its credentials are even checked.
func TestRateLimit(t *testing.T) {
	s := newServer(t, withAuth(t, Limits{Rate: 0.01, Burst: 2})) // one request per 100 s after the burst
	s.as("dev").do("GET", "/v2/", nil).expect(t, http.StatusOK, "")
	s.as("nobody").do("GET", "/v2/", nil).expect(t, http.StatusUnauthorized, codeUnauthorized)
	r := s.as("dev").do("GET", "/v2/", nil)
	r.expect(t, http.StatusTooManyRequests, codeTooManyRequests)
	if got := r.Header.Get("Retry-After"); got == "" || got == "0" {
		t.Errorf("Retry-After %q, want a positive number of seconds", got)
	}
}
