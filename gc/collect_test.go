package gc

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus/testutil" // database/sql's "pgx", to watch PostgreSQL's locks
)

// world is a registry's metadata and storage whose clock stands three
// hours back: everything it records is older than the collector's grace
// and untagged horizons (an hour), so only the re-checks can keep what a
// write made needed during a run, not the grace period.
type world struct {
	*fixture
	opts metadata.Options
}

// past is the metadata clock of every world: three hours ago.
func past() time.Time { return time.Now().Add(-3 * time.Hour) }

func newWorld(t *testing.T, o metadata.Options) *world {
	o.Now = past
	return &world{newFixture(t, o), o}
}

// collector returns a collector of untagged manifests with hooks:
// pause(point) runs at each named point of a run.
func (w *world) collector(pause func(point string)) *Collector {
	c := New(Options{DB: w.db, Store: w.store, Untagged: time.Hour, LinkDeadline: time.Millisecond})
	if pause != nil {
		c.pause = pause
	}
	return c
}

func (w *world) run(c *Collector, dryRun bool) *Report {
	w.t.Helper()
	r, err := c.Run(w.t.Context(), dryRun)
	if err != nil {
		w.t.Fatalf("Run: %v", err)
	}
	return r
}

// blob stores content and links it to repo.
func (w *world) blob(repo, content string) oci.Descriptor {
	w.t.Helper()
	d := oci.FromBytes([]byte(content))
	if _, err := w.store.PutBlob(w.t.Context(), "u", d, strings.NewReader(content)); err != nil {
		w.t.Fatal(err)
	}
	w.tx(func(ctx context.Context, tx *metadata.Tx) error {
		return tx.LinkBlob(ctx, repo, d, int64(len(content)))
	})
	return oci.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(content))}
}

func (w *world) tx(fn func(ctx context.Context, tx *metadata.Tx) error) {
	w.t.Helper()
	if err := w.db.InTx(w.t.Context(), func(tx *metadata.Tx) error { return fn(w.t.Context(), tx) }); err != nil {
		w.t.Fatal(err)
	}
}

// manifest is a stored manifest's descriptor and bytes.
type manifest struct {
	oci.Descriptor
	payload []byte
	parsed  *oci.Manifest
}

// image builds an image manifest over a config and layers, with an
// optional subject.
func image(t *testing.T, subject *manifest, config oci.Descriptor, layers ...oci.Descriptor) manifest {
	doc := map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeImageManifest,
		"config": desc("application/vnd.oci.image.config.v1+json", config), "layers": []any{}}
	for _, l := range layers {
		doc["layers"] = append(doc["layers"].([]any), desc("application/vnd.oci.image.layer.v1.tar", l))
	}
	if subject != nil {
		doc["subject"] = desc(oci.MediaTypeImageManifest, subject.Descriptor)
	}
	return parsed(t, doc)
}

// index builds an image index of children.
func index(t *testing.T, children ...manifest) manifest {
	ms := []any{}
	for _, c := range children {
		ms = append(ms, desc(oci.MediaTypeImageManifest, c.Descriptor))
	}
	return parsed(t, map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeImageIndex, "manifests": ms})
}

func desc(mediaType string, d oci.Descriptor) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": d.Digest, "size": d.Size}
}

func parsed(t *testing.T, doc map[string]any) manifest {
	t.Helper()
	payload, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := oci.ParseManifest("", payload)
	if err != nil {
		t.Fatal(err)
	}
	return manifest{oci.Descriptor{MediaType: m.MediaType, Digest: oci.FromBytes(payload), Size: int64(len(payload))}, payload, m}
}

func (w *world) put(repo string, m manifest, tags ...string) error {
	return w.db.InTx(w.t.Context(), func(tx *metadata.Tx) error {
		return tx.PutManifest(w.t.Context(), repo, m.Digest, m.parsed, m.payload, tags, metadata.Change{Action: metadata.ActionPush})
	})
}

func (w *world) mustPut(repo string, m manifest, tags ...string) {
	w.t.Helper()
	if err := w.put(repo, m, tags...); err != nil {
		w.t.Fatalf("PutManifest: %v", err)
	}
}

// has reports whether repo links manifest d.
func (w *world) has(repo string, d oci.Digest) bool {
	w.t.Helper()
	ok, err := w.db.HasManifest(w.t.Context(), repo, d)
	if err != nil {
		w.t.Fatal(err)
	}
	return ok
}

// servable reports whether repo can serve blob d: linked, live, with bytes.
func (w *world) servable(repo string, d oci.Digest) bool {
	w.t.Helper()
	_, err := w.db.BlobInRepo(w.t.Context(), repo, d)
	if errors.Is(err, metadata.ErrNotFound) {
		return false
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return w.exists(storage.BlobKey(d))
}

// digests lists what items name.
func digests(items []Item) []oci.Digest {
	var out []oci.Digest
	for _, it := range items {
		out = append(out, it.Digest)
	}
	slices.Sort(out)
	return out
}

func sorted(ds ...oci.Digest) []oci.Digest { return slices.Sorted(slices.Values(ds)) }

func forEachBackend(t *testing.T, test func(t *testing.T, w *world)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, newWorld(t, b.options(t))) })
	}
}

// TestCollect deletes exactly the garbage, and the dry run reports it
// before: an untagged image with its own layer, an index and its untagged
// child, a signature of the untagged image, a blob no manifest uses, an
// orphan file; and keeps a tagged image, a tagged index's child, the
// signature of a tagged image, a shared layer and a tag deleted within the
// restore window.
func TestCollect(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		shared := w.blob("app", "shared layer")
		cfgA, cfgB, cfgC := w.blob("app", "config a"), w.blob("app", "config b"), w.blob("app", "config c")
		own := w.blob("app", "layer only b uses")
		unused := w.blob("app", "uploaded, never used")
		tagged := image(t, nil, cfgA, shared)
		untagged := image(t, nil, cfgB, shared, own)
		restorable := image(t, nil, cfgC, shared)
		w.mustPut("app", tagged, "1")
		w.mustPut("app", untagged)
		w.mustPut("app", restorable, "old")
		w.tx(func(ctx context.Context, tx *metadata.Tx) error {
			_, err := tx.DeleteTag(ctx, "app", "old", metadata.Change{Action: metadata.ActionDelete})
			return err
		})
		sigCfg := w.blob("app", "signature config")
		sigOfTagged := image(t, &tagged, sigCfg)
		sigOfUntagged := image(t, &untagged, sigCfg, w.blob("app", "signature layer"))
		w.mustPut("app", sigOfTagged)
		w.mustPut("app", sigOfUntagged)
		child := image(t, nil, w.blob("app", "child config"))
		idx := index(t, child)
		w.mustPut("app", child)
		w.mustPut("app", idx)
		keptChild := image(t, nil, w.blob("app", "kept child config"))
		w.mustPut("app", keptChild)
		w.mustPut("app", index(t, keptChild), "multi")
		orphan := oci.FromBytes([]byte("orphan"))
		if _, err := w.store.PutBlob(t.Context(), "o", orphan, strings.NewReader("orphan")); err != nil {
			t.Fatal(err)
		}
		w.age(storage.BlobKey(orphan))

		wantManifests := sorted(untagged.Digest, sigOfUntagged.Digest, idx.Digest, child.Digest)
		wantBlobs := sorted(cfgB.Digest, own.Digest, unused.Digest, oci.FromBytes([]byte("signature layer")),
			oci.FromBytes([]byte("child config")), orphan)
		c := w.collector(nil)
		dry := w.run(c, true)
		if got := digests(dry.Manifests); !slices.Equal(got, wantManifests) {
			t.Errorf("dry run: manifests %v, want %v", got, wantManifests)
		}
		if got := digests(dry.Blobs); !slices.Equal(got, wantBlobs) {
			t.Errorf("dry run: blobs %v, want %v", got, wantBlobs)
		}
		if !w.has("app", untagged.Digest) || !w.exists(storage.BlobKey(own.Digest)) || !w.exists(storage.BlobKey(orphan)) {
			t.Fatal("the dry run deleted something")
		}

		r := w.run(c, false)
		if got := digests(r.Manifests); !slices.Equal(got, wantManifests) {
			t.Errorf("run: manifests %v, want %v", got, wantManifests)
		}
		if got := digests(r.Blobs); !slices.Equal(got, wantBlobs) {
			t.Errorf("run: blobs %v, want %v", got, wantBlobs)
		}
		if r.Bytes != dry.Bytes || r.Bytes == 0 {
			t.Errorf("run deleted %d bytes, the dry run said %d", r.Bytes, dry.Bytes)
		}
		for _, d := range wantBlobs {
			if w.exists(storage.BlobKey(d)) {
				t.Errorf("blob %s survived", d)
			}
		}
		for _, m := range []manifest{tagged, restorable, sigOfTagged, keptChild} {
			if !w.has("app", m.Digest) {
				t.Errorf("manifest %s was unlinked", m.Digest)
			}
			for _, ref := range m.parsed.Refs {
				if ref.Kind != oci.KindManifest && !w.servable("app", ref.Digest) {
					t.Errorf("blob %s of a kept manifest cannot be served", ref.Digest)
				}
			}
		}
		m := c.metrics
		if n := testutil.ToFloat64(m.deleted.WithLabelValues("blobs")); n != float64(len(wantBlobs)) {
			t.Errorf("berth_gc_deleted_total{kind=blobs} = %v, want %d", n, len(wantBlobs))
		}
		if n := testutil.ToFloat64(m.bytes); n != float64(r.Bytes) {
			t.Errorf("berth_gc_deleted_bytes_total = %v, want %d", n, r.Bytes)
		}
		if n := testutil.ToFloat64(m.runs.WithLabelValues("ok")); n != 1 {
			t.Errorf("berth_gc_runs_total{result=ok} = %v after one run and a dry run, want 1", n)
		}
		// Nothing is left to collect, and the stored manifests no one
		// links are forgotten too (pushed by digest, never tagged).
		if again := w.run(c, false); len(again.Manifests)+len(again.Links)+len(again.Blobs) != 0 {
			t.Errorf("a second run deleted %+v", again)
		}
		if ok, err := w.db.BlobExists(t.Context(), own.Digest); err != nil || ok {
			t.Errorf("the collected blob's row: %v, %v", ok, err)
		}
	})
}

// TestCollectKeepsUntaggedByDefault: with no untagged horizon only blob
// links no manifest references go.
func TestCollectKeepsUntaggedByDefault(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		cfg := w.blob("app", "config")
		untagged := image(t, nil, cfg)
		w.mustPut("app", untagged)
		unused := w.blob("app", "unused")
		r := w.run(New(Options{DB: w.db, Store: w.store, LinkDeadline: time.Millisecond}), false)
		if len(r.Manifests) != 0 || !w.has("app", untagged.Digest) || !w.servable("app", cfg.Digest) {
			t.Errorf("an untagged manifest went under the keep policy: %+v", r)
		}
		if got := digests(r.Blobs); !slices.Equal(got, []oci.Digest{unused.Digest}) {
			t.Errorf("blobs %v, want the unused one", got)
		}
	})
}

// The races: a write lands between the run's plan and its deletes. Each
// write uses the world's clock, three hours back, so the grace period
// cannot be what keeps its content: the re-check under lock must.

// TestCollectRaceTagged: a tag points at a garbage manifest after the plan.
func TestCollectRaceTagged(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		cfg, layer := w.blob("app", "config"), w.blob("app", "layer")
		m := image(t, nil, cfg, layer)
		w.mustPut("app", m)
		c := w.collector(func(point string) {
			if point == "planned app" {
				w.tx(func(ctx context.Context, tx *metadata.Tx) error {
					_, err := tx.SetTag(ctx, "app", "1", m.Digest, metadata.Change{Action: metadata.ActionPush})
					return err
				})
			}
		})
		r := w.run(c, false)
		if len(r.Manifests) != 0 || r.Kept == 0 || !w.has("app", m.Digest) {
			t.Fatalf("the manifest tagged during the run: report %+v, linked %v", r, w.has("app", m.Digest))
		}
		for _, d := range []oci.Digest{cfg.Digest, layer.Digest} {
			if !w.servable("app", d) {
				t.Errorf("blob %s of the tagged manifest cannot be served", d)
			}
		}
	})
}

// TestCollectRaceReferenced: an index that references a garbage manifest,
// and a manifest that references an unused blob, are pushed after the plan.
func TestCollectRaceReferenced(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		child := image(t, nil, w.blob("app", "child config"))
		w.mustPut("app", child)
		loose := w.blob("app", "uploaded before its manifest")
		cfg := w.blob("app", "config")
		var idx, user manifest
		c := w.collector(func(point string) {
			if point == "planned app" {
				idx = index(t, child)
				w.mustPut("app", idx, "multi")
				user = image(t, nil, cfg, loose)
				w.mustPut("app", user, "1")
			}
		})
		r := w.run(c, false)
		if !w.has("app", child.Digest) || !w.servable("app", loose.Digest) || !w.servable("app", child.parsed.Config.Digest) {
			t.Fatalf("content referenced during the run went: %+v", r)
		}
		if len(r.Manifests)+len(r.Links)+len(r.Blobs) != 0 {
			t.Errorf("the run deleted %+v", r)
		}
	})
}

// TestCollectRaceRepushed: a stored manifest that no repository links any
// more is pushed again before the run forgets it; it stays, and resolves.
func TestCollectRaceRepushed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		cfg := w.blob("app", "config")
		w.mustPut("app", image(t, nil, cfg), "1") // keeps the config linked
		m := image(t, nil, cfg, cfg)
		w.mustPut("app", m)
		w.tx(func(ctx context.Context, tx *metadata.Tx) error {
			return tx.DeleteManifest(ctx, "app", m.Digest, metadata.Change{Action: metadata.ActionManifestDelete})
		})
		c := w.collector(func(point string) {
			if point == "unused manifests listed" {
				w.mustPut("app", m, "2")
			}
		})
		w.run(c, false)
		if !w.has("app", m.Digest) {
			t.Fatal("the manifest pushed again went")
		}
		got, err := w.db.Resolve(t.Context(), "app", oci.Reference{Tag: "2"})
		if err != nil || got.Digest != m.Digest {
			t.Fatalf("Resolve(app:2) = %v, %v", got, err)
		}
	})
}

// TestCollectRaceRelinked: a blob no repository links is linked again
// (uploaded again, or mounted) between the unlinks and the marking.
func TestCollectRaceRelinked(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		b := w.blob("app", "content")
		c := w.collector(func(point string) {
			if point == "repositories" {
				w.tx(func(ctx context.Context, tx *metadata.Tx) error { return tx.LinkBlob(ctx, "other", b.Digest, b.Size) })
			}
		})
		r := w.run(c, false)
		if !w.servable("other", b.Digest) || len(r.Blobs) != 0 {
			t.Fatalf("the relinked blob: servable %v, report %+v", w.servable("other", b.Digest), r)
		}
		if w.servable("app", b.Digest) {
			t.Error("the unused link of app survived")
		}
	})
}

// TestCollectRaceUploadDuringSweep: an upload of a blob whose bytes the run
// has deleted and not yet forgotten is refused, cleanly; pushed again after
// the run, it is stored and served.
func TestCollectRaceUploadDuringSweep(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		b := w.blob("app", "content")
		var linkErr error
		c := w.collector(func(point string) {
			if point != "bytes deleted" {
				return
			}
			if w.exists(storage.BlobKey(b.Digest)) {
				t.Error("the bytes are still there after the sweep deleted them")
			}
			if _, err := w.store.PutBlob(t.Context(), "again", b.Digest, strings.NewReader("content")); err != nil {
				t.Error(err)
			}
			linkErr = w.db.InTx(t.Context(), func(tx *metadata.Tx) error {
				return tx.LinkBlob(t.Context(), "app", b.Digest, b.Size)
			})
		})
		w.run(c, false)
		if !errors.Is(linkErr, metadata.ErrBlobDeleting) {
			t.Fatalf("linking a blob being deleted: %v, want ErrBlobDeleting", linkErr)
		}
		// The retry: the bytes the refused upload left are there.
		w.blob("app", "content")
		if !w.servable("app", b.Digest) {
			t.Error("the blob pushed again cannot be served")
		}
	})
}

// TestCollectRaceOrphanLinked: bytes with no record are recorded by a push
// between the listing and the claim; they stay.
func TestCollectRaceOrphanLinked(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		d := oci.FromBytes([]byte("orphan"))
		if _, err := w.store.PutBlob(t.Context(), "o", d, strings.NewReader("orphan")); err != nil {
			t.Fatal(err)
		}
		w.age(storage.BlobKey(d))
		c := w.collector(func(point string) {
			if point == "marked" {
				// Past the grace horizon, but linked: the claim must fail.
				w.tx(func(ctx context.Context, tx *metadata.Tx) error { return tx.LinkBlob(ctx, "app", d, 6) })
			}
		})
		r := w.run(c, false)
		if !w.servable("app", d) || len(r.Orphans) != 0 {
			t.Fatalf("the orphan recorded during the run: servable %v, report %+v", w.servable("app", d), r)
		}
	})
}

// TestCollectWaitsForPush: on PostgreSQL a run that reaches a manifest a
// push is referencing waits for the push's transaction, then keeps it. The
// push holds its transaction open until the run is seen waiting on a lock.
func TestCollectWaitsForPush(t *testing.T) {
	w := newWorld(t, backends[1].options(t))
	child := image(t, nil, w.blob("app", "child config"))
	w.mustPut("app", child)
	loose := w.blob("app", "layer")
	cfg := w.blob("app", "config")
	pushing, release := make(chan struct{}), make(chan struct{})
	pushed := make(chan error, 1)
	go func() {
		pushed <- w.db.InTx(context.Background(), func(tx *metadata.Tx) error {
			ctx := context.Background()
			if err := tx.PutManifest(ctx, "app", index(t, child).Digest, index(t, child).parsed, index(t, child).payload,
				[]string{"multi"}, metadata.Change{Action: metadata.ActionPush}); err != nil {
				return err
			}
			user := image(t, nil, cfg, loose)
			if err := tx.PutManifest(ctx, "app", user.Digest, user.parsed, user.payload, []string{"1"},
				metadata.Change{Action: metadata.ActionPush}); err != nil {
				return err
			}
			close(pushing)
			<-release
			return nil
		})
	}()
	<-pushing
	var waited atomic.Bool
	var once sync.Once
	c := w.collector(func(point string) {
		if point == "planned app" {
			once.Do(func() {
				go func() {
					// Release the push once the run waits on a row lock.
					waitForLockWait(t, w.opts.PostgresURL)
					waited.Store(true)
					close(release)
				}()
			})
		}
	})
	r := w.run(c, false)
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	if !waited.Load() {
		t.Fatal("the run never waited for the push")
	}
	if !w.has("app", child.Digest) || !w.servable("app", loose.Digest) {
		t.Fatalf("content a concurrent push referenced went: %+v", r)
	}
}

// waitForLockWait returns once some session of the database waits for a
// lock.
func waitForLockWait(t *testing.T, url string) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Error(err)
		return
	}
	defer db.Close()
	for ctx := t.Context(); ctx.Err() == nil; {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted`).Scan(&n)
		if err != nil {
			t.Error(err)
			return
		}
		if n > 0 {
			return
		}
		time.Sleep(time.Millisecond) // polling a condition, not timing the race
	}
}

// TestCollectOneAtATime: a second run, from this process or another
// sharing the database, is refused while one runs.
func TestCollectOneAtATime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		other, err := metadata.Open(t.Context(), w.opts)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		var errSame, errOther error
		c := w.collector(func(point string) {
			if point == "repositories" {
				_, errSame = w.collector(nil).Run(t.Context(), false)
				_, errOther = New(Options{DB: other, Store: w.store}).Run(t.Context(), true)
			}
		})
		w.run(c, false)
		if !errors.Is(errSame, ErrRunning) || !errors.Is(errOther, ErrRunning) {
			t.Errorf("runs during a run: %v, %v; want ErrRunning", errSame, errOther)
		}
		if _, err := New(Options{DB: other, Store: w.store}).Run(t.Context(), true); err != nil {
			t.Errorf("a run after the run: %v", err)
		}
	})
}
