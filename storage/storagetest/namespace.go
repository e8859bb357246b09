package storagetest

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/berthhq/berth/storage"
)

func testMove(t *testing.T, d storage.Driver) {
	put(t, d, "uploads/x", []byte("content"))
	if err := d.Move(t.Context(), "uploads/x", "blobs/sha256/ab/abcd"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	want(t, d, "blobs/sha256/ab/abcd", []byte("content"))
	wantMissing(t, d, "uploads/x")
}

func testMoveReplaces(t *testing.T, d storage.Driver) {
	put(t, d, "src", []byte("new"))
	put(t, d, "dst", []byte("the old destination"))
	if err := d.Move(t.Context(), "src", "dst"); err != nil {
		t.Fatalf("Move onto an existing key: %v", err)
	}
	want(t, d, "dst", []byte("new"))
	wantMissing(t, d, "src")
}

func testMoveMissingSource(t *testing.T, d storage.Driver) {
	put(t, d, "dst", []byte("kept"))
	if err := d.Move(t.Context(), "missing", "dst"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Move of a missing source = %v, want ErrNotFound", err)
	}
	want(t, d, "dst", []byte("kept"))
	if err := d.Move(t.Context(), "missing", "other"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Move of a missing source = %v, want ErrNotFound", err)
	}
	wantMissing(t, d, "other")
}

// testMoveIsAtomic has readers watch a key while an object is moved onto it:
// each look sees the old object or the new one, whole, never a mixture.
func testMoveIsAtomic(t *testing.T, d storage.Driver) {
	old, next := pattern(256<<10, 1), pattern(300<<10, 2)
	put(t, d, "dst", old)
	put(t, d, "src", next)
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				r, err := d.Open(t.Context(), "dst")
				if err != nil {
					errs <- err
					return
				}
				var buf bytes.Buffer
				_, err = buf.ReadFrom(r)
				r.Close()
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf.Bytes(), old) && !bytes.Equal(buf.Bytes(), next) {
					errs <- errors.New("a reader saw a partial or mixed object: " + short(buf.Bytes()))
					return
				}
			}
		})
	}
	err := d.Move(t.Context(), "src", "dst")
	close(done)
	wg.Wait()
	close(errs)
	if err != nil {
		t.Fatalf("Move: %v", err)
	}
	for err := range errs {
		t.Error(err)
	}
	want(t, d, "dst", next)
}

func testDelete(t *testing.T, d storage.Driver) {
	put(t, d, "a/k", []byte("x"))
	put(t, d, "a/other", []byte("y"))
	if err := d.Delete(t.Context(), "a/k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, d, "a/k")
	want(t, d, "a/other", []byte("y"))
}

func testDeleteMissing(t *testing.T, d storage.Driver) {
	if err := d.Delete(t.Context(), "never/there"); err != nil {
		t.Errorf("Delete of a missing key = %v, want nil", err)
	}
	put(t, d, "k", []byte("x"))
	for range 2 {
		if err := d.Delete(t.Context(), "k"); err != nil {
			t.Errorf("Delete: %v", err)
		}
	}
}

// testPrefixIsNotAnObject: "dir" is only the start of "dir/obj", not an
// object of its own, whatever the backend does with slashes.
func testPrefixIsNotAnObject(t *testing.T, d storage.Driver) {
	put(t, d, "dir/obj", []byte("x"))
	wantMissing(t, d, "dir")
	if err := d.Delete(t.Context(), "dir"); err != nil {
		t.Errorf("Delete of a prefix = %v, want nil (no object there)", err)
	}
	want(t, d, "dir/obj", []byte("x"))
}

func listed(t *testing.T, d storage.Driver, prefix string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := d.List(t.Context(), prefix, func(o storage.Object) error {
		if _, dup := got[o.Key]; dup {
			t.Errorf("List(%q) saw %q twice", prefix, o.Key)
		}
		got[o.Key] = o.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func testList(t *testing.T, d storage.Driver) {
	objects := map[string]int64{
		"list/a":         1,
		"list/b/c":       2,
		"list/b/d/e":     3,
		"list/bb":        4,
		"listx":          5,
		"other/list/a":   6,
		"uploads/u1":     7,
		"blobs/sha256/x": 8,
	}
	for k, n := range objects {
		put(t, d, k, pattern(int(n), byte(n)))
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"list/", []string{"list/a", "list/b/c", "list/b/d/e", "list/bb"}},
		{"list/b", []string{"list/b/c", "list/b/d/e", "list/bb"}},
		{"list/b/", []string{"list/b/c", "list/b/d/e"}},
		{"list", []string{"list/a", "list/b/c", "list/b/d/e", "list/bb", "listx"}},
		{"uploads/", []string{"uploads/u1"}},
		{"nothing/", nil},
		{"list/a", []string{"list/a"}},
		{"", []string{"blobs/sha256/x", "list/a", "list/b/c", "list/b/d/e", "list/bb", "listx", "other/list/a", "uploads/u1"}},
	}
	for _, tt := range tests {
		t.Run("prefix="+tt.prefix, func(t *testing.T) {
			got := listed(t, d, tt.prefix)
			keys := make([]string, 0, len(got))
			for k := range got {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if !slices.Equal(keys, tt.want) {
				t.Fatalf("List(%q) = %q, want %q", tt.prefix, keys, tt.want)
			}
			for k, size := range got {
				if size != objects[k] {
					t.Errorf("List(%q): %s has size %d, want %d", tt.prefix, k, size, objects[k])
				}
			}
		})
	}
	t.Run("deleted and moved", func(t *testing.T) {
		if err := d.Delete(t.Context(), "list/a"); err != nil {
			t.Fatal(err)
		}
		if err := d.Move(t.Context(), "list/bb", "other/bb"); err != nil {
			t.Fatal(err)
		}
		got := listed(t, d, "list/")
		if _, ok := got["list/a"]; ok || len(got) != 2 {
			t.Errorf("List after Delete and Move = %v, want list/b/c and list/b/d/e", got)
		}
	})
}

func testListStopsAtError(t *testing.T, d storage.Driver) {
	for _, k := range []string{"s/a", "s/b", "s/c"} {
		put(t, d, k, []byte("x"))
	}
	stop := errors.New("stop")
	calls := 0
	err := d.List(t.Context(), "s/", func(storage.Object) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("List returned %v, want fn's error", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times after returning an error, want 1", calls)
	}
}

// testListWhileDeleting: objects deleted or moved away while a List runs
// (uploads finishing, a collection sweeping) are listed or not, but never
// fail the listing.
func testListWhileDeleting(t *testing.T, d storage.Driver) {
	keys := []string{"w/a", "w/b", "w/c", "w/d", "w/e", "w/f"}
	for _, k := range keys {
		put(t, d, k, []byte("x"))
	}
	seen := map[string]bool{}
	err := d.List(t.Context(), "w/", func(o storage.Object) error {
		seen[o.Key] = true
		// The first object listed takes every other one with it.
		for _, k := range keys {
			if len(seen) == 1 && !seen[k] {
				if err := d.Delete(t.Context(), k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("List while its objects are deleted: %v", err)
	}
	if len(seen) == 0 {
		t.Error("List saw nothing, not even the object it saw first")
	}
}
