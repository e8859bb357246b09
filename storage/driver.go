package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors a Driver returns; callers test for them with errors.Is.
var (
	// ErrNotFound: no object under that key.
	ErrNotFound = errors.New("storage: not found")
	// ErrInvalidOffset: a writer was asked to resume past the end of what was stored.
	ErrInvalidOffset = errors.New("storage: invalid offset")
	// ErrUnavailable: the backend is throttling or briefly down, and kept
	// failing through the driver's retries; the request may succeed later.
	ErrUnavailable = errors.New("storage: temporarily unavailable")
)

// Driver is a backend that stores objects under slash-separated keys such as
// "blobs/sha256/ab/ab12…". It is the whole contract between the Store and a
// backend; storagetest.Run checks that an implementation keeps it.
//
// Move publishes an object atomically, so a reader of a moved key never sees
// a partial object. Before Commit a Writer's bytes are reachable only by
// resuming it with Writer (whether Stat sees them depends on the backend, and
// the Store never relies on it), and List reports their key so that abandoned
// uploads can be found. Every method is safe for concurrent use;
// concurrent writers to one key are the caller's to prevent (the Store gives
// each upload its own key).
type Driver interface {
	// Stat returns the size of the object at key, or ErrNotFound.
	Stat(ctx context.Context, key string) (int64, error)
	// Open returns a reader of the object at key, or ErrNotFound.
	Open(ctx context.Context, key string) (io.ReadSeekCloser, error)
	// Writer opens key for writing from offset. Offset 0 starts afresh; a
	// larger offset resumes an earlier writer's bytes, dropping any stored
	// past offset, or fails with ErrInvalidOffset if fewer bytes were stored.
	Writer(ctx context.Context, key string, offset int64) (Writer, error)
	// Move atomically replaces the object at to with the one at from.
	Move(ctx context.Context, from, to string) error
	// Delete removes the object at key and whatever an uncommitted Writer
	// left under it; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every key under prefix that holds a committed object
	// or an uncommitted Writer's bytes, once each, in no particular order,
	// and stops at fn's first error. ModTime is when the key was last
	// written, as near as the backend knows.
	List(ctx context.Context, prefix string, fn func(Object) error) error
}

// Writer receives an object's bytes.
type Writer interface {
	io.Writer
	// Size is the number of bytes stored so far, including those written
	// before a resume.
	Size() int64
	// Commit makes what was written durable and readable under the key.
	Commit(ctx context.Context) error
	// Close releases the writer, keeping what was written so far for a later
	// resume. Calling Close after Commit is allowed and does nothing.
	Close() error
	// Cancel discards the writer and everything written under its key.
	Cancel(ctx context.Context) error
}

// Object is an entry seen by List.
type Object struct {
	Key     string
	Size    int64
	ModTime time.Time
	// Pending: the bytes of an uncommitted Writer, kept apart from the key
	// (S3: a multipart upload in progress), so nothing reads them there
	// yet. A driver that writes in place (disk) reports false.
	Pending bool
}
