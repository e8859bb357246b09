package metadata_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

func TestBlobIsolation(t *testing.T) { forEachBackend(t, testBlobIsolation) }

func testBlobIsolation(t *testing.T, be backend) {
	db := be.open(t, newClock())
	a, b := newBlob("in A"), newBlob("in B")
	link(t, db, "repo-a", a)
	link(t, db, "repo-b", b)
	tests := []struct {
		repo string
		blob blob
		ok   bool
	}{
		{"repo-a", a, true},
		{"repo-a", b, false},
		{"repo-b", b, true},
		{"repo-b", a, false},
		{"repo-c", a, false},
	}
	for _, tt := range tests {
		t.Run(tt.repo+"/"+string(tt.blob.digest)[:15], func(t *testing.T) {
			size, err := db.BlobInRepo(t.Context(), tt.repo, tt.blob.digest)
			switch {
			case tt.ok && (err != nil || size != tt.blob.size):
				t.Errorf("BlobInRepo = %d, %v; want %d", size, err, tt.blob.size)
			case !tt.ok && !errors.Is(err, metadata.ErrNotFound):
				t.Errorf("BlobInRepo = %d, %v; want ErrNotFound", size, err)
			}
		})
	}
}

func TestLinkBlobTwice(t *testing.T) { forEachBackend(t, testLinkBlobTwice) }

func testLinkBlobTwice(t *testing.T, be backend) {
	db := be.open(t, newClock())
	b := newBlob("twice")
	link(t, db, "app", b)
	link(t, db, "app", b)
	if size, err := db.BlobInRepo(t.Context(), "app", b.digest); err != nil || size != b.size {
		t.Errorf("BlobInRepo = %d, %v", size, err)
	}
}

func mount(t *testing.T, db *metadata.DB, repo, from string, b blob) (int64, error) {
	t.Helper()
	var size int64
	err := db.InTx(t.Context(), func(tx *metadata.Tx) error {
		var err error
		size, err = tx.MountBlob(t.Context(), repo, from, b.digest)
		return err
	})
	return size, err
}

func TestMountBlob(t *testing.T) { forEachBackend(t, testMountBlob) }

func testMountBlob(t *testing.T, be backend) {
	db := be.open(t, newClock())
	b, other := newBlob("mountable"), newBlob("other")
	link(t, db, "source", b)
	link(t, db, "bystander", other)

	t.Run("from a repository that links it", func(t *testing.T) {
		size, err := mount(t, db, "target", "source", b)
		if err != nil || size != b.size {
			t.Fatalf("MountBlob = %d, %v; want %d", size, err, b.size)
		}
		if size, err := db.BlobInRepo(t.Context(), "target", b.digest); err != nil || size != b.size {
			t.Errorf("BlobInRepo after mount = %d, %v", size, err)
		}
	})
	for _, from := range []string{"bystander", "no-such-repo"} {
		t.Run("from "+from, func(t *testing.T) {
			if _, err := mount(t, db, "thief", from, b); !errors.Is(err, metadata.ErrNotFound) {
				t.Fatalf("MountBlob = %v, want ErrNotFound", err)
			}
			if _, err := db.BlobInRepo(t.Context(), "thief", b.digest); !errors.Is(err, metadata.ErrNotFound) {
				t.Errorf("a refused mount linked the blob: %v", err)
			}
		})
	}
}

func TestUnlinkBlob(t *testing.T) { forEachBackend(t, testUnlinkBlob) }

func testUnlinkBlob(t *testing.T, be backend) {
	db := be.open(t, newClock())
	b := newBlob("shared")
	link(t, db, "a", b)
	link(t, db, "b", b)
	unlink := func(repo string) error {
		return db.InTx(t.Context(), func(tx *metadata.Tx) error { return tx.UnlinkBlob(t.Context(), repo, b.digest) })
	}
	if err := unlink("a"); err != nil {
		t.Fatalf("UnlinkBlob: %v", err)
	}
	if _, err := db.BlobInRepo(t.Context(), "a", b.digest); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("BlobInRepo after unlink = %v, want ErrNotFound", err)
	}
	if size, err := db.BlobInRepo(t.Context(), "b", b.digest); err != nil || size != b.size {
		t.Errorf("unlinking from a changed b: %d, %v", size, err)
	}
	for _, repo := range []string{"a", "nowhere"} {
		if err := unlink(repo); !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("UnlinkBlob(%s) of a blob it does not link = %v, want ErrNotFound", repo, err)
		}
	}
	// Linking again after an unlink restores access.
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.LinkBlob(ctx, "a", b.digest, b.size) })
	if _, err := db.BlobInRepo(t.Context(), "a", b.digest); err != nil {
		t.Errorf("BlobInRepo after relink: %v", err)
	}
}

func TestBlobsPages(t *testing.T) { forEachBackend(t, testBlobsPages) }

// testBlobsPages: Blobs walks every row in digest order, a page at a time,
// and BlobExists answers for one digest.
func testBlobsPages(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	var want []oci.Digest
	sizes := map[oci.Digest]int64{}
	for _, s := range []string{"one", "two", "three", "four", "five"} {
		b := newBlob(s)
		link(t, db, "app", b)
		want = append(want, b.digest)
		sizes[b.digest] = b.size
	}
	slices.Sort(want)
	var got []oci.Digest
	var after oci.Digest
	for {
		page, err := db.Blobs(t.Context(), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("a page of %d rows, asked for 2", len(page))
		}
		for _, b := range page {
			if b.State != "live" || b.Size != sizes[b.Digest] || b.Created != c.Now().UnixNano() || b.LastLinked != b.Created {
				t.Errorf("row %+v", b)
			}
			got = append(got, b.Digest)
		}
		after = page[len(page)-1].Digest
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Blobs walked %v, want %v", got, want)
	}
	for d, ok := range map[oci.Digest]bool{want[0]: true, newBlob("never").digest: false} {
		if exists, err := db.BlobExists(t.Context(), d); err != nil || exists != ok {
			t.Errorf("BlobExists(%s) = %v, %v; want %v", d, exists, err, ok)
		}
	}
}
