package test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The user the image runs as, in its /etc/passwd and /etc/group.
const (
	imageUID    = 65532
	imagePasswd = "berth:x:65532:65532:berth:/data:/sbin/nologin\n"
	imageGroup  = "berth:x:65532:\n"
)

// TestContainer builds Berth's image FROM scratch with deploy/docker/Dockerfile.local and a static
// binary, runs it as the image's own user on a read-only root filesystem without capabilities,
// pushes an image into it with the Docker engine and pulls it back, finds the blobs in the /data
// volume owned by that user, and stops it with SIGTERM, which it must answer by exiting 0.
func TestContainer(t *testing.T) {
	t.Parallel()
	docker := tool{path: systemBin(t, "docker")}
	expectInsecureLoopback(t, docker)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(randBytes(t, 4))
	name := "berth-e2e-container-" + id
	image := name + ":test"

	// The build context Dockerfile.local documents, with a CA bundle of our own to find in the image.
	bctx := t.TempDir()
	// As the Dockerfile builds it; from a cold build cache that takes minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if err := goTool(ctx, root, nil, "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(bctx, "berth"), "./cmd/berth"); err != nil {
		t.Fatal(err)
	}
	t.Logf("static berth built in %s", time.Since(start).Round(time.Millisecond))
	caBundle := testCACert(t)
	writeFile(t, filepath.Join(bctx, "ca-certificates.crt"), caBundle)
	writeFile(t, filepath.Join(bctx, "passwd"), []byte(imagePasswd))
	writeFile(t, filepath.Join(bctx, "group"), []byte(imageGroup))
	if err := os.Mkdir(filepath.Join(bctx, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _, _ = docker.exec("rmi", "-f", image) })
	docker.run(t, "build", "--force-rm", "-f", filepath.Join(root, "deploy", "docker", "Dockerfile.local"), "-t", image, bctx)
	if user := strings.TrimSpace(string(docker.run(t, "image", "inspect", "--format", "{{.Config.User}}", image))); user != "65532:65532" {
		t.Errorf("the image's user is %q, want 65532:65532", user)
	}

	// Its defaults, as an orchestrator with a restricted security profile would run it.
	volume := name + "-data"
	t.Cleanup(func() { _, _, _ = docker.exec("volume", "rm", "-f", volume) })
	t.Cleanup(func() {
		if t.Failed() {
			out, errOut, _ := docker.exec("logs", name)
			t.Logf("container logs:\n%s%s", out, errOut)
		}
		_, _, _ = docker.exec("rm", "-f", name)
	})
	docker.run(t, "run", "-d", "--name", name, "-p", "127.0.0.1::5000", "-v", volume+":/data",
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", image)
	host := strings.TrimSpace(strings.SplitN(string(docker.run(t, "port", name, "5000/tcp")), "\n", 2)[0])
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("docker port %s 5000/tcp: %q", name, host)
	}
	s := &server{Host: host, URL: "http://" + host, kind: "berth"}
	waitForContainer(t, docker, name, s.URL+"/readyz")
	// The image's health check is berth asking itself; it must work inside
	// the image, which has no other program.
	docker.run(t, "exec", name, "/berth", "health")

	out := docker.run(t, "top", name, "-o", "pid,uid,gid,comm")
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 2 || !slices.Equal(strings.Fields(lines[1])[1:], []string{"65532", "65532", "berth"}) {
		t.Errorf("docker top: want one berth process as 65532:65532:\n%s", out)
	}
	files := untarFiles(t, bytes.NewReader(docker.run(t, "cp", name+":/etc", "-")))
	expectFiles(t, "/etc of the container", files, map[string][]byte{
		"etc/passwd": []byte(imagePasswd), "etc/group": []byte(imageGroup), "etc/ssl/certs/ca-certificates.crt": caBundle,
		// Docker's own, bind-mounted:
		"etc/hostname": files["etc/hostname"], "etc/hosts": files["etc/hosts"], "etc/resolv.conf": files["etc/resolv.conf"],
	})

	// A push and a pull through the Docker engine.
	repo := uniqueRepo(t, "container")
	ref := s.ref(repo, ":1")
	content := randBytes(t, 1024)
	rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
	writeFile(t, rootfs, tarFiles(t, map[string][]byte{"content": content}))
	t.Cleanup(func() { _, _, _ = docker.exec("rmi", "-f", ref) })
	docker.run(t, "import", rootfs, ref)
	m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindSubmatch(docker.run(t, "push", ref))
	if m == nil {
		t.Fatalf("docker push %s printed no digest", ref)
	}
	pushed := string(m[1])
	docker.run(t, "rmi", ref)
	if out := docker.run(t, "pull", ref); !bytes.Contains(out, []byte("Digest: "+pushed)) {
		t.Fatalf("docker pull %s: want Digest: %s:\n%s", ref, pushed, out)
	}
	served, digest, _ := getManifest(t, s, repo, "1")
	if digest != pushed {
		t.Fatalf("the registry serves %s for %s, docker pushed %s", digest, ref, pushed)
	}
	mf := parseManifest(t, served)
	if mf.Config == nil || len(mf.Layers) != 1 {
		t.Fatalf("pushed manifest: want a config and one layer: %s", served)
	}

	// The bytes are in the volume, owned by the image's user.
	data := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(docker.run(t, "cp", name+":/data", "-")))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data[strings.TrimPrefix(hdr.Name, "data/")] = hdr
	}
	want := []string{"berth.db"}
	for _, d := range append([]descriptor{*mf.Config}, mf.Layers...) {
		hex := strings.TrimPrefix(d.Digest, "sha256:")
		want = append(want, "blobs/sha256/"+hex[:2]+"/"+hex)
	}
	for _, p := range want {
		hdr := data[p]
		switch {
		case hdr == nil:
			t.Errorf("/data/%s is not in the volume", p)
		case hdr.Uid != imageUID || hdr.Gid != imageUID:
			t.Errorf("/data/%s is owned by %d:%d, want %d:%d", p, hdr.Uid, hdr.Gid, imageUID, imageUID)
		}
	}

	docker.run(t, "stop", "--time", "30", name)
	if code := strings.TrimSpace(string(docker.run(t, "inspect", "--format", "{{.State.ExitCode}}", name))); code != "0" {
		t.Errorf("berth exited %s after docker stop, want 0", code)
	}
}

// waitForContainer polls url until it answers 200, failing if the container exits first.
func waitForContainer(t *testing.T, docker tool, name, url string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if state := strings.TrimSpace(string(docker.run(t, "inspect", "--format", "{{.State.Status}}", name))); state != "running" {
			t.Fatalf("container %s is %s before GET %s answered", name, state, url)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: not 200 after %s (last: %s)", url, readyTimeout, statusOrErr(resp, err))
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not a wait for a condition
	}
}

// testCACert returns a self-signed CA certificate in PEM, a CA bundle of one.
func testCACert(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Berth e2e CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestContainerDockerfiles: the repository's Dockerfile and deploy/docker/Dockerfile.local make the
// same runtime image; their runtime stages differ only in where COPY takes files from.
func TestContainerDockerfiles(t *testing.T) {
	t.Parallel()
	full := runtimeStage(t, "../Dockerfile")
	local := runtimeStage(t, "../deploy/docker/Dockerfile.local")
	if !slices.Equal(full, local) {
		t.Errorf("the runtime stages differ:\nDockerfile:\n  %s\ndeploy/docker/Dockerfile.local:\n  %s",
			strings.Join(full, "\n  "), strings.Join(local, "\n  "))
	}
	for _, want := range []string{"FROM scratch AS runtime", "USER 65532:65532", "VOLUME /data", `ENTRYPOINT ["/berth"]`} {
		if !slices.Contains(full, want) {
			t.Errorf("the runtime stage has no %s:\n  %s", want, strings.Join(full, "\n  "))
		}
	}
}

// runtimeStage returns the instructions of a Dockerfile's last stage, one a line, comments and
// continuations removed, with each COPY reduced to its --chown and destination.
func runtimeStage(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stage []string
	joined := strings.ReplaceAll(string(b), "\\\n", " ")
	for line := range strings.SplitSeq(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch strings.ToUpper(f[0]) {
		case "FROM":
			stage = nil
		case "COPY":
			var chown []string
			for _, a := range f[1 : len(f)-1] {
				if strings.HasPrefix(a, "--chown=") {
					chown = append(chown, a)
				}
			}
			line = strings.Join(slices.Concat([]string{"COPY"}, chown, f[len(f)-1:]), " ")
		}
		stage = append(stage, strings.Join(strings.Fields(line), " "))
	}
	return stage
}
