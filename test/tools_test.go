package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Pinned versions of the clients the suite drives. Each is installed once into the tool cache
// (see toolCacheDir) under a directory named after its version, so a re-run reuses it.
const (
	craneModule   = "github.com/google/go-containerregistry/cmd/crane"
	craneVersion  = "v0.22.1"
	orasModule    = "oras.land/oras/cmd/oras"
	orasVersion   = "v1.3.6"
	regctlModule  = "github.com/regclient/regclient/cmd/regctl"
	regctlVersion = "v0.11.7"
	// The conformance suite is a main package since its 2025 rewrite; it is built with go build.
	conformanceModule  = "github.com/opencontainers/distribution-spec/conformance"
	conformanceVersion = "v0.0.0-20260831232431-97274622c111"
	// The reference registry, only used when BERTH_E2E_SERVER=distribution (to check the suite itself).
	distributionModule  = "github.com/distribution/distribution/v3/cmd/registry"
	distributionVersion = "v3.1.2"
)

// aptPackages names the Debian package that provides each tool not installed through Go.
var aptPackages = map[string]string{
	"skopeo": "skopeo",
	"docker": "docker.io (or Docker Engine; the daemon must be running)",
}

// toolCacheDir is where installed tools live: $BERTH_TEST_TOOLS, else <user cache>/berth-test-tools.
func toolCacheDir() (string, error) {
	if d := os.Getenv("BERTH_TEST_TOOLS"); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache dir (set BERTH_TEST_TOOLS): %w", err)
	}
	return filepath.Join(d, "berth-test-tools"), nil
}

// installed is one tool installation, done at most once per test binary.
type installed struct {
	once sync.Once
	path string
	err  error
}

var (
	installsMu sync.Mutex
	installs   = map[string]*installed{}
)

// cachedTool returns the path of binary name installed under key in the tool cache, running
// install(dir) into a scratch directory the first time and publishing it with a rename.
func cachedTool(t testing.TB, key, name string, install func(ctx context.Context, dir string) error) string {
	t.Helper()
	installsMu.Lock()
	in := installs[key]
	if in == nil {
		in = &installed{}
		installs[key] = in
	}
	installsMu.Unlock()
	in.once.Do(func() {
		in.path, in.err = installTool(key, name, install)
	})
	if in.err != nil {
		t.Fatalf("installing %s: %v", key, in.err)
	}
	return in.path
}

func installTool(key, name string, install func(ctx context.Context, dir string) error) (string, error) {
	cache, err := toolCacheDir()
	if err != nil {
		return "", err
	}
	final := filepath.Join(cache, key)
	bin := filepath.Join(final, name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp(cache, ".install-"+key+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := install(ctx, scratch); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(scratch, name)); err != nil {
		return "", fmt.Errorf("install produced no %s: %w", name, err)
	}
	if err := os.Rename(scratch, final); err != nil {
		// Another test binary may have published the same key meanwhile.
		if _, statErr := os.Stat(bin); statErr != nil {
			return "", err
		}
	}
	fmt.Fprintf(os.Stderr, "berth e2e: installed %s into %s in %s\n", key, final, time.Since(start).Round(time.Second))
	return bin, nil
}

// goTool runs the go command in dir, outside any module or workspace of the project.
func goTool(ctx context.Context, dir string, env []string, args ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is needed to install test tools: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// goInstalled installs module@version with go install and returns the binary path.
func goInstalled(t testing.TB, name, module, version string) string {
	t.Helper()
	return cachedTool(t, name+"-"+version, name, func(ctx context.Context, dir string) error {
		return goTool(ctx, os.TempDir(), []string{"GOBIN=" + dir}, "install", module+"@"+version)
	})
}

func craneBin(t testing.TB) string  { return goInstalled(t, "crane", craneModule, craneVersion) }
func orasBin(t testing.TB) string   { return goInstalled(t, "oras", orasModule, orasVersion) }
func regctlBin(t testing.TB) string { return goInstalled(t, "regctl", regctlModule, regctlVersion) }
func distributionBin(t testing.TB) string {
	return goInstalled(t, "registry", distributionModule, distributionVersion)
}

// conformanceBin builds the OCI conformance suite in a scratch module.
func conformanceBin(t testing.TB) string {
	t.Helper()
	return cachedTool(t, "conformance-"+conformanceVersion, "conformance", func(ctx context.Context, dir string) error {
		mod := filepath.Join(dir, "mod")
		if err := os.Mkdir(mod, 0o755); err != nil {
			return err
		}
		steps := [][]string{
			{"mod", "init", "berth.test/conformance"},
			{"get", conformanceModule + "@" + conformanceVersion},
			{"build", "-o", filepath.Join(dir, "conformance"), conformanceModule},
		}
		for _, s := range steps {
			if err := goTool(ctx, mod, nil, s...); err != nil {
				return err
			}
		}
		return os.RemoveAll(mod)
	})
}

// systemBin finds a tool that comes from the system, failing with the package to install.
func systemBin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not on PATH: install the Debian package %s (apt-get install -y %s)",
			name, aptPackages[name], strings.Fields(aptPackages[name])[0])
	}
	return p
}

// cmdTimeout bounds every single client invocation.
const cmdTimeout = 3 * time.Minute

// tool is a command line client with the environment it runs in.
type tool struct {
	path  string
	env   []string
	dir   string
	stdin []byte // what the tool reads on standard input (a password)
}

// run runs the tool and returns its stdout, failing the test with both streams on error.
func (tl tool) run(t testing.TB, args ...string) []byte {
	t.Helper()
	out, errOut, err := tl.exec(args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(tl.path), strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// exec runs the tool and returns stdout, stderr and the error, for callers expecting failure.
func (tl tool) exec(args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tl.path, args...)
	cmd.Env = append(os.Environ(), tl.env...)
	cmd.Dir = tl.dir
	if tl.stdin != nil {
		cmd.Stdin = bytes.NewReader(tl.stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", cmdTimeout, err)
	}
	return o.Bytes(), e.Bytes(), err
}
