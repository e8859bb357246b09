package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berthhq/berth/oci"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestDedup: one layer pushed to 20 repositories, by every upload path, is
// one file; re-uploading and mounting write nothing.
func TestDedup(t *testing.T) {
	s := newServer(t)
	layer := bytes.Repeat([]byte("shared layer "), 1000)
	d := s.pushBlob("repo0", layer)
	files := s.blobFiles()
	if len(files) != 1 {
		t.Fatalf("after one push: %d blob files, want 1", len(files))
	}
	ino := inode(t, files[0])
	for i := 1; i < 20; i++ {
		repo := fmt.Sprintf("repo%d", i)
		switch i % 3 {
		case 0: // monolithic
			s.pushBlob(repo, layer)
		case 1: // chunked
			loc := s.do("POST", "/v2/"+repo+"/blobs/uploads/", nil).Header.Get("Location")
			s.do("PATCH", loc, layer[:100], "Content-Range", "0-99").expect(t, http.StatusAccepted, "")
			s.do("PUT", loc+"?digest="+string(d), layer[100:]).expect(t, http.StatusCreated, "")
		case 2: // mount
			s.do("POST", "/v2/"+repo+"/blobs/uploads/?mount="+string(d)+"&from=repo0", nil).expect(t, http.StatusCreated, "")
		}
		if r := s.do("GET", "/v2/"+repo+"/blobs/"+string(d), nil); !bytes.Equal(r.body, layer) {
			t.Fatalf("%s: blob does not read back", repo)
		}
	}
	files = s.blobFiles()
	if len(files) != 1 {
		t.Fatalf("after 20 repositories: %d blob files, want 1: %v", len(files), files)
	}
	if got := inode(t, files[0]); got != ino {
		t.Fatalf("the blob file was rewritten (inode %d, was %d)", got, ino)
	}
	if n, err := os.ReadDir(s.dir + "/data/uploads"); err == nil && len(n) != 0 {
		t.Fatalf("%d staging files left behind", len(n))
	}
}

// TestIsolation: storage holds a blob once, but a repository serves only
// what it links.
func TestIsolation(t *testing.T) {
	s := newServer(t)
	secret := []byte("secret layer")
	d := s.pushBlob("a", secret)
	s.do("POST", "/v2/b/blobs/uploads/", nil).expect(t, http.StatusAccepted, "") // b exists, but does not link the blob
	for _, m := range []string{"GET", "HEAD"} {
		s.do(m, "/v2/b/blobs/"+string(d), nil).expect(t, http.StatusNotFound, map[string]string{"GET": codeBlobUnknown, "HEAD": ""}[m])
	}
	// Mounting from a repository that does not link it falls back to an upload session.
	s.do("POST", "/v2/c/blobs/uploads/?mount="+string(d)+"&from=b", nil).expect(t, http.StatusAccepted, "")
	s.do("GET", "/v2/c/blobs/"+string(d), nil).expect(t, http.StatusNotFound, codeBlobUnknown)
	// A manifest in b cannot reference it either.
	cfg := s.pushBlob("b", []byte("{}"))
	m := imageManifest(desc("application/vnd.oci.image.config.v1+json", cfg, 2), desc("application/vnd.oci.image.layer.v1.tar", d, len(secret)))
	s.do("PUT", "/v2/b/manifests/x", m, "Content-Type", oci.MediaTypeImageManifest).expect(t, http.StatusBadRequest, codeManifestBlobUnknown)
	// Once b proves it has the bytes, b may serve them.
	s.pushBlob("b", secret)
	if r := s.do("GET", "/v2/b/blobs/"+string(d), nil); !bytes.Equal(r.body, secret) {
		t.Fatalf("b: got %q", r.body)
	}
	// Deleting from a leaves b's link alone.
	s.do("DELETE", "/v2/a/blobs/"+string(d), nil).expect(t, http.StatusAccepted, "")
	s.do("GET", "/v2/a/blobs/"+string(d), nil).expect(t, http.StatusNotFound, codeBlobUnknown)
	s.do("GET", "/v2/b/blobs/"+string(d), nil).expect(t, http.StatusOK, "")
}

func TestChunkedUpload(t *testing.T) {
	s := newServer(t)
	data := []byte("0123456789abcdefghij")
	d := oci.FromBytes(data)
	r := s.do("POST", "/v2/app/blobs/uploads/", nil)
	r.expect(t, http.StatusAccepted, "")
	loc, id := r.Header.Get("Location"), r.Header.Get("Docker-Upload-UUID")
	if !strings.HasSuffix(loc, "/"+id) || r.Header.Get("Range") != "0-0" {
		t.Fatalf("start: Location %q, UUID %q, Range %q", loc, id, r.Header.Get("Range"))
	}
	r = s.do("PATCH", loc, data[:5], "Content-Range", "0-4")
	r.expect(t, http.StatusAccepted, "")
	if r.Header.Get("Range") != "0-4" {
		t.Fatalf("after 5 bytes: Range %q", r.Header.Get("Range"))
	}
	// A chunk without Content-Range is appended (docker streams this way).
	s.do("PATCH", loc, data[5:12], nil...).expect(t, http.StatusAccepted, "")
	r = s.do("GET", loc, nil)
	r.expect(t, http.StatusNoContent, "")
	if r.Header.Get("Range") != "0-11" {
		t.Fatalf("status: Range %q, want 0-11", r.Header.Get("Range"))
	}
	// The same chunk again overlaps: 416, and the Range tells where to resume.
	r = s.do("PATCH", loc, data[5:12], "Content-Range", "5-11")
	r.expect(t, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid)
	if r.Header.Get("Range") != "0-11" {
		t.Fatalf("416: Range %q", r.Header.Get("Range"))
	}
	r = s.do("PUT", loc+"?digest="+string(d), data[12:], "Content-Range", "12-19")
	r.expect(t, http.StatusCreated, "")
	if r.Header.Get("Docker-Content-Digest") != string(d) || r.Header.Get("Location") != "/v2/app/blobs/"+string(d) {
		t.Fatalf("finish: headers %v", r.Header)
	}
	s.do("GET", loc, nil).expect(t, http.StatusNotFound, codeBlobUploadUnknown)

	r = s.do("GET", "/v2/app/blobs/"+string(d), nil, "Range", "bytes=10-14")
	if r.StatusCode != http.StatusPartialContent || string(r.body) != "abcde" {
		t.Fatalf("range read: %d %q", r.StatusCode, r.body)
	}
	r = s.do("HEAD", "/v2/app/blobs/"+string(d), nil)
	if r.ContentLength != int64(len(data)) || r.Header.Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("HEAD: length %d, digest %q", r.ContentLength, r.Header.Get("Docker-Content-Digest"))
	}
	for _, rng := range []string{"bytes=100-200", "bytes=15-10", "bytes=x-y"} {
		r = s.do("GET", "/v2/app/blobs/"+string(d), nil, "Range", rng)
		r.expect(t, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid)
		if r.Header.Get("Content-Range") != "bytes */20" {
			t.Fatalf("%s: Content-Range %q", rng, r.Header.Get("Content-Range"))
		}
	}
}

func TestUploadWrongDigestLeavesNothing(t *testing.T) {
	s := newServer(t)
	loc := s.do("POST", "/v2/app/blobs/uploads/", nil).Header.Get("Location")
	s.do("PATCH", loc, []byte("some bytes"), nil...).expect(t, http.StatusAccepted, "")
	wrong := oci.FromBytes([]byte("other bytes"))
	s.do("PUT", loc+"?digest="+string(wrong), nil).expect(t, http.StatusBadRequest, codeDigestInvalid)
	s.do("GET", "/v2/app/blobs/"+string(wrong), nil).expect(t, http.StatusNotFound, codeBlobUnknown)
	s.do("GET", loc, nil).expect(t, http.StatusNotFound, codeBlobUploadUnknown)
	if f := s.blobFiles(); len(f) != 0 {
		t.Fatalf("blob files after a failed upload: %v", f)
	}
	if n, _ := os.ReadDir(s.dir + "/data/uploads"); len(n) != 0 {
		t.Fatalf("%d staging files left behind", len(n))
	}
}

func TestCancelUpload(t *testing.T) {
	s := newServer(t)
	loc := s.do("POST", "/v2/app/blobs/uploads/", nil).Header.Get("Location")
	s.do("PATCH", loc, []byte("some bytes"), nil...).expect(t, http.StatusAccepted, "")
	s.do("DELETE", loc, nil).expect(t, http.StatusNoContent, "")
	s.do("GET", loc, nil).expect(t, http.StatusNotFound, codeBlobUploadUnknown)
	if n, _ := os.ReadDir(s.dir + "/data/uploads"); len(n) != 0 {
		t.Fatalf("%d staging files left behind", len(n))
	}
}

func TestManifests(t *testing.T) {
	s := newServer(t)
	m, d := s.pushImage("app", "v1", []byte("layer"))
	for _, ref := range []string{"v1", string(d)} {
		r := s.do("GET", "/v2/app/manifests/"+ref, nil)
		r.expect(t, http.StatusOK, "")
		if !bytes.Equal(r.body, m) || r.Header.Get("Content-Type") != oci.MediaTypeImageManifest || r.Header.Get("Docker-Content-Digest") != string(d) {
			t.Fatalf("GET %s: %q %v", ref, r.body, r.Header)
		}
		r = s.do("HEAD", "/v2/app/manifests/"+ref, nil)
		if r.StatusCode != http.StatusOK || r.ContentLength != int64(len(m)) || len(r.body) != 0 {
			t.Fatalf("HEAD %s: %d, length %d, body %d bytes", ref, r.StatusCode, r.ContentLength, len(r.body))
		}
	}
	// Accept is honoured: a client that lists only other types is refused.
	for accept, ok := range map[string]bool{
		"": true, "*/*": true, oci.MediaTypeImageManifest: true,
		oci.MediaTypeDockerManifest + ", " + oci.MediaTypeImageManifest + ";q=0.5": true,
		oci.MediaTypeDockerManifest:                                     false,
		oci.MediaTypeDockerManifestList + "," + oci.MediaTypeImageIndex: false,
	} {
		r := s.do("GET", "/v2/app/manifests/v1", nil, "Accept", accept)
		if (r.StatusCode == http.StatusOK) != ok || (!ok && r.code() != codeManifestUnknown) {
			t.Fatalf("Accept %q: %d %s", accept, r.StatusCode, r.body)
		}
	}
	// An index of it, and an artifact about it.
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[%s]}`, oci.MediaTypeImageIndex, desc(oci.MediaTypeImageManifest, d, len(m))))
	s.do("PUT", "/v2/app/manifests/multi", index, "Content-Type", oci.MediaTypeImageIndex).expect(t, http.StatusCreated, "")
	empty := s.pushBlob("app", []byte("{}"))
	sig := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.sig","config":%s,"layers":[%s],"subject":%s,"annotations":{"k":"v"}}`,
		oci.MediaTypeImageManifest, desc(oci.MediaTypeEmptyJSON, empty, 2), desc(oci.MediaTypeEmptyJSON, empty, 2), desc(oci.MediaTypeImageManifest, d, len(m))))
	sd := oci.FromBytes(sig)
	r := s.do("PUT", "/v2/app/manifests/"+string(sd), sig, "Content-Type", oci.MediaTypeImageManifest)
	r.expect(t, http.StatusCreated, "")
	if r.Header.Get("OCI-Subject") != string(d) {
		t.Fatalf("OCI-Subject %q", r.Header.Get("OCI-Subject"))
	}
	var idx struct {
		Manifests []oci.Descriptor `json:"manifests"`
	}
	for _, filter := range []string{"", "?artifactType=application/vnd.example.sig", "?artifactType=other"} {
		r = s.do("GET", "/v2/app/referrers/"+string(d)+filter, nil)
		r.expect(t, http.StatusOK, "")
		if err := json.Unmarshal(r.body, &idx); err != nil {
			t.Fatal(err)
		}
		want := 1
		if filter == "?artifactType=other" {
			want = 0
		}
		if len(idx.Manifests) != want || (filter != "") != (r.Header.Get("OCI-Filters-Applied") == "artifactType") {
			t.Fatalf("referrers%s: %s, filters %q", filter, r.body, r.Header.Get("OCI-Filters-Applied"))
		}
		if want == 1 && (idx.Manifests[0].Digest != sd || idx.Manifests[0].ArtifactType != "application/vnd.example.sig" || idx.Manifests[0].Annotations["k"] != "v") {
			t.Fatalf("referrer descriptor %+v", idx.Manifests[0])
		}
	}
	// Delete the tag: the manifest stays by digest. Delete the manifest: gone.
	s.do("DELETE", "/v2/app/manifests/v1", nil).expect(t, http.StatusAccepted, "")
	s.do("GET", "/v2/app/manifests/v1", nil).expect(t, http.StatusNotFound, codeManifestUnknown)
	s.do("GET", "/v2/app/manifests/"+string(d), nil).expect(t, http.StatusOK, "")
	s.do("PUT", "/v2/app/manifests/v1", m, "Content-Type", oci.MediaTypeImageManifest).expect(t, http.StatusCreated, "")
	s.do("DELETE", "/v2/app/manifests/"+string(d), nil).expect(t, http.StatusAccepted, "")
	s.do("GET", "/v2/app/manifests/"+string(d), nil).expect(t, http.StatusNotFound, codeManifestUnknown)
	s.do("GET", "/v2/app/manifests/v1", nil).expect(t, http.StatusNotFound, codeManifestUnknown)
}

func TestTagParameters(t *testing.T) {
	s := newServer(t)
	m, d := s.pushImage("app", "v1", []byte("layer"))
	r := s.do("PUT", "/v2/app/manifests/"+string(d)+"?tag=a&tag=b", m, "Content-Type", oci.MediaTypeImageManifest)
	r.expect(t, http.StatusCreated, "")
	if r.Header.Get("OCI-Tag") != "a, b" {
		t.Fatalf("OCI-Tag %q", r.Header.Get("OCI-Tag"))
	}
	for _, tag := range []string{"a", "b"} {
		s.do("GET", "/v2/app/manifests/"+tag, nil).expect(t, http.StatusOK, "")
	}
}

func TestPagination(t *testing.T) {
	s := newServer(t)
	m, _ := s.pushImage("app", "1", []byte("layer"))
	for _, tag := range []string{"latest", "b", "a", "A", "9", "2", "10"} {
		s.do("PUT", "/v2/app/manifests/"+tag, m, "Content-Type", oci.MediaTypeImageManifest).expect(t, http.StatusCreated, "")
	}
	// Lexical (byte) order: "10" before "9", "A" before "a".
	wantOrder := []string{"1", "10", "2", "9", "A", "a", "b", "latest"}
	var got []string
	next := "/v2/app/tags/list?n=3"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := s.do("GET", next, nil)
		r.expect(t, http.StatusOK, "")
		var body struct{ Tags []string }
		json.Unmarshal(r.body, &body)
		got = append(got, body.Tags...)
		next = ""
		if link := r.Header.Get("Link"); link != "" {
			next = strings.TrimPrefix(strings.SplitN(link, ">", 2)[0], "<")
		}
	}
	if strings.Join(got, ",") != strings.Join(wantOrder, ",") {
		t.Fatalf("walk: %v, want %v", got, wantOrder)
	}
	r := s.do("GET", "/v2/app/tags/list", nil)
	if r.Header.Get("Link") != "" || !strings.Contains(string(r.body), `"latest"`) {
		t.Fatalf("full list: %s, Link %q", r.body, r.Header.Get("Link"))
	}
	r = s.do("GET", "/v2/app/tags/list?n=9223372036854775807", nil)
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"latest"`) {
		t.Fatalf("n at the integer limit: %d %s", r.StatusCode, r.body)
	}
	r = s.do("GET", "/v2/app/tags/list?n=0", nil)
	if string(r.body) != `{"name":"app","tags":[]}` {
		t.Fatalf("n=0: %s", r.body)
	}
	s.pushBlob("zeta", []byte("z"))
	r = s.do("GET", "/v2/_catalog?n=1", nil)
	if string(r.body) != `{"repositories":["app"]}` || !strings.Contains(r.Header.Get("Link"), "last=app") {
		t.Fatalf("catalog: %s, Link %q", r.body, r.Header.Get("Link"))
	}
	r = s.do("GET", "/v2/_catalog?last=app", nil)
	if string(r.body) != `{"repositories":["zeta"]}` {
		t.Fatalf("catalog after app: %s", r.body)
	}
}

// TestFinishRetry: a final PUT that fails after the bytes were verified
// (storage could not publish them) keeps the upload, and the client's retry
// of the same PUT completes it.
func TestFinishRetry(t *testing.T) {
	s := newServer(t)
	data := []byte("bytes that will have to wait")
	d := oci.FromBytes(data)
	loc := s.do("POST", "/v2/app/blobs/uploads/", nil).Header.Get("Location")
	s.do("PATCH", loc, data, "Content-Range", fmt.Sprintf("0-%d", len(data)-1)).expect(t, http.StatusAccepted, "")
	// A file where the blob's directory must be created makes the publish fail.
	block := filepath.Join(s.dir, "data", "blobs", "sha256", d.Encoded()[:2])
	os.MkdirAll(filepath.Dir(block), 0o755)
	os.WriteFile(block, nil, 0o644)
	s.do("PUT", loc+"?digest="+string(d), nil).expect(t, http.StatusInternalServerError, "UNKNOWN")
	s.do("GET", loc, nil).expect(t, http.StatusNoContent, "")
	os.Remove(block)
	s.do("PUT", loc+"?digest="+string(d), nil).expect(t, http.StatusCreated, "")
	if r := s.do("GET", "/v2/app/blobs/"+string(d), nil); !bytes.Equal(r.body, data) {
		t.Fatalf("blob after the retried PUT: %d %q", r.StatusCode, r.body)
	}
}

// TestNumberedTagsImmutable: a numbered tag keeps its manifest; re-pushing
// the same one is fine, moving it is DENIED and changes nothing; moving tags
// move freely.
func TestNumberedTagsImmutable(t *testing.T) {
	s := newServer(t)
	m1, d1 := s.pushImage("app", "42", []byte("layer one"))
	m2, d2 := s.pushImage("app", "latest", []byte("layer two"))
	mt := oci.MediaTypeImageManifest
	s.do("PUT", "/v2/app/manifests/42", m1, "Content-Type", mt).expect(t, http.StatusCreated, "")
	before := s.snapshot()
	for _, ref := range []string{"42", "v1.2.3", string(d2) + "?tag=42"} {
		if ref == "v1.2.3" {
			s.do("PUT", "/v2/app/manifests/v1.2.3", m1, "Content-Type", mt).expect(t, http.StatusCreated, "")
			before = s.snapshot()
		}
		r := s.do("PUT", "/v2/app/manifests/"+ref, m2, "Content-Type", mt)
		r.expect(t, http.StatusForbidden, codeDenied)
		if !strings.Contains(string(r.body), string(d1)) || !strings.Contains(string(r.body), "new number") {
			t.Fatalf("refusal does not say why: %s", r.body)
		}
		if after := s.snapshot(); after != before {
			t.Fatalf("a refused move changed stored state")
		}
	}
	s.do("PUT", "/v2/app/manifests/latest", m1, "Content-Type", mt).expect(t, http.StatusCreated, "")
	s.do("PUT", "/v2/app/manifests/stable", m2, "Content-Type", mt).expect(t, http.StatusCreated, "")

	// A registry configured to let numbered tags move.
	store, db := s.store, s.db
	h := New(Options{Store: store, DB: db, Policy: Policy{ImmutableNumbered: ptr(false)}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("PUT", srv.URL+"/v2/app/manifests/42", bytes.NewReader(m2))
	req.Header.Set("Content-Type", mt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("moving 42 with mutable numbered tags: %d", resp.StatusCode)
	}
}
