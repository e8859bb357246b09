package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	mtOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mtOCIConfig      = "application/vnd.oci.image.config.v1+json"
	mtOCILayerGzip   = "application/vnd.oci.image.layer.v1.tar+gzip"
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// manifestAccept is the Accept header of a client that understands every manifest type.
var manifestAccept = strings.Join([]string{mtOCIManifest, mtOCIIndex, mtDockerManifest, mtDockerList}, ", ")

var httpClient = &http.Client{Timeout: time.Minute}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// uniqueRepo returns a repository name no other test or run uses.
func uniqueRepo(t testing.TB, prefix string) string {
	return fmt.Sprintf("e2e/%s-%s", prefix, hex.EncodeToString(randBytes(t, 4)))
}

// httpDo sends one request and returns the response with its body read.
func httpDo(t testing.TB, method, u string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := tryDo(method, u, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// tryDo is httpDo returning its error, for goroutines other than the test's.
func tryDo(method, u string, body []byte, header map[string]string) (*http.Response, []byte, error) {
	return doRequest(httpClient, method, u, body, header)
}

// doRequest sends a request through client and reads the answer's body whole.
func doRequest(client *http.Client, method, u string, body []byte, header map[string]string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if body == nil {
		req.Body = nil
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading body: %w", method, u, err)
	}
	return resp, b, nil
}

// expectStatus fails unless resp has the wanted status, showing the request and the body.
func expectStatus(t testing.TB, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: got %s, want %d\nheaders: %v\nbody: %s",
			resp.Request.Method, resp.Request.URL, resp.Status, want, resp.Header, truncate(body))
	}
}

func truncate(b []byte) string {
	if len(b) > 2048 {
		return string(b[:2048]) + "…"
	}
	return string(b)
}

// getManifest fetches a manifest over HTTP and checks that its bytes hash to Docker-Content-Digest
// (and to ref itself when ref is a digest).
func getManifest(t testing.TB, s *server, repo, ref string) (body []byte, digest, mediaType string) {
	t.Helper()
	resp, body := httpDo(t, http.MethodGet, s.URL+"/v2/"+repo+"/manifests/"+ref, nil, map[string]string{"Accept": manifestAccept})
	expectStatus(t, resp, body, http.StatusOK)
	digest = digestOf(body)
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != digest {
		t.Fatalf("GET manifest %s:%s: Docker-Content-Digest %s, body hashes to %s", repo, ref, h, digest)
	}
	if strings.HasPrefix(ref, "sha256:") && ref != digest {
		t.Fatalf("GET manifest %s@%s: body hashes to %s", repo, ref, digest)
	}
	return body, digest, resp.Header.Get("Content-Type")
}

// getBlob fetches a blob over HTTP and checks its bytes hash to the digest.
func getBlob(t testing.TB, s *server, repo, digest string) []byte {
	t.Helper()
	resp, body := httpDo(t, http.MethodGet, s.URL+"/v2/"+repo+"/blobs/"+digest, nil, nil)
	expectStatus(t, resp, body, http.StatusOK)
	if got := digestOf(body); got != digest {
		t.Fatalf("GET blob %s@%s: body hashes to %s", repo, digest, got)
	}
	return body
}

// expectAbsent fails unless GET on the path under /v2/ answers 404.
func expectAbsent(t testing.TB, s *server, path string) {
	t.Helper()
	resp, body := httpDo(t, http.MethodGet, s.URL+"/v2/"+path, nil, map[string]string{"Accept": manifestAccept})
	expectStatus(t, resp, body, http.StatusNotFound)
}

// location resolves a Location header against the server URL.
func location(t testing.TB, s *server, resp *http.Response) string {
	t.Helper()
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatalf("%s %s: %s without Location", resp.Request.Method, resp.Request.URL, resp.Status)
	}
	base, _ := url.Parse(s.URL)
	u, err := base.Parse(loc)
	if err != nil {
		t.Fatalf("bad Location %q: %v", loc, err)
	}
	return u.String()
}

// withQuery adds key=value to a URL that may already have a query.
func withQuery(t testing.TB, u, key, value string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set(key, value)
	p.RawQuery = q.Encode()
	return p.String()
}

// pushBlob uploads a blob with POST then PUT ?digest= and returns its digest.
func pushBlob(t testing.TB, s *server, repo string, data []byte) string {
	t.Helper()
	d := digestOf(data)
	resp, body := httpDo(t, http.MethodPost, s.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	expectStatus(t, resp, body, http.StatusAccepted)
	resp, body = httpDo(t, http.MethodPut, withQuery(t, location(t, s, resp), "digest", d), data,
		map[string]string{"Content-Type": "application/octet-stream"})
	expectStatus(t, resp, body, http.StatusCreated)
	return d
}

// pushManifest PUTs a manifest under ref (a tag or its digest).
func pushManifest(t testing.TB, s *server, repo, ref, mediaType string, manifest []byte) {
	t.Helper()
	resp, body := httpDo(t, http.MethodPut, s.URL+"/v2/"+repo+"/manifests/"+ref, manifest,
		map[string]string{"Content-Type": mediaType})
	expectStatus(t, resp, body, http.StatusCreated)
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != digestOf(manifest) {
		t.Fatalf("PUT manifest %s:%s: Docker-Content-Digest %s, want %s", repo, ref, h, digestOf(manifest))
	}
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifest is the part of an image manifest or index the tests read.
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *descriptor       `json:"config,omitempty"`
	Layers        []descriptor      `json:"layers,omitempty"`
	Manifests     []descriptor      `json:"manifests,omitempty"`
	Subject       *descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func parseManifest(t testing.TB, b []byte) manifest {
	t.Helper()
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("parsing manifest: %v\n%s", err, truncate(b))
	}
	return m
}

// testImage is a random single-layer OCI image built in memory.
type testImage struct {
	Files        map[string][]byte // the layer's regular files, by path
	Layer        []byte            // gzip-compressed tar
	LayerDigest  string
	Config       []byte
	ConfigDigest string
	Manifest     []byte
	Digest       string // of Manifest
}

// newTestImage makes an image whose single layer holds a few random files.
func newTestImage(t testing.TB) *testImage {
	t.Helper()
	files := map[string][]byte{
		"berth/random.bin": randBytes(t, 64<<10+123),
		"berth/hello.txt":  []byte("hello from " + t.Name() + " " + hex.EncodeToString(randBytes(t, 8)) + "\n"),
	}
	tarball := tarFiles(t, files)
	img := &testImage{Files: files, Layer: gzipBytes(t, tarball)}
	img.LayerDigest = digestOf(img.Layer)
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digestOf(tarball)}},
	}
	img.Config = mustJSON(t, cfg)
	img.ConfigDigest = digestOf(img.Config)
	img.Manifest = mustJSON(t, manifest{
		SchemaVersion: 2,
		MediaType:     mtOCIManifest,
		Config:        &descriptor{MediaType: mtOCIConfig, Digest: img.ConfigDigest, Size: int64(len(img.Config))},
		Layers:        []descriptor{{MediaType: mtOCILayerGzip, Digest: img.LayerDigest, Size: int64(len(img.Layer))}},
	})
	img.Digest = digestOf(img.Manifest)
	return img
}

// push uploads the image's blobs and manifest to repo:tag over HTTP.
func (img *testImage) push(t testing.TB, s *server, repo, tag string) {
	t.Helper()
	pushBlob(t, s, repo, img.Layer)
	pushBlob(t, s, repo, img.Config)
	pushManifest(t, s, repo, tag, mtOCIManifest, img.Manifest)
}

// writeOCILayout writes the image as an OCI image layout directory with one tagged manifest.
func (img *testImage) writeOCILayout(t testing.TB, dir, tag string) {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{img.Layer, img.Config, img.Manifest} {
		writeFile(t, filepath.Join(blobs, strings.TrimPrefix(digestOf(b), "sha256:")), b)
	}
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	writeFile(t, filepath.Join(dir, "index.json"), mustJSON(t, manifest{
		SchemaVersion: 2,
		MediaType:     mtOCIIndex,
		Manifests: []descriptor{{
			MediaType:   mtOCIManifest,
			Digest:      img.Digest,
			Size:        int64(len(img.Manifest)),
			Annotations: map[string]string{"org.opencontainers.image.ref.name": tag},
		}},
	}))
}

// layoutManifest returns the manifest bytes an OCI layout directory lists under tag (or its only one).
func layoutManifest(t testing.TB, dir, tag string) []byte {
	t.Helper()
	idx := parseManifest(t, readFile(t, filepath.Join(dir, "index.json")))
	for _, d := range idx.Manifests {
		if len(idx.Manifests) == 1 || d.Annotations["org.opencontainers.image.ref.name"] == tag {
			b := readFile(t, filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d.Digest, "sha256:")))
			if got := digestOf(b); got != d.Digest {
				t.Fatalf("layout %s: manifest blob hashes to %s, index says %s", dir, got, d.Digest)
			}
			return b
		}
	}
	t.Fatalf("layout %s: no manifest tagged %q in index.json", dir, tag)
	return nil
}

func tarFiles(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, n := range names {
		for d := filepath.Dir(n); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
				t.Fatal(err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o755, Size: int64(len(files[n]))}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// untarFiles returns the regular files of a tar stream by path (without a leading "/" or "./").
func untarFiles(t testing.TB, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(strings.TrimPrefix(hdr.Name, "./"), "/")] = b
	}
}

// expectFiles fails unless got holds every wanted file with identical bytes.
func expectFiles(t testing.TB, what string, got, want map[string][]byte) {
	t.Helper()
	for n, w := range want {
		g, ok := got[n]
		if !ok {
			t.Errorf("%s: file %s missing (have %d files)", what, n, len(got))
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s: file %s differs: %d bytes %s, want %d bytes %s", what, n, len(g), digestOf(g), len(w), digestOf(w))
		}
	}
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectSameBytes fails when two byte strings differ, naming both digests.
func expectSameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes (%s), want %d bytes (%s)\ngot:  %s\nwant: %s",
			what, len(got), digestOf(got), len(want), digestOf(want), truncate(got), truncate(want))
	}
}

// expectStoredOnce checks that exactly one file under the server's data directory holds data:
// pushes, copies and mounts across repositories must not duplicate a blob's bytes.
func expectStoredOnce(t testing.TB, s *server, data []byte) {
	t.Helper()
	want := digestOf(data)
	var copies []string
	err := filepath.WalkDir(s.Data, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() != int64(len(data)) {
			return err
		}
		if b, err := os.ReadFile(path); err == nil && digestOf(b) == want {
			copies = append(copies, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", s.Data, err)
	}
	if len(copies) != 1 {
		t.Fatalf("blob %s is stored %d times under %s, want once: %v", want, len(copies), s.Data, copies)
	}
}
