package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRestart checks that upload sessions survive a crash, that a crashed upload leaves nothing
// visible, that blobs survive a graceful restart, and that a wrong digest is refused. The subtests
// run in order on one server that they kill and restart.
func TestRestart(t *testing.T) {
	t.Parallel()
	s := startBerth(t, serverOptions{})
	repo := uniqueRepo(t, "restart")

	t.Run("CrashBetweenChunks", func(t *testing.T) {
		data := randBytes(t, 300<<10+17)
		d := digestOf(data)
		split := 100<<10 + 3

		// POST, then PATCH the first chunk.
		resp, body := httpDo(t, http.MethodPost, s.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
		expectStatus(t, resp, body, http.StatusAccepted)
		upload := location(t, s, resp)
		resp, body = httpDo(t, http.MethodPatch, upload, data[:split], map[string]string{
			"Content-Type":  "application/octet-stream",
			"Content-Range": fmt.Sprintf("0-%d", split-1),
		})
		expectStatus(t, resp, body, http.StatusAccepted)
		expectRange(t, resp, split)
		upload = location(t, s, resp)

		s.kill()
		s.restart(t)
		expectBlobsAbsent(t, s, repo, d)

		// The session is still there, at the offset the client reached.
		upload, offset := uploadStatus(t, s, upload)
		if offset != split {
			t.Fatalf("upload offset after the crash: %d, want %d", offset, split)
		}
		finishUpload(t, s, repo, upload, data, offset)

		// A graceful stop keeps it.
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
		s.restart(t)
		resp, body = httpDo(t, http.MethodHead, s.URL+"/v2/"+repo+"/blobs/"+d, nil, nil)
		expectStatus(t, resp, body, http.StatusOK)
		if resp.ContentLength != int64(len(data)) {
			t.Errorf("HEAD blob after restart: Content-Length %d, want %d", resp.ContentLength, len(data))
		}
		expectSameBytes(t, "blob after a graceful restart", getBlob(t, s, repo, d), data)
	})

	t.Run("CrashDuringPut", func(t *testing.T) {
		data := randBytes(t, 4<<20)
		d := digestOf(data)
		resp, body := httpDo(t, http.MethodPost, s.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
		expectStatus(t, resp, body, http.StatusAccepted)
		upload := location(t, s, resp)

		// A monolithic PUT whose body stops half way because the server dies.
		pr, pw := io.Pipe()
		req, err := http.NewRequest(http.MethodPut, withQuery(t, upload, "digest", d), pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(data))
		req.Header.Set("Content-Type", "application/octet-stream")
		done := make(chan error, 1)
		go func() {
			resp, err := httpClient.Do(req)
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("PUT of half a blob answered %s", resp.Status)
			}
			done <- err
		}()
		if _, err := pw.Write(data[:len(data)/2]); err != nil {
			t.Fatal(err)
		}
		s.kill()
		pw.CloseWithError(errors.New("server killed"))
		if err := <-done; err != nil && strings.HasPrefix(err.Error(), "PUT of half") {
			t.Fatal(err)
		}
		s.restart(t)
		expectBlobsAbsent(t, s, repo, d)

		// The client resumes from wherever the server says the session stands.
		upload, offset := uploadStatus(t, s, upload)
		if offset > len(data)/2 {
			t.Fatalf("upload offset after a crash half way through the PUT: %d, more than the %d bytes sent", offset, len(data)/2)
		}
		finishUpload(t, s, repo, upload, data, offset)
	})

	t.Run("MonolithicWrongDigest", func(t *testing.T) {
		data := randBytes(t, 4096)
		wrong := digestOf([]byte("not the data"))
		resp, body := httpDo(t, http.MethodPost, s.URL+"/v2/"+repo+"/blobs/uploads/?digest="+wrong, data,
			map[string]string{"Content-Type": "application/octet-stream"})
		expectOCIError(t, resp, body, http.StatusBadRequest, "DIGEST_INVALID")
		expectBlobsAbsent(t, s, repo, wrong, digestOf(data))
	})

	t.Run("PutWrongDigest", func(t *testing.T) {
		data := randBytes(t, 4096)
		wrong := digestOf([]byte("not the data either"))
		resp, body := httpDo(t, http.MethodPost, s.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
		expectStatus(t, resp, body, http.StatusAccepted)
		resp, body = httpDo(t, http.MethodPut, withQuery(t, location(t, s, resp), "digest", wrong), data,
			map[string]string{"Content-Type": "application/octet-stream"})
		expectOCIError(t, resp, body, http.StatusBadRequest, "DIGEST_INVALID")
		expectBlobsAbsent(t, s, repo, wrong, digestOf(data))
	})
}

// uploadStatus GETs an upload session: 204 with the Range received so far. It returns the URL to
// continue with and the offset ("0-0" is read as nothing received, as registries send it).
func uploadStatus(t testing.TB, s *server, upload string) (string, int) {
	t.Helper()
	resp, body := httpDo(t, http.MethodGet, upload, nil, nil)
	expectStatus(t, resp, body, http.StatusNoContent)
	if resp.Header.Get("Location") != "" {
		upload = location(t, s, resp)
	}
	var first, last int
	if _, err := fmt.Sscanf(resp.Header.Get("Range"), "%d-%d", &first, &last); err != nil || first != 0 {
		t.Fatalf("GET %s: Range %q, want 0-<last byte>", upload, resp.Header.Get("Range"))
	}
	if last == 0 {
		return upload, 0
	}
	return upload, last + 1
}

// finishUpload PATCHes data[offset:] to the session, PUTs ?digest= and checks the blob's bytes.
func finishUpload(t testing.TB, s *server, repo, upload string, data []byte, offset int) {
	t.Helper()
	d := digestOf(data)
	resp, body := httpDo(t, http.MethodPatch, upload, data[offset:], map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": fmt.Sprintf("%d-%d", offset, len(data)-1),
	})
	expectStatus(t, resp, body, http.StatusAccepted)
	expectRange(t, resp, len(data))
	resp, body = httpDo(t, http.MethodPut, withQuery(t, location(t, s, resp), "digest", d), nil, nil)
	expectStatus(t, resp, body, http.StatusCreated)
	if got := resp.Header.Get("Docker-Content-Digest"); got != d {
		t.Errorf("PUT upload ?digest=%s: Docker-Content-Digest %q", d, got)
	}
	expectSameBytes(t, "blob finished after a crash", getBlob(t, s, repo, d), data)
}

// expectRange checks the Range header of an upload response covers bytes 0..n-1.
func expectRange(t testing.TB, resp *http.Response, n int) {
	t.Helper()
	if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", n-1); got != want {
		t.Fatalf("%s %s: Range %q, want %q", resp.Request.Method, resp.Request.URL, got, want)
	}
}

// ociError is one error of the OCI error envelope.
type ociError struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// findOCIError returns the error with code from an OCI error envelope.
func findOCIError(body []byte, code string) (ociError, error) {
	var env struct {
		Errors []ociError `json:"errors"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return ociError{}, fmt.Errorf("error body is not an OCI error envelope: %v\n%s", err, truncate(body))
	}
	var codes []string
	for _, e := range env.Errors {
		if e.Code == code {
			return e, nil
		}
		codes = append(codes, e.Code)
	}
	return ociError{}, fmt.Errorf("error codes [%s], want %s\n%s", strings.Join(codes, " "), code, truncate(body))
}

// expectOCIError checks the status and that the body is an OCI error envelope holding code,
// and returns that error.
func expectOCIError(t testing.TB, resp *http.Response, body []byte, status int, code string) ociError {
	t.Helper()
	expectStatus(t, resp, body, status)
	e, err := findOCIError(body, code)
	if err != nil {
		t.Fatalf("%s %s: %v", resp.Request.Method, resp.Request.URL, err)
	}
	return e
}

// expectBlobsAbsent checks that HEAD on each digest answers 404 in repo.
func expectBlobsAbsent(t testing.TB, s *server, repo string, digests ...string) {
	t.Helper()
	for _, d := range digests {
		resp, body := httpDo(t, http.MethodHead, s.URL+"/v2/"+repo+"/blobs/"+d, nil, nil)
		expectStatus(t, resp, body, http.StatusNotFound)
	}
}

// TestAbandonedUploadsReclaimed: an upload session nobody finishes, and staging bytes a crash left
// without a session, are removed once older than --uploads.max-age.
func TestAbandonedUploadsReclaimed(t *testing.T) {
	t.Parallel()
	s := startBerth(t, serverOptions{Flags: []string{"--uploads.max-age", "1s", "--uploads.purge-interval", "100ms"}})
	repo := uniqueRepo(t, "abandoned")
	resp, body := httpDo(t, http.MethodPost, s.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	expectStatus(t, resp, body, http.StatusAccepted)
	upload := location(t, s, resp)
	resp, body = httpDo(t, http.MethodPatch, upload, randBytes(t, 4096), map[string]string{"Content-Range": "0-4095"})
	expectStatus(t, resp, body, http.StatusAccepted)
	leftover := filepath.Join(s.Data, "uploads", "0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(leftover, []byte("left by a crash"), 0o644); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, _ := httpDo(t, http.MethodGet, upload, nil, nil)
		staged, _ := os.ReadDir(filepath.Join(s.Data, "uploads"))
		if resp.StatusCode == http.StatusNotFound && len(staged) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: upload status %d, %d staging files left", resp.StatusCode, len(staged))
		}
		time.Sleep(100 * time.Millisecond) // the purge runs every 100 ms
	}
}
