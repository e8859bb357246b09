package metadata_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/berthhq/berth/metadata"
)

func TestStorageStats(t *testing.T) { forEachBackend(t, testStorageStats) }

// testStorageStats checks the figures of a known set: a layer of 100 bytes
// that a and b share, one of 50 only a links, a config of 10 only b links,
// a repository whose only link was removed, and a blob being deleted.
func testStorageStats(t *testing.T, be backend) {
	db := be.open(t, newClock())
	ctx := t.Context()
	if got, err := db.StorageStats(ctx); err != nil || got != (metadata.StorageStats{}) || got.DedupRatio() != 0 {
		t.Fatalf("StorageStats of an empty registry = %+v (ratio %v), %v; want zeros", got, got.DedupRatio(), err)
	}

	l1, l2, c1 := newBlob(strings.Repeat("1", 100)), newBlob(strings.Repeat("2", 50)), newBlob(strings.Repeat("c", 10))
	link(t, db, "a", l1, l2)
	link(t, db, "b", l1, c1)
	mustPut(t, db, "a", image(t, l2, l1), "latest")
	mustPut(t, db, "b", image(t, c1, l1), "latest")
	link(t, db, "e", c1)
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.UnlinkBlob(ctx, "e", c1.digest) })
	gone := newBlob(strings.Repeat("d", 1000))
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		_, err := tx.ClaimOrphanBlob(ctx, gone.digest, gone.size)
		return err
	})

	got, err := db.StorageStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := metadata.StorageStats{Blobs: 3, PhysicalBytes: 160, LogicalBytes: 260, Repositories: 3, Manifests: 2}
	if got != want {
		t.Errorf("StorageStats = %+v; want %+v", got, want)
	}
	if r := got.DedupRatio(); r != 1.625 {
		t.Errorf("DedupRatio = %v; want 1.625", r)
	}

	a := metadata.RepositoryStats{Name: "a", Blobs: 2, LogicalBytes: 150, SharedBytes: 100, Manifests: 1}
	b := metadata.RepositoryStats{Name: "b", Blobs: 2, LogicalBytes: 110, SharedBytes: 100, Manifests: 1}
	e := metadata.RepositoryStats{Name: "e"}
	for _, want := range []metadata.RepositoryStats{a, b, e} {
		if got, err := db.RepositoryStatsOf(ctx, want.Name); err != nil || got != want {
			t.Errorf("RepositoryStatsOf(%s) = %+v, %v; want %+v", want.Name, got, err, want)
		}
	}
	if got, err := db.RepositoryStatsOf(ctx, "nothing"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("RepositoryStatsOf(nothing) = %+v, %v; want ErrNotFound", got, err)
	}

	// Once b drops the shared layer, a holds it alone.
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.UnlinkBlob(ctx, "b", l1.digest) })
	if got, err := db.RepositoryStatsOf(ctx, "a"); err != nil || got.SharedBytes != 0 || got.LogicalBytes != 150 {
		t.Errorf("RepositoryStatsOf(a) after b's unlink = %+v, %v; want 150 logical, 0 shared bytes", got, err)
	}
	if got, err := db.StorageStats(ctx); err != nil || got.LogicalBytes != 160 || got.PhysicalBytes != 160 {
		t.Errorf("StorageStats after b's unlink = %+v, %v; want 160 logical and physical bytes", got, err)
	}
}
