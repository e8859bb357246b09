package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
	"github.com/berthhq/berth/storage/s3"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := testserver.StopPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping PostgreSQL:", err)
		code = 1
	}
	if err := testserver.StopS3(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping S3:", err)
		code = 1
	}
	os.Exit(code)
}

// backends open metadata on each real database.
var backends = []struct {
	name    string
	options func(t *testing.T) metadata.Options
}{
	{"sqlite", func(t *testing.T) metadata.Options {
		return metadata.Options{SQLitePath: filepath.Join(t.TempDir(), "m.db")}
	}},
	{"postgres", func(t *testing.T) metadata.Options { return metadata.Options{PostgresURL: testserver.Postgres(t)} }},
}

// fixture is a registry's metadata and disk storage, files at hand.
type fixture struct {
	t     *testing.T
	db    *metadata.DB
	store *storage.Store
	root  string // the disk driver's root
}

func newFixture(t *testing.T, o metadata.Options) *fixture {
	db, err := metadata.Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	root := t.TempDir()
	d, err := disk.New(root, disk.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t, db, storage.NewStore(d), root}
}

// put stores content as a blob, recorded in metadata when linked.
func (f *fixture) put(content string, linked bool) oci.Digest {
	f.t.Helper()
	ctx := f.t.Context()
	d := oci.FromBytes([]byte(content))
	if _, err := f.store.PutBlob(ctx, "put-"+d.Encoded()[:12], d, strings.NewReader(content)); err != nil {
		f.t.Fatal(err)
	}
	if linked {
		if err := f.db.InTx(ctx, func(tx *metadata.Tx) error {
			return tx.LinkBlob(ctx, "app", d, int64(len(content)))
		}); err != nil {
			f.t.Fatal(err)
		}
	}
	return d
}

// path is the file of a key.
func (f *fixture) path(key string) string { return filepath.Join(f.root, filepath.FromSlash(key)) }

// age makes the file of key three hours old.
func (f *fixture) age(key string) {
	f.t.Helper()
	old := time.Now().Add(-3 * time.Hour)
	if err := os.Chtimes(f.path(key), old, old); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) exists(key string) bool {
	_, err := os.Stat(f.path(key))
	return err == nil
}

func (f *fixture) check(o CheckOptions) CheckReport {
	f.t.Helper()
	rep, err := Check(context.Background(), f.db, f.store, o)
	if err != nil {
		f.t.Fatal(err)
	}
	return rep
}

// keys lists the keys of findings, sorted.
func keys(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Key)
	}
	slices.Sort(out)
	return out
}

func TestCheck(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testCheck(t, newFixture(t, b.options(t))) })
	}
}

func testCheck(t *testing.T, f *fixture) {
	good := storage.BlobKey(f.put("good", true))
	missing := storage.BlobKey(f.put("missing", true))
	if err := os.Remove(f.path(missing)); err != nil {
		t.Fatal(err)
	}
	truncated := storage.BlobKey(f.put("truncated", true))
	if err := os.Truncate(f.path(truncated), 4); err != nil {
		t.Fatal(err)
	}
	corrupt := storage.BlobKey(f.put("corrupt", true))
	if err := os.WriteFile(f.path(corrupt), []byte("CORRUPT"), 0o644); err != nil {
		t.Fatal(err)
	}
	orphan := storage.BlobKey(f.put("orphan", false))
	f.age(orphan)
	fresh := storage.BlobKey(f.put("fresh orphan", false))
	// A chunked upload whose last chunk is old, published just now and not
	// recorded yet: its blob is young, however old its bytes.
	up, err := f.store.StartUpload(t.Context(), "slow")
	if err != nil {
		t.Fatal(err)
	}
	up.Write([]byte("slow"))
	st, err := up.State()
	if err != nil {
		t.Fatal(err)
	}
	up.Close()
	f.age("uploads/slow")
	up, err = f.store.ResumeUpload(t.Context(), "slow", st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Commit(t.Context(), oci.FromBytes([]byte("slow"))); err != nil {
		t.Fatal(err)
	}
	slow := storage.BlobKey(oci.FromBytes([]byte("slow")))
	// Upload bytes with no session: an old one and a young one.
	for _, id := range []string{"lost", "starting"} {
		up, err := f.store.StartUpload(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		up.Write([]byte("12345"))
		up.Close()
	}
	f.age("uploads/lost")
	stray := "blobs/sha256/zz/not-a-blob"
	os.MkdirAll(filepath.Dir(f.path(stray)), 0o755)
	if err := os.WriteFile(f.path(stray), []byte("?"), 0o644); err != nil {
		t.Fatal(err)
	}

	var progressed CheckProgress
	rep := f.check(CheckOptions{Grace: time.Hour, Progress: func(p CheckProgress) { progressed = p }})
	want := map[string][]string{
		"missing": {missing}, "size mismatch": {truncated}, "corrupt": nil,
		"orphans": {orphan}, "orphan uploads": {"uploads/lost"}, "stray": {stray},
	}
	got := func(rep CheckReport) map[string][]string {
		return map[string][]string{
			"missing": keys(rep.Missing), "size mismatch": keys(rep.SizeMismatch), "corrupt": keys(rep.Corrupt),
			"orphans": keys(rep.Orphans), "orphan uploads": keys(rep.OrphanUploads), "stray": keys(rep.Stray),
		}
	}
	for kind, ks := range got(rep) {
		if !slices.Equal(ks, want[kind]) {
			t.Errorf("%s: %v, want %v", kind, ks, want[kind])
		}
	}
	if rep.Young != 3 || rep.Blobs != 4 || rep.Objects != 7 || rep.Uploads != 2 || !rep.Damaged() {
		t.Errorf("report %+v: want 3 young (fresh, slow, starting), 4 blobs, 7 objects, 2 uploads, damaged", rep)
	}
	if progressed != (CheckProgress{Blobs: 4, Objects: 9}) {
		t.Errorf("last progress %+v", progressed)
	}
	if rep.SizeMismatch[0].Size != 9 || rep.SizeMismatch[0].Stored != 4 {
		t.Errorf("size mismatch %+v, want 9 recorded and 4 stored", rep.SizeMismatch[0])
	}
	for _, k := range []string{orphan, "uploads/lost"} {
		if !f.exists(k) {
			t.Errorf("%s was deleted without Repair", k)
		}
	}

	// Rehash finds the same-size blob with other bytes.
	rep = f.check(CheckOptions{Grace: time.Hour, Rehash: true})
	if k := keys(rep.Corrupt); !slices.Equal(k, []string{corrupt}) {
		t.Errorf("corrupt with Rehash: %v, want %s", k, corrupt)
	}

	// Repair deletes the old orphans, keeps the young ones, and never
	// touches a blob with a row, damaged or not.
	rep = f.check(CheckOptions{Grace: time.Hour, Repair: true, LinkDeadline: time.Millisecond})
	if len(rep.Orphans) != 1 || !rep.Orphans[0].Repaired || len(rep.OrphanUploads) != 1 || !rep.OrphanUploads[0].Repaired {
		t.Errorf("repair: orphans %+v, orphan uploads %+v", rep.Orphans, rep.OrphanUploads)
	}
	for k, keep := range map[string]bool{
		orphan: false, "uploads/lost": false, fresh: true, slow: true, "uploads/starting": true,
		good: true, truncated: true, corrupt: true, stray: true,
	} {
		if f.exists(k) != keep {
			t.Errorf("after repair, %s exists: %v, want %v", k, !keep, keep)
		}
	}

	// With no grace, every orphan goes.
	rep = f.check(CheckOptions{Repair: true, LinkDeadline: time.Millisecond})
	if k := keys(rep.Orphans); !slices.Equal(k, keys([]Finding{{Key: fresh}, {Key: slow}})) {
		t.Errorf("repair with no grace: orphans %v", k)
	}
	for _, k := range []string{fresh, slow, "uploads/starting"} {
		if f.exists(k) {
			t.Errorf("%s survived a repair with no grace", k)
		}
	}
	rep = f.check(CheckOptions{Rehash: true})
	if len(rep.Orphans)+len(rep.OrphanUploads) != 0 || rep.Young != 0 || len(rep.Missing)+len(rep.SizeMismatch)+len(rep.Corrupt) != 3 {
		t.Errorf("after repairs: %+v", rep)
	}
	if !f.exists(good) {
		t.Error("the good blob is gone")
	}
}

// TestCheckS3 checks a registry whose bytes are on S3: object times come
// from the server's listing.
func TestCheckS3(t *testing.T) {
	srv := testserver.S3(t)
	d, err := s3.New(t.Context(), s3.Options{Bucket: srv.Bucket, Region: srv.Region, Endpoint: srv.Endpoint,
		PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, backends[0].options(t))
	f.store = storage.NewStore(d)
	f.put("kept", true)
	lost := f.put("lost", true)
	orphan := f.put("orphan", false)
	if err := f.store.Delete(t.Context(), lost); err != nil {
		t.Fatal(err)
	}
	rep := f.check(CheckOptions{Grace: time.Hour, Repair: true, LinkDeadline: time.Millisecond})
	if k := keys(rep.Missing); !slices.Equal(k, []string{storage.BlobKey(lost)}) || len(rep.Orphans) != 0 || rep.Young != 1 {
		t.Fatalf("missing %v, %+v", k, rep)
	}
	rep = f.check(CheckOptions{Repair: true, LinkDeadline: time.Millisecond})
	if len(rep.Orphans) != 1 || rep.Orphans[0].Digest != orphan || !rep.Orphans[0].Repaired {
		t.Fatalf("orphans %+v", rep.Orphans)
	}
	if _, err := f.store.Stat(t.Context(), orphan); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the repaired orphan: %v", err)
	}
}

// TestCheckRefusesEmptyMetadata: with no blobs rows at all (a wrong
// database), every blob would look orphaned; Repair deletes none.
func TestCheckRefusesEmptyMetadata(t *testing.T) {
	f := newFixture(t, backends[0].options(t))
	key := storage.BlobKey(f.put("pushed", false))
	if _, err := Check(t.Context(), f.db, f.store, CheckOptions{Repair: true, LinkDeadline: time.Millisecond}); !errors.Is(err, ErrNoBlobs) {
		t.Fatalf("Check = %v, want ErrNoBlobs", err)
	}
	if !f.exists(key) {
		t.Fatal("the blob was deleted")
	}
}
