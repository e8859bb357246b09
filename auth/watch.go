package auth

import (
	"crypto/sha256"
	"os"
	"sync"
	"time"
)

// watched is a file parsed into a T and parsed again when it changes. The
// file is looked at (one stat and, if that shows no change, one read) at
// most once per recheck, on use, so an edit takes effect within that time
// without a goroutine or a restart. A change that does not parse keeps the
// last good value and is reported through onError, once.
type watched[T any] struct {
	path    string
	parse   func([]byte) (T, error)
	onError func(error)
	recheck time.Duration

	mu   sync.Mutex
	val  T
	seen os.FileInfo // the version last read, good or bad; nil if the file was missing
	// sum is the SHA-256 of the bytes last read, good or bad: a hash
	// rather than the bytes, so that no other copy of a key stays in memory.
	sum     [sha256.Size]byte
	checked time.Time
}

// recheckEvery is how often a watched file is looked at.
const recheckEvery = 2 * time.Second

// watch reads and parses path once; an error there is returned, since a
// server should not start on a broken file.
func watch[T any](path string, parse func([]byte) (T, error), onError func(error)) (*watched[T], error) {
	w := &watched[T]{path: path, parse: parse, onError: onError, recheck: recheckEvery}
	if err := w.load(); err != nil {
		return nil, err
	}
	return w, nil
}

// load reads and parses the file. The version read is remembered even when
// it does not parse, so that a broken file is reported once rather than at
// every recheck until someone fixes it.
func (w *watched[T]) load() error {
	fi, err := os.Stat(w.path)
	if err != nil {
		w.seen = nil
		return err
	}
	w.seen = fi
	b, err := os.ReadFile(w.path)
	if err != nil {
		return err
	}
	w.sum = sha256.Sum256(b)
	v, err := w.parse(b)
	if err != nil {
		return err
	}
	w.val = v
	return nil
}

// get returns the current value, reading the file again if it changed.
func (w *watched[T]) get() T {
	w.mu.Lock()
	var err error
	if now := time.Now(); now.Sub(w.checked) >= w.recheck {
		w.checked = now
		err = w.refresh()
	}
	v := w.val
	w.mu.Unlock()
	// Outside the lock: onError may log, or even use the value again.
	if err != nil && w.onError != nil {
		w.onError(err)
	}
	return v
}

// refresh reads the file again if it changed. An edit in place can keep
// the file's size and, within one tick of the file system's clock, its
// time (two quick password changes: bcrypt lines are all of one length),
// so a file that looks the same is read and its bytes compared: watched
// files are small. A file that looks the same and cannot be read keeps
// its value.
func (w *watched[T]) refresh() error {
	fi, err := os.Stat(w.path)
	if err != nil {
		fi = nil
	}
	if changed(fi, w.seen) {
		return w.load()
	}
	if fi == nil {
		return nil
	}
	b, err := os.ReadFile(w.path)
	if err != nil || sha256.Sum256(b) == w.sum {
		return nil
	}
	return w.load()
}

// changed reports whether fi is another version of the file than seen
// (nil: the file was missing). A file replaced by a rename (an editor's
// save, a Kubernetes secret, certbot) is another file even if its time
// and size are those of the old one.
func changed(fi, seen os.FileInfo) bool {
	if fi == nil || seen == nil {
		return (fi == nil) != (seen == nil)
	}
	return !os.SameFile(fi, seen) || !fi.ModTime().Equal(seen.ModTime()) || fi.Size() != seen.Size()
}
