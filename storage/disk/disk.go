package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthhq/berth/storage"
	"golang.org/x/sys/unix"
)

// Driver stores objects as files under a root directory.
type Driver struct {
	root   string
	noSync bool
}

// Options tune a Driver.
type Options struct {
	// NoSync skips every fsync: writes are faster, but a crash of the
	// machine can lose or truncate blobs the registry already acknowledged.
	// For caches and mirrors that can refetch, or filesystems that sync
	// themselves.
	NoSync bool
}

var _ storage.Driver = (*Driver)(nil)

// New returns a driver rooted at dir, creating it if needed.
func New(dir string, o Options) (*Driver, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	return &Driver{root: dir, noSync: o.NoSync}, nil
}

// path maps a key to a file name, refusing keys that would escape the root.
func (d *Driver) path(key string) (string, error) {
	if key == "" || path.IsAbs(key) || path.Clean(key) != key || strings.HasPrefix(key, "../") || key == ".." || key == "." {
		return "", fmt.Errorf("disk: invalid key %q", key)
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return storage.ErrNotFound
	}
	return err
}

// Stat returns the size of the file at key.
func (d *Driver) Stat(_ context.Context, key string) (int64, error) {
	p, err := d.path(key)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, notFound(err)
	}
	if !fi.Mode().IsRegular() {
		return 0, storage.ErrNotFound
	}
	return fi.Size(), nil
}

// Open returns the file at key. It is an *os.File, so serving it over HTTP
// can use sendfile.
func (d *Driver) Open(_ context.Context, key string) (io.ReadSeekCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound(err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, storage.ErrNotFound // a directory is a prefix of keys, not an object
	}
	return f, nil
}

// Writer opens the file at key for writing from offset.
func (d *Driver) Writer(_ context.Context, key string, offset int64) (storage.Writer, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, storage.ErrInvalidOffset
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	flags := os.O_WRONLY // resuming needs earlier bytes: a missing file is an invalid offset
	if offset == 0 {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(p, flags, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, storage.ErrInvalidOffset
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() < offset {
		err = storage.ErrInvalidOffset
	}
	if err == nil && fi.Size() > offset {
		err = f.Truncate(offset)
	}
	if err == nil {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &writer{f: f, size: offset, flushed: offset, noSync: d.noSync}, nil
}

// Move renames from to to, creating the destination's directory.
func (d *Driver) Move(_ context.Context, from, to string) error {
	src, err := d.path(from)
	if err != nil {
		return err
	}
	dst, err := d.path(to)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Rename(src, dst); err != nil {
		return notFound(err)
	}
	// A rename keeps the file's time, that of its last chunk, which may be
	// long ago; List reports when the key was written, which is now. The
	// orphan scan's grace period counts from it. Best effort: the object is
	// published either way.
	now := time.Now()
	_ = os.Chtimes(dst, now, now)
	if d.noSync {
		return nil
	}
	// The rename is durable only once the directory holding the new name is.
	return syncDir(filepath.Dir(dst))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Delete removes the file at key.
func (d *Driver) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return nil // a directory is a prefix of keys, not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// List walks the files whose keys start with prefix.
func (d *Driver) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	// Walk from the deepest directory the prefix names, then filter by the
	// remaining partial name.
	dir := path.Dir(prefix + "x")
	start := d.root
	if dir != "." {
		var err error
		if start, err = d.path(dir); err != nil {
			return err
		}
	}
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			// Deleted or moved away since its directory was read (an
			// upload finishing, a collection sweeping): no longer there.
			return nil
		}
		if err != nil {
			return err
		}
		return fn(storage.Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
	})
	return err
}

type writer struct {
	f       *os.File
	size    int64
	flushed int64 // bytes handed to the kernel's writeback
	noSync  bool
	done    bool
}

// writebackChunk is how many written bytes start their way to the disk at
// once. Starting writeback while the upload streams in, rather than all at
// Commit's fsync, overlaps the disk with the network.
const writebackChunk = 8 << 20

func (w *writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.size += int64(n)
	if !w.noSync && w.size-w.flushed >= writebackChunk {
		// Asynchronous and advisory: an error here changes nothing that
		// Commit's fsync does not check.
		unix.SyncFileRange(int(w.f.Fd()), w.flushed, w.size-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
		w.flushed = w.size
	}
	return n, err
}

func (w *writer) Size() int64 { return w.size }

func (w *writer) Commit(context.Context) error {
	if w.done {
		return nil
	}
	w.done = true
	if w.noSync {
		return w.f.Close()
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}

func (w *writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	// The registry records the upload's new size once Close returns; the
	// bytes must be on disk by then, or a crash could leave the record
	// ahead of the file.
	var err error
	if !w.noSync {
		err = w.f.Sync()
	}
	return errors.Join(err, w.f.Close())
}

func (w *writer) Cancel(context.Context) error {
	name := w.f.Name()
	if !w.done {
		w.done = true
		w.f.Close() // no fsync: the bytes are going
	}
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
