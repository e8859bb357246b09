package storagetest

import (
	"errors"
	"testing"

	"github.com/berthhq/berth/storage"
)

// testListUncommitted: List reports the key of a writer that closed without
// committing, once, beside committed objects, so abandoned uploads can be
// found; after Delete it reports nothing for that key.
func testListUncommitted(t *testing.T, d storage.Driver) {
	partial(t, d, "uploads/open", 0, pattern(3000, 1))
	put(t, d, "uploads/done", []byte("committed"))
	got := listed(t, d, "uploads/")
	if _, ok := got["uploads/open"]; !ok || len(got) != 2 {
		t.Fatalf("List(uploads/) = %v, want uploads/open (uncommitted) and uploads/done", got)
	}
	if err := d.Delete(t.Context(), "uploads/open"); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, d, "uploads/"); len(got) != 1 {
		t.Errorf("List(uploads/) after deleting the uncommitted writer = %v, want only uploads/done", got)
	}
}

// testDeleteDiscardsUncommitted: Delete also discards what an uncommitted
// writer stored, so resuming it fails with ErrInvalidOffset.
func testDeleteDiscardsUncommitted(t *testing.T, d storage.Driver) {
	partial(t, d, "up", 0, []byte("12345"))
	if err := d.Delete(t.Context(), "up"); err != nil {
		t.Fatalf("Delete of an uncommitted writer's key: %v", err)
	}
	w, err := d.Writer(t.Context(), "up", 5)
	if !errors.Is(err, storage.ErrInvalidOffset) {
		if w != nil {
			w.Cancel(t.Context())
		}
		t.Fatalf("resuming after Delete = %v, want ErrInvalidOffset", err)
	}
	wantMissing(t, d, "up")
	if got := listed(t, d, "up"); len(got) != 0 {
		t.Errorf("List after Delete = %v, want nothing", got)
	}
}
