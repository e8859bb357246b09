package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// adversarialPolicy: alice administers everything, robot pushes and pulls apps/*, anyone pulls
// public/*; nobody else may do anything.
const adversarialPolicy = `
groups: {admins: [alice]}
anonymous: ["public/*"]
rules:
  - {groups: [admins], repositories: ["*"], actions: [pull, push, delete, admin]}
  - {users: [robot], repositories: ["apps/*"], actions: [pull, push]}
`

// adversarialRepos are the repositories alice fills before the attacks, each with an image at v1.
var adversarialRepos = []string{"apps/w", "apps/x", "public/z", "secret/y"}

// adversary is the live server of TestAdversarial with what it holds.
type adversary struct {
	*authServer
	images map[string]*testImage // by repository
	// watched are blobs, by repository, whose presence every snapshot records: each image's own
	// blobs, the secret layer where it must never appear, and the bytes of the lying uploads.
	watched map[string][]string
}

// TestAdversarial attacks one live server with token authentication and a policy: missing, wrong,
// misused, expired and forged credentials; escalation through a mount; catalog leaks; path tricks;
// request smuggling; a slow client; a body shorter than its length; a flood of upload sessions.
// Each attempt is refused with the right status, and afterwards the stored state is as before and
// the server still answers.
func TestAdversarial(t *testing.T) {
	t.Parallel()
	a := &adversary{
		authServer: startAuthBerth(t, authOptions{Method: "token", Users: []string{"alice", "robot"}, Policy: adversarialPolicy,
			Flags: []string{"--limits.uploads", "50", "--limits.read-header-timeout", "1s",
				"--limits.failed-logins", "0"}}), // its rows refuse many credentials on purpose; TestAdversarialFailedLogins has that limit
		images:  map[string]*testImage{},
		watched: map[string][]string{},
	}
	alice := a.as(t, "alice")
	for _, repo := range adversarialRepos {
		img := newTestImage(t)
		img.push(t, alice, repo, "v1")
		a.images[repo] = img
		a.watched[repo] = append(a.watched[repo], img.LayerDigest, img.ConfigDigest)
	}
	secretLayer := a.images["secret/y"].LayerDigest
	for _, repo := range []string{"apps/x", "apps/w", "public/z"} {
		a.watched[repo] = append(a.watched[repo], secretLayer)
	}
	lies := lyingUploads(t, a)

	rows := slices.Concat(a.credentialRows(t), a.tokenRows(t), a.escalationRows(t), a.pathRows(t), a.wireRows(t), lies)
	rows = append(rows, adversarialRow{"10,000 upload sessions at once", a.uploadFlood})
	before := a.snapshot(t)
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			// Checked however the row ends, a failed one included.
			t.Cleanup(func() {
				if after := a.snapshot(t); after != before {
					t.Fatalf("stored state changed:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				a.expectHealthy(t)
			})
			r.try(t)
		})
	}
}

// adversarialRow is one attack and its checks.
type adversarialRow struct {
	name string
	try  func(t *testing.T)
}

// credentials returns an Authorization header ("" for none) when a row runs: tokens expire.
type credentials func(t *testing.T) string

// fixed is credentials that do not change.
func fixed(authorization string) credentials { return func(*testing.T) string { return authorization } }

// refused is a row sending one request that must fail with status and code; a 401 must carry a
// challenge for scope ("" for any).
func (a *adversary) refused(name, method, path string, auth credentials, status int, code, scope string) adversarialRow {
	return adversarialRow{name, func(t *testing.T) {
		resp, body := httpDo(t, method, a.URL+path, nil, header(auth(t), "Accept", manifestAccept))
		expectOCIError(t, resp, body, status, code)
		if status == http.StatusUnauthorized {
			a.expectChallenge(t, resp, scope)
		}
		a.expectNoSecret(t, path, body)
	}}
}

// insufficient is a row sending one request with a valid token that does not grant it: 401 with
// a challenge for the scope it needs and error="insufficient_scope", so that the client can ask the
// issuer for that scope.
func (a *adversary) insufficient(name, method, path string, auth credentials, scope string) adversarialRow {
	return adversarialRow{name, func(t *testing.T) {
		resp, body := httpDo(t, method, a.URL+path, nil, header(auth(t), "Accept", manifestAccept))
		expectOCIError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED")
		a.expectChallenge(t, resp, scope)
		if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) {
			t.Errorf("WWW-Authenticate %q, want error=\"insufficient_scope\"", h)
		}
		a.expectNoSecret(t, path, body)
	}}
}

// served is a control row: a request the policy allows, answered 200, so that the refusals beside
// it are for the reason their row names.
func (a *adversary) served(name, path string, auth credentials) adversarialRow {
	return adversarialRow{name, func(t *testing.T) {
		resp, body := httpDo(t, http.MethodGet, a.URL+path, nil, header(auth(t), "Accept", manifestAccept))
		expectStatus(t, resp, body, http.StatusOK)
	}}
}

// expectNoSecret fails if the answer to a request for path holds anything of secret/y the
// request did not name itself.
func (a *adversary) expectNoSecret(t testing.TB, path string, body []byte) {
	t.Helper()
	img := a.images["secret/y"]
	for _, s := range []string{img.Digest, img.LayerDigest, img.ConfigDigest, string(img.Manifest)} {
		if strings.Contains(string(body), s) && !strings.Contains(path, s) {
			t.Fatalf("the answer holds secret/y's %s:\n%s", s, truncate(body))
		}
	}
}

// credentialRows: missing and wrong credentials, and rights the policy does not grant.
func (a *adversary) credentialRows(t *testing.T) []adversarialRow {
	robot, wrong := fixed(a.basic(t, "robot")), basicAuth("robot", "wrong-"+a.passwords["robot"])
	return []adversarialRow{
		a.served("control: robot pulls apps/x", "/v2/apps/x/manifests/v1", robot),
		a.served("control: anyone pulls public/z", "/v2/public/z/manifests/v1", fixed("")),
		a.served("a signed-in user pulls what anyone may pull", "/v2/public/z/manifests/v1", robot),
		a.refused("no credentials", "GET", "/v2/apps/x/manifests/v1", fixed(""), 401, "UNAUTHORIZED", "repository:apps/x:pull"),
		a.refused("no credentials, API root", "GET", "/v2/", fixed(""), 401, "UNAUTHORIZED", ""),
		a.refused("anonymous push where anyone may pull", "POST", "/v2/public/z/blobs/uploads/", fixed(""), 401, "UNAUTHORIZED", ""),
		a.refused("wrong password", "GET", "/v2/apps/x/manifests/v1", fixed(wrong), 401, "UNAUTHORIZED", ""),
		a.refused("unknown user", "GET", "/v2/apps/x/manifests/v1", fixed(basicAuth("mallory", "x")), 401, "UNAUTHORIZED", ""),
		a.refused("malformed basic credentials", "GET", "/v2/apps/x/manifests/v1", fixed("Basic !!!"), 401, "UNAUTHORIZED", ""),
		a.refused("unknown scheme", "GET", "/v2/apps/x/manifests/v1", fixed(`Digest username="robot"`), 401, "UNAUTHORIZED", ""),
		a.refused("robot pulls secret/y", "GET", "/v2/secret/y/manifests/v1", robot, 403, "DENIED", ""),
		a.refused("robot reads secret/y's tags", "GET", "/v2/secret/y/tags/list", robot, 403, "DENIED", ""),
		a.refused("robot reads secret/y's layer", "GET", "/v2/secret/y/blobs/"+a.images["secret/y"].LayerDigest, robot, 403, "DENIED", ""),
		a.refused("robot deletes in apps/x without delete", "DELETE", "/v2/apps/x/manifests/"+a.images["apps/x"].Digest, robot, 403, "DENIED", ""),
		a.refused("robot pushes to secret/y", "POST", "/v2/secret/y/blobs/uploads/", robot, 403, "DENIED", ""),
		a.refused("robot lists repositories (admin API)", "GET", "/admin/v1/repositories", robot, 403, "DENIED", ""),
		a.refused("robot runs garbage collection", "POST", "/admin/v1/gc", robot, 403, "DENIED", ""),
		a.refused("robot lists webhooks", "GET", "/admin/v1/webhooks", robot, 403, "DENIED", ""),
		a.served("robot reads apps/x's tags through the admin API: pull is enough to read", "/admin/v1/repositories/apps/x/tags", robot),
		a.refused("robot reads secret/y's tags through the admin API", "GET", "/admin/v1/repositories/secret/y/tags", robot, 403, "DENIED", ""),
		a.refused("robot moves a tag through the admin API", "PUT", "/admin/v1/repositories/apps/x/tags/v1", robot, 403, "DENIED", ""),
		a.refused("robot reads secret/y's tag history", "GET", "/v2/secret/y/_oci/tag-history/v1", robot, 403, "DENIED", ""),
		a.refused("robot reads secret/y's referrers", "GET", "/v2/secret/y/referrers/"+a.images["secret/y"].Digest, robot, 403, "DENIED", ""),
		a.refused("robot deletes secret/y's manifest", "DELETE", "/v2/secret/y/manifests/"+a.images["secret/y"].Digest, robot, 403, "DENIED", ""),
		a.refused("anonymous garbage collection", "POST", "/admin/v1/gc", fixed(""), 401, "UNAUTHORIZED", ""),
		a.refused("garbage bearer token", "GET", "/v2/apps/x/manifests/v1", fixed("Bearer abc.def.ghi"), 401, "UNAUTHORIZED", ""),
		{"wrong password at the token issuer", func(t *testing.T) {
			q := url.Values{"service": {"berth"}, "scope": {"repository:apps/x:pull"}}
			resp, body := httpDo(t, http.MethodGet, a.URL+"/auth/token?"+q.Encode(), nil, header(wrong))
			expectStatus(t, resp, body, http.StatusUnauthorized)
			if strings.Contains(string(body), "eyJ") {
				t.Fatalf("the issuer's refusal holds something like a token:\n%s", truncate(body))
			}
		}},
	}
}

// escalationRows: a mount from a repository robot may not pull, and what the catalog shows.
func (a *adversary) escalationRows(t *testing.T) []adversarialRow {
	robot := a.basic(t, "robot")
	secret := a.images["secret/y"]
	mount := func(auth credentials) func(t *testing.T) {
		return func(t *testing.T) {
			u := a.URL + "/v2/apps/x/blobs/uploads/?mount=" + secret.LayerDigest + "&from=secret/y"
			resp, body := httpDo(t, http.MethodPost, u, nil, header(auth(t)))
			expectStatus(t, resp, body, http.StatusAccepted)
			a.cancelUpload(t, location(t, a.server, resp), robot)
			resp, body = httpDo(t, http.MethodGet, a.URL+"/v2/apps/x/blobs/"+secret.LayerDigest, nil, header(robot))
			expectOCIError(t, resp, body, http.StatusNotFound, "BLOB_UNKNOWN")
		}
	}
	return []adversarialRow{
		{"mount from secret/y with robot's password", mount(fixed(robot))},
		{"mount from secret/y with a token asked for both", mount(func(t *testing.T) string {
			return a.token(t, "robot", "repository:apps/x:pull,push", "repository:secret/y:pull")
		})},
		a.refused("secret/y's layer through apps/x", "GET", "/v2/apps/x/blobs/"+secret.LayerDigest, fixed(robot), 404, "BLOB_UNKNOWN", ""),
		a.refused("secret/y's manifest through apps/x", "GET", "/v2/apps/x/manifests/"+secret.Digest, fixed(robot), 404, "MANIFEST_UNKNOWN", ""),
		{"robot's catalog lists what robot may pull", func(t *testing.T) {
			expectCatalog(t, a, robot, a.pullable(t, robot), true)
		}},
		{"robot's catalog, a page at a time", func(t *testing.T) {
			pages, links := a.catalogPages(t, robot, 1)
			if want := a.pullable(t, robot); !slices.Equal(pages, want) {
				t.Errorf("catalog pages of one: %v, want %v", pages, want)
			}
			for _, l := range links {
				if strings.Contains(l, "secret") {
					t.Errorf("a catalog Link header names a repository robot may not pull: %s", l)
				}
			}
		}},
		{"catalog with a token", func(t *testing.T) {
			expectCatalog(t, a, a.token(t, "robot", "registry:catalog:*"), a.pullable(t, robot), false)
		}},
		{"anonymous catalog", func(t *testing.T) {
			resp, body := httpDo(t, http.MethodGet, a.URL+"/v2/_catalog", nil, nil)
			if resp.StatusCode == http.StatusUnauthorized {
				a.expectChallenge(t, resp, "")
				return
			}
			expectCatalog(t, a, "", []string{"public/z"}, false)
			a.expectNoSecret(t, "/v2/_catalog", body)
		}},
	}
}

// pullable lists the repositories, of those alice sees, that auth may read the tags of.
func (a *adversary) pullable(t testing.TB, auth string) []string {
	t.Helper()
	var may []string
	for _, repo := range a.catalog(t, a.basic(t, "alice")) {
		if resp, _ := httpDo(t, http.MethodGet, a.URL+"/v2/"+repo+"/tags/list", nil, header(auth)); resp.StatusCode == http.StatusOK {
			may = append(may, repo)
		}
	}
	return may
}

// expectCatalog checks the catalog auth sees: exactly want, or only some of want (a token's
// catalog may be narrower than its holder's rights).
func expectCatalog(t testing.TB, a *adversary, auth string, want []string, exact bool) {
	t.Helper()
	got := a.catalog(t, auth)
	if slices.Contains(got, "secret/y") {
		t.Fatalf("catalog lists secret/y: %v", got)
	}
	if exact && !slices.Equal(got, want) || !exact && slices.ContainsFunc(got, func(r string) bool { return !slices.Contains(want, r) }) {
		t.Fatalf("catalog lists %v, want %v (exact: %v)", got, want, exact)
	}
}

// catalog returns every repository of GET /v2/_catalog, sorted.
func (a *adversary) catalog(t testing.TB, auth string) []string {
	t.Helper()
	repos, _ := a.catalogPages(t, auth, 1000)
	slices.Sort(repos)
	return repos
}

// catalogPages reads the catalog n entries at a time, following Link headers.
func (a *adversary) catalogPages(t testing.TB, auth string, n int) (repos, links []string) {
	t.Helper()
	next := fmt.Sprintf("/v2/_catalog?n=%d", n)
	for i := 0; next != ""; i++ {
		if i > 100 {
			t.Fatalf("catalog: more than 100 pages of %d", n)
		}
		resp, body := httpDo(t, http.MethodGet, a.URL+next, nil, header(auth))
		expectStatus(t, resp, body, http.StatusOK)
		var page struct {
			Repositories []string `json:"repositories"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("catalog: %v\n%s", err, truncate(body))
		}
		repos = append(repos, page.Repositories...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			links = append(links, l)
			next = strings.TrimPrefix(strings.SplitN(l, ">", 2)[0], "<")
		}
	}
	return repos, links
}

// cancelUpload DELETEs an upload session.
func (a *adversary) cancelUpload(t testing.TB, upload, auth string) {
	t.Helper()
	resp, body := httpDo(t, http.MethodDelete, upload, nil, header(auth))
	expectStatus(t, resp, body, http.StatusNoContent)
}

// snapshot describes what the server holds, as alice sees it: the catalog, each repository's tags
// and their digests, and whether each watched blob is served.
func (a *adversary) snapshot(t testing.TB) string {
	t.Helper()
	alice := a.basic(t, "alice")
	var b strings.Builder
	for _, repo := range a.catalog(t, alice) {
		resp, body := httpDo(t, http.MethodGet, a.URL+"/v2/"+repo+"/tags/list", nil, header(alice))
		expectStatus(t, resp, body, http.StatusOK)
		tags := parseTags(t, body)
		slices.Sort(tags)
		fmt.Fprintf(&b, "%s:", repo)
		for _, tag := range tags {
			resp, body := httpDo(t, http.MethodHead, a.URL+"/v2/"+repo+"/manifests/"+tag, nil, header(alice, "Accept", manifestAccept))
			expectStatus(t, resp, body, http.StatusOK)
			fmt.Fprintf(&b, " %s=%s", tag, resp.Header.Get("Docker-Content-Digest"))
		}
		b.WriteString("\n")
	}
	repos := make([]string, 0, len(a.watched))
	for repo := range a.watched {
		repos = append(repos, repo)
	}
	slices.Sort(repos)
	for _, repo := range repos {
		for _, d := range a.watched[repo] {
			resp, _ := httpDo(t, http.MethodHead, a.URL+"/v2/"+repo+"/blobs/"+d, nil, header(alice))
			fmt.Fprintf(&b, "HEAD %s@%s: %d\n", repo, d, resp.StatusCode)
		}
	}
	return b.String()
}

// expectHealthy checks the server answers the API root, for alice and for a caller without
// credentials, promptly.
func (a *adversary) expectHealthy(t testing.TB) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for auth, want := range map[string]int{a.basic(t, "alice"): http.StatusOK, "": http.StatusUnauthorized} {
		resp, body, err := doRequest(client, http.MethodGet, a.URL+"/v2/", nil, header(auth))
		if err != nil {
			t.Fatalf("the server no longer answers: %v", err)
		}
		expectStatus(t, resp, body, want)
	}
}
