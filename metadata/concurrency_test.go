package metadata_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// These tests race writers on separate handles of one database, as replicas
// do, and check that the end state is one a serial order of the same
// writes would give. On SQLite the handles queue for the file's write lock;
// on PostgreSQL they run at once under READ COMMITTED.

const replicas = 3

// openReplicas opens n handles on one fresh database, on the real clock:
// transactions that start in one order and commit in another are part of
// the race.
func openReplicas(t *testing.T, be backend, n int) []*metadata.DB {
	t.Helper()
	o := be.fresh(t)
	dbs := make([]*metadata.DB, n)
	for i := range dbs {
		dbs[i] = openWith(t, o, nil)
	}
	return dbs
}

// race runs n functions at once, released together, and returns their errors.
func race(n int, fn func(i int) error) []error {
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
}

// wantChained checks that a tag's history is a chain: every row but the
// last has ended, each one ends where the next starts, none ends before it
// starts, and the last one is live.
func wantChained(t *testing.T, h []metadata.TagEvent) {
	t.Helper()
	for i, e := range h {
		last := i == len(h)-1
		switch {
		case last && e.End != 0:
			t.Errorf("row %d of %d ended at %d; the last row must be live", i, len(h), e.End)
		case !last && e.End == 0:
			t.Errorf("row %d of %d is live too", i, len(h))
		case !last && e.End != h[i+1].Start:
			t.Errorf("row %d ends at %d, row %d starts at %d", i, e.End, i+1, h[i+1].Start)
		case !last && e.End < e.Start:
			t.Errorf("row %d ends at %d before it starts at %d", i, e.End, e.Start)
		case !last && e.EndedBy != h[i+1].Actor:
			t.Errorf("row %d ended by %q, row %d opened by %q", i, e.EndedBy, i+1, h[i+1].Actor)
		}
	}
}

func historyDigests(h []metadata.TagEvent) []oci.Digest {
	var out []oci.Digest
	for _, e := range h {
		out = append(out, e.Digest)
	}
	return out
}

// untaggedImages stores n different images in repository app, untagged.
func untaggedImages(t *testing.T, db *metadata.DB, n int) []manifest {
	t.Helper()
	config := newBlob("config")
	link(t, db, "app", config)
	ms := make([]manifest, n)
	for i := range ms {
		l := newBlob(fmt.Sprint("layer ", i))
		link(t, db, "app", l)
		ms[i] = image(t, config, l)
		mustPut(t, db, "app", ms[i])
	}
	return ms
}

// TestConcurrentTagMoves: writers push different manifests to the same tag
// at once, many times over. Each push is one history row, exactly one row
// is live, and the rows chain.
func TestConcurrentTagMoves(t *testing.T) { forEachBackend(t, testConcurrentTagMoves) }

func testConcurrentTagMoves(t *testing.T, be backend) {
	dbs := openReplicas(t, be, replicas)
	const writers, rounds = 8, 25
	ms := untaggedImages(t, dbs[0], writers) // so the race is only about tags
	for round := range rounds {
		tag := fmt.Sprint("t", round)
		noErrors(t, race(writers, func(i int) error {
			return dbs[i%replicas].InTx(t.Context(), func(tx *metadata.Tx) error {
				return tx.PutManifest(t.Context(), "app", ms[i].digest, ms[i].parsed, ms[i].payload, []string{tag},
					metadata.Change{Actor: fmt.Sprint("writer ", i), Action: metadata.ActionPush})
			})
		}))
		h, err := dbs[0].TagHistory(t.Context(), "app", tag)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != writers {
			t.Fatalf("round %d: %d history rows, want %d (one per push):\n%+v", round, len(h), writers, h)
		}
		wantChained(t, h)
		pushed := slices.Sorted(slices.Values(historyDigests(h)))
		if len(slices.Compact(pushed)) != writers {
			t.Errorf("round %d: history repeats a digest: %v", round, historyDigests(h))
		}
		if got := resolve(t, dbs[1%replicas], "app", tag); got.Digest != h[len(h)-1].Digest {
			t.Errorf("round %d: %s resolves to %s, its live row says %s", round, tag, got.Digest, h[len(h)-1].Digest)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if got := tags(t, dbs[0], "app"); len(got) != rounds {
		t.Errorf("%d live tags, want %d: %q", len(got), rounds, got)
	}
}

// TestConcurrentIdenticalPushes: writers push the same image to the same new
// repository at once: one repository, one link per blob, one history row.
func TestConcurrentIdenticalPushes(t *testing.T) { forEachBackend(t, testConcurrentIdenticalPushes) }

func testConcurrentIdenticalPushes(t *testing.T, be backend) {
	dbs := openReplicas(t, be, replicas)
	const writers, rounds = 8, 20
	config, layer := newBlob("config"), newBlob("layer")
	m := image(t, config, layer)
	for round := range rounds {
		repo := fmt.Sprint("race/", round)
		noErrors(t, race(writers, func(i int) error {
			return dbs[i%replicas].InTx(t.Context(), func(tx *metadata.Tx) error {
				ctx := t.Context()
				if err := tx.LinkBlob(ctx, repo, config.digest, config.size); err != nil {
					return err
				}
				if err := tx.LinkBlob(ctx, repo, layer.digest, layer.size); err != nil {
					return err
				}
				return tx.PutManifest(ctx, repo, m.digest, m.parsed, m.payload, []string{"latest", "1"},
					metadata.Change{Actor: fmt.Sprint("writer ", i), Action: metadata.ActionPush})
			})
		}))
		for _, tag := range []string{"1", "latest"} {
			h, err := dbs[0].TagHistory(t.Context(), repo, tag)
			if err != nil || len(h) != 1 || h[0].Digest != m.digest || h[0].End != 0 {
				t.Fatalf("%s:%s history = %+v, %v; want one live row", repo, tag, h, err)
			}
		}
		if got := tags(t, dbs[0], repo); !slices.Equal(got, []string{"1", "latest"}) {
			t.Errorf("%s tags = %q", repo, got)
		}
		for _, b := range []blob{config, layer} {
			if size, err := dbs[0].BlobInRepo(t.Context(), repo, b.digest); err != nil || size != b.size {
				t.Errorf("%s: BlobInRepo = %d, %v", repo, size, err)
			}
		}
	}
	repos, err := dbs[0].Repositories(t.Context(), "", 1000)
	if err != nil || len(repos) != rounds {
		t.Errorf("Repositories = %q, %v; want %d, each once", repos, err, rounds)
	}
}

// TestConcurrentMultiTagPushes: writers link shared blobs, half of them in
// the reverse order (deadlocks on PostgreSQL, which InTx retries), and move the same
// three tags, named in its own order, to its own manifest. In any serial
// order the three tags move together, so their histories list the same
// digests in the same order and they end on one manifest.
func TestConcurrentMultiTagPushes(t *testing.T) { forEachBackend(t, testConcurrentMultiTagPushes) }

func testConcurrentMultiTagPushes(t *testing.T, be backend) {
	dbs := openReplicas(t, be, replicas)
	const writers, rounds = 6, 6
	shared := []blob{newBlob("config"), newBlob("base"), newBlob("runtime"), newBlob("tools")}
	names := []string{"a", "b", "c"}
	for round := range rounds {
		repo := fmt.Sprint("multi/", round)
		ms := make([]manifest, writers)
		for i := range ms {
			ms[i] = image(t, shared[0], shared[1], shared[2], shared[3], newBlob(fmt.Sprint(repo, i)))
		}
		noErrors(t, race(writers, func(i int) error {
			blobs := slices.Clone(shared)
			if i%2 == 1 {
				slices.Reverse(blobs)
			}
			tagNames := append(slices.Clone(names[i%len(names):]), names[:i%len(names)]...)
			return dbs[i%replicas].InTx(t.Context(), func(tx *metadata.Tx) error {
				ctx := t.Context()
				for _, b := range append(blobs, newBlob(fmt.Sprint(repo, i))) {
					if err := tx.LinkBlob(ctx, repo, b.digest, b.size); err != nil {
						return err
					}
				}
				return tx.PutManifest(ctx, repo, ms[i].digest, ms[i].parsed, ms[i].payload, tagNames,
					metadata.Change{Actor: fmt.Sprint("writer ", i), Action: metadata.ActionPush})
			})
		}))
		var first []oci.Digest
		for _, tag := range names {
			h, err := dbs[0].TagHistory(t.Context(), repo, tag)
			if err != nil {
				t.Fatal(err)
			}
			if len(h) != writers {
				t.Fatalf("%s:%s has %d history rows, want %d", repo, tag, len(h), writers)
			}
			wantChained(t, h)
			if first == nil {
				first = historyDigests(h)
			} else if got := historyDigests(h); !slices.Equal(got, first) {
				t.Errorf("%s:%s moved through %v, %s:a through %v", repo, tag, got, repo, first)
			}
		}
	}
}

// TestConcurrentPushAndDelete: writers push to and delete one tag at once.
// At most one row is live, rows never overlap, and every delete that
// reported success closed a row.
func TestConcurrentPushAndDelete(t *testing.T) { forEachBackend(t, testConcurrentPushAndDelete) }

func testConcurrentPushAndDelete(t *testing.T, be backend) {
	dbs := openReplicas(t, be, replicas)
	const writers, rounds = 8, 20
	ms := untaggedImages(t, dbs[0], writers)
	for round := range rounds {
		tag := fmt.Sprint("t", round)
		errs := race(writers, func(i int) error {
			return dbs[i%replicas].InTx(t.Context(), func(tx *metadata.Tx) error {
				c := metadata.Change{Actor: fmt.Sprint("writer ", i), Action: metadata.ActionPush}
				if i%2 == 1 {
					c.Action = metadata.ActionDelete
					_, err := tx.DeleteTag(t.Context(), "app", tag, c)
					return err
				}
				return tx.PutManifest(t.Context(), "app", ms[i].digest, ms[i].parsed, ms[i].payload, []string{tag}, c)
			})
		})
		deleted := 0
		for i, err := range errs {
			switch {
			case i%2 == 1 && err == nil:
				deleted++
			case i%2 == 1 && errors.Is(err, metadata.ErrNotFound):
			case err != nil:
				t.Fatalf("writer %d: %v", i, err)
			}
		}
		h, err := dbs[0].TagHistory(t.Context(), "app", tag)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != writers/2 {
			t.Errorf("round %d: %d history rows, want %d (one per push)", round, len(h), writers/2)
		}
		ends := 0
		for i, e := range h {
			if e.EndAction == metadata.ActionDelete {
				ends++
			}
			if e.End == 0 && i != len(h)-1 {
				t.Errorf("round %d: row %d of %d is live", round, i, len(h))
			}
			if e.End != 0 && e.End < e.Start || i > 0 && h[i-1].End > e.Start {
				t.Errorf("round %d: rows overlap: %+v", round, h)
			}
		}
		if ends != deleted {
			t.Errorf("round %d: %d deletes succeeded, %d rows were ended by one:\n%+v", round, deleted, ends, h)
		}
		live := h[len(h)-1].End == 0
		if _, err := dbs[0].Resolve(t.Context(), "app", oci.Reference{Tag: tag}); (err == nil) != live {
			t.Errorf("round %d: Resolve = %v, live row: %v", round, err, live)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// TestConcurrentDeleteManifest: a manifest's deletion races pushes that
// point tags at it and away from it. Afterwards no live tag points at a
// manifest its repository does not have.
func TestConcurrentDeleteManifest(t *testing.T) { forEachBackend(t, testConcurrentDeleteManifest) }

func testConcurrentDeleteManifest(t *testing.T, be backend) {
	dbs := openReplicas(t, be, replicas)
	const writers, rounds = 6, 20
	config, l1, l2 := newBlob("config"), newBlob("one"), newBlob("two")
	link(t, dbs[0], "app", config, l1, l2)
	doomed, other := image(t, config, l1), image(t, config, l2)
	for round := range rounds {
		mustPut(t, dbs[0], "app", doomed, "x", "y", "z")
		errs := race(writers, func(i int) error {
			return dbs[i%replicas].InTx(t.Context(), func(tx *metadata.Tx) error {
				ctx := t.Context()
				c := metadata.Change{Actor: fmt.Sprint("writer ", i), Action: metadata.ActionPush}
				switch i % 3 {
				case 0:
					c.Action = metadata.ActionDelete
					return tx.DeleteManifest(ctx, "app", doomed.digest, c)
				case 1:
					return tx.PutManifest(ctx, "app", other.digest, other.parsed, other.payload, []string{"x", "y"}, c)
				default:
					return tx.PutManifest(ctx, "app", doomed.digest, doomed.parsed, doomed.payload, []string{"z", "w"}, c)
				}
			})
		})
		for i, err := range errs {
			if err != nil && !(i%3 == 0 && errors.Is(err, metadata.ErrNotFound)) {
				t.Fatalf("round %d, writer %d: %v", round, i, err)
			}
		}
		for _, tag := range tags(t, dbs[0], "app") {
			m := resolve(t, dbs[0], "app", tag)
			if _, err := dbs[0].Resolve(t.Context(), "app", oci.Reference{Digest: m.Digest}); err != nil {
				t.Errorf("round %d: tag %s points at %s, which app does not have: %v", round, tag, m.Digest, err)
			}
			h, err := dbs[0].TagHistory(t.Context(), "app", tag)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(h); i++ {
				if h[i-1].End == 0 || h[i-1].End > h[i].Start {
					t.Errorf("round %d: %s history overlaps: %+v", round, tag, h)
				}
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		// Start the next round from a known state.
		inTx(t, dbs[0], func(ctx context.Context, tx *metadata.Tx) error {
			for _, tag := range tags(t, dbs[0], "app") {
				if _, err := tx.DeleteTag(ctx, "app", tag, metadata.Change{Action: metadata.ActionDelete}); err != nil {
					return err
				}
			}
			return nil
		})
	}
}
