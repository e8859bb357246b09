package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// benchmarks in the order they run; each runs on every target before the next starts.
var benchmarks = []string{"push", "pull", "image", "manifest", "tags", "catalog"}

// targetSpec is one registry to measure, from a -target flag.
type targetSpec struct {
	name string
	url  string
	pid  int // 0: unknown, no memory metrics
}

// config is everything the flags select.
type config struct {
	targets   []targetSpec
	run       map[string]bool
	layerSize int64
	pushModes []uploadMode
	chunkSize int64
	pullRuns  int
	layers    int
	smallSize int64
	pushConc  int
	pullConc  int
	conns     int
	duration  time.Duration
	tags      int
	tagConc   int
	page      int
	listRuns  int
	repos     int
	repoConc  int
	catalogN  int
	repo      string
	jsonOut   string
	keepGoing bool
	sync      bool
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	command := commandLine(filepath.Base(os.Args[0]), os.Args[1:])
	rep, err := runAll(ctx, cfg, command, os.Stderr)
	if rep != nil {
		out := os.Stdout
		if cfg.jsonOut == "-" {
			out = os.Stderr
		}
		rep.markdown(out)
		if cfg.jsonOut != "" {
			if jerr := writeJSONFile(rep, cfg.jsonOut); jerr != nil {
				fmt.Fprintln(os.Stderr, "bench:", jerr)
				err = errors.Join(err, jerr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{}
	var only, skip, modes string
	fs.Func("target", "registry to measure, `name=URL[,pid=N]` (repeatable; URL may carry user:password@ for basic auth)", func(s string) error {
		t, err := parseTarget(s)
		if err == nil {
			cfg.targets = append(cfg.targets, t)
		}
		return err
	})
	fs.StringVar(&only, "bench", strings.Join(benchmarks, ","), "benchmarks to run, comma-separated")
	fs.StringVar(&skip, "skip", "", "benchmarks to skip, comma-separated")
	quick := fs.Bool("quick", false, "smoke mode: 64MiB layer, 20 layers, 500 tags, 200 repositories, 2s manifest run (explicit flags win)")
	layerSize := sizeFlag(1 << 30)
	fs.Var(&layerSize, "layer-size", "size of the large blob pushed and pulled (e.g. 1GiB, 64MiB)")
	fs.StringVar(&modes, "push-modes", "stream,monolithic,chunked", "upload modes for the large blob: stream (docker: one PATCH), monolithic (one PUT), chunked (PATCH -chunk-size pieces)")
	chunk := sizeFlag(16 << 20)
	fs.Var(&chunk, "chunk-size", "PATCH size of the chunked upload")
	fs.IntVar(&cfg.pullRuns, "pull-runs", 3, "pulls of the large blob; the median is reported")
	fs.IntVar(&cfg.layers, "layers", 200, "layers of the many-layer image")
	small := sizeFlag(64 << 10)
	fs.Var(&small, "small-size", "size of each layer of the many-layer image")
	fs.IntVar(&cfg.pushConc, "push-concurrency", 5, "parallel layer uploads of the many-layer image (docker's default is 5)")
	fs.IntVar(&cfg.pullConc, "pull-concurrency", 3, "parallel layer downloads of the many-layer image (docker's default is 3)")
	fs.IntVar(&cfg.conns, "conns", 32, "concurrent connections of the manifest GET run")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of the manifest GET run")
	fs.IntVar(&cfg.tags, "tags", 5000, "tags pushed onto one repository for the tag-list benchmark")
	fs.IntVar(&cfg.tagConc, "tag-concurrency", 16, "parallel manifest PUTs while pushing the tags")
	fs.IntVar(&cfg.page, "page", 100, "page size n of the paginated tag-list walk")
	fs.IntVar(&cfg.listRuns, "list-runs", 5, "repetitions of each tag or catalog listing; the median is reported")
	fs.IntVar(&cfg.repos, "repos", 2000, "repositories created for the catalog benchmark, one image each")
	fs.IntVar(&cfg.repoConc, "repo-concurrency", 16, "repositories created in parallel")
	fs.IntVar(&cfg.catalogN, "catalog-n", 10000, "n of the full catalog listing, to get it in one page (the reference registry needs catalog.maxentries at least this)")
	fs.StringVar(&cfg.repo, "repo", "bench", "repository prefix; each run adds /<run id>/<benchmark>")
	fs.StringVar(&cfg.jsonOut, "json", "", "also write the results as JSON to this `file` (- for stdout)")
	fs.BoolVar(&cfg.keepGoing, "keep-going", false, "record a failed benchmark as an error and go on, instead of aborting")
	fs.BoolVar(&cfg.sync, "sync", true, "flush dirty pages to disk (sync(2)) and, as root, drop the page cache, untimed, before each large push and before the pulls")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(cfg.targets) == 0 {
		return nil, errors.New("no -target given")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		quickDefaults := []struct {
			name  string
			apply func()
		}{
			{"layer-size", func() { layerSize = 64 << 20 }},
			{"layers", func() { cfg.layers = 20 }},
			{"tags", func() { cfg.tags = 500 }},
			{"repos", func() { cfg.repos = 200 }},
			{"duration", func() { cfg.duration = 2 * time.Second }},
			{"list-runs", func() { cfg.listRuns = 3 }},
		}
		for _, q := range quickDefaults {
			if !set[q.name] {
				q.apply()
			}
		}
	}
	cfg.layerSize, cfg.chunkSize, cfg.smallSize = int64(layerSize), int64(chunk), int64(small)
	var err error
	if cfg.run, err = selectBenchmarks(only, skip); err != nil {
		return nil, err
	}
	for _, m := range splitList(modes) {
		switch mode := uploadMode(m); mode {
		case modeStream, modeMonolithic, modeChunked:
			cfg.pushModes = append(cfg.pushModes, mode)
		default:
			return nil, fmt.Errorf("-push-modes: unknown mode %q", m)
		}
	}
	if len(cfg.pushModes) == 0 {
		return nil, errors.New("-push-modes is empty")
	}
	for _, p := range []struct {
		name string
		v    int64
	}{
		{"layer-size", cfg.layerSize}, {"chunk-size", cfg.chunkSize}, {"small-size", cfg.smallSize},
		{"pull-runs", int64(cfg.pullRuns)}, {"layers", int64(cfg.layers)}, {"push-concurrency", int64(cfg.pushConc)},
		{"pull-concurrency", int64(cfg.pullConc)}, {"conns", int64(cfg.conns)}, {"duration", int64(cfg.duration)},
		{"tags", int64(cfg.tags)}, {"tag-concurrency", int64(cfg.tagConc)}, {"page", int64(cfg.page)},
		{"list-runs", int64(cfg.listRuns)}, {"repos", int64(cfg.repos)}, {"repo-concurrency", int64(cfg.repoConc)},
		{"catalog-n", int64(cfg.catalogN)},
	} {
		if p.v <= 0 {
			return nil, fmt.Errorf("-%s must be positive", p.name)
		}
	}
	if cfg.smallSize < 16 {
		return nil, errors.New("-small-size must be at least 16 bytes")
	}
	return cfg, nil
}

// parseTarget reads "name=URL[,pid=N]"; a bare URL is named after its host.
func parseTarget(s string) (targetSpec, error) {
	parts := strings.Split(s, ",")
	var t targetSpec
	name, u, ok := strings.Cut(parts[0], "=")
	if !ok || strings.Contains(name, "://") {
		name, u = "", parts[0]
	}
	t.name, t.url = name, strings.TrimRight(u, "/")
	if t.name == "" {
		t.name = strings.TrimPrefix(strings.TrimPrefix(t.url, "http://"), "https://")
	}
	if !strings.HasPrefix(t.url, "http://") && !strings.HasPrefix(t.url, "https://") {
		return t, fmt.Errorf("-target %q: want name=http(s)://host[:port][,pid=N]", s)
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "pid":
			pid, err := strconv.Atoi(v)
			if err != nil || pid <= 0 {
				return t, fmt.Errorf("-target %q: bad pid %q", s, v)
			}
			t.pid = pid
		default:
			return t, fmt.Errorf("-target %q: unknown option %q", s, k)
		}
	}
	return t, nil
}

// selectBenchmarks returns the benchmarks named in only, minus those in skip.
func selectBenchmarks(only, skip string) (map[string]bool, error) {
	known := map[string]bool{}
	for _, b := range benchmarks {
		known[b] = true
	}
	run := map[string]bool{}
	for _, list := range []struct {
		s  string
		on bool
	}{{only, true}, {skip, false}} {
		for _, b := range splitList(list.s) {
			if !known[b] {
				return nil, fmt.Errorf("unknown benchmark %q (have %s)", b, strings.Join(benchmarks, ", "))
			}
			run[b] = list.on
		}
	}
	return run, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// sizeFlag is a byte count written as 1234, 64KiB, 16MiB, 1GiB (also K, M, G, KB…, all powers of 1024).
type sizeFlag int64

func (s *sizeFlag) String() string { return formatSize(int64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	*s = sizeFlag(n)
	return err
}

// parseSize reads a byte count with an optional binary unit.
func parseSize(v string) (int64, error) {
	num := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToLower(strings.TrimSpace(v[len(num):]))
	shift, ok := map[string]uint{"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20, "g": 30, "gb": 30, "gib": 30}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("bad size %q (want e.g. 1048576, 64KiB, 16MiB, 1GiB)", v)
	}
	return n << shift, nil
}

// formatSize writes n in the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// commandLine quotes args so that the line can be pasted into a shell.
func commandLine(prog string, args []string) string {
	out := []string{prog}
	for _, a := range args {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool {
			return !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=,.:/@+%", r)
		}) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

func writeJSONFile(rep *report, path string) error {
	if path == "-" {
		return rep.writeJSON(os.Stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.writeJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// newRunID returns a random seed for the run's data and a short id for its repository names.
func newRunID() ([32]byte, string) {
	var seed [32]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails
	return seed, hex.EncodeToString(seed[:4])
}

// environment describes the machine, for the report's notes.
func environment() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %s/%s, %d CPUs, host %s, %s", runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), host, time.Now().UTC().Format(time.RFC3339))
}
