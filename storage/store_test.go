package storage_test

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
)

// newStore returns a Store over a disk driver rooted at dir, as a fresh
// process opening that directory would.
func newStore(t *testing.T, dir string) *storage.Store {
	t.Helper()
	d, err := disk.New(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return storage.NewStore(d)
}

// files lists the regular files under dir/sub, relative to dir, sorted.
func files(t *testing.T, dir, sub string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// upload starts upload id, writes the chunks and commits them as want.
func upload(t *testing.T, s *storage.Store, id string, want oci.Digest, chunks ...string) (bool, error) {
	t.Helper()
	u, err := s.StartUpload(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if n, err := u.Write([]byte(c)); err != nil || n != len(c) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	return u.Commit(t.Context(), want)
}

func readBlob(t *testing.T, s *storage.Store, d oci.Digest) string {
	t.Helper()
	r, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatalf("Open(%s): %v", d, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sha512Of(s string) oci.Digest {
	sum := sha512.Sum512([]byte(s))
	return oci.Digest(fmt.Sprintf("sha512:%x", sum))
}

func TestBlobKey(t *testing.T) {
	hex := "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"
	if got, want := storage.BlobKey(oci.Digest("sha256:"+hex)), "blobs/sha256/b5/"+hex; got != want {
		t.Errorf("BlobKey = %q, want %q", got, want)
	}
	d := sha512Of("x")
	if got, want := storage.BlobKey(d), "blobs/sha512/"+d.Encoded()[:2]+"/"+d.Encoded(); got != want {
		t.Errorf("BlobKey = %q, want %q", got, want)
	}
}

func TestBlobDigest(t *testing.T) {
	hex := "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"
	for _, d := range []oci.Digest{oci.Digest("sha256:" + hex), sha512Of("x")} {
		if got, ok := storage.BlobDigest(storage.BlobKey(d)); !ok || got != d {
			t.Errorf("BlobDigest(BlobKey(%s)) = %s, %v", d, got, ok)
		}
	}
	for _, key := range []string{
		"blobs/sha256/00/" + hex, // in the wrong directory
		"blobs/sha256/b5/" + hex[:10],
		"blobs/md5/b5/" + hex,
		"blobs/sha256/" + hex,
		"uploads/sha256/b5/" + hex,
	} {
		if d, ok := storage.BlobDigest(key); ok {
			t.Errorf("BlobDigest(%q) = %s, want none", key, d)
		}
	}
}

func TestCommit(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   oci.Digest
	}{
		{"one chunk", []string{"hello"}, oci.FromBytes([]byte("hello"))},
		{"several chunks", []string{"hel", "", "lo, ", "world"}, oci.FromBytes([]byte("hello, world"))},
		{"empty blob", nil, oci.FromBytes(nil)},
		{"sha512", []string{"hello ", "sha512"}, sha512Of("hello sha512")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir)
			created, err := upload(t, s, "u1", tt.want, tt.chunks...)
			if err != nil || !created {
				t.Fatalf("Commit = %v, %v; want true, nil", created, err)
			}
			content := strings.Join(tt.chunks, "")
			if n, err := s.Stat(t.Context(), tt.want); err != nil || n != int64(len(content)) {
				t.Errorf("Stat = %d, %v; want %d", n, err, len(content))
			}
			if got := readBlob(t, s, tt.want); got != content {
				t.Errorf("blob holds %q, want %q", got, content)
			}
			if got, want := files(t, dir, "."), []string{storage.BlobKey(tt.want)}; !slices.Equal(got, want) {
				t.Errorf("files on disk = %q, want only %q", got, want)
			}
		})
	}
}

func TestCommitMismatch(t *testing.T) {
	tests := []struct {
		name string
		want oci.Digest
	}{
		{"sha256 of other bytes", oci.FromBytes([]byte("other"))},
		{"sha512 of other bytes", sha512Of("other")},
		{"sha512 all zeros", oci.Digest("sha512:" + strings.Repeat("0", 128))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir)
			created, err := upload(t, s, "u1", tt.want, "actual ", "bytes")
			if !errors.Is(err, storage.ErrDigestMismatch) || created {
				t.Fatalf("Commit = %v, %v; want false, ErrDigestMismatch", created, err)
			}
			if got := files(t, dir, "blobs"); len(got) != 0 {
				t.Errorf("files under blobs/ after a mismatch: %q", got)
			}
			if got := files(t, dir, "uploads"); len(got) != 0 {
				t.Errorf("files under uploads/ after a mismatch: %q", got)
			}
			if _, err := s.Stat(t.Context(), tt.want); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat(claimed digest) = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestCommitDedup(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	d := oci.FromBytes([]byte("same bytes"))
	if created, err := upload(t, s, "first", d, "same ", "bytes"); err != nil || !created {
		t.Fatalf("first Commit = %v, %v", created, err)
	}
	blob := filepath.Join(dir, filepath.FromSlash(storage.BlobKey(d)))
	before, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"second", "third"} {
		created, err := upload(t, s, id, d, "same bytes")
		if err != nil || created {
			t.Fatalf("Commit of an existing blob = %v, %v; want false, nil", created, err)
		}
	}
	if got, want := files(t, dir, "."), []string{storage.BlobKey(d)}; !slices.Equal(got, want) {
		t.Errorf("files on disk = %q, want exactly %q", got, want)
	}
	after, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("the existing blob was replaced by a new file; it must not be written again")
	}
	if got := readBlob(t, s, d); got != "same bytes" {
		t.Errorf("blob holds %q", got)
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    oci.Digest
		wantErr error
	}{
		{"sha256 match", "content", oci.FromBytes([]byte("content")), nil},
		{"sha512 match", "content", sha512Of("content"), nil},
		{"sha256 mismatch", "content", oci.FromBytes([]byte("other")), storage.ErrDigestMismatch},
		{"sha512 mismatch", "content", sha512Of("other"), storage.ErrDigestMismatch},
		{"empty body", "", oci.FromBytes(nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := storage.Verify(strings.NewReader(tt.body), tt.want)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("Verify = %v, want %v", err, tt.wantErr)
			}
			if n != int64(len(tt.body)) {
				t.Errorf("Verify read %d bytes, want %d", n, len(tt.body))
			}
		})
	}
}

// TestConcurrentCommitsOfOneBlob: uploads of the same content racing to
// commit all succeed and leave one file.
func TestConcurrentCommitsOfOneBlob(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	content := strings.Repeat("popular layer ", 4096)
	d := oci.FromBytes([]byte(content))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			u, err := s.StartUpload(t.Context(), fmt.Sprintf("u%d", i))
			if err == nil {
				_, err = io.WriteString(u, content)
			}
			if err == nil {
				_, err = u.Commit(t.Context(), d)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got, want := files(t, dir, "."), []string{storage.BlobKey(d)}; !slices.Equal(got, want) {
		t.Errorf("files on disk = %q, want exactly %q", got, want)
	}
	if got := readBlob(t, s, d); got != content {
		t.Errorf("blob holds %d bytes, want %d", len(got), len(content))
	}
}

func TestStoreMissingBlob(t *testing.T) {
	s := newStore(t, t.TempDir())
	d := oci.FromBytes([]byte("absent"))
	if _, err := s.Stat(t.Context(), d); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
	if _, err := s.Open(t.Context(), d); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Open = %v, want ErrNotFound", err)
	}
	if err := s.Delete(t.Context(), d); err != nil {
		t.Errorf("Delete of a missing blob = %v", err)
	}
}

// TestUnsupportedAlgorithm: a digest naming an algorithm Berth does not
// accept never verifies, even when its hex is the sha256 of the bytes.
func TestUnsupportedAlgorithm(t *testing.T) {
	content := "content"
	sha256hex := oci.FromBytes([]byte(content)).Encoded()
	for _, want := range []oci.Digest{
		oci.Digest("sha384:" + sha256hex),
		oci.Digest("md5:" + sha256hex),
		oci.Digest(":" + sha256hex),
	} {
		t.Run(string(want)[:6], func(t *testing.T) {
			if _, err := storage.Verify(strings.NewReader(content), want); !errors.Is(err, oci.ErrDigestInvalid) {
				t.Errorf("Verify(%s) = %v, want ErrDigestInvalid", want, err)
			}
			dir := t.TempDir()
			s := newStore(t, dir)
			created, err := upload(t, s, "u1", want, content)
			if !errors.Is(err, oci.ErrDigestInvalid) || created {
				t.Errorf("Commit(%s) = %v, %v; want false, ErrDigestInvalid", want, created, err)
			}
			// Nothing is published; the uploaded bytes stay for a Commit with a valid digest.
			if got := files(t, dir, "blobs"); len(got) != 0 {
				t.Errorf("blobs on disk after Commit(%s): %q", want, got)
			}
		})
	}
}
