package registry

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/auth"
)

// tokenPolicy: root does everything; dev pushes to apps/* and pulls
// shared/*; moving a numbered tag needs delete.
const tokenPolicy = `
moveNumberedTag: delete
rules:
  - {users: [root], repositories: ["*"], actions: [pull, push, delete, admin]}
  - {users: [dev], repositories: ["apps/*"], actions: [pull, push]}
  - {users: [dev], repositories: ["shared/*"], actions: [pull]}
`

// token asks Berth's issuer for scope as user and returns the header that
// sends the token.
func (s *testServer) token(t *testing.T, user string, scope ...string) string {
	t.Helper()
	r := s.as(user).do("GET", "/auth/token?"+url.Values{"service": {"berth"}, "scope": scope}.Encode(), nil)
	r.expect(t, http.StatusOK, "")
	var tok struct{ Token string }
	decode(t, r.body, &tok)
	return "Bearer " + tok.Token
}

// TestTokenMount: a token never asked about a mount's source is challenged
// for it; one granted pull on it mounts; one refused it falls back to an
// upload and reads nothing.
func TestTokenMount(t *testing.T) {
	s := newServer(t, withAuthOf(t, auth.MethodToken, tokenPolicy, Limits{}))
	root := s.as("root")
	shared := root.pushBlob("shared/base", []byte("shared layer"))
	secret := root.pushBlob("secret/x", []byte("secret layer"))
	anon := s.as("")
	mount := func(d, from, bearer string) *response {
		return anon.do("POST", "/v2/apps/web/blobs/uploads/?mount="+d+"&from="+from, nil, "Authorization", bearer)
	}

	r := mount(string(shared), "shared/base", s.token(t, "dev", "repository:apps/web:pull,push"))
	r.expect(t, http.StatusUnauthorized, codeUnauthorized)
	if c := r.Header.Get("WWW-Authenticate"); !strings.Contains(c, "repository:shared/base:pull") || !strings.Contains(c, "insufficient_scope") {
		t.Errorf("challenge %q does not ask for pull on the mount's source", c)
	}
	mount(string(shared), "shared/base", s.token(t, "dev", "repository:apps/web:pull,push", "repository:shared/base:pull")).
		expect(t, http.StatusCreated, "")

	bearer := s.token(t, "dev", "repository:apps/web:pull,push", "repository:secret/x:pull")
	mount(string(secret), "secret/x", bearer).expect(t, http.StatusAccepted, "")
	anon.do("GET", "/v2/apps/web/blobs/"+string(secret), nil, "Authorization", bearer).expect(t, http.StatusNotFound, codeBlobUnknown)
	// The issuer was asked for secret/x and refused: asking again would not help, so 403.
	anon.do("GET", "/v2/secret/x/blobs/"+string(secret), nil, "Authorization", bearer).expect(t, http.StatusForbidden, codeDenied)
	// An anonymous token refused the same is challenged instead: logging in may help.
	anon.do("GET", "/v2/secret/x/blobs/"+string(secret), nil, "Authorization", s.token(t, "", "repository:secret/x:pull")).
		expect(t, http.StatusUnauthorized, codeUnauthorized)
}

// TestTokenMovesNumberedTag: moving a numbered tag needs the user's right
// to (delete here), which clients never ask a token for: root's push token
// moves it, dev's is refused.
func TestTokenMovesNumberedTag(t *testing.T) {
	s := newServer(t, withAuthOf(t, auth.MethodToken, tokenPolicy, Limits{}))
	s.as("root").pushImage("apps/web", "1", []byte("one"))
	other, _ := s.as("root").pushImage("apps/web", "other", []byte("two"))
	put := func(user string) *response {
		return s.as("").do("PUT", "/v2/apps/web/manifests/1", other, "Content-Type", "application/vnd.oci.image.manifest.v1+json",
			"Authorization", s.token(t, user, "repository:apps/web:pull,push"))
	}
	put("dev").expect(t, http.StatusForbidden, codeDenied)
	put("root").expect(t, http.StatusCreated, "")
}

// TestUploadSessionBelongsToItsOpener: another user with push on the
// repository cannot touch a session they learnt the id of.
func TestUploadSessionBelongsToItsOpener(t *testing.T) {
	s := newServer(t, withAuth(t, Limits{}))
	r := s.as("dev").do("POST", "/v2/apps/web/blobs/uploads/", nil)
	r.expect(t, http.StatusAccepted, "")
	loc := r.Header.Get("Location")
	s.as("root").do("PATCH", loc, []byte("not yours")).expect(t, http.StatusNotFound, codeBlobUploadUnknown)
	s.as("root").do("DELETE", loc, nil).expect(t, http.StatusNotFound, codeBlobUploadUnknown)
	s.as("dev").do("DELETE", loc, nil).expect(t, http.StatusNoContent, "")
}

// TestDeleteRecordsItsActor: a tag deleted through /v2/ names who did it.
func TestDeleteRecordsItsActor(t *testing.T) {
	s := newServer(t, withAuth(t, Limits{}))
	root := s.as("root")
	root.pushImage("apps/web", "latest", []byte("layer"))
	root.do("DELETE", "/v2/apps/web/manifests/latest", nil).expect(t, http.StatusAccepted, "")
	r := root.do("GET", "/v2/apps/web/_oci/tag-history/latest", nil)
	r.expect(t, http.StatusOK, "")
	var idx struct {
		Manifests []struct{ Annotations map[string]string }
	}
	decode(t, r.body, &idx)
	found := false
	for _, m := range idx.Manifests {
		if m.Annotations[annotationTagEvent] == tagEventDeleted {
			found = true
			if got := m.Annotations[annotationTagActor]; got != "root" {
				t.Errorf("the delete's actor is %q, want root", got)
			}
		}
	}
	if !found {
		t.Errorf("no deleted event in %s", r.body)
	}
}

// TestFailedLogins: past its refused credentials an address gets 429, even
// with the right password, and bcrypt is not asked.
func TestFailedLogins(t *testing.T) {
	s := newServer(t, withAuth(t, Limits{FailedLogins: 3}))
	for range 3 {
		s.as("nobody").do("GET", "/v2/", nil).expect(t, http.StatusUnauthorized, codeUnauthorized)
	}
	r := s.as("dev").do("GET", "/v2/", nil)
	r.expect(t, http.StatusTooManyRequests, codeTooManyRequests)
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

// TestBodyIdleTimeout: a body that stops sending is cut off, and its
// session can be written again at once (its lock is free).
func TestBodyIdleTimeout(t *testing.T) {
	s := newServer(t, withAuth(t, Limits{BodyIdleTimeout: 200 * time.Millisecond}))
	dev := s.as("dev")
	r := dev.do("POST", "/v2/apps/web/blobs/uploads/", nil)
	r.expect(t, http.StatusAccepted, "")
	loc := r.Header.Get("Location")

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "PATCH " + loc + " HTTP/1.1\r\nHost: berth\r\nAuthorization: Basic ZGV2OnB3LWRldg==\r\n" + // dev:pw-dev
		"Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nten bytes."
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	// The server must end the request; the test waits at most 10 s for it.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := conn.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("a body that stopped sending was not cut off in 10 s")
			}
			break
		}
	}
	dev.do("PATCH", loc, []byte("the whole chunk"), "Content-Type", "application/octet-stream").expect(t, http.StatusAccepted, "")
}
