package auth

import (
	"os"
	"sync"
	"time"
)

// watched is a file parsed into a T and parsed again when it changes. The
// file is looked at (one stat) at most once per recheck, on use, so an
// edit takes effect within that time without a goroutine or a restart. A
// change that does not parse keeps the last good value and is reported
// through onError.
type watched[T any] struct {
	path    string
	parse   func([]byte) (T, error)
	onError func(error)
	recheck time.Duration

	mu      sync.Mutex
	val     T
	mod     time.Time
	size    int64
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

func (w *watched[T]) load() error {
	fi, err := os.Stat(w.path)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		return err
	}
	v, err := w.parse(b)
	if err != nil {
		return err
	}
	w.val, w.mod, w.size = v, fi.ModTime(), fi.Size()
	return nil
}

// get returns the current value, reading the file again if it changed.
func (w *watched[T]) get() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now := time.Now(); now.Sub(w.checked) >= w.recheck {
		w.checked = now
		fi, err := os.Stat(w.path)
		if err == nil && (!fi.ModTime().Equal(w.mod) || fi.Size() != w.size) {
			err = w.load()
		}
		if err != nil && w.onError != nil {
			w.onError(err)
		}
	}
	return w.val
}
