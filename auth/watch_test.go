package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// replaceFile writes content to a new file and renames it over path, the
// way editors and secret mounts replace files.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// rewriteInPlace writes content over path's bytes and gives it back its
// modification time: an edit that leaves the file's size, time and inode
// as they were when content is as long as before.
func rewriteInPlace(t *testing.T, path, content string) {
	t.Helper()
	old, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old.ModTime(), old.ModTime()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if changed(fi, old) {
		t.Fatal("the rewrite shows in the file's size, time or inode")
	}
}

// errorCount counts the errors a watched file reports.
type errorCount struct{ n int }

func (c *errorCount) onError(error) { c.n++ }

func TestWatched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n")
	replaceFile(t, path, "1")
	var errs errorCount
	w, err := watch(path, func(b []byte) (int, error) { return strconv.Atoi(strings.TrimSpace(string(b))) }, errs.onError)
	if err != nil {
		t.Fatal(err)
	}
	w.recheck = 0
	must := func(t *testing.T, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name   string
		change func(t *testing.T)
		want   int
		errors int // reported so far
	}{
		{"unchanged", func(t *testing.T) {}, 1, 0},
		{"written in place", func(t *testing.T) { must(t, os.WriteFile(path, []byte("22"), 0o600)) }, 22, 0},
		{"replaced with the same size and time", func(t *testing.T) {
			old, err := os.Stat(path)
			must(t, err)
			replaceFile(t, path, "33")
			must(t, os.Chtimes(path, old.ModTime(), old.ModTime()))
		}, 33, 0},
		{"written in place with the same size and time", func(t *testing.T) { rewriteInPlace(t, path, "44") }, 44, 0},
		{"broken in place with the same size and time: reported once", func(t *testing.T) { rewriteInPlace(t, path, "4x") }, 44, 1},
		{"broken: the last good value, reported once", func(t *testing.T) { replaceFile(t, path, "x") }, 44, 2},
		{"mended", func(t *testing.T) { replaceFile(t, path, "4") }, 4, 2},
		{"removed: the last good value, reported once", func(t *testing.T) { must(t, os.Remove(path)) }, 4, 3},
		{"back", func(t *testing.T) { replaceFile(t, path, "5") }, 5, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.change(t)
			for range 3 {
				if got := w.get(); got != c.want {
					t.Fatalf("get() = %d, want %d", got, c.want)
				}
			}
			if errs.n != c.errors {
				t.Errorf("%d errors reported, want %d", errs.n, c.errors)
			}
		})
	}
}

func TestWatchedRecheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n")
	replaceFile(t, path, "1")
	w, err := watch(path, func(b []byte) (string, error) { return string(b), nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.recheck = time.Hour
	w.get() // looks at the file, and not again for an hour
	replaceFile(t, path, "2")
	if got := w.get(); got != "1" {
		t.Errorf("get() within the recheck interval = %q, want the old %q", got, "1")
	}
	w.recheck = 0
	if got := w.get(); got != "2" {
		t.Errorf("get() after the recheck interval = %q, want %q", got, "2")
	}
}

func TestWatchBroken(t *testing.T) {
	dir := t.TempDir()
	if _, err := watch(filepath.Join(dir, "missing"), func(b []byte) ([]byte, error) { return b, nil }, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("watching a missing file: %v, want ErrNotExist", err)
	}
	path := filepath.Join(dir, "broken")
	replaceFile(t, path, "x")
	bad := errors.New("bad")
	if _, err := watch(path, func([]byte) (int, error) { return 0, bad }, nil); !errors.Is(err, bad) {
		t.Errorf("watching a file that does not parse: %v, want its error", err)
	}
}
