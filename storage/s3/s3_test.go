package s3

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := testserver.StopS3(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the S3 server:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// options are a driver's Options for srv's bucket.
func options(srv testserver.S3Server) Options {
	return Options{
		Bucket:    srv.Bucket,
		Region:    srv.Region,
		Endpoint:  srv.Endpoint,
		PathStyle: true,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		PartSize:  MinPartSize,
	}
}

// newTest returns a driver over o, failing the test if it cannot.
func newTest(t *testing.T, o Options) *Driver {
	t.Helper()
	d, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestContract(t *testing.T) {
	t.Run("no prefix", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Driver { return newTest(t, options(testserver.S3(t))) })
	})
	t.Run("prefix", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Driver {
			o := options(testserver.S3(t))
			o.Prefix = "some/registry/"
			return newTest(t, o)
		})
	})
}

func TestCheck(t *testing.T) {
	o := options(testserver.S3(t))
	if err := newTest(t, o).Check(t.Context()); err != nil {
		t.Errorf("Check: %v", err)
	}
	o.Bucket = "missing"
	if err := newTest(t, o).Check(t.Context()); err == nil {
		t.Error("Check of a missing bucket succeeded")
	}
	o.Bucket, o.SecretKey = options(testserver.S3(t)).Bucket, "wrong"
	if err := newTest(t, o).Check(t.Context()); err == nil {
		t.Error("Check with a wrong secret succeeded")
	}
}

func TestOptions(t *testing.T) {
	bad := []Options{
		{},
		{Bucket: "b", PartSize: MinPartSize - 1},
		{Bucket: "b", SSE: "rot13"},
		{Bucket: "b", SSE: "AES256", SSEKMSKeyID: "key"},
	}
	for _, o := range bad {
		if _, err := New(t.Context(), o); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", o)
		}
	}
	d, err := New(t.Context(), Options{Bucket: "b", Prefix: "/p/q/", AccessKey: "a", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if d.partSize != DefaultPartSize || d.path("k") != "p/q/k" {
		t.Errorf("defaults: part size %d, path %q", d.partSize, d.path("k"))
	}
}

// put commits data under key.
func put(t *testing.T, d storage.Driver, key string, data []byte) {
	t.Helper()
	w, err := d.Writer(t.Context(), key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// get reads the object at key whole.
func get(t *testing.T, d storage.Driver, key string) []byte {
	t.Helper()
	r, err := d.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return b
}

// random returns n bytes that differ from any other call's.
func random(n int) []byte {
	b := make([]byte, n)
	x := uint64(time.Now().UnixNano()) | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 32)
	}
	return b
}

func TestMove(t *testing.T) {
	srv := testserver.S3(t)
	d := newTest(t, options(srv))
	small := random(300 << 10)
	put(t, d, "uploads/a", small)
	if err := d.Move(t.Context(), "uploads/a", "blobs/a"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(get(t, d, "blobs/a"), small) {
		t.Error("moved object has other bytes")
	}
	if _, err := d.Stat(t.Context(), "uploads/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("source after Move: %v, want ErrNotFound", err)
	}

	// Larger than one CopyObject allows (made small here): UploadPartCopy.
	d.maxCopy, d.copyPart = 1<<20, MinPartSize
	big := random(12<<20 + 3)
	put(t, d, "uploads/b", big)
	if err := d.Move(t.Context(), "uploads/b", "blobs/b"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(get(t, d, "blobs/b"), big) {
		t.Error("object moved in parts has other bytes")
	}
	if _, err := d.Stat(t.Context(), "uploads/b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("source after Move: %v, want ErrNotFound", err)
	}
	out, err := srv.Client().HeadObject(t.Context(), &awss3.HeadObjectInput{Bucket: &srv.Bucket, Key: aws.String("blobs/b"), PartNumber: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if n := aws.ToInt32(out.PartsCount); n != 3 {
		t.Errorf("object moved in parts has %d parts, want 3", n)
	}
	if err := d.Move(t.Context(), "uploads/none", "blobs/c"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Move of a missing object = %v, want ErrNotFound", err)
	}
}

func TestPresignGet(t *testing.T) {
	d := newTest(t, options(testserver.S3(t)))
	data := random(100 << 10)
	put(t, d, "blobs/x", data)
	url, err := d.PresignGet(t.Context(), "blobs/x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Errorf("GET presigned URL: %s, %d bytes, %v; want 200 and the object", resp.Status, len(got), err)
	}
	// The signature covers the key: another key's URL does not open this one.
	url, err = d.PresignGet(t.Context(), "blobs/missing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET presigned URL of a missing key: %s, want 404", resp.Status)
	}
}

// recorder is an HTTP client that remembers the Range of every GET.
type recorder struct {
	mu     sync.Mutex
	ranges []string
	c      aws.HTTPClient
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && req.URL.Query().Get("list-type") == "" {
		r.mu.Lock()
		r.ranges = append(r.ranges, req.Header.Get("Range"))
		r.mu.Unlock()
	}
	return r.c.Do(req)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.ranges
	r.ranges = nil
	return got
}

// TestListPending: a writer's multipart upload in progress is listed as
// pending, a committed object is not; the orphan scan relies on it.
func TestListPending(t *testing.T) {
	d := newTest(t, options(testserver.S3(t)))
	put(t, d, "blobs/done", []byte("committed"))
	w, err := d.Writer(t.Context(), "blobs/open", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(random(MinPartSize + 1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pending := map[string]bool{}
	if err := d.List(t.Context(), "blobs/", func(o storage.Object) error {
		pending[o.Key] = o.Pending
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"blobs/done": false, "blobs/open": true}; !maps.Equal(pending, want) {
		t.Errorf("List: pending %v, want %v", pending, want)
	}
}
