package test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const helloSource = `package main

import "fmt"

func main() { fmt.Println("hello from a Berth-served image") }
`

// TestDocker pushes an image built from a static binary with the local Docker engine, pushes it again
// to a second repository (a cross-repository mount), is refused when pushing another image under
// its numbered tag, removes it, pulls it back and runs it.
func TestDocker(t *testing.T) {
	t.Parallel()
	docker := tool{path: systemBin(t, "docker")}
	expectInsecureLoopback(t, docker)
	s := sharedServer(t)

	// A static binary in a one-file root filesystem.
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"))
	writeFile(t, filepath.Join(src, "main.go"), []byte(helloSource))
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if err := goTool(ctx, src, nil, "build", "-trimpath", "-o", "hello", "."); err != nil {
		t.Fatal(err)
	}
	hello := readFile(t, filepath.Join(src, "hello"))
	rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
	writeFile(t, rootfs, tarFiles(t, map[string][]byte{"hello": hello}))

	repo := uniqueRepo(t, "hello")
	ref := s.ref(repo, ":1")
	t.Cleanup(func() { _, _, _ = docker.exec("rmi", "-f", ref) })
	docker.run(t, "import", "--change", `ENTRYPOINT ["/hello"]`, rootfs, ref)

	out := docker.run(t, "push", ref)
	m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size: (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("docker push printed no digest:\n%s", out)
	}
	pushed := string(m[1])
	served, _, mediaType := getManifest(t, s, repo, "1")
	if got := digestOf(served); got != pushed {
		t.Fatalf("docker push reported %s, the registry serves %s for %s", pushed, got, ref)
	}
	if mediaType != mtDockerManifest && mediaType != mtOCIManifest {
		t.Errorf("manifest Content-Type %q", mediaType)
	}
	mf := parseManifest(t, served)
	if len(mf.Layers) != 1 {
		t.Fatalf("pushed manifest has %d layers: %s", len(mf.Layers), served)
	}
	layer := gunzip(t, getBlob(t, s, repo, mf.Layers[0].Digest))
	expectFiles(t, "layer docker pushed", untarFiles(t, bytes.NewReader(layer)), map[string][]byte{"hello": hello})

	// The same image in another repository: the engine mounts the layer from the first one.
	mirror := s.ref(repo+"-mirror", ":1")
	t.Cleanup(func() { _, _, _ = docker.exec("rmi", "-f", mirror) })
	docker.run(t, "tag", ref, mirror)
	out = docker.run(t, "push", mirror)
	if !bytes.Contains(out, []byte("Mounted from "+repo)) || !bytes.Contains(out, []byte("digest: "+pushed)) {
		t.Fatalf("docker push %s: want the layer mounted from %s and digest %s:\n%s", mirror, repo, pushed, out)
	}
	mirrored, _, _ := getManifest(t, s, repo+"-mirror", "1")
	expectSameBytes(t, "manifest pushed to the second repository", mirrored, served)
	docker.run(t, "rmi", mirror)

	// Numbered tags are immutable: another image pushed as :1 is refused with the registry's
	// reason, and :1 keeps its image (the pull below checks the digest).
	docker.run(t, "import", "--change", `ENTRYPOINT ["/hello", "again"]`, rootfs, ref)
	out, errOut, err := docker.exec("push", ref)
	if all := append(out, errOut...); err == nil || !bytes.Contains(all, []byte("denied")) || !bytes.Contains(all, []byte("immutable")) {
		t.Fatalf("docker push of another image as %s: err %v, want denied as immutable:\n%s", ref, err, all)
	}

	docker.run(t, "rmi", ref)
	if _, _, err := docker.exec("image", "inspect", ref); err == nil {
		t.Fatalf("%s is still in the engine after docker rmi", ref)
	}
	out = docker.run(t, "pull", ref)
	if !bytes.Contains(out, []byte("Digest: "+pushed)) {
		t.Fatalf("docker pull printed no Digest: %s:\n%s", pushed, out)
	}
	var repoDigests []string
	if err := json.Unmarshal(docker.run(t, "image", "inspect", "--format", "{{json .RepoDigests}}", ref), &repoDigests); err != nil {
		t.Fatal(err)
	}
	if want := s.Host + "/" + repo + "@" + pushed; !slices.Contains(repoDigests, want) {
		t.Errorf("RepoDigests after pull: %v, want %s", repoDigests, want)
	}

	name := "berth-e2e-" + strings.ReplaceAll(strings.TrimPrefix(repo, "e2e/"), "/", "-")
	t.Cleanup(func() { _, _, _ = docker.exec("rm", "-f", name) })
	out = docker.run(t, "run", "--rm", "--name", name, "--network", "none", ref)
	expectOutput(t, "docker run", out, "hello from a Berth-served image")
}

// expectInsecureLoopback checks the engine answers and lets plain HTTP reach registries on 127.0.0.0/8.
func expectInsecureLoopback(t *testing.T, docker tool) {
	t.Helper()
	start := time.Now()
	out, errOut, err := docker.exec("info", "--format", "{{json .RegistryConfig}}")
	if err != nil {
		t.Fatalf("the Docker engine does not answer (is dockerd running?): %v\n%s%s", err, out, errOut)
	}
	var conf struct {
		InsecureRegistryCIDRs []string
	}
	if err := json.Unmarshal(out, &conf); err != nil {
		t.Fatalf("docker info: %v\n%s", err, out)
	}
	if !slices.Contains(conf.InsecureRegistryCIDRs, "127.0.0.0/8") {
		t.Fatalf("the Docker engine's insecure registries are %v: it would refuse plain HTTP on 127.0.0.1; add 127.0.0.0/8 to insecure-registries in /etc/docker/daemon.json",
			conf.InsecureRegistryCIDRs)
	}
	t.Logf("docker info in %s: insecure registries %v", time.Since(start).Round(time.Millisecond), conf.InsecureRegistryCIDRs)
}
