//go:build unix

package metadata

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on the file at path, created if needed,
// without waiting: ErrGCRunning when another process holds it. The lock
// goes with the process, should it die.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, ErrGCRunning
		}
		return nil, err
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
