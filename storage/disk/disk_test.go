package disk_test

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
	"github.com/berthhq/berth/storage/storagetest"
)

func newDriver(t *testing.T, dir string) *disk.Driver {
	t.Helper()
	d, err := disk.New(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver {
		return newDriver(t, filepath.Join(t.TempDir(), "root"))
	})
}

func TestNewCreatesRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	newDriver(t, dir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("root not created: %v", err)
	}
}

func TestCommittedObjectIsAFile(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	w, err := d.Writer(t.Context(), "blobs/sha256/ab/abcd", 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("bytes"))
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "blobs", "sha256", "ab", "abcd"))
	if err != nil || string(got) != "bytes" {
		t.Fatalf("file holds %q, %v", got, err)
	}
	r, err := d.Open(t.Context(), "blobs/sha256/ab/abcd")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok := r.(*os.File); !ok {
		t.Errorf("Open returned %T, want *os.File so that HTTP serving can use sendfile", r)
	}
}

// TestKeysStayInsideRoot: a key can never name a file outside the root, and
// a refused key touches nothing.
func TestKeysStayInsideRoot(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	d := newDriver(t, root)
	sentinel := filepath.Join(parent, "x")
	if err := os.WriteFile(sentinel, []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "b"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	inside := "ok/obj"
	w, err := d.Writer(t.Context(), inside, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("inside"))
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Keys that are not in clean form are refused too, so one object has one key.
	bad := []string{"../x", "a/../../b", "..", "/etc/passwd", sentinel, "a/../../x", "./x", "a//b", "a/./b", "", "."}
	for _, key := range bad {
		t.Run(key, func(t *testing.T) {
			ctx := t.Context()
			if n, err := d.Stat(ctx, key); err == nil {
				t.Errorf("Stat(%q) = %d, want an error", key, n)
			}
			if r, err := d.Open(ctx, key); err == nil {
				r.Close()
				t.Errorf("Open(%q) succeeded", key)
			}
			if w, err := d.Writer(ctx, key, 0); err == nil {
				w.Close()
				t.Errorf("Writer(%q) succeeded", key)
			}
			if err := d.Delete(ctx, key); err == nil {
				t.Errorf("Delete(%q) succeeded", key)
			}
			if err := d.Move(ctx, inside, key); err == nil {
				t.Errorf("Move(%q, %q) succeeded", inside, key)
			}
			if err := d.Move(ctx, key, "stolen"); err == nil {
				t.Errorf("Move(%q, stolen) succeeded", key)
			}
			// A prefix that is not clean matches no key; one that escapes is refused.
			err := d.List(ctx, key+"/", func(o storage.Object) error {
				t.Errorf("List(%q) saw %q", key+"/", o.Key)
				return nil
			})
			if escapes := filepath.IsAbs(key) || strings.HasPrefix(path.Clean(key), ".."); escapes && err == nil {
				t.Errorf("List(%q) succeeded", key+"/")
			}
		})
	}
	for _, p := range []string{sentinel, filepath.Join(parent, "b")} {
		if b, err := os.ReadFile(p); err != nil || string(b) != "outside" {
			t.Errorf("%s outside the root was touched: %q, %v", p, b, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "ok", "obj")); err != nil || string(b) != "inside" {
		t.Errorf("the object inside the root was touched: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "stolen")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Move created %q: %v", "stolen", err)
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 3 {
		t.Errorf("the root's parent holds %d entries, want root, x and b", len(entries))
	}
}
