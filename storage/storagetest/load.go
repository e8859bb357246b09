package storagetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/berthhq/berth/storage"
)

func testConcurrentWriters(t *testing.T, d storage.Driver) {
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			key := fmt.Sprintf("concurrent/%02d/obj", i)
			data := pattern(64<<10+i, byte(i))
			w, err := d.Writer(t.Context(), key, 0)
			if err != nil {
				errs <- err
				return
			}
			for chunk := range slices.Chunk(data, 4096) {
				if _, err := w.Write(chunk); err != nil {
					errs <- err
					return
				}
			}
			if err := w.Commit(t.Context()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range writers {
		want(t, d, fmt.Sprintf("concurrent/%02d/obj", i), pattern(64<<10+i, byte(i)))
	}
	if got := listed(t, d, "concurrent/"); len(got) != writers {
		t.Errorf("List sees %d objects, want %d", len(got), writers)
	}
}

func testConcurrentReaders(t *testing.T, d storage.Driver) {
	data := pattern(128<<10, 9)
	put(t, d, "shared", data)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			r, err := d.Open(t.Context(), "shared")
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			off := int64(i * 1000)
			if _, err := r.Seek(off, io.SeekStart); err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(r)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, data[off:]) {
				errs <- fmt.Errorf("reader %d from offset %d read the wrong bytes", i, off)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testLargeObject(t *testing.T, d storage.Driver) {
	const size = 8 << 20
	data := pattern(size, 42)
	// Write in odd-sized chunks across a resume, as a chunked upload does.
	w, err := d.Writer(t.Context(), "large", 0)
	if err != nil {
		t.Fatal(err)
	}
	half := size/2 + 12345
	for chunk := range slices.Chunk(data[:half], 1<<20+7) {
		write(t, w, chunk)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	finish(t, d, "large", int64(half), data[half:])

	if n, err := d.Stat(t.Context(), "large"); err != nil || n != size {
		t.Fatalf("Stat = %d, %v; want %d", n, err, size)
	}
	r, err := d.Open(t.Context(), "large")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if n, err := io.Copy(h, r); err != nil || n != size {
		t.Fatalf("read %d bytes, %v; want %d", n, err, size)
	}
	if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		t.Error("large object read back with different bytes")
	}
	if _, err := r.Seek(size-10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(tail, data[size-10:]) {
		t.Errorf("tail after Seek = %q, %v", tail, err)
	}
}
