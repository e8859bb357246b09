package gc

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
)

// TestMountRaceForgottenBlob (PostgreSQL): a cross-repository mount reads
// the source's link without a lock, then LinkBlob. If the collector unlinks
// the source's link, marks, deletes the bytes, waits the link deadline and
// forgets the row between those two statements, LinkBlob inserts a fresh
// live row: the target links a blob whose bytes are gone. The mount's
// LinkBlob is made to wait on EnsureRepository, blocked by another
// transaction creating the same repository (as parallel first pushes to a
// new repository do).
func TestMountRaceForgottenBlob(t *testing.T) {
	w := newWorld(t, backends[1].options(t))
	b := w.blob("src", "mounted content") // linked 3h ago, referenced by nothing

	raw, err := sql.Open("pgx", w.opts.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	blocker, err := raw.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.Exec(`INSERT INTO repositories (name, created_at) VALUES ('dst', 0)`); err != nil {
		t.Fatal(err)
	}

	mounted := make(chan error, 1)
	go func() {
		mounted <- w.db.InTx(context.Background(), func(tx *metadata.Tx) error {
			_, err := tx.MountBlob(context.Background(), "dst", "src", b.Digest)
			return err
		})
	}()
	waitForLockWait(t, w.opts.PostgresURL) // the mount read the source and waits in EnsureRepository

	r := w.run(w.collector(nil), false) // unlinks src's link, deletes the bytes, forgets the row
	t.Logf("run: links %d blobs %d", len(r.Links), len(r.Blobs))
	if w.exists(storage.BlobKey(b.Digest)) {
		t.Fatal("setup: the run did not delete the bytes")
	}
	blocker.Rollback()
	if err := <-mounted; err != nil {
		t.Logf("mount refused (%v): fine", err)
		return
	}
	if _, err := w.db.BlobInRepo(t.Context(), "dst", b.Digest); err == nil {
		t.Errorf("BUG: dst links live blob %s whose bytes the run deleted (mount succeeded after the row was forgotten)", b.Digest)
	}
	_ = time.Second
}

// moveHook is a driver whose Move runs a hook once the bytes are at their
// new key, before Move returns: on S3 that is the DeleteObject of the
// upload's key after the copy (seconds with retries).
type moveHook struct {
	storage.Driver
	after func()
}

func (m *moveHook) Move(ctx context.Context, from, to string) error {
	err := m.Driver.Move(ctx, from, to)
	if err == nil && m.after != nil {
		m.after()
	}
	return err
}

// TestPlacedAfterMove: Upload.Placed is taken after Move returns, so a
// collection that deletes the moved bytes between their appearing at the
// blob key and Move returning is not bounded by the link deadline: the
// upload records the blob (live, linked) after the row was forgotten and
// within the deadline of Placed, and its bytes are gone.
//
// Setup: a run left blob b marked 'deleting' with its bytes gone (its wait
// was cut short: a POST /admin/v1/gc whose client went away, a crash).
// An upload of b finds no bytes and moves its own into place; the next
// run's sweep deletes them; Move returns 200ms later (the S3 source
// delete); the run forgets b 500ms (the deadline) after the delete; the
// upload links 300ms after Placed: accepted.
func TestPlacedAfterMove(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		const deadline = 500 * time.Millisecond
		b := w.blob("app", "content")
		crashed := w.collector(nil)
		crashed.sleep = func(context.Context, time.Duration) error { return context.Canceled }
		if _, err := crashed.Run(t.Context(), false); err == nil {
			t.Fatal("setup: the interrupted run succeeded")
		}
		if w.exists(storage.BlobKey(b.Digest)) {
			t.Fatal("setup: bytes still there")
		}

		inner, err := disk.New(w.root, disk.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		deleted := make(chan struct{})
		ran := make(chan error, 1)
		hook := &moveHook{Driver: inner}
		hook.after = func() {
			hook.after = nil
			c := New(Options{DB: w.db, Store: w.store, Untagged: time.Hour, LinkDeadline: deadline})
			c.pause = func(p string) {
				if p == "bytes deleted" {
					close(deleted)
				}
			}
			go func() { _, err := c.Run(context.Background(), false); ran <- err }()
			<-deleted
			time.Sleep(200 * time.Millisecond)
		}
		store := storage.NewStore(hook)
		up, err := store.StartUpload(t.Context(), "up")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.Write([]byte("content")); err != nil {
			t.Fatal(err)
		}
		created, err := up.Commit(t.Context(), b.Digest)
		if err != nil || !created {
			t.Fatalf("Commit: %v, %v", created, err)
		}
		if err := <-ran; err != nil {
			t.Fatal(err)
		}
		// registry.linkPlaced, with the same deadline.
		err = w.db.InTx(t.Context(), func(tx *metadata.Tx) error {
			if err := tx.LinkBlob(t.Context(), "app", b.Digest, b.Size); err != nil {
				return err
			}
			if time.Since(up.Placed()) > deadline {
				return errors.New("refused: past the link deadline")
			}
			return nil
		})
		if err != nil {
			t.Logf("link refused (%v): fine", err)
			return
		}
		if !w.servable("app", b.Digest) {
			t.Errorf("BUG: app links live blob %s whose bytes the sweep deleted after Move put them there; "+
				"Placed was %v after the delete", b.Digest, "200ms")
		}
	})
}

// deleteHook is a driver whose Delete runs a hook first.
type deleteHook struct {
	storage.Driver
	before func(key string)
}

func (d *deleteHook) Delete(ctx context.Context, key string) error {
	if d.before != nil {
		d.before(key)
	}
	return d.Driver.Delete(ctx, key)
}

// TestSweepAfterLostLock (PostgreSQL): the collection lock is a session
// advisory lock on an otherwise idle connection. When that session ends
// (idle_session_timeout, a proxy, a network reset, a failover) the run
// goes on without noticing, another replica's run starts, and the first
// run's sweep deletes bytes from a listing of 'deleting' rows that is
// stale: the row was forgotten meanwhile and the blob pushed again, live.
// The session ends while the first run deletes one blob (a slow S3 page);
// the victim is the next blob of its listing.
func TestSweepAfterLostLock(t *testing.T) {
	w := newWorld(t, backends[1].options(t))
	blobs := map[string]string{}
	for _, c := range []string{"content one", "content two"} {
		blobs[storage.BlobKey(w.blob("app", c).Digest)] = c
	}
	inner, err := disk.New(w.root, disk.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("pgx", w.opts.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var victim oci.Digest
	hook := &deleteHook{Driver: inner}
	hook.before = func(key string) {
		if _, ok := blobs[key]; !ok {
			return
		}
		hook.before = nil
		// The first run's lock session ends.
		if _, err := raw.Exec(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted`); err != nil {
			t.Fatal(err)
		}
		// Another replica's run: deletes, waits, forgets.
		if _, err := New(Options{DB: w.db, Store: w.store, Untagged: time.Hour, LinkDeadline: time.Millisecond}).Run(t.Context(), false); err != nil {
			t.Fatalf("second run: %v", err)
		}
		// The other blob is pushed again: stored, recorded live.
		for k, c := range blobs {
			if k != key {
				victim = w.blob("app", c).Digest
			}
		}
		if !w.servable("app", victim) {
			t.Fatal("setup: the blob pushed again is not servable")
		}
	}
	first := New(Options{DB: w.db, Store: storage.NewStore(hook), Untagged: time.Hour, LinkDeadline: time.Millisecond})
	_, err = first.Run(t.Context(), false)
	t.Logf("first run: %v", err)
	if victim == "" {
		t.Fatal("setup: the hook never ran")
	}
	if _, err := w.db.BlobInRepo(t.Context(), "app", victim); err == nil && !w.exists(storage.BlobKey(victim)) {
		t.Errorf("BUG: blob %s is live and linked, and the first run's stale sweep deleted its bytes", victim)
	}
}

// TestDryRunCycle: an index B whose child A is also its subject. The plan
// marks both garbage (the cycle goes last), and the dry run reports both
// and their blobs; a run refuses both (A is B's child, B's subject A is
// there) and deletes nothing. The dry run does not report what a run
// deletes, with nothing changing in between.
func TestDryRunCycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, w *world) {
		a := image(t, nil, w.blob("app", "config a"))
		w.mustPut("app", a)
		doc := map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeImageIndex,
			"manifests": []any{desc(oci.MediaTypeImageManifest, a.Descriptor)},
			"subject":   desc(oci.MediaTypeImageManifest, a.Descriptor)}
		b := parsed(t, doc)
		w.mustPut("app", b)
		c := w.collector(nil)
		dry := w.run(c, true)
		r := w.run(c, false)
		t.Logf("dry: manifests %d links %d blobs %d; run: manifests %d links %d blobs %d kept %d",
			len(dry.Manifests), len(dry.Links), len(dry.Blobs), len(r.Manifests), len(r.Links), len(r.Blobs), r.Kept)
		if len(dry.Manifests) != len(r.Manifests) || len(dry.Blobs) != len(r.Blobs) {
			t.Errorf("the dry run reported %d manifests and %d blobs, the run deleted %d and %d",
				len(dry.Manifests), len(dry.Blobs), len(r.Manifests), len(r.Blobs))
		}
	})
}
