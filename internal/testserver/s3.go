package testserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityGWVersion is the release of versitygw that S3 installs and runs.
const VersityGWVersion = "v1.8.0"

// S3Server is an S3-compatible endpoint with a bucket of its own.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:<port>
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string // empty, and used by no other caller of S3
}

// Client returns an SDK client for the server, with path-style addressing.
func (s S3Server) Client() *awss3.Client {
	return awss3.New(awss3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// versitygw is the one server a test binary shares.
type versitygw struct {
	cmd      *exec.Cmd
	dir      string
	endpoint string
	exited   chan struct{}

	mu  sync.Mutex
	log bytes.Buffer // its output, for failure messages
}

// versity is the one server a test binary starts, on first use.
var (
	versity once[*versitygw]
	buckets atomic.Int64
)

const (
	s3AccessKey = "berthtest"
	s3SecretKey = "berthtestsecret"
	s3Region    = "us-east-1"
)

// S3 returns a new, empty bucket on a versitygw server (POSIX backend in a
// temporary directory, listening on 127.0.0.1) that the test binary installs
// at VersityGWVersion and starts on first use, and that StopS3 stops. The
// test fails, never skips, when the server cannot be installed or started.
// Should the test binary die without StopS3, the kernel kills the server.
func S3(t testing.TB) S3Server {
	t.Helper()
	srv := versity.get(t, "S3", startVersityGW)
	s := S3Server{
		Endpoint:  srv.endpoint,
		Region:    s3Region,
		AccessKey: s3AccessKey,
		SecretKey: s3SecretKey,
		Bucket:    fmt.Sprintf("berth-test-%d", buckets.Add(1)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("testserver: S3: creating bucket %s: %v\nversitygw output:\n%s", s.Bucket, err, srv.output())
	}
	return s
}

// StopS3 stops the server S3 started, if any, and removes its files. Call
// it from TestMain after m.Run.
func StopS3() error { return versity.stop() }

// installVersityGW returns the path of the pinned versitygw binary, building
// it with go install into the tools directory the first time.
func installVersityGW() (string, error) {
	tools, err := ToolsDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(tools, "versitygw-"+VersityGWVersion)
	exe := filepath.Join(bin, "versitygw")
	if _, err := os.Stat(exe); err == nil {
		return exe, nil
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	// Install beside the final name and rename, so that an interrupted
	// install, or test binaries installing at once, never leave half a file.
	tmp, err := os.MkdirTemp(bin, "install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(goTool, "install", "github.com/versity/versitygw/cmd/versitygw@"+VersityGWVersion)
	cmd.Dir = os.TempDir() // outside any module, so the caller's go.mod plays no part
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing versitygw %s with go install: %v\n%s", VersityGWVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "versitygw"), exe); err != nil {
		return "", err
	}
	return exe, nil
}

func startVersityGW() (*versitygw, error) {
	exe, err := installVersityGW()
	if err != nil {
		return nil, err
	}
	// The free port can be taken before the server binds it: try again.
	for range 2 {
		srv, err := runVersityGW(exe)
		if err == nil {
			return srv, nil
		}
		if !errors.Is(err, errVersityExited) {
			return nil, err
		}
	}
	return runVersityGW(exe)
}

var errVersityExited = errors.New("versitygw exited")

// runVersityGW starts exe on a free port and waits until it answers.
func runVersityGW(exe string) (*versitygw, error) {
	removeOrphanDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := &versitygw{dir: dir, endpoint: "http://" + addr, exited: make(chan struct{})}
	srv.cmd = exec.Command(exe,
		"--port", addr, "--access", s3AccessKey, "--secret", s3SecretKey, "--region", s3Region,
		"--keep-alive", "--quiet",
		"posix", dir)
	srv.cmd.Stdout, srv.cmd.Stderr = srv, srv
	if err := startOrphanProof(srv.cmd); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting versitygw: %w", err)
	}
	go func() {
		srv.cmd.Wait()
		close(srv.exited)
	}()
	err = WaitFor(30*time.Second, func() error {
		select {
		case <-srv.exited:
			return errVersityExited
		default:
		}
		resp, err := http.Get(srv.endpoint + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil // any answer, even 403, means it serves
	})
	if err != nil {
		srv.stop()
		return nil, fmt.Errorf("versitygw on %s: %w\noutput:\n%s", addr, err, srv.output())
	}
	return srv, nil
}

// dirPrefix starts the name of a server's directory, followed by the
// test binary's PID.
const dirPrefix = "berth-versitygw-"

// removeOrphanDirs removes the directories of servers whose test binary
// died without StopS3 (killed, say, by go test's timeout).
func removeOrphanDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		pid, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), dirPrefix), "-")
		n, err := strconv.Atoi(pid)
		if ok && err == nil && errors.Is(syscall.Kill(n, 0), syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// startOrphanProof starts cmd so that the kernel kills it if this process
// dies without calling StopS3: the child gets SIGKILL when the thread that
// started it exits, so it is started from a thread that never exits.
func startOrphanProof(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the process
		started <- cmd.Start()
		select {}
	}()
	return <-started
}

// stop kills the server and removes its files. Its data is throwaway, and
// asked to exit (SIGTERM) it waits for the clients' idle keep-alive
// connections, which can outlive the tests.
func (s *versitygw) stop() error {
	var errs []error
	select {
	case <-s.exited:
	default:
		if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, err)
		}
		<-s.exited
	}
	errs = append(errs, os.RemoveAll(s.dir))
	return errors.Join(errs...)
}

// Write collects the server's output.
func (s *versitygw) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(p)
}

func (s *versitygw) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}
