package metadata_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

func TestOpenRequiresPath(t *testing.T) {
	if db, err := metadata.Open(t.Context(), metadata.Options{}); err == nil {
		db.Close()
		t.Error("Open without a database path succeeded")
	}
}

// migrations reads the schema_migrations table directly.
func migrations(t *testing.T, path string) []string {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.QueryContext(t.Context(), `SELECT name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

func TestMigrationsReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.db")
	b := newBlob("kept across restarts")
	db := openAt(t, path, nil)
	if err := db.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	link(t, db, "app", b)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	applied := migrations(t, path)
	if len(applied) == 0 || applied[0] != "0001_init.sql" {
		t.Fatalf("applied migrations = %q, want 0001_init.sql first", applied)
	}

	for i := range 2 {
		db := openAt(t, path, nil)
		if size, err := db.BlobInRepo(t.Context(), "app", b.digest); err != nil || size != b.size {
			t.Errorf("reopen %d: BlobInRepo = %d, %v; want %d", i, size, err, b.size)
		}
		db.Close()
		if again := migrations(t, path); len(again) != len(applied) {
			t.Errorf("reopen %d: migrations = %q, want %q once each", i, again, applied)
		}
	}
}

func TestInTxRollsBack(t *testing.T) {
	db := openDB(t, nil)
	b := newBlob("rolled back")
	boom := errors.New("boom")
	err := db.InTx(t.Context(), func(tx *metadata.Tx) error {
		if err := tx.LinkBlob(t.Context(), "app", b.digest, b.size); err != nil {
			return err
		}
		if err := tx.CreateUpload(t.Context(), "app", "u1"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v, want fn's error", err)
	}
	if _, err := db.BlobInRepo(t.Context(), "app", b.digest); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("BlobInRepo after rollback = %v, want ErrNotFound", err)
	}
	if ok, err := db.UploadExists(t.Context(), "u1"); ok || err != nil {
		t.Errorf("UploadExists after rollback = %v, %v", ok, err)
	}
	if ok, err := db.RepositoryExists(t.Context(), "app"); ok || err != nil {
		t.Errorf("RepositoryExists after rollback = %v, %v", ok, err)
	}
}

// TestConcurrentWriters: SQLite has one writer; concurrent transactions
// queue for it and all succeed, while reads go on. Run with -race.
func TestConcurrentWriters(t *testing.T) {
	db := openDB(t, nil)
	config := newBlob("shared config")
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for i := range writers {
		repo := fmt.Sprintf("team/app%02d", i)
		layer := newBlob("layer of " + repo)
		m := image(t, config, layer)
		wg.Go(func() {
			errs <- db.InTx(t.Context(), func(tx *metadata.Tx) error {
				ctx := t.Context()
				if err := tx.LinkBlob(ctx, repo, config.digest, config.size); err != nil {
					return err
				}
				if err := tx.LinkBlob(ctx, repo, layer.digest, layer.size); err != nil {
					return err
				}
				if err := tx.CreateUpload(ctx, repo, "upload-"+repo); err != nil {
					return err
				}
				return tx.PutManifest(ctx, repo, m.digest, m.parsed, m.payload, []string{"latest", "1"},
					metadata.Change{Actor: repo, Action: metadata.ActionPush})
			})
		})
		wg.Go(func() {
			_, err := db.Repositories(t.Context(), "", 100)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	repos, err := db.Repositories(t.Context(), "", 100)
	if err != nil || len(repos) != writers {
		t.Fatalf("Repositories = %q, %v; want %d", repos, err, writers)
	}
	for _, repo := range repos {
		if got := tags(t, db, repo); len(got) != 2 {
			t.Errorf("%s has tags %q, want 1 and latest", repo, got)
		}
		if _, err := db.BlobInRepo(t.Context(), repo, config.digest); err != nil {
			t.Errorf("%s: shared config: %v", repo, err)
		}
		if _, err := db.Resolve(t.Context(), repo, oci.Reference{Tag: "latest"}); err != nil {
			t.Errorf("%s: latest: %v", repo, err)
		}
	}
}
