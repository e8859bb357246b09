package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
)

// TestResumeInAnotherProcess continues an upload from its serialised state
// in a new Store over a new driver on the same directory.
func TestResumeInAnotherProcess(t *testing.T) {
	parts := []string{"first part; ", "", "second part; ", strings.Repeat("third ", 10000)}
	all := strings.Join(parts, "")
	tests := []struct {
		name string
		want oci.Digest
	}{
		{"sha256", oci.FromBytes([]byte(all))},
		{"sha512", sha512Of(all)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			u, err := newStore(t, dir).StartUpload(t.Context(), "u1")
			if err != nil {
				t.Fatal(err)
			}
			st, err := u.State()
			if err != nil {
				t.Fatal(err)
			}
			if err := u.Close(); err != nil {
				t.Fatal(err)
			}
			for _, p := range parts {
				st = appendPart(t, newStore(t, dir), "u1", st, p)
			}
			if st.Size != int64(len(all)) {
				t.Fatalf("state size = %d, want %d", st.Size, len(all))
			}
			s := newStore(t, dir)
			u, err = s.ResumeUpload(t.Context(), "u1", st)
			if err != nil {
				t.Fatal(err)
			}
			if created, err := u.Commit(t.Context(), tt.want); err != nil || !created {
				t.Fatalf("Commit = %v, %v", created, err)
			}
			if got := readBlob(t, s, tt.want); got != all {
				t.Errorf("blob holds %d bytes, want %d", len(got), len(all))
			}
			if got := files(t, dir, "uploads"); len(got) != 0 {
				t.Errorf("uploads left: %q", got)
			}
		})
	}
}

// appendPart is one PATCH request: resume, write, save the state, close.
func appendPart(t *testing.T, s *storage.Store, id string, st storage.UploadState, part string) storage.UploadState {
	t.Helper()
	u, err := s.ResumeUpload(t.Context(), id, storage.UploadState{Size: st.Size, Hash: bytes.Clone(st.Hash)})
	if err != nil {
		t.Fatalf("ResumeUpload at %d: %v", st.Size, err)
	}
	if u.Size() != st.Size {
		t.Fatalf("Size() after resume = %d, want %d", u.Size(), st.Size)
	}
	if _, err := io.WriteString(u, part); err != nil {
		t.Fatal(err)
	}
	next, err := u.State()
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	return next
}

// TestResumeFromEarlierState: a request wrote bytes but its state was never
// recorded (it crashed, or lost a race); resuming from the last recorded
// state drops those bytes and the digest still comes out right.
func TestResumeFromEarlierState(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	u, err := s.StartUpload(t.Context(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	st0, _ := u.State()
	u.Close()
	st1 := appendPart(t, s, "u1", st0, "kept ")
	appendPart(t, s, "u1", st1, "lost bytes, never recorded")

	st2 := appendPart(t, newStore(t, dir), "u1", st1, "redone")
	u, err = newStore(t, dir).ResumeUpload(t.Context(), "u1", st2)
	if err != nil {
		t.Fatal(err)
	}
	want := oci.FromBytes([]byte("kept redone"))
	if created, err := u.Commit(t.Context(), want); err != nil || !created {
		t.Fatalf("Commit = %v, %v", created, err)
	}
	if got := readBlob(t, s, want); got != "kept redone" {
		t.Errorf("blob holds %q", got)
	}
}

func TestResumePastStoredBytes(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	u, err := s.StartUpload(t.Context(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(u, "abc")
	st, _ := u.State()
	u.Close()
	if err := s.CancelUpload(t.Context(), "u1"); err != nil {
		t.Fatal(err)
	}
	// The bytes might have been published by an earlier commit; the upload
	// resumes, but it can neither take more bytes nor commit.
	u, err = s.ResumeUpload(t.Context(), "u1", st)
	if err != nil {
		t.Fatalf("ResumeUpload after the bytes were purged: %v", err)
	}
	if _, err := io.WriteString(u, "d"); !errors.Is(err, storage.ErrInvalidOffset) {
		t.Errorf("Write after the bytes were purged = %v, want ErrInvalidOffset", err)
	}
	if _, err := u.Commit(t.Context(), oci.FromBytes([]byte("abc"))); !errors.Is(err, storage.ErrInvalidOffset) {
		t.Errorf("Commit after the bytes were purged = %v, want ErrInvalidOffset", err)
	}
	if _, err := s.ResumeUpload(t.Context(), "u2", storage.UploadState{Size: 3, Hash: []byte("garbage")}); err == nil {
		t.Error("ResumeUpload with a corrupt hash state succeeded")
	}
}

func TestCancel(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	u, err := s.StartUpload(t.Context(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(u, "doomed")
	if err := u.Cancel(t.Context()); err != nil {
		t.Fatal(err)
	}
	u, err = s.StartUpload(t.Context(), "u2")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(u, "abandoned")
	u.Close()
	if err := s.CancelUpload(t.Context(), "u2"); err != nil {
		t.Fatal(err)
	}
	if err := s.CancelUpload(t.Context(), "never"); err != nil {
		t.Errorf("CancelUpload of an unknown upload = %v", err)
	}
	if got := files(t, dir, "."); len(got) != 0 {
		t.Errorf("files left after Cancel: %q", got)
	}
}

func TestListUploads(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	sizes := map[string]int{"u1": 3, "u2": 5, "u3": 0}
	for id, n := range sizes {
		u, err := s.StartUpload(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(u, strings.Repeat("x", n))
		u.Close()
	}
	if created, err := upload(t, s, "done", oci.FromBytes([]byte("blob")), "blob"); err != nil || !created {
		t.Fatalf("Commit = %v, %v", created, err)
	}
	got := map[string]int64{}
	err := s.ListUploads(t.Context(), func(o storage.Object) error {
		got[o.Key] = o.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sizes) {
		t.Errorf("ListUploads saw %v, want the %d open uploads", got, len(sizes))
	}
	for id, n := range sizes {
		if size, ok := got[storage.UploadsPrefix+id]; !ok || size != int64(n) {
			t.Errorf("ListUploads: %s = %d (seen %v), want %d", id, size, ok, n)
		}
	}
}

// trickle yields its data a few odd-sized reads at a time, then an optional error.
type trickle struct {
	data []byte
	err  error
	n    int
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	r.n++
	k := min(len(p), len(r.data), 1+r.n*7919%300000)
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

// TestReadFrom: the pipelined copy hashes exactly the bytes it writes, in
// order, across many buffers and odd read sizes, and reports a reader's error.
func TestReadFrom(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	data := make([]byte, 5<<20+12345)
	for i := range data {
		data[i] = byte(i*31 + i/7)
	}
	up, err := s.StartUpload(ctx, "readfrom")
	if err != nil {
		t.Fatal(err)
	}
	n, err := up.ReadFrom(&trickle{data: data})
	if err != nil || n != int64(len(data)) || up.Size() != n {
		t.Fatalf("ReadFrom = %d, %v; size %d; want %d", n, err, up.Size(), len(data))
	}
	want := oci.FromBytes(data)
	if _, err := up.Commit(ctx, want); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if got := readBlob(t, s, want); got != string(data) {
		t.Fatal("stored bytes differ")
	}

	up, err = s.StartUpload(ctx, "broken")
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("connection reset")
	if _, err := up.ReadFrom(&trickle{data: data[:3<<20], err: boom}); !errors.Is(err, boom) {
		t.Fatalf("ReadFrom of a failing reader: %v, want %v", err, boom)
	}
	up.Close()
}

// TestCommitRetry: a commit that fails after the bytes are committed (the
// publish step) keeps them, and a resumed upload finishes the job; a retry
// after the blob was published only confirms it.
func TestCommitRetry(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	content := "retry me"
	want := oci.FromBytes([]byte(content))
	u, err := s.StartUpload(t.Context(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(u, content)
	st, _ := u.State()
	// Make the publish fail: a file where the blob's directory must go.
	blobDir := filepath.Join(dir, filepath.Dir(storage.BlobKey(want)))
	os.MkdirAll(filepath.Dir(blobDir), 0o755)
	os.WriteFile(blobDir, nil, 0o644)
	if _, err := u.Commit(t.Context(), want); err == nil {
		t.Fatal("Commit succeeded though the blob could not be moved into place")
	}
	os.Remove(blobDir)
	for i := range 2 { // the first retry publishes, the second finds it published
		u, err := s.ResumeUpload(t.Context(), "u1", st)
		if err != nil {
			t.Fatalf("retry %d: ResumeUpload: %v", i, err)
		}
		created, err := u.Commit(t.Context(), want)
		if err != nil || created != (i == 0) {
			t.Fatalf("retry %d: Commit = %v, %v", i, created, err)
		}
	}
	if got := readBlob(t, s, want); got != content {
		t.Fatalf("blob reads %q", got)
	}
}
