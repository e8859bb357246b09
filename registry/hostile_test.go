package registry

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/berthhq/berth/oci"
)

// TestHostileRequests sends invalid requests to a registry holding some
// content and an open upload, and checks that each gets the spec's status
// and error code and that no stored state changes.
func TestHostileRequests(t *testing.T) {
	s := newServer(t)
	layer := []byte("layer bytes")
	_, md := s.pushImage("app", "v1", layer)
	ld := oci.FromBytes(layer)
	other := s.pushBlob("other", []byte("only in other"))
	start := s.do("POST", "/v2/app/blobs/uploads/", nil)
	start.expect(t, http.StatusAccepted, "")
	upload := start.Header.Get("Location")
	s.do("PATCH", upload, []byte("0123456789"), "Content-Range", "0-9").expect(t, http.StatusAccepted, "")

	missing := oci.FromBytes([]byte("never pushed"))
	config := s.pushBlob("app", []byte("{}"))
	refsMissing := imageManifest(desc("application/vnd.oci.image.config.v1+json", config, 2),
		desc("application/vnd.oci.image.layer.v1.tar", missing, 12))
	wrongSize := imageManifest(desc("application/vnd.oci.image.config.v1+json", config, 3))
	huge := append([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":"`),
		bytes.Repeat([]byte("a"), oci.MaxManifestSize)...)
	huge = append(huge, []byte(`"}}`)...)
	mt := "application/vnd.oci.image.manifest.v1+json"

	tests := []struct {
		name         string
		method, path string
		body         []byte
		header       []string
		status       int
		code         string
	}{
		{"dot-dot name", "GET", "/v2/../x/tags/list", nil, nil, 400, codeNameInvalid},
		{"upper-case name", "GET", "/v2/A/B/tags/list", nil, nil, 400, codeNameInvalid},
		{"300-character name", "GET", "/v2/" + strings.Repeat("a", 300) + "/tags/list", nil, nil, 400, codeNameInvalid},
		{"empty path component", "GET", "/v2/a//b/manifests/v1", nil, nil, 400, codeNameInvalid},
		{"short digest", "GET", "/v2/app/blobs/sha256:abc", nil, nil, 400, codeDigestInvalid},
		{"unknown algorithm", "GET", "/v2/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", nil, nil, 400, codeDigestInvalid},
		{"upper-case hex", "GET", "/v2/app/blobs/" + strings.ToUpper(string(ld)), nil, nil, 400, codeDigestInvalid},
		{"blob of another repository", "GET", "/v2/app/blobs/" + string(other), nil, nil, 404, codeBlobUnknown},
		{"blob never pushed", "GET", "/v2/app/blobs/" + string(missing), nil, nil, 404, codeBlobUnknown},
		{"delete blob never pushed", "DELETE", "/v2/app/blobs/" + string(missing), nil, nil, 404, codeBlobUnknown},
		{"manifest of another repository", "GET", "/v2/other/manifests/" + string(md), nil, nil, 404, codeManifestUnknown},
		{"unknown tag", "GET", "/v2/app/manifests/v2", nil, nil, 404, codeManifestUnknown},
		{"invalid tag", "GET", "/v2/app/manifests/-v1", nil, nil, 400, codeManifestInvalid},
		{"malformed manifest JSON", "PUT", "/v2/app/manifests/v2", []byte(`{"schemaVersion":2,`), []string{"Content-Type", mt}, 400, codeManifestInvalid},
		{"manifest of unsupported media type", "PUT", "/v2/app/manifests/v2", imageManifest(desc(mt, config, 2)), []string{"Content-Type", "text/plain"}, 400, codeManifestInvalid},
		{"manifest schema 1", "PUT", "/v2/app/manifests/v2", []byte(`{"schemaVersion":1,"name":"app"}`), []string{"Content-Type", "application/vnd.docker.distribution.manifest.v1+json"}, 400, codeManifestInvalid},
		{"manifest with missing layer", "PUT", "/v2/app/manifests/v2", refsMissing, []string{"Content-Type", mt}, 400, codeManifestBlobUnknown},
		{"manifest with a wrong size", "PUT", "/v2/app/manifests/v2", wrongSize, []string{"Content-Type", mt}, 400, codeManifestInvalid},
		{"manifest whose digest is not the URL's", "PUT", "/v2/app/manifests/" + string(missing), imageManifest(desc(mt, config, 2)), []string{"Content-Type", mt}, 400, codeDigestInvalid},
		{"manifest over 4 MiB", "PUT", "/v2/app/manifests/v2", huge, []string{"Content-Type", mt}, 413, codeManifestInvalid},
		{"manifest with an invalid tag parameter", "PUT", "/v2/app/manifests/" + string(oci.FromBytes(wrongSize)) + "?tag=-x", wrongSize, []string{"Content-Type", mt}, 400, codeManifestInvalid},
		{"delete unknown manifest", "DELETE", "/v2/app/manifests/" + string(missing), nil, nil, 404, codeManifestUnknown},
		{"delete unknown tag", "DELETE", "/v2/app/manifests/nope", nil, nil, 404, codeManifestUnknown},
		{"chunk leaving a gap", "PATCH", upload, []byte("abc"), []string{"Content-Range", "20-22"}, 416, codeBlobUploadInvalid},
		{"chunk overlapping", "PATCH", upload, []byte("abc"), []string{"Content-Range", "5-7"}, 416, codeBlobUploadInvalid},
		{"malformed Content-Range", "PATCH", upload, []byte("abc"), []string{"Content-Range", "ten-twelve"}, 400, codeBlobUploadInvalid},
		{"negative Content-Range", "PATCH", upload, []byte("abc"), []string{"Content-Range", "-10-12"}, 400, codeBlobUploadInvalid},
		{"Content-Range longer than the body", "PATCH", upload, []byte("abc"), []string{"Content-Range", "10-19"}, 400, codeSizeInvalid},
		{"final chunk leaving a gap", "PUT", upload + "?digest=" + string(missing), []byte("abc"), []string{"Content-Range", "11-13"}, 416, codeBlobUploadInvalid},
		{"finish without digest", "PUT", upload, nil, nil, 400, codeDigestInvalid},
		{"finish with a bad digest", "PUT", upload + "?digest=sha256:zz", nil, nil, 400, codeDigestInvalid},
		{"upload id of another repository", "GET", strings.Replace(upload, "/app/", "/other/", 1), nil, nil, 404, codeBlobUploadUnknown},
		{"upload id that is a path", "PATCH", "/v2/app/blobs/uploads/..%5c..%5cblobs", []byte("x"), nil, 404, codeBlobUploadUnknown},
		{"unknown upload id", "GET", "/v2/app/blobs/uploads/0123456789abcdef0123456789abcdef", nil, nil, 404, codeBlobUploadUnknown},
		{"monolithic upload with the wrong digest", "POST", "/v2/app/blobs/uploads/?digest=" + string(missing), []byte("not it"), nil, 400, codeDigestInvalid},
		{"monolithic upload of a stored blob with the wrong bytes", "POST", "/v2/app/blobs/uploads/?digest=" + string(other), []byte("forged"), nil, 400, codeDigestInvalid},
		{"mount from an invalid name", "POST", "/v2/app/blobs/uploads/?mount=" + string(ld) + "&from=../x", nil, nil, 400, codeNameInvalid},
		{"mount with an invalid digest", "POST", "/v2/app/blobs/uploads/?mount=sha256:1&from=other", nil, nil, 400, codeDigestInvalid},
		{"tags of an unknown repository", "GET", "/v2/nope/tags/list", nil, nil, 404, codeNameUnknown},
		{"negative n", "GET", "/v2/app/tags/list?n=-1", nil, nil, 400, codePaginationInvalid},
		{"non-numeric n", "GET", "/v2/app/tags/list?n=ten", nil, nil, 400, codePaginationInvalid},
		{"referrers of a bad digest", "GET", "/v2/app/referrers/sha256:1", nil, nil, 400, codeDigestInvalid},
		{"unsupported method", "POST", "/v2/app/manifests/v1", nil, nil, 405, codeUnsupported},
		{"unknown endpoint", "GET", "/v2/app/things", nil, nil, 404, codeUnsupported},
	}
	before := s.snapshot()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.do(tt.method, tt.path, tt.body, tt.header...).expect(t, tt.status, tt.code)
			if after := s.snapshot(); after != before {
				t.Fatalf("stored state changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}

	// The upload is intact after all of that: it finishes with the bytes it had.
	s.do("PUT", upload+"?digest="+string(oci.FromBytes([]byte("0123456789"))), nil).expect(t, http.StatusCreated, "")
}

// TestTruncatedBody: a client that declares more bytes than it sends gets
// an error and its upload keeps only what was recorded before.
func TestTruncatedBody(t *testing.T) {
	s := newServer(t)
	start := s.do("POST", "/v2/app/blobs/uploads/", nil)
	upload := start.Header.Get("Location")
	s.do("PATCH", upload, []byte("0123456789"), "Content-Range", "0-9").expect(t, http.StatusAccepted, "")
	before := s.snapshot()

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Range: 10-109\r\nContent-Length: 100\r\n\r\n%s", upload, strings.Repeat("z", 40))
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("truncated body: status %d, want 400", resp.StatusCode)
		}
	} // else the server hung up on the broken request, which is fine too.
	conn.Close()

	// The server may still be finishing the failed request; the upload
	// lock orders this status request after it.
	s.do("GET", upload, nil).expect(t, http.StatusNoContent, "")
	if after := s.snapshot(); after != before {
		t.Fatalf("stored state changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
