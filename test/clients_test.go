package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCrane pushes a random image with crane, pulls it back, copies it across repositories
// (a cross-repository mount), lists tags and deletes by digest.
func TestCrane(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	crane := tool{path: craneBin(t), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
	repo := uniqueRepo(t, "crane")
	copyRepo := repo + "-copy"
	ref := s.ref(repo, ":v1")

	files := map[string][]byte{
		"data/random.bin": randBytes(t, 200<<10+7),
		"etc/motd":        []byte("crane was here\n"),
	}
	layerTar := filepath.Join(t.TempDir(), "layer.tar")
	writeFile(t, layerTar, tarFiles(t, files))

	out := strings.TrimSpace(string(crane.run(t, "append", "--insecure", "--oci-empty-base", "-f", layerTar, "-t", ref)))
	_, digest, ok := strings.Cut(out, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("crane append printed %q, want <ref>@sha256:…", out)
	}
	expectOutput(t, "crane digest", crane.run(t, "digest", "--insecure", ref), digest)

	served, servedDigest, _ := getManifest(t, s, repo, "v1")
	if servedDigest != digest {
		t.Fatalf("GET %s: digest %s, crane pushed %s", ref, servedDigest, digest)
	}
	expectSameBytes(t, "crane manifest", crane.run(t, "manifest", "--insecure", ref), served)

	m := parseManifest(t, served)
	if len(m.Layers) != 1 || m.Config == nil {
		t.Fatalf("pushed manifest has %d layers, config %v: %s", len(m.Layers), m.Config, served)
	}
	layer := crane.run(t, "blob", "--insecure", s.ref(repo, "@"+m.Layers[0].Digest))
	expectSameBytes(t, "crane blob (layer)", layer, getBlob(t, s, repo, m.Layers[0].Digest))
	expectFiles(t, "layer pulled with crane blob", untarFiles(t, bytes.NewReader(gunzip(t, layer))), files)
	cfg := crane.run(t, "config", "--insecure", ref)
	if got := digestOf(cfg); got != m.Config.Digest {
		t.Errorf("crane config hashes to %s, manifest says %s", got, m.Config.Digest)
	}
	exported := crane.run(t, "export", "--insecure", ref, "-")
	expectFiles(t, "crane export", untarFiles(t, bytes.NewReader(exported)), files)

	layout := t.TempDir()
	crane.run(t, "pull", "--insecure", "--format", "oci", ref, layout)
	expectSameBytes(t, "manifest in the OCI layout crane pulled", layoutManifest(t, layout, ""), served)

	crane.run(t, "tag", "--insecure", ref, "v2")
	expectLines(t, "crane ls", crane.run(t, "ls", "--insecure", s.ref(repo, "")), "v1", "v2")

	// Same registry, other repository: crane mounts the blobs instead of uploading them.
	copyRef := s.ref(copyRepo, ":v1")
	crane.run(t, "copy", "--insecure", ref, copyRef)
	expectOutput(t, "crane digest of the copy", crane.run(t, "digest", "--insecure", copyRef), digest)
	copied, _, _ := getManifest(t, s, copyRepo, "v1")
	expectSameBytes(t, "manifest of the copy", copied, served)
	expectSameBytes(t, "layer of the copy", getBlob(t, s, copyRepo, m.Layers[0].Digest), layer)
	expectLines(t, "crane ls of the copy", crane.run(t, "ls", "--insecure", s.ref(copyRepo, "")), "v1")
	expectStoredOnce(t, s, layer)
	// A repository that never linked the layer does not serve it, though its bytes are stored.
	expectAbsent(t, s, repo+"-other/blobs/"+m.Layers[0].Digest)

	crane.run(t, "delete", "--insecure", s.ref(copyRepo, "@"+digest))
	expectAbsent(t, s, copyRepo+"/manifests/"+digest)
	expectAbsent(t, s, copyRepo+"/manifests/v1")
	if resp, body := httpDo(t, http.MethodGet, s.URL+"/v2/"+copyRepo+"/tags/list", nil, nil); resp.StatusCode == http.StatusOK {
		if tags := parseTags(t, body); slices.Contains(tags, "v1") {
			t.Errorf("tags of %s after deleting its only manifest: %v", copyRepo, tags)
		}
	} else if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET tags/list of %s after delete: %s %s", copyRepo, resp.Status, body)
	}
	// The source repository is untouched.
	again, _, _ := getManifest(t, s, repo, digest)
	expectSameBytes(t, "source manifest after deleting the copy", again, served)
}

// TestOras pushes an artifact with two files, pulls it, attaches a signature-like referrer and
// finds it through the referrers API.
func TestOras(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	work := t.TempDir()
	oras := tool{path: orasBin(t), dir: work, env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
	repo := uniqueRepo(t, "oras")
	ref := s.ref(repo, ":v1")
	const artifactType = "application/vnd.berth.e2e.bundle"
	const sigType = "application/vnd.berth.e2e.signature"

	files := map[string][]byte{
		"readme.txt":  []byte("an artifact pushed by oras in " + t.Name() + "\n"),
		"payload.bin": randBytes(t, 150<<10+5),
	}
	for n, b := range files {
		writeFile(t, filepath.Join(work, n), b)
	}
	exportPath := filepath.Join(t.TempDir(), "manifest.json")
	out := oras.run(t, "push", "--plain-http", "--no-tty", "--format", "json",
		"--artifact-type", artifactType, "--export-manifest", exportPath,
		ref, "readme.txt:text/plain", "payload.bin:application/octet-stream")
	pushed := decodeDescriptor(t, "oras push", out)
	exported := readFile(t, exportPath)
	if got := digestOf(exported); got != pushed.Digest {
		t.Fatalf("oras push: digest %s, exported manifest hashes to %s", pushed.Digest, got)
	}
	served, _, _ := getManifest(t, s, repo, "v1")
	expectSameBytes(t, "manifest served after oras push", served, exported)
	if m := parseManifest(t, served); m.ArtifactType != artifactType || len(m.Layers) != 2 {
		t.Fatalf("pushed manifest: artifactType %q with %d layers, want %q with 2: %s", m.ArtifactType, len(m.Layers), artifactType, served)
	}
	expectSameBytes(t, "oras manifest fetch", oras.run(t, "manifest", "fetch", "--plain-http", ref), served)

	expectOrasPull(t, oras, ref, files)

	sig := mustJSON(t, map[string]string{"signed": pushed.Digest, "by": "berth e2e"})
	writeFile(t, filepath.Join(work, "sig.json"), sig)
	out = oras.run(t, "attach", "--plain-http", "--no-tty", "--format", "json",
		"--artifact-type", sigType, ref, "sig.json:application/json")
	attached := decodeDescriptor(t, "oras attach", out)
	sigManifest, _, _ := getManifest(t, s, repo, attached.Digest)
	if m := parseManifest(t, sigManifest); m.Subject == nil || m.Subject.Digest != pushed.Digest {
		t.Fatalf("attached manifest's subject is %+v, want %s", m.Subject, pushed.Digest)
	}
	expectSameBytes(t, "oras manifest fetch of the signature",
		oras.run(t, "manifest", "fetch", "--plain-http", s.ref(repo, "@"+attached.Digest)), sigManifest)

	var tree struct {
		Digest    string `json:"digest"`
		Referrers []struct {
			Digest       string `json:"digest"`
			ArtifactType string `json:"artifactType"`
		} `json:"referrers"`
	}
	out = oras.run(t, "discover", "--plain-http", "--format", "json", ref)
	if err := json.Unmarshal(out, &tree); err != nil {
		t.Fatalf("oras discover: %v\n%s", err, out)
	}
	if tree.Digest != pushed.Digest || len(tree.Referrers) != 1 ||
		tree.Referrers[0].Digest != attached.Digest || tree.Referrers[0].ArtifactType != sigType {
		t.Fatalf("oras discover: %s\nwant the subject %s with one referrer %s of type %s", out, pushed.Digest, attached.Digest, sigType)
	}

	// The referrers API itself, unfiltered and filtered.
	idx := getReferrers(t, s, repo, pushed.Digest, "")
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != attached.Digest || idx.Manifests[0].ArtifactType != sigType ||
		idx.Manifests[0].Size != int64(len(sigManifest)) {
		t.Fatalf("referrers of %s: %+v, want one %s of type %s, size %d", pushed.Digest, idx.Manifests, attached.Digest, sigType, len(sigManifest))
	}
	if idx := getReferrers(t, s, repo, pushed.Digest, "application/vnd.berth.e2e.other"); len(idx.Manifests) != 0 {
		t.Errorf("referrers filtered by another artifactType: %+v, want none", idx.Manifests)
	}
}

// getReferrers calls the referrers API, optionally filtered by artifactType.
func getReferrers(t testing.TB, s *server, repo, digest, artifactType string) manifest {
	t.Helper()
	u := s.URL + "/v2/" + repo + "/referrers/" + digest
	if artifactType != "" {
		u = withQuery(t, u, "artifactType", artifactType)
	}
	resp, body := httpDo(t, http.MethodGet, u, nil, nil)
	expectStatus(t, resp, body, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != mtOCIIndex {
		t.Errorf("GET %s: Content-Type %q, want %s", u, ct, mtOCIIndex)
	}
	if artifactType != "" && resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("GET %s: OCI-Filters-Applied %q, want artifactType", u, resp.Header.Get("OCI-Filters-Applied"))
	}
	return parseManifest(t, body)
}

// TestSkopeo copies an OCI layout into the registry and back out to an OCI layout and a dir: tree.
func TestSkopeo(t *testing.T) {
	t.Parallel()
	skopeo := tool{path: systemBin(t, "skopeo"), env: []string{"TMPDIR=" + t.TempDir()}}
	s := sharedServer(t)
	repo := uniqueRepo(t, "skopeo")
	ref := "docker://" + s.ref(repo, ":v1")
	img := newTestImage(t)
	src := t.TempDir()
	img.writeOCILayout(t, src, "v1")

	skopeo.run(t, "--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false", "oci:"+src+":v1", ref)
	served, _, _ := getManifest(t, s, repo, "v1")
	expectSameBytes(t, "manifest after skopeo copy", served, img.Manifest)
	expectSameBytes(t, "layer after skopeo copy", getBlob(t, s, repo, img.LayerDigest), img.Layer)
	expectSameBytes(t, "config after skopeo copy", getBlob(t, s, repo, img.ConfigDigest), img.Config)
	expectSameBytes(t, "skopeo inspect --raw", skopeo.run(t, "--insecure-policy", "inspect", "--raw", "--tls-verify=false", ref), img.Manifest)

	layout := t.TempDir()
	skopeo.run(t, "--insecure-policy", "copy", "--preserve-digests", "--src-tls-verify=false", ref, "oci:"+layout+":v1")
	expectSameBytes(t, "manifest in the OCI layout skopeo wrote", layoutManifest(t, layout, "v1"), img.Manifest)
	expectSameBytes(t, "layer in the OCI layout skopeo wrote",
		readFile(t, filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(img.LayerDigest, "sha256:"))), img.Layer)

	dir := t.TempDir()
	skopeo.run(t, "--insecure-policy", "copy", "--preserve-digests", "--src-tls-verify=false", ref, "dir:"+dir)
	expectSameBytes(t, "manifest.json in the dir: copy", readFile(t, filepath.Join(dir, "manifest.json")), img.Manifest)
	for _, b := range [][]byte{img.Layer, img.Config} {
		expectSameBytes(t, "blob in the dir: copy", readFile(t, filepath.Join(dir, strings.TrimPrefix(digestOf(b), "sha256:"))), b)
	}
}

// TestRegctl copies an image between repositories with regctl and reads it back.
func TestRegctl(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	home := t.TempDir()
	regctl := tool{path: regctlBin(t), env: []string{"HOME=" + home, "REGCTL_CONFIG=" + filepath.Join(home, "regctl.json")}}
	regctl.run(t, "registry", "set", s.Host, "--tls", "disabled")
	if _, err := os.Stat(filepath.Join(home, "regctl.json")); err != nil {
		t.Fatalf("regctl registry set wrote no private config: %v", err)
	}
	src := uniqueRepo(t, "regctl")
	dst := src + "-copy"
	img := newTestImage(t)
	img.push(t, s, src, "v1")

	regctl.run(t, "image", "copy", s.ref(src, ":v1"), s.ref(dst, ":v1"))
	regctl.run(t, "image", "copy", s.ref(src, ":v1"), s.ref(dst, ":v2"))
	expectOutput(t, "regctl image digest", regctl.run(t, "image", "digest", s.ref(dst, ":v1")), img.Digest)
	expectLines(t, "regctl tag ls", regctl.run(t, "tag", "ls", s.ref(dst, "")), "v1", "v2")
	expectSameBytes(t, "regctl manifest get --format raw-body",
		regctl.run(t, "manifest", "get", "--format", "raw-body", s.ref(dst, ":v1")), img.Manifest)
	expectSameBytes(t, "regctl blob get", regctl.run(t, "blob", "get", s.ref(dst, ""), img.LayerDigest), img.Layer)
	served, _, _ := getManifest(t, s, dst, "v2")
	expectSameBytes(t, "manifest served for the copy", served, img.Manifest)
	expectStoredOnce(t, s, img.Layer)

	regctl.run(t, "tag", "delete", s.ref(dst, ":v2"))
	expectLines(t, "regctl tag ls after tag delete", regctl.run(t, "tag", "ls", s.ref(dst, "")), "v1")
	expectAbsent(t, s, dst+"/manifests/v2")
	again, _, _ := getManifest(t, s, dst, img.Digest)
	expectSameBytes(t, "manifest by digest after deleting one of its tags", again, img.Manifest)
}

// decodeDescriptor reads the JSON a client printed for a pushed manifest.
func decodeDescriptor(t testing.TB, what string, out []byte) descriptor {
	t.Helper()
	var d descriptor
	if err := json.Unmarshal(out, &d); err != nil || !strings.HasPrefix(d.Digest, "sha256:") {
		t.Fatalf("%s printed no descriptor (%v):\n%s", what, err, out)
	}
	return d
}

func parseTags(t testing.TB, body []byte) []string {
	t.Helper()
	var l struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("tags list: %v\n%s", err, body)
	}
	return l.Tags
}

// expectOutput fails unless a command printed exactly want (and a newline).
func expectOutput(t testing.TB, what string, out []byte, want string) {
	t.Helper()
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("%s: printed %q, want %q", what, got, want)
	}
}

// expectLines fails unless a command printed exactly these lines, in any order.
func expectLines(t testing.TB, what string, out []byte, want ...string) {
	t.Helper()
	got := strings.Fields(string(out))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: printed %q, want %q", what, got, want)
	}
}

// expectOrasPull pulls ref with oras and checks that it gets files.
func expectOrasPull(t *testing.T, oras tool, ref string, files map[string][]byte) {
	t.Helper()
	pulled := t.TempDir()
	oras.run(t, "pull", "--plain-http", "--no-tty", "-o", pulled, ref)
	got := map[string][]byte{}
	for n := range files {
		got[n] = readFile(t, filepath.Join(pulled, n))
	}
	expectFiles(t, "oras pull", got, files)
}
