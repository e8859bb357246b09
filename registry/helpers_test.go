package registry

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/gc"
	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
)

// TestMain stops the PostgreSQL server a benchmark started.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := testserver.StopPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping PostgreSQL:", err)
		code = 1
	}
	os.Exit(code)
}

// testServer is a Registry on disk storage and SQLite behind a real HTTP
// server on a loopback port.
type testServer struct {
	t       testing.TB
	handler http.Handler
	URL     string
	dir     string
	db      *metadata.DB
	store   *storage.Store
	// user, when set, sends basic credentials: the user, password "pw-"+user.
	user string
}

// as is the server as user sees it: every request carries their credentials.
func (s *testServer) as(user string) *testServer {
	c := *s
	c.user = user
	return &c
}

// serverSetup is what newServer opens the database and the registry with.
type serverSetup struct {
	meta metadata.Options
	reg  Options
	// opened run on the open database before the registry is made.
	opened []func(t testing.TB, db *metadata.DB, o *Options)
}

// serverOption changes the setup of newServer.
type serverOption func(*serverSetup)

// withClock makes now the database's clock: the time of the rows it writes.
func withClock(now func() time.Time) serverOption {
	return func(s *serverSetup) { s.meta.Now = now }
}

// withPostgres keeps metadata in the PostgreSQL database at url ("" keeps SQLite).
func withPostgres(url string) serverOption {
	return func(s *serverSetup) {
		if url != "" {
			s.meta = metadata.Options{PostgresURL: url, Now: s.meta.Now}
		}
	}
}

// withWebhooks routes events to the webhooks, and runs a dispatcher with
// the options o (its DB is the server's) until the test ends.
func withWebhooks(o notify.Options) serverOption {
	return func(s *serverSetup) {
		s.meta.Route = notify.Router()
		s.opened = append(s.opened, func(t testing.TB, db *metadata.DB, ro *Options) {
			o.DB, o.Logger = db, ro.Logger
			ro.Dispatcher = notify.New(o)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); ro.Dispatcher.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
		})
	}
}

func newServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	dir := t.TempDir()
	d, err := disk.New(filepath.Join(dir, "data"), disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := storage.NewStore(d)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	setup := serverSetup{meta: metadata.Options{SQLitePath: filepath.Join(dir, "berth.db")}, reg: Options{Store: store, Logger: log}}
	for _, opt := range opts {
		opt(&setup)
	}
	mo, o := setup.meta, setup.reg
	db, err := metadata.Open(context.Background(), mo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	o.DB = db
	if o.GC == nil {
		o.GC = gc.New(gc.Options{DB: db, Store: store, Logger: log})
	}
	for _, f := range setup.opened {
		f(t, db, &o)
	}
	h := New(o)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testServer{t: t, handler: h, URL: srv.URL, dir: dir, db: db, store: store}
}

type response struct {
	*http.Response
	body []byte
}

// code returns the first OCI error code of the response body, if any.
func (r *response) code() string {
	var env struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(r.body, &env) != nil || len(env.Errors) == 0 {
		return ""
	}
	return env.Errors[0].Code
}

// do sends one request; header is alternating names and values.
func (s *testServer) do(method, path string, body []byte, header ...string) *response {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if s.user != "" {
		req.SetBasicAuth(s.user, "pw-"+s.user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return &response{resp, b}
}

// expect fails the test unless the response has the status and OCI code.
func (r *response) expect(t testing.TB, status int, code string) {
	t.Helper()
	if r.StatusCode != status || r.code() != code {
		t.Fatalf("%s %s: got %d %q, want %d %q; body %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.code(), status, code, r.body)
	}
}

// pushBlob uploads data to repo in one POST and returns its digest.
func (s *testServer) pushBlob(repo string, data []byte) oci.Digest {
	s.t.Helper()
	d := oci.FromBytes(data)
	s.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+string(d), data).expect(s.t, http.StatusCreated, "")
	return d
}

// pushImage uploads a config and one layer and tags a manifest of them; it
// returns the manifest's bytes and digest.
func (s *testServer) pushImage(repo, tag string, layer []byte) ([]byte, oci.Digest) {
	s.t.Helper()
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q}`, tag))
	cd := s.pushBlob(repo, config)
	ld := s.pushBlob(repo, layer)
	m := imageManifest(desc("application/vnd.oci.image.config.v1+json", cd, len(config)),
		desc("application/vnd.oci.image.layer.v1.tar", ld, len(layer)))
	s.do("PUT", "/v2/"+repo+"/manifests/"+tag, m, "Content-Type", oci.MediaTypeImageManifest).expect(s.t, http.StatusCreated, "")
	return m, oci.FromBytes(m)
}

func desc(mediaType string, d oci.Digest, size int) string {
	return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mediaType, d, size)
}

func imageManifest(config string, layers ...string) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s]}`,
		oci.MediaTypeImageManifest, config, strings.Join(layers, ",")))
}

// blobFiles lists the files under the storage's blobs/ directory.
func (s *testServer) blobFiles() []string {
	s.t.Helper()
	var files []string
	root := filepath.Join(s.dir, "data", "blobs")
	filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

// snapshot describes all stored state: every file with its size, and every
// row of every metadata table. Two equal snapshots mean nothing changed.
func (s *testServer) snapshot() string {
	s.t.Helper()
	var b strings.Builder
	filepath.WalkDir(filepath.Join(s.dir, "data"), func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			fi, _ := e.Info()
			fmt.Fprintf(&b, "file %s %d\n", p, fi.Size())
		}
		return nil
	})
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(s.dir, "berth.db")+"?mode=ro")
	if err != nil {
		s.t.Fatal(err)
	}
	defer raw.Close()
	for _, table := range []string{"repositories", "blobs", "repository_blobs", "manifests", "repository_manifests", "manifest_references", "tags", "uploads"} {
		rows, err := raw.Query("SELECT * FROM " + table)
		if err != nil {
			s.t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			rows.Scan(ptrs...)
			lines = append(lines, fmt.Sprintf("%s %v", table, vals))
		}
		rows.Close()
		sort.Strings(lines)
		b.WriteString(strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}
