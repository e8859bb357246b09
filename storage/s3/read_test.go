package s3

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
)

// TestOpenRanges checks which GETs a reader issues: serving a whole object
// costs one, a read elsewhere one ranged GET from there.
func TestOpenRanges(t *testing.T) {
	rec := &recorder{c: httpClient()}
	d, err := newDriver(t.Context(), options(testserver.S3(t)), rec)
	if err != nil {
		t.Fatal(err)
	}
	data := random(3*mib + 11)
	put(t, d, "obj", data)
	rec.take()

	r, err := d.Open(t.Context(), "obj")
	if err != nil {
		t.Fatal(err)
	}
	if end, err := r.Seek(0, io.SeekEnd); err != nil || end != int64(len(data)) {
		t.Fatalf("Seek to the end = %d, %v", end, err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if got := rec.take(); !slices.Equal(got, []string{""}) {
		t.Errorf("size, rewind, read all: GETs with ranges %q, want one GET of everything", got)
	}

	mid := int64(len(data) / 2)
	if _, err := r.Seek(mid, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, data[mid:mid+1000]) {
		t.Fatalf("read at %d: %v, or the wrong bytes", mid, err)
	}
	if _, err := r.Seek(-10, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data[len(data)-10:]) {
		t.Fatalf("read the last 10 bytes: %q, %v", got, err)
	}
	want := []string{"bytes=1572869-", "bytes=3145729-"}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("reads in the middle and at the end: GETs with ranges %q, want %q", got, want)
	}
	r.Close()

	// What the registry does with it: http.ServeContent answers a Range.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r, err := d.Open(req.Context(), "obj")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer r.Close()
		http.ServeContent(w, req, "", time.Time{}, r)
	}))
	defer srv.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	req.Header.Set("Range", "bytes=1000000-1000099")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[1000000:1000100]) {
		t.Errorf("ranged GET through ServeContent: %s, %d bytes, %v", resp.Status, len(got), err)
	}
}

// TestReaderPinsVersion: a reader that seeks after the object was replaced
// fails instead of mixing the two versions.
func TestReaderPinsVersion(t *testing.T) {
	d := newTest(t, options(testserver.S3(t)))
	put(t, d, "k", random(100<<10))
	r, err := d.Open(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	put(t, d, "k", random(100<<10))
	if _, err := r.Seek(50<<10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 10)); err == nil {
		t.Errorf("Read after the object was replaced = %d bytes, nil; want an error", n)
	}
}
