// Package test holds Berth's black-box end-to-end suites: the built binary, driven over HTTP by the
// OCI conformance suite and by real clients (crane, oras, skopeo, regctl, docker).
//
// Run with `go test ./test/`. Tools are installed on first use into $BERTH_TEST_TOOLS (default
// <user cache>/berth-test-tools). BERTH_E2E_SERVER=distribution runs the suite against the reference
// registry instead of Berth, to check the suite itself.
package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
)

const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 20 * time.Second
)

var (
	// workDir is a per-run scratch directory for the built binary and the shared server.
	workDir string
	// shared is the one server used by tests that never stop it; started on first use.
	sharedOnce sync.Once
	sharedSrv  *server
	sharedErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	// The replica test's S3 and PostgreSQL servers, if it started them.
	if err := errors.Join(testserver.StopS3(), testserver.StopPostgres()); err != nil {
		fmt.Fprintln(os.Stderr, "stopping test servers:", err)
	}
	if sharedSrv != nil {
		if err := sharedSrv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "shared server: %v\n%s", err, sharedSrv.logs.tail(100))
			code = 1
		}
	}
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "berth e2e: server data and logs kept in %s\n", dir)
	}
	os.Exit(code)
}

// serverKind selects what startBerth runs: "berth" (default) or "distribution" (reference registry).
func serverKind() string {
	if k := os.Getenv("BERTH_E2E_SERVER"); k != "" {
		return k
	}
	return "berth"
}

var (
	berthOnce sync.Once
	berthPath string
	berthErr  error
)

// berthBin builds ./cmd/berth from the repository root once per test binary.
func berthBin(t testing.TB) string {
	t.Helper()
	berthOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			berthErr = err
			return
		}
		if _, err := os.Stat(filepath.Join(root, "cmd", "berth", "main.go")); err != nil {
			berthErr = fmt.Errorf("no Berth server to test: %w", err)
			return
		}
		berthPath = filepath.Join(workDir, "berth")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", berthPath, "./cmd/berth")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			berthErr = fmt.Errorf("go build ./cmd/berth: %v\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "berth e2e: built berth in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if berthErr != nil {
		t.Fatal(berthErr)
	}
	return berthPath
}

// serverOptions configures startBerth.
type serverOptions struct {
	// Name labels the instance's directory; defaults to the test name.
	Name string
	// Flags are extra `berth serve` flags.
	Flags []string
	// PublicURL adds --public-url with the server's own URL, which is known only once its port
	// is: the host webhook deliveries name, for receivers to pull from.
	PublicURL bool
	// HTTPS: the flags serve TLS, so the server's URL is https://.
	HTTPS bool
}

// server is one running registry process on 127.0.0.1 with its data directory.
type server struct {
	Host string // 127.0.0.1:<port>, for image references
	URL  string // http://127.0.0.1:<port>
	Data string // the data directory, kept across restarts

	kind  string
	dir   string
	bin   string
	logs  *logBuffer
	flags []string // extra flags for berth

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	werr error         // cmd.Wait's result, valid after done
}

// startBerth starts a registry (Berth unless BERTH_E2E_SERVER says otherwise) on a free port with a
// fresh data directory. It is killed at the end of the test; logs are printed if the test failed.
func startBerth(t testing.TB, opts serverOptions) *server {
	t.Helper()
	name := opts.Name
	if name == "" {
		name = t.Name()
	}
	s, err := newServer(serverBinary(t), name)
	if err != nil {
		t.Fatal(err)
	}
	s.flags = opts.Flags
	if opts.HTTPS {
		s.URL = "https://" + s.Host
	}
	if opts.PublicURL {
		s.flags = slices.Concat(opts.Flags, []string{"--public-url", s.URL})
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs (%s):\n%s", s.kind, s.logs.tail(200))
		}
		s.kill()
	})
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// sharedServer returns the server shared by tests that do not stop or restart it.
func sharedServer(t *testing.T) *server {
	t.Helper()
	bin := serverBinary(t)
	sharedOnce.Do(func() {
		sharedSrv, sharedErr = newServer(bin, "shared")
		if sharedErr == nil {
			sharedErr = sharedSrv.start()
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared server logs (last lines, all tests):\n%s", sharedSrv.logs.tail(80))
		}
	})
	return sharedSrv
}

// serverBinary returns the binary of the registry selected by serverKind, building or installing it.
func serverBinary(t testing.TB) string {
	t.Helper()
	switch kind := serverKind(); kind {
	case "berth":
		return berthBin(t)
	case "distribution":
		return distributionBin(t)
	default:
		t.Fatalf("BERTH_E2E_SERVER=%q: want berth or distribution", kind)
		return ""
	}
}

func newServer(bin, name string) (*server, error) {
	kind := serverKind()
	dir, err := os.MkdirTemp(workDir, sanitize(name)+"-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	s := &server{
		Host: host,
		URL:  "http://" + host,
		Data: filepath.Join(dir, "data"),
		kind: kind,
		dir:  dir,
		bin:  bin,
		logs: &logBuffer{},
	}
	return s, os.MkdirAll(s.Data, 0o755)
}

func (s *server) args() ([]string, error) {
	if s.kind == "berth" {
		return append([]string{"serve", "--addr", s.Host, "--data", s.Data}, s.flags...), nil
	}
	// The reference registry: the fixed secret keeps upload state tokens valid across restarts.
	conf := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: berth-e2e-secret
`, s.Data, s.Host)
	p := filepath.Join(s.dir, "config.yml")
	return []string{"serve", p}, os.WriteFile(p, []byte(conf), 0o644)
}

// start launches the process and waits until GET /v2/ answers: 200, or 401 when it asks for credentials.
func (s *server) start() error {
	args, err := s.args()
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	fmt.Fprintf(s.logs, "=== %s %s\n", s.bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.werr = err
		s.mu.Unlock()
		close(done)
	}()
	deadline := time.Now().Add(readyTimeout)
	// Readiness only: whether the certificate is right is the test's business.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for {
		select {
		case <-done:
			return fmt.Errorf("%s exited before it was ready: %v\n%s", s.kind, s.waitErr(), s.logs.tail(50))
		default:
		}
		resp, err := client.Get(s.URL + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("%s not ready after %s (last: %v)\n%s", s.kind, readyTimeout, statusOrErr(resp, err), s.logs.tail(50))
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not a wait for a condition
	}
}

func statusOrErr(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

func (s *server) waitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.werr
}

func (s *server) running() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd, s.done
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() error {
	cmd, done := s.running()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return fmt.Errorf("%s had already exited: %v", s.kind, s.waitErr())
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(stopTimeout):
		s.kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM", s.kind, stopTimeout)
	}
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
	// The reference registry does not handle SIGTERM; Berth must shut down and exit 0.
	if err := s.waitErr(); err != nil && s.kind == "berth" {
		return fmt.Errorf("%s exited uncleanly after SIGTERM: %w", s.kind, err)
	}
	return nil
}

// kill sends SIGKILL (a crash) and waits for the process to be gone.
func (s *server) kill() {
	cmd, done := s.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
	s.mu.Lock()
	s.cmd = nil
	s.mu.Unlock()
}

// restart starts the server again on the same address and data directory after stop or kill.
func (s *server) restart(t *testing.T) {
	t.Helper()
	if cmd, _ := s.running(); cmd != nil {
		t.Fatal("restart: server is still running")
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// ref returns the image reference host/repo plus suffix (":tag" or "@digest").
func (s *server) ref(repo, suffix string) string { return s.Host + "/" + repo + suffix }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, name)
}

// logBuffer collects a process's output for the test log; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail returns the last n lines.
func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.SplitAfter(b.buf.String(), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d earlier lines]\n", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}

// poll checks cond until it holds, failing the test after a while.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, readyTimeout)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for a condition
	}
}
