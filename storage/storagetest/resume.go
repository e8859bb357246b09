package storagetest

import (
	"errors"
	"testing"

	"github.com/berthhq/berth/storage"
)

// partial writes data under key without committing, then closes the writer,
// as a request that ends mid-upload does.
func partial(t *testing.T, d storage.Driver, key string, offset int64, data []byte) {
	t.Helper()
	if err := resumed(t, d, key, offset, data).Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// finish resumes key at offset, writes data and commits.
func finish(t *testing.T, d storage.Driver, key string, offset int64, data []byte) {
	t.Helper()
	if err := resumed(t, d, key, offset, data).Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// resumed opens a writer of key at offset, checks it resumes there, and
// writes data.
func resumed(t *testing.T, d storage.Driver, key string, offset int64, data []byte) storage.Writer {
	t.Helper()
	w, err := d.Writer(t.Context(), key, offset)
	if err != nil {
		t.Fatalf("Writer(%q, %d): %v", key, offset, err)
	}
	if w.Size() != offset {
		t.Fatalf("Size() of a writer resumed at %d = %d", offset, w.Size())
	}
	write(t, w, data)
	return w
}

func testResume(t *testing.T, d storage.Driver) {
	partial(t, d, "up", 0, []byte("first part,"))
	finish(t, d, "up", 11, []byte(" second part"))
	want(t, d, "up", []byte("first part, second part"))
}

func testResumeRepeatedly(t *testing.T, d storage.Driver) {
	var all []byte
	for i := range 5 {
		chunk := pattern(1000+i, byte(i))
		partial(t, d, "up", int64(len(all)), chunk)
		all = append(all, chunk...)
	}
	finish(t, d, "up", int64(len(all)), nil)
	want(t, d, "up", all)
}

func testResumePastEnd(t *testing.T, d storage.Driver) {
	partial(t, d, "up", 0, []byte("12345"))
	w, err := d.Writer(t.Context(), "up", 6)
	if !errors.Is(err, storage.ErrInvalidOffset) {
		if w != nil {
			w.Cancel(t.Context())
		}
		t.Fatalf("Writer past the stored end = %v, want ErrInvalidOffset", err)
	}
	// The refused resume changed nothing: the right offset still continues.
	finish(t, d, "up", 5, []byte("6"))
	want(t, d, "up", []byte("123456"))
}

func testResumeMissingKey(t *testing.T, d storage.Driver) {
	w, err := d.Writer(t.Context(), "never/written", 3)
	if !errors.Is(err, storage.ErrInvalidOffset) {
		if w != nil {
			w.Cancel(t.Context())
		}
		t.Fatalf("Writer(missing, 3) = %v, want ErrInvalidOffset", err)
	}
	// A refused resume leaves nothing behind.
	wantMissing(t, d, "never/written")
}

func testResumeNegativeOffset(t *testing.T, d storage.Driver) {
	partial(t, d, "up", 0, []byte("abc"))
	w, err := d.Writer(t.Context(), "up", -1)
	if !errors.Is(err, storage.ErrInvalidOffset) {
		if w != nil {
			w.Cancel(t.Context())
		}
		t.Fatalf("Writer at -1 = %v, want ErrInvalidOffset", err)
	}
}

func testResumeShorterDropsExcess(t *testing.T, d storage.Driver) {
	tests := []struct {
		name   string
		offset int64
		more   string
		want   string
	}{
		{"append after the cut", 4, "XY", "0123XY"},
		{"nothing after the cut", 4, "", "0123"},
		{"longer than the dropped part", 2, "abcdefghijkl", "01abcdefghijkl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "up/" + tt.name
			partial(t, d, key, 0, []byte("0123456789"))
			finish(t, d, key, tt.offset, []byte(tt.more))
			want(t, d, key, []byte(tt.want))
		})
	}
}

func testCancel(t *testing.T, d storage.Driver) {
	w, err := d.Writer(t.Context(), "up", 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, []byte("doomed"))
	if err := w.Cancel(t.Context()); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	wantGone(t, d, "up", 6)
}

// wantGone checks that key holds nothing, not even bytes to resume after offset.
func wantGone(t *testing.T, d storage.Driver, key string, offset int64) {
	t.Helper()
	wantMissing(t, d, key)
	if w, err := d.Writer(t.Context(), key, offset); !errors.Is(err, storage.ErrInvalidOffset) {
		if w != nil {
			w.Cancel(t.Context())
		}
		t.Errorf("resuming %s at %d after Cancel = %v, want ErrInvalidOffset", key, offset, err)
	}
}

func testCancelResumed(t *testing.T, d storage.Driver) {
	partial(t, d, "up", 0, []byte("earlier request"))
	w, err := d.Writer(t.Context(), "up", 15)
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, []byte(" and this one"))
	if err := w.Cancel(t.Context()); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	// Cancel discards everything under the key, not only this writer's bytes.
	wantGone(t, d, "up", 1)
}
