package metadata_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for rawDB
)

func TestOpenNeedsOneDatabase(t *testing.T) {
	for name, o := range map[string]metadata.Options{
		"none": {},
		"both": {SQLitePath: filepath.Join(t.TempDir(), "berth.db"), PostgresURL: "postgres://127.0.0.1:1/berth"},
	} {
		if db, err := metadata.Open(t.Context(), o); err == nil {
			db.Close()
			t.Errorf("Open with %s database configured succeeded", name)
		}
	}
}

// rawDB opens the database of o without the metadata package.
func rawDB(t *testing.T, o metadata.Options) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite", "file:"+o.SQLitePath
	if o.PostgresURL != "" {
		driver, dsn = "pgx", o.PostgresURL
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// migrations reads the schema_migrations table directly.
func migrations(t *testing.T, o metadata.Options) []string {
	t.Helper()
	rows, err := rawDB(t, o).QueryContext(t.Context(), `SELECT name FROM schema_migrations ORDER BY version`)
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

func TestMigrationsReopen(t *testing.T) { forEachBackend(t, testMigrationsReopen) }

func testMigrationsReopen(t *testing.T, be backend) {
	o := be.fresh(t)
	b := newBlob("kept across restarts")
	db := openWith(t, o, nil)
	if err := db.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	link(t, db, "app", b)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	applied := migrations(t, o)
	if len(applied) == 0 || applied[0] != "0001_init.sql" {
		t.Fatalf("applied migrations = %q, want 0001_init.sql first", applied)
	}

	for i := range 2 {
		db := openWith(t, o, nil)
		if size, err := db.BlobInRepo(t.Context(), "app", b.digest); err != nil || size != b.size {
			t.Errorf("reopen %d: BlobInRepo = %d, %v; want %d", i, size, err, b.size)
		}
		db.Close()
		if again := migrations(t, o); len(again) != len(applied) {
			t.Errorf("reopen %d: migrations = %q, want %q once each", i, again, applied)
		}
	}
}

// TestMigrationsConcurrentOpen: replicas that start at once on an empty
// database all open it, and each migration is applied once.
func TestMigrationsConcurrentOpen(t *testing.T) { forEachBackend(t, testMigrationsConcurrentOpen) }

func testMigrationsConcurrentOpen(t *testing.T, be backend) {
	o := be.fresh(t)
	const replicas = 8
	start := make(chan struct{})
	errs := make(chan error, replicas)
	var wg sync.WaitGroup
	for range replicas {
		wg.Go(func() {
			<-start
			db, err := metadata.Open(t.Context(), o)
			if err == nil {
				err = db.Close()
			}
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Open: %v", err)
		}
	}
	applied := migrations(t, o)
	if len(applied) == 0 || applied[0] != "0001_init.sql" || len(applied) != len(slices.Compact(slices.Clone(applied))) {
		t.Errorf("applied migrations = %q, want each once", applied)
	}
}

func TestInTxRollsBack(t *testing.T) { forEachBackend(t, testInTxRollsBack) }

func testInTxRollsBack(t *testing.T, be backend) {
	db := be.open(t, nil)
	b := newBlob("rolled back")
	boom := errors.New("boom")
	err := db.InTx(t.Context(), func(tx *metadata.Tx) error {
		if err := tx.LinkBlob(t.Context(), "app", b.digest, b.size); err != nil {
			return err
		}
		if err := tx.CreateUpload(t.Context(), "app", "u1", "", 0); err != nil {
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

// TestConcurrentWriters: concurrent transactions on one handle all succeed
// (on SQLite they queue for its one writer), while reads go on. Run with -race.
func TestConcurrentWriters(t *testing.T) { forEachBackend(t, testConcurrentWriters) }

func testConcurrentWriters(t *testing.T, be backend) {
	db := be.open(t, nil)
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
				if err := tx.CreateUpload(ctx, repo, "upload-"+repo, "", 0); err != nil {
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
