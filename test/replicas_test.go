package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
)

// TestReplicas runs three Berth processes on one S3 bucket and one PostgreSQL database behind
// nginx (round robin), as DESIGN.md §Scale describes, and checks that they behave as one registry.
func TestReplicas(t *testing.T) {
	t.Parallel()
	s3 := testserver.S3(t)
	dsn := testserver.Postgres(t)
	// The documented HA configuration, with this test's servers put in by flags.
	haConfig, err := filepath.Abs("../deploy/berth-ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	flags := append([]string{"--config", haConfig, "--database", dsn}, s3Flags(s3)...)
	var replicas []*server
	var hosts []string
	for i := range 3 {
		r := startBerth(t, serverOptions{Name: fmt.Sprintf("replica%d", i), Flags: flags})
		replicas = append(replicas, r)
		hosts = append(hosts, r.Host)
	}
	lb := &server{Host: startNginx(t, hosts)}
	lb.URL = "http://" + lb.Host

	t.Run("Conformance", func(t *testing.T) {
		runConformance(t, lb.Host, t.TempDir())
	})

	t.Run("ChunksOnEveryReplica", func(t *testing.T) {
		repo := uniqueRepo(t, "replicas-chunked")
		data := randBytes(t, 3*(6<<20)+12345) // chunks larger than a part, ending mid-part
		d := digestOf(data)
		resp, body := httpDo(t, http.MethodPost, replicas[0].URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
		expectStatus(t, resp, body, http.StatusAccepted)
		path := resp.Header.Get("Location")
		chunk := len(data) / 3
		for i := range 3 {
			end := min(len(data), (i+1)*chunk)
			if i == 2 {
				end = len(data)
			}
			r := replicas[(i+1)%3] // each chunk through another replica
			resp, body = httpDo(t, http.MethodPatch, r.URL+path, data[i*chunk:end], map[string]string{
				"Content-Range": fmt.Sprintf("%d-%d", i*chunk, end-1),
			})
			expectStatus(t, resp, body, http.StatusAccepted)
			expectRange(t, resp, end)
			path = resp.Header.Get("Location")
		}
		resp, body = httpDo(t, http.MethodPut, replicas[0].URL+path+"?digest="+d, nil, nil)
		expectStatus(t, resp, body, http.StatusCreated)
		for _, r := range replicas {
			expectSameBytes(t, "blob read from "+r.Host, getBlob(t, r, repo, d), data)
		}
	})

	t.Run("PushHerePullThere", func(t *testing.T) {
		crane := tool{path: craneBin(t), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
		repo := uniqueRepo(t, "replicas-crane")
		img := newTestImage(t)
		img.push(t, replicas[1], repo, "v1")
		for _, r := range replicas {
			out := crane.run(t, "digest", "--insecure", r.ref(repo, ":v1"))
			expectOutput(t, "crane digest via "+r.Host, out, img.Digest)
		}
		layout := t.TempDir()
		crane.run(t, "pull", "--insecure", "--format", "oci", replicas[2].ref(repo, ":v1"), layout)
		served, _, _ := getManifest(t, replicas[0], repo, "v1")
		expectSameBytes(t, "manifest pulled through another replica", layoutManifest(t, layout, ""), served)
	})

	t.Run("RedirectToS3", func(t *testing.T) {
		r := startBerth(t, serverOptions{Name: "redirecting", Flags: append(flags, "--storage.redirect", "1m")})
		repo := uniqueRepo(t, "replicas-redirect")
		data := randBytes(t, 1<<20)
		d := pushBlob(t, r, repo, data)
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noFollow.Get(r.URL + "/v2/" + repo + "/blobs/" + d)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, s3.Endpoint) {
			t.Fatalf("blob GET: %d, Location %q; want 307 to %s", resp.StatusCode, loc, s3.Endpoint)
		}
		// A client following the redirect gets the bytes from S3; another repository still gets 404.
		expectSameBytes(t, "blob fetched through the redirect", getBlob(t, r, repo, d), data)
		expectAbsent(t, r, repo+"-other/blobs/"+d)
		crane := tool{path: craneBin(t), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
		img := newTestImage(t)
		img.push(t, r, repo, "v1")
		exported := crane.run(t, "export", "--insecure", r.ref(repo, ":v1"), "-")
		expectFiles(t, "image pulled through redirects", untarFiles(t, bytes.NewReader(exported)), img.Files)
	})

	t.Run("KillDuringPush", func(t *testing.T) {
		repo := uniqueRepo(t, "replicas-kill")
		data := randBytes(t, 24<<20)
		d := digestOf(data)
		resp, body := httpDo(t, http.MethodPost, lb.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
		expectStatus(t, resp, body, http.StatusAccepted)
		path := resp.Header.Get("Location")

		// Stream the blob to replica 1 and kill it (SIGKILL) half way through the request.
		victim := replicas[1]
		pr, pw := io.Pipe()
		req, err := http.NewRequest(http.MethodPatch, victim.URL+path, pr)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("PATCH to the killed replica answered %d", resp.StatusCode)
			}
			done <- err
		}()
		if _, err := pw.Write(data[:len(data)/2]); err != nil {
			t.Fatal(err)
		}
		victim.kill()
		pw.CloseWithError(errors.New("replica killed"))
		if err := <-done; err == nil {
			t.Fatal("the PATCH cut short by the kill succeeded")
		}

		// The client retries through the balancer: asks where the upload stands, sends the rest.
		var offset int
		deadline := time.Now().Add(time.Minute)
		for {
			resp, body = httpDo(t, http.MethodGet, lb.URL+path, nil, nil)
			if resp.StatusCode == http.StatusNoContent {
				path, offset = uploadStatus(t, lb, lb.URL+path)
				break
			}
			if time.Now().After(deadline) { // the balancer may first try the dead replica
				t.Fatalf("upload status through the balancer: %d %s", resp.StatusCode, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		finishUpload(t, lb, repo, path, data, offset)
		for _, r := range []*server{replicas[0], replicas[2]} {
			expectSameBytes(t, "blob via "+r.Host, getBlob(t, r, repo, d), data)
		}

		// And a whole image pushed through the balancer with one replica dead.
		crane := tool{path: craneBin(t), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
		img := newTestImage(t)
		img.push(t, lb, repo, "after-kill")
		expectOutput(t, "crane digest through the balancer", crane.run(t, "digest", "--insecure", lb.ref(repo, ":after-kill")), img.Digest)
	})
}

// s3Flags are the flags that put a server's blobs in the test S3 server's bucket.
func s3Flags(s3 testserver.S3Server) []string {
	return []string{
		"--storage.driver", "s3",
		"--storage.s3.endpoint", s3.Endpoint,
		"--storage.s3.bucket", s3.Bucket,
		"--storage.s3.region", s3.Region,
		"--storage.s3.access-key", s3.AccessKey,
		"--storage.s3.secret-key", s3.SecretKey,
		"--storage.s3.path-style",
		"--storage.s3.part-size", "5242880", // the smallest S3 allows: multipart from 5 MiB
	}
}
