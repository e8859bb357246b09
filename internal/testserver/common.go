package testserver

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
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
