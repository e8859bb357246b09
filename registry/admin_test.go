package registry

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/berthhq/berth/oci"
)

// follow walks a paginated admin list through its Link headers and returns
// every page's body.
func (s *testServer) follow(t *testing.T, path string) []*response {
	t.Helper()
	var pages []*response
	for next := path; next != ""; {
		if len(pages) > 50 {
			t.Fatal("pagination does not end")
		}
		r := s.do("GET", next, nil)
		r.expect(t, http.StatusOK, "")
		pages = append(pages, r)
		next = ""
		if link := r.Header.Get("Link"); link != "" {
			next = strings.TrimPrefix(strings.SplitN(link, ">", 2)[0], "<")
		}
	}
	return pages
}

func TestAdminTagHistory(t *testing.T) {
	s := newServer(t)
	var digests []oci.Digest
	for i := range 5 {
		_, d := s.pushImage("team/app", "latest", []byte{byte(i)}) // latest moves five times
		digests = append(digests, d)
	}
	var events []eventJSON
	for _, p := range s.follow(t, "/admin/v1/repositories/team/app/tags/latest/history?limit=2") {
		var body struct {
			Tag    string
			Events []eventJSON
		}
		if err := json.Unmarshal(p.body, &body); err != nil || body.Tag != "latest" {
			t.Fatalf("history page: %v %s", err, p.body)
		}
		events = append(events, body.Events...)
	}
	if len(events) != 5 {
		t.Fatalf("%d events, want 5", len(events))
	}
	for i, e := range events { // newest first
		if e.Digest != digests[4-i] || e.Action != "push" {
			t.Fatalf("event %d: %+v, want a push of %s", i, e, digests[4-i])
		}
		if (i == 0) != (e.End == nil) || (i > 0 && !e.End.Equal(events[i-1].Start)) {
			t.Fatalf("event %d does not chain: %+v", i, e)
		}
	}
	s.do("GET", "/admin/v1/repositories/team/app/tags/nope/history", nil).expect(t, http.StatusNotFound, codeTagUnknown)
	s.do("GET", "/admin/v1/repositories/team/none/tags/latest/history", nil).expect(t, http.StatusNotFound, codeNameUnknown)
	s.do("GET", "/admin/v1/repositories/Team/app/tags/latest/history", nil).expect(t, http.StatusBadRequest, codeNameInvalid)
	s.do("GET", "/admin/v1/repositories/team/app/tags/latest/history?cursor=x", nil).expect(t, http.StatusBadRequest, codePaginationInvalid)
	s.do("POST", "/admin/v1/repositories/team/app/versions", nil).expect(t, http.StatusMethodNotAllowed, codeUnsupported)
}

func TestAdminVersions(t *testing.T) {
	s := newServer(t)
	m, d := s.pushImage("app", "latest", []byte("layer"))
	for _, tag := range []string{"9", "10", "v1.2.0", "1.2.0-rc.1", "2", "stable", "100"} {
		s.do("PUT", "/v2/app/manifests/"+tag, m, "Content-Type", oci.MediaTypeImageManifest).expect(t, http.StatusCreated, "")
	}
	var got []string
	for i, p := range s.follow(t, "/admin/v1/repositories/app/versions?limit=2") {
		var body struct {
			Versions []struct {
				Tag    string
				Digest oci.Digest
				Newest bool
			}
		}
		if err := json.Unmarshal(p.body, &body); err != nil {
			t.Fatal(err)
		}
		for j, v := range body.Versions {
			if v.Digest != d || v.Newest != (i == 0 && j == 0) {
				t.Fatalf("version %+v", v)
			}
			got = append(got, v.Tag)
		}
	}
	want := "100 10 9 2 v1.2.0 1.2.0-rc.1" // newest first; latest and stable are moving tags
	if strings.Join(got, " ") != want {
		t.Fatalf("versions %q, want %q", strings.Join(got, " "), want)
	}
	s.do("GET", "/admin/v1/repositories/nope/versions", nil).expect(t, http.StatusNotFound, codeNameUnknown)
}
