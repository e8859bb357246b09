package registry

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/berthhq/berth/oci"
)

// TestHistoryFarDates: the repository history's since/before take any RFC
// 3339 time; outside 1678..2262 (where time.UnixNano wraps) they clamp.
func TestHistoryFarDates(t *testing.T) {
	s := newServer(t)
	s.pushImage("app", "latest", []byte("a"))
	count := func(q string) int {
		r := s.do("GET", "/admin/v1/repositories/app/history?"+q, nil)
		r.expect(t, http.StatusOK, "")
		var body struct{ Events []eventJSON }
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		return len(body.Events)
	}
	if n := count(""); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	for _, q := range []string{"before=2300-01-01T00:00:00Z", "before=9999-12-31T00:00:00Z", "since=1600-01-01T00:00:00Z", "since=0001-01-01T00:00:00Z"} {
		if n := count(q); n != 1 {
			t.Errorf("?%s: %d events, want 1", q, n)
		}
	}
}

// TestPromoteNeverReusesANumber: after a bad 3 is deleted, a promote of 1
// publishes 4, not "3" again at other content.
func TestPromoteNeverReusesANumber(t *testing.T) {
	s := newServer(t)
	_, d1 := s.pushImage("app", "1", []byte("one"))
	s.pushImage("app", "2", []byte("two"))
	_, bad := s.pushImage("app", "3", []byte("bad"))
	s.do("DELETE", "/admin/v1/repositories/app/tags/3", nil).expect(t, http.StatusOK, "")
	r := s.do("POST", "/admin/v1/repositories/app/rollback", []byte(`{"to":"1"}`))
	r.expect(t, http.StatusOK, "")
	var out tagChangeJSON
	json.Unmarshal(r.body, &out)
	t.Logf("promote published %s -> %s (3 was %s)", out.Tag, out.Digest, bad)
	if out.Tag == "3" && out.Digest == d1 {
		t.Errorf("rollback re-used the number 3, which clients already pulled as %s", bad)
	}
}

// TestPutPolicyNeedsABody: an empty body, chunked or not, whitespace or
// null, is REQUEST_INVALID and stores nothing.
func TestPutPolicyNeedsABody(t *testing.T) {
	s := newServer(t)
	for _, tc := range []struct {
		name string
		body io.Reader
		cl   int64
	}{
		{"chunked empty", strings.NewReader(""), -1},
		{"whitespace", strings.NewReader("  \n"), 3},
		{"null", strings.NewReader("null"), 4},
	} {
		req, _ := http.NewRequest("PUT", s.URL+"/admin/v1/repositories/app/policy", tc.body)
		req.ContentLength = tc.cl
		if tc.cl < 0 {
			req.Body = io.NopCloser(tc.body)
			req.TransferEncoding = []string{"chunked"}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400 REQUEST_INVALID", tc.name, resp.StatusCode, bytes.TrimSpace(b))
		}
		// Nothing was stored: there is no policy to delete.
		s.do("DELETE", "/admin/v1/repositories/app/policy", nil).expect(t, http.StatusNotFound, codePolicyUnknown)
	}
}

// TestVersionsLongCursor: a versions cursor is a tag; a longer one (whose
// key's length byte would wrap) is refused.
func TestVersionsLongCursor(t *testing.T) {
	s := newServer(t)
	m, _ := s.pushImage("app", "1", []byte("x"))
	for _, tag := range []string{"5", "1000", "20000"} {
		s.do("PUT", "/v2/app/manifests/"+tag, m, "Content-Type", oci.MediaTypeImageManifest).expect(t, http.StatusCreated, "")
	}
	cur := strings.Repeat("9", 260) // above every version: all of them come after it
	r := s.do("GET", "/admin/v1/repositories/app/versions?cursor="+cur, nil)
	var body struct{ Versions []versionJSON }
	json.Unmarshal(r.body, &body)
	var tags []string
	for _, v := range body.Versions {
		tags = append(tags, v.Tag)
	}
	t.Logf("status %d, versions after a 260-digit cursor: %v", r.StatusCode, tags)
	if r.StatusCode == http.StatusOK && len(tags) != 4 {
		t.Errorf("a 260-digit cursor is accepted and skips versions: %v", tags)
	}
}

// TestRetentionKeepsNewestAfterConcurrentDeletes: retention decides from a
// snapshot; the newest versions deleted in between, it still leaves as many
// as it keeps.
func TestRetentionKeepsNewestAfterConcurrentDeletes(t *testing.T) {
	s := newServer(t)
	m, _ := s.pushImage("app", "1", []byte("x"))
	for _, tag := range []string{"2", "3", "4", "5"} {
		s.do("PUT", "/v2/app/manifests/"+tag, m, "Content-Type", oci.MediaTypeImageManifest).expect(t, http.StatusCreated, "")
	}
	s.setPolicy("app", `{"retention":{"keepNewest":2}}`)
	reg := s.registry()
	p, err := reg.policies.forRepository(t.Context(), "app")
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := reg.condemned(t.Context(), "app", p)
	if err != nil {
		t.Fatal(err)
	}
	// Meanwhile an operator deletes the two bad newest releases.
	s.do("DELETE", "/admin/v1/repositories/app/tags/5", nil).expect(t, http.StatusOK, "")
	s.do("DELETE", "/admin/v1/repositories/app/tags/4", nil).expect(t, http.StatusOK, "")
	if _, err := reg.deleteCondemned(t.Context(), "app", doomed, 2); err != nil {
		t.Fatal(err)
	}
	vs, _ := s.db.Versions(t.Context(), "app", nil, 100)
	if len(vs) != 2 || vs[0].Tag != "3" || vs[1].Tag != "2" {
		t.Errorf("after retention with keepNewest 2 and 5, 4 deleted meanwhile, versions %v; want 3 and 2", vs)
	}
}

// TestPromoteInvalidTag: after 128 nines the next number is no tag (129
// characters): promote refuses it rather than publish what no endpoint
// could address.
func TestPromoteInvalidTag(t *testing.T) {
	s := newServer(t)
	top := strings.Repeat("9", 128)
	s.pushImage("app", top, []byte("x"))
	r := s.do("POST", "/admin/v1/repositories/app/rollback", []byte(`{"to":"`+top+`"}`))
	t.Logf("%d %s", r.StatusCode, r.body)
	if r.StatusCode == http.StatusOK {
		var out tagChangeJSON
		json.Unmarshal(r.body, &out)
		if oci.ValidateTag(out.Tag) != nil {
			t.Errorf("published an invalid tag of %d characters", len(out.Tag))
			d := s.do("DELETE", "/admin/v1/repositories/app/tags/"+out.Tag, nil)
			t.Logf("deleting it: %d %s", d.StatusCode, d.code())
		}
	}
}

// TestEmptyTagSegment: PUT …/tags/ (an empty tag) is invalid and stores
// nothing.
func TestEmptyTagSegment(t *testing.T) {
	s := newServer(t)
	_, d := s.pushImage("app", "latest", []byte("x"))
	r := s.do("PUT", "/admin/v1/repositories/app/tags/", []byte(`{"digest":"`+string(d)+`"}`))
	t.Logf("PUT .../tags/: %d %s", r.StatusCode, r.body)
	if r.StatusCode != http.StatusBadRequest {
		t.Errorf("PUT .../tags/ (empty tag): %d, want 400 MANIFEST_INVALID", r.StatusCode)
	}
	sum, err := s.db.RepositorySummary(t.Context(), "app")
	if err != nil || sum.Tags != 1 {
		t.Errorf("summary: %d live tags, %v; want only latest", sum.Tags, err)
	}
	if got := s.liveTags("app"); strings.Join(got, " ") != "latest" {
		t.Errorf("live tags %q after PUT .../tags/, want only latest", got)
	}
	r = s.do("GET", "/admin/v1/repositories/app/tags//history", nil)
	t.Logf("GET .../tags//history: %d %s", r.StatusCode, r.body)
	r = s.do("DELETE", "/admin/v1/repositories/app/tags/", nil)
	t.Logf("DELETE .../tags/: %d %s", r.StatusCode, r.body)
}

func TestHistoryCursorUnknownRepo(t *testing.T) {
	s := newServer(t)
	r := s.do("GET", "/admin/v1/repositories/nowhere/tags/latest/history?cursor=5", nil)
	t.Logf("%d %s", r.StatusCode, r.body)
	if r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown repository with a cursor: %d, want 404 NAME_UNKNOWN", r.StatusCode)
	}
}

// TestRestorableOnlyWithManifest: a tag ended by the delete of its
// manifest is listed as deleted but not as restorable.
func TestRestorableOnlyWithManifest(t *testing.T) {
	s := newServer(t)
	m, d := s.pushImage("app", "1", []byte("x"))
	s.do("PUT", "/v2/app/manifests/2", m, "Content-Type", oci.MediaTypeImageManifest).expect(t, http.StatusCreated, "")
	s.do("DELETE", "/v2/app/manifests/2", nil).expect(t, http.StatusAccepted, "")
	var list struct {
		Tags []struct {
			Tag             string  `json:"tag"`
			RestorableUntil *string `json:"restorableUntil"`
		} `json:"tags"`
	}
	r := s.do("GET", "/admin/v1/repositories/app/tags?state=deleted", nil)
	json.Unmarshal(r.body, &list)
	if len(list.Tags) != 1 || list.Tags[0].Tag != "2" || list.Tags[0].RestorableUntil == nil {
		t.Fatalf("deleted tags after a tag delete: %+v", list.Tags)
	}
	s.do("DELETE", "/v2/app/manifests/"+string(d), nil).expect(t, http.StatusAccepted, "")
	list.Tags = nil
	r = s.do("GET", "/admin/v1/repositories/app/tags?state=deleted", nil)
	json.Unmarshal(r.body, &list)
	if len(list.Tags) != 2 {
		t.Fatalf("deleted tags after the manifest's delete: %+v", list.Tags)
	}
	for _, tag := range list.Tags {
		if tag.RestorableUntil != nil {
			t.Errorf("tag %s is listed restorable, but its manifest is deleted", tag.Tag)
		}
	}
}
