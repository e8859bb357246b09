package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// authMethods are the --auth.method values that ask for credentials.
var authMethods = []string{"basic", "token"}

// TestAuthDocker logs the local Docker engine in to Berth (with HTTP basic authentication, and with
// bearer tokens from the built-in issuer), pushes and pulls; without credentials, with a wrong
// password, after logging out, or as a user who may only pull, pushes are refused.
func TestAuthDocker(t *testing.T) {
	t.Parallel()
	docker := tool{path: systemBin(t, "docker")}
	expectInsecureLoopback(t, docker)
	rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
	writeFile(t, rootfs, tarFiles(t, map[string][]byte{"etc/motd": []byte("pushed with credentials\n")}))

	for _, method := range authMethods {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			a := startAuthBerth(t, authOptions{Method: method, Users: []string{"writer", "reader"}, Policy: `
rules:
  - {users: [writer], repositories: ["e2e/*"], actions: [pull, push]}
  - {users: [reader], repositories: ["e2e/*"], actions: [pull]}
`})
			repo := uniqueRepo(t, "docker-"+method)
			ref, other := a.ref(repo, ":v1"), a.ref(repo, ":v2")
			t.Cleanup(func() { _, _, _ = docker.exec("rmi", "-f", ref, other) })
			docker.run(t, "import", rootfs, ref)
			docker.run(t, "tag", ref, other)

			// Each user has a docker client configuration of its own; nothing global changes.
			writer := dockerClient{tool: docker, config: t.TempDir()}
			reader := dockerClient{tool: docker, config: t.TempDir()}

			writer.refused(t, "push without credentials", "push", ref)
			expectAbsent(t, a.as(t, "writer"), repo+"/manifests/v1")

			writer.login(t, a, "writer", "wrong-"+a.passwords["writer"], false)
			writer.login(t, a, "writer", a.passwords["writer"], true)
			out := writer.run(t, "push", ref)
			m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("docker push printed no digest:\n%s", out)
			}
			pushed := string(m[1])
			if _, served, _ := getManifest(t, a.as(t, "reader"), repo, "v1"); served != pushed {
				t.Fatalf("docker push reported %s, the registry serves %s", pushed, served)
			}

			reader.login(t, a, "reader", a.passwords["reader"], true)
			if out := reader.refused(t, "push by a user who may only pull", "push", other); !bytes.Contains(bytes.ToLower(out), []byte("denied")) {
				t.Errorf("docker push by reader: want the registry's denied, got:\n%s", out)
			}
			expectAbsent(t, a.as(t, "writer"), repo+"/manifests/v2")
			docker.run(t, "rmi", ref)
			if out := reader.run(t, "pull", ref); !bytes.Contains(out, []byte("Digest: "+pushed)) {
				t.Fatalf("docker pull as reader printed no Digest: %s:\n%s", pushed, out)
			}

			if out := writer.run(t, "logout", a.Host); !bytes.Contains(out, []byte("Removing login credentials")) {
				t.Errorf("docker logout printed:\n%s", out)
			}
			writer.refused(t, "push after logout", "push", other)
			expectAbsent(t, a.as(t, "writer"), repo+"/manifests/v2")
			docker.run(t, "rmi", ref)
			writer.refused(t, "pull after logout", "pull", ref)
			if _, _, err := docker.exec("image", "inspect", ref); err == nil {
				t.Errorf("%s is in the engine after a refused pull", ref)
			}
		})
	}
}

// dockerClient is the docker command with a client configuration directory of its own.
type dockerClient struct {
	tool
	config string
}

func (d dockerClient) run(t testing.TB, args ...string) []byte {
	t.Helper()
	return d.tool.run(t, append([]string{"--config", d.config}, args...)...)
}

// refused runs a docker command that must fail, and returns what it printed.
func (d dockerClient) refused(t testing.TB, what string, args ...string) []byte {
	t.Helper()
	out, errOut, err := d.tool.exec(append([]string{"--config", d.config}, args...)...)
	all := append(out, errOut...)
	if err == nil {
		t.Fatalf("docker %s (%s) succeeded:\n%s", strings.Join(args, " "), what, all)
	}
	return all
}

// login runs docker login with the password on standard input; ok says whether it must succeed.
// Either way, the configuration holds credentials for the registry exactly when it did.
func (d dockerClient) login(t testing.TB, a *authServer, user, password string, ok bool) {
	t.Helper()
	tl := d.tool
	tl.stdin = []byte(password + "\n")
	out, errOut, err := tl.exec("--config", d.config, "login", a.Host, "-u", user, "--password-stdin")
	all := append(out, errOut...)
	switch {
	case ok && (err != nil || !bytes.Contains(all, []byte("Login Succeeded"))):
		t.Fatalf("docker login as %s: %v\n%s", user, err, all)
	case !ok && err == nil:
		t.Fatalf("docker login as %s with a wrong password succeeded:\n%s", user, all)
	case !ok && !bytes.Contains(bytes.ToLower(all), []byte("unauthorized")):
		t.Errorf("docker login as %s with a wrong password: want unauthorized, got:\n%s", user, all)
	}
	var conf struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if b, err := readIfExists(filepath.Join(d.config, "config.json")); err != nil {
		t.Fatal(err)
	} else if len(b) > 0 {
		if err := json.Unmarshal(b, &conf); err != nil {
			t.Fatalf("docker's config.json: %v\n%s", err, b)
		}
	}
	if _, saved := conf.Auths[a.Host]; saved != ok {
		t.Fatalf("after docker login as %s (want success: %v), config.json has credentials for %s: %v", user, ok, a.Host, saved)
	}
}

// TestAuthClients pushes and pulls with crane, skopeo and oras given credentials, under basic and
// token authentication; a wrong password fails.
func TestAuthClients(t *testing.T) {
	t.Parallel()
	clients := []struct {
		name string
		run  func(t *testing.T, a *authServer)
	}{
		{"crane", authCrane},
		{"skopeo", authSkopeo},
		{"oras", authOras},
	}
	for _, method := range authMethods {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			a := startAuthBerth(t, authOptions{Method: method, Users: []string{"ci"}})
			for _, c := range clients {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, a)
				})
			}
		})
	}
}

// authCrane: crane auth login, push an OCI layout, copy it to another repository, pull it back.
func authCrane(t *testing.T, a *authServer) {
	crane := tool{path: craneBin(t), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
	img := newTestImage(t)
	layout := t.TempDir()
	img.writeOCILayout(t, layout, "v1")
	repo := uniqueRepo(t, "crane")
	ref, copyRef := a.ref(repo, ":v1"), a.ref(repo+"-copy", ":v1")

	if _, _, err := crane.exec("push", "--insecure", layout, ref); err == nil {
		t.Fatal("crane push without credentials succeeded")
	}
	crane.run(t, "auth", "login", a.Host, "-u", "ci", "-p", a.passwords["ci"])
	crane.run(t, "push", "--insecure", layout, ref)
	expectOutput(t, "crane digest", crane.run(t, "digest", "--insecure", ref), img.Digest)
	served, _, _ := getManifest(t, a.as(t, "ci"), repo, "v1")
	expectSameBytes(t, "manifest crane pushed", served, img.Manifest)

	crane.run(t, "copy", "--insecure", ref, copyRef)
	expectOutput(t, "crane digest of the copy", crane.run(t, "digest", "--insecure", copyRef), img.Digest)
	pulled := t.TempDir()
	crane.run(t, "pull", "--insecure", "--format", "oci", copyRef, pulled)
	expectSameBytes(t, "manifest crane pulled", layoutManifest(t, pulled, ""), img.Manifest)
	expectSameBytes(t, "layer crane pulled",
		readFile(t, filepath.Join(pulled, "blobs", "sha256", strings.TrimPrefix(img.LayerDigest, "sha256:"))), img.Layer)

	wrong := tool{path: crane.path, env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
	wrong.run(t, "auth", "login", a.Host, "-u", "ci", "-p", "wrong-"+a.passwords["ci"])
	expectClientRefused(t, "crane digest with a wrong password", wrong, "digest", "--insecure", ref)
}

// authSkopeo: copy an OCI layout into the registry and back with --dest-creds and --src-creds.
func authSkopeo(t *testing.T, a *authServer) {
	skopeo := tool{path: systemBin(t, "skopeo"), env: []string{
		"TMPDIR=" + t.TempDir(),
		"REGISTRY_AUTH_FILE=" + filepath.Join(t.TempDir(), "auth.json"), // none: only the flags' credentials
	}}
	img := newTestImage(t)
	src := t.TempDir()
	img.writeOCILayout(t, src, "v1")
	repo := uniqueRepo(t, "skopeo")
	ref := "docker://" + a.ref(repo, ":v1")
	creds := "ci:" + a.passwords["ci"]

	expectClientRefused(t, "skopeo copy without credentials", skopeo,
		"--insecure-policy", "copy", "--dest-tls-verify=false", "oci:"+src+":v1", ref)
	skopeo.run(t, "--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds, "oci:"+src+":v1", ref)
	served, _, _ := getManifest(t, a.as(t, "ci"), repo, "v1")
	expectSameBytes(t, "manifest skopeo pushed", served, img.Manifest)
	expectSameBytes(t, "skopeo inspect --raw",
		skopeo.run(t, "--insecure-policy", "inspect", "--raw", "--tls-verify=false", "--creds", creds, ref), img.Manifest)

	layout := t.TempDir()
	skopeo.run(t, "--insecure-policy", "copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds, ref, "oci:"+layout+":v1")
	expectSameBytes(t, "manifest skopeo pulled", layoutManifest(t, layout, "v1"), img.Manifest)
	expectSameBytes(t, "layer skopeo pulled",
		readFile(t, filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(img.LayerDigest, "sha256:"))), img.Layer)

	expectClientRefused(t, "skopeo inspect with a wrong password", skopeo,
		"--insecure-policy", "inspect", "--raw", "--tls-verify=false", "--creds", "ci:wrong-"+a.passwords["ci"], ref)
}

// authOras: oras login, push two files, pull them back; a wrong password fails at login and pull.
func authOras(t *testing.T, a *authServer) {
	work := t.TempDir()
	oras := tool{path: orasBin(t), dir: work, env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
	files := map[string][]byte{
		"readme.txt":  []byte("pushed by oras with credentials\n"),
		"payload.bin": randBytes(t, 100<<10+3),
	}
	for n, b := range files {
		writeFile(t, filepath.Join(work, n), b)
	}
	repo := uniqueRepo(t, "oras")
	ref := a.ref(repo, ":v1")
	push := []string{"push", "--plain-http", "--no-tty", "--format", "json", ref, "readme.txt:text/plain", "payload.bin:application/octet-stream"}

	expectClientRefused(t, "oras push without credentials", oras, push...)
	wrong := oras
	wrong.stdin = []byte("wrong-" + a.passwords["ci"] + "\n")
	expectClientRefused(t, "oras login with a wrong password", wrong, "login", "--plain-http", "-u", "ci", "--password-stdin", a.Host)
	expectClientRefused(t, "oras pull with a wrong password", oras,
		"pull", "--plain-http", "--no-tty", "-u", "ci", "-p", "wrong-"+a.passwords["ci"], "-o", t.TempDir(), ref)

	login := oras
	login.stdin = []byte(a.passwords["ci"] + "\n")
	login.run(t, "login", "--plain-http", "-u", "ci", "--password-stdin", a.Host)
	pushed := decodeDescriptor(t, "oras push", oras.run(t, push...))
	served, digest, _ := getManifest(t, a.as(t, "ci"), repo, "v1")
	if digest != pushed.Digest {
		t.Fatalf("oras pushed %s, the registry serves %s", pushed.Digest, digest)
	}
	expectSameBytes(t, "oras manifest fetch", oras.run(t, "manifest", "fetch", "--plain-http", ref), served)

	expectOrasPull(t, oras, ref, files)
}

// expectClientRefused runs a client command that must fail because the registry refused it.
func expectClientRefused(t testing.TB, what string, tl tool, args ...string) {
	t.Helper()
	out, errOut, err := tl.exec(args...)
	if err == nil {
		t.Fatalf("%s succeeded:\n%s%s", what, out, errOut)
	}
	all := strings.ToLower(string(append(out, errOut...)))
	if !slices.ContainsFunc([]string{"unauthorized", "401", "authentication required", "credential not found", "denied"}, func(s string) bool {
		return strings.Contains(all, s)
	}) {
		t.Errorf("%s failed, but not for want of credentials: %v\n%s", what, err, all)
	}
}

// TestAuthConformance runs the OCI conformance suite, every workflow, with credentials: against a
// server asking for HTTP basic authentication and one asking for bearer tokens.
func TestAuthConformance(t *testing.T) {
	t.Parallel()
	for _, method := range authMethods {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			a := startAuthBerth(t, authOptions{Method: method, Users: []string{"conformance"}})
			runConformance(t, a.Host, a.dir, "OCI_USERNAME=conformance", "OCI_PASSWORD="+a.passwords["conformance"])
		})
	}
}

// readIfExists reads a file, nil if it does not exist.
func readIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
