package s3

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/storage"
)

// faulty answers 503 SlowDown, without reaching the server, to the next
// fail requests that match.
type faulty struct {
	mu    sync.Mutex
	match func(*http.Request) bool
	fail  int
	c     aws.HTTPClient
}

func (f *faulty) Do(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	hit := f.match != nil && f.fail > 0 && f.match(req)
	if hit {
		f.fail--
	}
	f.mu.Unlock()
	if !hit {
		return f.c.Do(req)
	}
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`
	return &http.Response{
		Status: "503 Service Unavailable", StatusCode: http.StatusServiceUnavailable,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/xml"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

func (f *faulty) inject(n int, match func(*http.Request) bool) {
	f.mu.Lock()
	f.fail, f.match = n, match
	f.mu.Unlock()
}

func isUploadPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}

func isComplete(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
}

// TestTransientErrors: the SDK retries what S3 fails transiently; a failure
// that outlasts the attempts is an error, and leaves nothing visible.
func TestTransientErrors(t *testing.T) {
	f := &faulty{c: httpClient()}
	o := options(testserver.S3(t))
	o.MaxAttempts = 3
	d, err := newDriver(t.Context(), o, f)
	if err != nil {
		t.Fatal(err)
	}
	data := random(11 * mib)

	f.inject(2, isUploadPart) // each of the first two part uploads fails once
	w, err := d.Writer(t.Context(), "retried", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write with transient errors: %v", err)
	}
	if err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit with transient errors: %v", err)
	}
	if got := get(t, d, "retried"); !bytes.Equal(got, data) {
		t.Error("object written through retries reads back other bytes")
	}

	f.inject(3, isComplete) // as many failures as attempts
	w, err = d.Writer(t.Context(), "failed", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context()); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Commit through persistent throttling = %v, want an error matching storage.ErrUnavailable", err)
	}
	if _, err := d.Stat(t.Context(), "failed"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after a failed Commit = %v, want ErrNotFound", err)
	}
	if err := w.Cancel(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := listedKeys(t, d, "failed"); got != "" {
		t.Errorf("List after Cancel = %s", got)
	}
}
