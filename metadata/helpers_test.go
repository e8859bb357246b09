package metadata_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// clock is an injected Options.Now that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2024, 11, 26, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// tick advances the clock by one second and returns the new time.
func (c *clock) tick() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// backend is one of the databases every test runs on.
type backend struct {
	name string
	// fresh returns the options of a new, empty database.
	fresh func(t testing.TB) metadata.Options
}

var backends = []backend{
	{"sqlite", func(t testing.TB) metadata.Options {
		return metadata.Options{SQLitePath: filepath.Join(t.TempDir(), "berth.db")}
	}},
	{"postgres", func(t testing.TB) metadata.Options {
		return metadata.Options{PostgresURL: testserver.Postgres(t)}
	}},
}

// forEachBackend runs test once per backend, as subtests named after them.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

// TestMain stops the PostgreSQL server the tests started.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := testserver.StopPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping PostgreSQL:", err)
		code = 1
	}
	os.Exit(code)
}

// open opens a fresh database.
func (b backend) open(t testing.TB, c *clock) *metadata.DB {
	t.Helper()
	return openWith(t, b.fresh(t), c)
}

// openWith opens the database o names, closing it when the test ends.
func openWith(t testing.TB, o metadata.Options, c *clock) *metadata.DB {
	t.Helper()
	if c != nil {
		o.Now = c.Now
	}
	db, err := metadata.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// inTx runs fn in a write transaction and fails the test on error.
func inTx(t *testing.T, db *metadata.DB, fn func(ctx context.Context, tx *metadata.Tx) error) {
	t.Helper()
	if err := db.InTx(t.Context(), func(tx *metadata.Tx) error { return fn(t.Context(), tx) }); err != nil {
		t.Fatal(err)
	}
}

// blob is content with its descriptor.
type blob struct {
	digest oci.Digest
	size   int64
}

func newBlob(content string) blob {
	return blob{oci.FromBytes([]byte(content)), int64(len(content))}
}

// link records b as uploaded to repo.
func link(t *testing.T, db *metadata.DB, repo string, blobs ...blob) {
	t.Helper()
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		for _, b := range blobs {
			if err := tx.LinkBlob(ctx, repo, b.digest, b.size); err != nil {
				return err
			}
		}
		return nil
	})
}

// manifest is a parsed manifest with its exact bytes.
type manifest struct {
	digest  oci.Digest
	payload []byte
	parsed  *oci.Manifest
}

func (m manifest) blob() blob { return blob{m.digest, int64(len(m.payload))} }

func descriptor(mediaType string, b blob) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": b.digest, "size": b.size}
}

func parse(t testing.TB, doc map[string]any) manifest {
	t.Helper()
	payload, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := oci.ParseManifest("", payload)
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	return manifest{oci.FromBytes(payload), payload, m}
}

// image is an OCI image manifest over config and layers.
func image(t testing.TB, config blob, layers ...blob) manifest {
	t.Helper()
	ls := []any{}
	for _, l := range layers {
		ls = append(ls, descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l))
	}
	return parse(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeImageManifest,
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config),
		"layers":        ls,
	})
}

// artifact is an OCI artifact manifest about subject.
func artifact(t *testing.T, artifactType string, config blob, subject manifest) manifest {
	t.Helper()
	return parse(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     oci.MediaTypeImageManifest,
		"artifactType":  artifactType,
		"config":        descriptor(oci.MediaTypeEmptyJSON, config),
		"layers":        []any{},
		"subject":       descriptor(oci.MediaTypeImageManifest, subject.blob()),
	})
}

// index is an OCI index of children.
func index(t *testing.T, children ...manifest) manifest {
	t.Helper()
	ms := []any{}
	for _, c := range children {
		ms = append(ms, descriptor(oci.MediaTypeImageManifest, c.blob()))
	}
	return parse(t, map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeImageIndex, "manifests": ms})
}

// put stores m in repo under tags, as actor.
func put(t *testing.T, db *metadata.DB, repo string, m manifest, actor string, tags ...string) error {
	t.Helper()
	return db.InTx(t.Context(), func(tx *metadata.Tx) error {
		return tx.PutManifest(t.Context(), repo, m.digest, m.parsed, m.payload, tags, metadata.Change{Actor: actor, Action: metadata.ActionPush})
	})
}

func mustPut(t *testing.T, db *metadata.DB, repo string, m manifest, tags ...string) {
	t.Helper()
	if err := put(t, db, repo, m, "tester", tags...); err != nil {
		t.Fatalf("PutManifest: %v", err)
	}
}

// resolve returns the manifest ref names in repo, failing the test if there is none.
func resolve(t *testing.T, db *metadata.DB, repo, ref string) *metadata.ManifestRecord {
	t.Helper()
	r, err := oci.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := db.Resolve(t.Context(), repo, r)
	if err != nil {
		t.Fatalf("Resolve(%s, %s): %v", repo, ref, err)
	}
	return m
}

// wantUnresolved checks that ref names nothing in repo.
func wantUnresolved(t *testing.T, db *metadata.DB, repo, ref string) {
	t.Helper()
	r, err := oci.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := db.Resolve(t.Context(), repo, r); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("Resolve(%s, %s) = %v, %v; want ErrNotFound", repo, ref, m, err)
	}
}

// tags returns every live tag of repo.
func tags(t *testing.T, db *metadata.DB, repo string) []string {
	t.Helper()
	got, err := db.Tags(t.Context(), repo, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
