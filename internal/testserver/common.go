package testserver

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// ToolsDir is where installed tools are cached between runs: $BERTH_TEST_TOOLS
// or <user cache dir>/berth-test-tools, shared with the black-box suites.
func ToolsDir() (string, error) {
	if d := os.Getenv("BERTH_TEST_TOOLS"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "berth-test-tools"), nil
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitFor polls ready until it returns nil or the timeout passes.
func WaitFor(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopper is a running server.
type stopper interface{ stop() error }

// once is a server that a test binary starts on first use and stops once,
// after which asking for it fails the test.
type once[S stopper] struct {
	start   sync.Once
	srv     S
	err     error
	mu      sync.Mutex // guards started and stopped
	started bool
	stopped bool
}

// get starts the server the first time and returns it.
func (o *once[S]) get(t testing.TB, what string, start func() (S, error)) S {
	t.Helper()
	o.start.Do(func() {
		o.srv, o.err = start()
		o.mu.Lock()
		o.started = o.err == nil
		o.mu.Unlock()
	})
	if o.err != nil {
		t.Fatalf("testserver: %s: %v", what, o.err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		t.Fatalf("testserver: %s was already stopped", what)
	}
	return o.srv
}

// stop stops the server if it was started and is still running.
func (o *once[S]) stop() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.started || o.stopped {
		return nil
	}
	o.stopped = true
	return o.srv.stop()
}
