package gc

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
)

// open returns metadata on SQLite with the given clock and a disk store, in dir.
func open(t *testing.T, dir string, clock func() time.Time) (*metadata.DB, *storage.Store) {
	t.Helper()
	db, err := metadata.Open(context.Background(), metadata.Options{SQLitePath: filepath.Join(dir, "m.db"), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d, err := disk.New(filepath.Join(dir, "data"), disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db, storage.NewStore(d)
}

func TestPurgeUploads(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Sessions and staging files are judged by one cutoff against their own
	// clocks (metadata rows, file times): make the old ones three hours old.
	old := time.Now().Add(-3 * time.Hour)
	now := old
	db, store := open(t, dir, func() time.Time { return now })

	// An abandoned session with bytes, a fresh session, and a staging file
	// with no session (a one-request upload cut short by a crash).
	write := func(id string) {
		up, err := store.StartUpload(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		up.Write([]byte("12345"))
		up.Close()
	}
	session := func(id string) {
		if err := db.InTx(ctx, func(tx *metadata.Tx) error { return tx.CreateUpload(ctx, "app", id, "", 0) }); err != nil {
			t.Fatal(err)
		}
	}
	session("abandoned")
	write("abandoned")
	write("orphan")
	now = time.Now()
	session("fresh")
	write("fresh")
	for _, id := range []string{"abandoned", "orphan"} {
		os.Chtimes(filepath.Join(dir, "data", "uploads", id), old, old)
	}

	rep, err := PurgeUploads(ctx, db, store, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rep != (UploadReport{Sessions: 1, Files: 2, Bytes: 10}) {
		t.Fatalf("purged %+v, want 1 session and 2 files of 10 bytes", rep)
	}
	if ok, _ := db.UploadExists(ctx, "abandoned"); ok {
		t.Fatal("the abandoned session is still recorded")
	}
	if ok, _ := db.UploadExists(ctx, "fresh"); !ok {
		t.Fatal("the fresh session was purged")
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "uploads", "fresh")); err != nil {
		t.Fatal("the fresh upload's bytes were purged")
	}
}

// TestPurgeSkipsBusyUploads: a stale-looking session that a request holds,
// or that was touched after the purge listed it, is left alone.
func TestPurgeSkipsBusyUploads(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Add(-3 * time.Hour)
	db, store := open(t, t.TempDir(), func() time.Time { return now })
	for _, id := range []string{"held", "touched"} {
		if err := db.InTx(ctx, func(tx *metadata.Tx) error { return tx.CreateUpload(ctx, "app", id, "", 0) }); err != nil {
			t.Fatal(err)
		}
	}
	unlock, err := db.LockUpload(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	cutoff := time.Now().Add(-time.Hour)
	// "touched" gets a chunk after the purge would have listed it.
	now = time.Now()
	if err := db.InTx(ctx, func(tx *metadata.Tx) error { return tx.SaveUpload(ctx, "touched", 0, 5, nil) }); err != nil {
		t.Fatal(err)
	}
	deleted, err := purgeSession(ctx, db, "touched", cutoff)
	if err != nil || deleted {
		t.Fatalf("purging a session touched since: deleted %v, %v", deleted, err)
	}
	rep, err := PurgeUploads(ctx, db, store, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sessions != 0 {
		t.Fatalf("purged %d sessions; the held one must stay", rep.Sessions)
	}
	if ok, _ := db.UploadExists(ctx, "held"); !ok {
		t.Fatal("the held session was purged")
	}
}
