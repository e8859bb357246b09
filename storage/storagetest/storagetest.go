// Package storagetest is the contract suite every storage.Driver passes: run
// it from the driver's own tests with Run.
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/berthhq/berth/storage"
)

// Run checks that the drivers newDriver returns keep the storage.Driver
// contract. newDriver is called once per subtest and must return an empty
// driver that no other subtest uses.
func Run(t *testing.T, newDriver func(t *testing.T) storage.Driver) {
	tests := []struct {
		name string
		fn   func(t *testing.T, d storage.Driver)
	}{
		{"StatMissing", testStatMissing},
		{"OpenMissing", testOpenMissing},
		{"WriteCommitRead", testWriteCommitRead},
		{"OpenSeek", testOpenSeek},
		{"EmptyObject", testEmptyObject},
		{"CloseAfterCommit", testCloseAfterCommit},
		{"WriterAtZeroTruncates", testWriterAtZeroTruncates},
		{"Resume", testResume},
		{"ResumeRepeatedly", testResumeRepeatedly},
		{"ResumePastEnd", testResumePastEnd},
		{"ResumeMissingKey", testResumeMissingKey},
		{"ResumeNegativeOffset", testResumeNegativeOffset},
		{"ResumeShorterDropsExcess", testResumeShorterDropsExcess},
		{"Cancel", testCancel},
		{"CancelResumed", testCancelResumed},
		{"Move", testMove},
		{"MoveReplaces", testMoveReplaces},
		{"MoveMissingSource", testMoveMissingSource},
		{"MoveIsAtomic", testMoveIsAtomic},
		{"Delete", testDelete},
		{"DeleteMissing", testDeleteMissing},
		{"PrefixIsNotAnObject", testPrefixIsNotAnObject},
		{"List", testList},
		{"ListStopsAtError", testListStopsAtError},
		{"ListWhileDeleting", testListWhileDeleting},
		{"ListUncommitted", testListUncommitted},
		{"DeleteDiscardsUncommitted", testDeleteDiscardsUncommitted},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentReaders", testConcurrentReaders},
		{"LargeObject", testLargeObject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newDriver(t))
		})
	}
}

// put writes and commits data under key.
func put(t *testing.T, d storage.Driver, key string, data []byte) {
	t.Helper()
	w, err := d.Writer(t.Context(), key, 0)
	if err != nil {
		t.Fatalf("Writer(%q, 0): %v", key, err)
	}
	write(t, w, data)
	if err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit(%q): %v", key, err)
	}
}

// write writes data to w and checks that Size follows.
func write(t *testing.T, w storage.Writer, data []byte) {
	t.Helper()
	before := w.Size()
	n, err := w.Write(data)
	if err != nil || n != len(data) {
		t.Fatalf("Write(%d bytes) = %d, %v", len(data), n, err)
	}
	if got := w.Size(); got != before+int64(len(data)) {
		t.Fatalf("Size() after writing %d bytes to %d = %d", len(data), before, got)
	}
}

// get reads the whole object at key.
func get(t *testing.T, d storage.Driver, key string) []byte {
	t.Helper()
	r, err := d.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return b
}

// want checks that key holds exactly data, by Stat and by Open.
func want(t *testing.T, d storage.Driver, key string, data []byte) {
	t.Helper()
	size, err := d.Stat(t.Context(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if size != int64(len(data)) {
		t.Errorf("Stat(%q) = %d, want %d", key, size, len(data))
	}
	if got := get(t, d, key); !bytes.Equal(got, data) {
		t.Errorf("%q holds %s, want %s", key, short(got), short(data))
	}
}

// wantMissing checks that Stat and Open report ErrNotFound for key.
func wantMissing(t *testing.T, d storage.Driver, key string) {
	t.Helper()
	if size, err := d.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat(%q) = %d, %v; want ErrNotFound", key, size, err)
	}
	r, err := d.Open(t.Context(), key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Open(%q) error = %v, want ErrNotFound", key, err)
	}
	if r != nil {
		r.Close()
	}
}

// short abbreviates content in failure messages.
func short(b []byte) string {
	if len(b) <= 32 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q…(%d bytes)", b[:32], len(b))
}

// pattern returns n bytes that differ at most offsets, seeded by seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func testStatMissing(t *testing.T, d storage.Driver) {
	if _, err := d.Stat(t.Context(), "missing/key"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat of a missing key = %v, want ErrNotFound", err)
	}
}

func testOpenMissing(t *testing.T, d storage.Driver) {
	if _, err := d.Open(t.Context(), "missing/key"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Open of a missing key = %v, want ErrNotFound", err)
	}
}

func testWriteCommitRead(t *testing.T, d storage.Driver) {
	w, err := d.Writer(t.Context(), "a/b/c", 0)
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != 0 {
		t.Errorf("Size() of a new writer = %d", w.Size())
	}
	write(t, w, []byte("hello, "))
	write(t, w, []byte("world"))
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	want(t, d, "a/b/c", []byte("hello, world"))
}

func testOpenSeek(t *testing.T, d storage.Driver) {
	data := []byte("0123456789abcdef")
	put(t, d, "seek", data)
	r, err := d.Open(t.Context(), "seek")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	steps := []struct {
		offset int64
		whence int
		pos    int64
		next   string
	}{
		{10, io.SeekStart, 10, "abc"},
		{-3, io.SeekCurrent, 10, "ab"},
		{-4, io.SeekEnd, 12, "cdef"},
		{0, io.SeekStart, 0, "01"},
	}
	for _, s := range steps {
		pos, err := r.Seek(s.offset, s.whence)
		if err != nil || pos != s.pos {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", s.offset, s.whence, pos, err, s.pos)
		}
		buf := make([]byte, len(s.next))
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != s.next {
			t.Fatalf("after Seek(%d, %d) read %q, %v; want %q", s.offset, s.whence, buf, err, s.next)
		}
	}
	end, err := r.Seek(0, io.SeekEnd)
	if err != nil || end != int64(len(data)) {
		t.Fatalf("Seek to end = %d, %v", end, err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read at end = %d, %v; want 0, EOF", n, err)
	}
}

func testEmptyObject(t *testing.T, d storage.Driver) {
	put(t, d, "empty", nil)
	want(t, d, "empty", []byte{})
}

func testCloseAfterCommit(t *testing.T, d storage.Driver) {
	w, err := d.Writer(t.Context(), "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, []byte("data"))
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Commit: %v", err)
	}
	want(t, d, "k", []byte("data"))
}

func testWriterAtZeroTruncates(t *testing.T, d storage.Driver) {
	put(t, d, "k", []byte("a long first version"))
	put(t, d, "k", []byte("short"))
	want(t, d, "k", []byte("short"))
}
