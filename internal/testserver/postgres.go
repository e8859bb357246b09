package testserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// pgPackage is what to install when the server binaries are missing.
const pgPackage = "the Debian package postgresql (apt-get install -y postgresql)"

// postgres is the one server a test binary starts, on first use.
var (
	postgres once[*pgServer]
	nextDB   atomic.Int64
)

// Postgres returns the URL of a new, empty database on a PostgreSQL server
// that the test binary starts on first use (initdb into a temporary
// directory, listening on 127.0.0.1) and that StopPostgres stops. The test
// fails, never skips, when the server cannot start.
func Postgres(t testing.TB) string {
	t.Helper()
	srv := postgres.get(t, "PostgreSQL", startPostgres)
	name := fmt.Sprintf("test_%d", nextDB.Add(1))
	if err := srv.createDB(t.Context(), name); err != nil {
		t.Fatalf("testserver: PostgreSQL: CREATE DATABASE %s: %v", name, err)
	}
	return srv.url(name)
}

// StopPostgres stops the server Postgres started, if any, and removes its
// files. Call it from TestMain after m.Run.
func StopPostgres() error { return postgres.stop() }

type pgServer struct {
	dir   string // data, socket and log, all removed by stop
	port  int
	cmd   *exec.Cmd
	exit  chan struct{} // closed when the server process has exited
	admin *sql.DB       // the "postgres" database, for CREATE DATABASE
}

func (s *pgServer) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// startPostgres runs initdb and starts the server, as the postgres OS user
// when the tests run as root (the server refuses to run as root).
func startPostgres() (_ *pgServer, err error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: it lives as long as the binary, and as root its parent
	// is not readable by the postgres user.
	dir, err := os.MkdirTemp("", "berth-postgres-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{dir: dir, exit: make(chan struct{})}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"--no-sync", "--encoding=UTF8", "--locale=C")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if s.port, err = FreePort(); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	if cred != nil {
		if err := logFile.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		"-c", "max_connections=300",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=128MB",
		// Tests race transactions into deadlocks on purpose: find them fast.
		"-c", "deadlock_timeout=50ms",
	)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	// If the test binary dies without stopping it, the kernel tells the
	// server to shut down (fast shutdown on SIGINT).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exit)
	}()
	if s.admin, err = sql.Open("pgx", s.url("postgres")); err != nil {
		return nil, err
	}
	err = WaitFor(30*time.Second, func() error {
		select {
		case <-s.exit:
			return errExited
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return s.admin.PingContext(ctx)
	})
	if err != nil {
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("postgres did not start: %w\n%s", err, log)
	}
	return s, nil
}

var errExited = errors.New("the server exited")

func (s *pgServer) createDB(ctx context.Context, name string) error {
	_, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+name)
	return err
}

// stop asks the server for a fast shutdown, waits for it (killing it after
// 10 s), and removes its files.
func (s *pgServer) stop() error {
	var errs []error
	if s.admin != nil {
		errs = append(errs, s.admin.Close())
	}
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.exit:
		default:
			errs = append(errs, s.cmd.Process.Signal(syscall.SIGINT))
			select {
			case <-s.exit:
			case <-time.After(10 * time.Second):
				errs = append(errs, errors.New("postgres did not stop in 10s; killed"), s.cmd.Process.Kill())
				<-s.exit
			}
		}
	}
	errs = append(errs, os.RemoveAll(s.dir))
	return errors.Join(errs...)
}

// pgBinDir finds initdb and postgres: $BERTH_TEST_PG_BIN, else the newest
// /usr/lib/postgresql/<version>/bin (Debian), else the PATH.
func pgBinDir() (string, error) {
	var dirs []string
	if d := os.Getenv("BERTH_TEST_PG_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(debian, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
	dirs = append(dirs, debian...)
	if p, err := exec.LookPath("postgres"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("the server binaries initdb and postgres are not in $BERTH_TEST_PG_BIN, "+
		"/usr/lib/postgresql/*/bin or the PATH; install %s", pgPackage)
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(strings.Split(filepath.Base(filepath.Dir(binDir)), ".")[0])
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// pgCredential is the postgres OS user when running as root (PostgreSQL
// refuses to run as root), nil otherwise.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres OS user, which %s creates: %w", pgPackage, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
