package metadata_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

func TestTagHistory(t *testing.T) { forEachBackend(t, testTagHistory) }

func testTagHistory(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	config, l1, l2 := newBlob("config"), newBlob("one"), newBlob("two")
	link(t, db, "app", config, l1, l2)
	m1, m2 := image(t, config, l1), image(t, config, l2)

	t1 := c.tick()
	if err := put(t, db, "app", m1, "alice", "latest"); err != nil {
		t.Fatal(err)
	}
	t2 := c.tick()
	if err := put(t, db, "app", m2, "bob", "latest"); err != nil {
		t.Fatal(err)
	}
	want := []metadata.TagEvent{
		{Tag: "latest", Digest: m1.digest, Start: t1.UnixNano(), End: t2.UnixNano(), Actor: "alice", Action: "push", EndedBy: "bob", EndAction: "push"},
		{Tag: "latest", Digest: m2.digest, Start: t2.UnixNano(), Actor: "bob", Action: "push"},
	}
	wantHistory(t, db, "latest", want)
	if got := resolve(t, db, "app", "latest"); got.Digest != m2.digest {
		t.Errorf("latest = %s, want %s", got.Digest, m2.digest)
	}

	// Pushing the digest a tag already has is no change and no history.
	c.tick()
	if err := put(t, db, "app", m2, "carol", "latest"); err != nil {
		t.Fatal(err)
	}
	wantHistory(t, db, "latest", want)

	t4 := c.tick()
	del := func() error {
		return db.InTx(t.Context(), func(tx *metadata.Tx) error {
			_, err := tx.DeleteTag(t.Context(), "app", "latest", metadata.Change{Actor: "dave", Action: metadata.ActionDelete})
			return err
		})
	}
	if err := del(); err != nil {
		t.Fatalf("DeleteTag: %v", err)
	}
	want[1].End, want[1].EndedBy, want[1].EndAction = t4.UnixNano(), "dave", "delete"
	wantHistory(t, db, "latest", want)
	wantUnresolved(t, db, "app", "latest")
	if got := resolve(t, db, "app", string(m2.digest)); got.Digest != m2.digest {
		t.Error("DeleteTag removed the manifest")
	}
	if err := del(); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("DeleteTag of a deleted tag = %v, want ErrNotFound", err)
	}

	// A deleted tag can be pushed again; its history goes on.
	t5 := c.tick()
	if err := put(t, db, "app", m1, "erin", "latest"); err != nil {
		t.Fatal(err)
	}
	want = append(want, metadata.TagEvent{Tag: "latest", Digest: m1.digest, Start: t5.UnixNano(), Actor: "erin", Action: "push"})
	wantHistory(t, db, "latest", want)
}

func wantHistory(t *testing.T, db *metadata.DB, tag string, want []metadata.TagEvent) {
	t.Helper()
	got, err := db.TagHistory(t.Context(), "app", tag)
	if err != nil {
		t.Fatal(err)
	}
	// Ids only need to rise; the newest-first pages must be the same rows reversed.
	for i := range got {
		if i > 0 && got[i].ID <= got[i-1].ID {
			t.Errorf("TagHistory(%s): ids do not rise: %d after %d", tag, got[i].ID, got[i-1].ID)
		}
	}
	var paged []metadata.TagEvent
	for before := int64(0); ; {
		page, err := db.TagHistoryPage(t.Context(), "app", tag, before, 2)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if len(page) < 2 {
			break
		}
		before = page[len(page)-1].ID
	}
	slices.Reverse(paged)
	if !slices.Equal(paged, got) {
		t.Errorf("TagHistoryPage(%s), reversed =\n%+v\nwant\n%+v", tag, paged, got)
	}
	for i := range got {
		got[i].ID = 0
	}
	if !slices.Equal(got, want) {
		t.Errorf("TagHistory(%s) =\n%+v\nwant\n%+v", tag, got, want)
	}
}

func TestTagHistoryDescriptors(t *testing.T) { forEachBackend(t, testTagHistoryDescriptors) }

// testTagHistoryDescriptors: the rows come with their manifest's media type
// and size, even once the manifest is deleted, and the filter narrows them.
func testTagHistoryDescriptors(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	config, l1, l2 := newBlob("config"), newBlob("one"), newBlob("two")
	link(t, db, "app", config, l1, l2)
	m1, m2 := image(t, config, l1), image(t, config, l2)
	deleteTag := func(ctx context.Context, tx *metadata.Tx) error {
		_, err := tx.DeleteTag(ctx, "app", "latest", metadata.Change{Action: metadata.ActionDelete})
		return err
	}
	t1 := c.tick()
	mustPut(t, db, "app", m1, "latest")
	t2 := c.tick()
	mustPut(t, db, "app", m2, "latest")
	t3 := c.tick()
	inTx(t, db, deleteTag)
	m3 := index(t, m1, m2)
	t4 := c.tick()
	mustPut(t, db, "app", m3, "latest")
	t5 := c.tick()
	mustPut(t, db, "app", m1, "latest")
	c.tick()
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.DeleteManifest(ctx, "app", m1.digest, metadata.Change{Action: metadata.ActionDelete})
	})
	// Newest first: m1 (t5, manifest deleted), m3 (t4), m2 (t2, tag deleted), m1 (t1).
	type row struct {
		digest    oci.Digest
		mediaType string
		size      int64
	}
	d1, d2 := row{m1.digest, oci.MediaTypeImageManifest, int64(len(m1.payload))}, row{m2.digest, oci.MediaTypeImageManifest, int64(len(m2.payload))}
	d3 := row{m3.digest, oci.MediaTypeImageIndex, int64(len(m3.payload))}
	far, long := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		f    metadata.HistoryFilter
		want []row
	}{
		{"all", metadata.HistoryFilter{}, []row{d1, d3, d2, d1}},
		{"digest", metadata.HistoryFilter{Digest: m1.digest}, []row{d1, d1}},
		{"digest never tagged", metadata.HistoryFilter{Digest: config.digest}, nil},
		{"started before t2", metadata.HistoryFilter{Before: t2}, []row{d1}},
		{"started before t4", metadata.HistoryFilter{Before: t4}, []row{d2, d1}},
		// m2's row ended at t3 and m1's first at t2.
		{"started or ended after t3", metadata.HistoryFilter{After: t3}, []row{d1, d3}},
		{"started or ended after t2", metadata.HistoryFilter{After: t2}, []row{d1, d3, d2}},
		{"window", metadata.HistoryFilter{After: t1, Before: t5}, []row{d3, d2, d1}},
		{"before the year 1678", metadata.HistoryFilter{Before: long}, nil},
		{"after the year 2262", metadata.HistoryFilter{After: far}, nil},
		{"wide open", metadata.HistoryFilter{Before: far, After: long}, []row{d1, d3, d2, d1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Pages of one, to check that the filter holds across pages.
			var got []row
			for before := int64(0); ; {
				page, err := db.TagHistoryDescriptors(t.Context(), "app", "latest", before, 1, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				got = append(got, row{page[0].Digest, page[0].MediaType, page[0].Size})
				before = page[0].ID
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// The rows are TagHistoryPage's.
	all, err := db.TagHistoryDescriptors(t.Context(), "app", "latest", 0, 10, metadata.HistoryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := db.TagHistoryPage(t.Context(), "app", "latest", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(all, plain, func(d metadata.TagDescriptor, e metadata.TagEvent) bool { return d.TagEvent == e }) {
		t.Fatalf("TagHistoryDescriptors rows differ from TagHistoryPage: %+v, %+v", all, plain)
	}
	for _, tt := range []struct{ repo, tag string }{{"app", "never"}, {"nowhere", "latest"}} {
		if got, err := db.TagHistoryDescriptors(t.Context(), tt.repo, tt.tag, 0, 10, metadata.HistoryFilter{}); err != nil || len(got) != 0 {
			t.Errorf("history of %s:%s = %+v, %v; want none", tt.repo, tt.tag, got, err)
		}
	}
}

func TestDeleteTagErrors(t *testing.T) { forEachBackend(t, testDeleteTagErrors) }

func testDeleteTagErrors(t *testing.T, be backend) {
	db := be.open(t, newClock())
	config := newBlob("config")
	link(t, db, "app", config)
	mustPut(t, db, "app", image(t, config), "kept")
	for _, tt := range []struct{ repo, tag string }{{"app", "never"}, {"nowhere", "kept"}} {
		err := db.InTx(t.Context(), func(tx *metadata.Tx) error {
			_, err := tx.DeleteTag(t.Context(), tt.repo, tt.tag, metadata.Change{Action: metadata.ActionDelete})
			return err
		})
		if !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("DeleteTag(%s, %s) = %v, want ErrNotFound", tt.repo, tt.tag, err)
		}
	}
	if got := tags(t, db, "app"); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("tags = %q", got)
	}
}

func TestTagsPagination(t *testing.T) { forEachBackend(t, testTagsPagination) }

func testTagsPagination(t *testing.T, be backend) {
	db := be.open(t, newClock())
	config := newBlob("config")
	link(t, db, "app", config)
	link(t, db, "other", config)
	m := image(t, config)
	mustPut(t, db, "app", m, "latest", "9", "10", "A", "a", "_x", "v1.0", "1", "gone")
	mustPut(t, db, "other", m, "b-other")
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		_, err := tx.DeleteTag(ctx, "app", "gone", metadata.Change{Action: metadata.ActionDelete})
		return err
	})
	// Byte order: digits < upper case < '_' < lower case; "10" < "9".
	all := []string{"1", "10", "9", "A", "_x", "a", "latest", "v1.0"}
	tests := []struct {
		name string
		last string
		n    int
		want []string
	}{
		{"all", "", 100, all},
		{"first page", "", 3, all[:3]},
		{"second page", "9", 3, all[3:6]},
		{"last page", "a", 3, all[6:]},
		{"after the end", "v1.0", 3, []string{}},
		{"after a missing name", "5", 2, []string{"9", "A"}},
		{"last between cases", "B", 100, []string{"_x", "a", "latest", "v1.0"}},
		{"n of zero", "", 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.Tags(t.Context(), "app", tt.last, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Tags(last=%q, n=%d) = %q, want %q", tt.last, tt.n, got, tt.want)
			}
		})
	}
	t.Run("walk pages", func(t *testing.T) {
		var walked []string
		for last := ""; ; {
			page, err := db.Tags(t.Context(), "app", last, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			walked = append(walked, page...)
			last = page[len(page)-1]
		}
		if !slices.Equal(walked, all) {
			t.Errorf("paging by 2 saw %q, want %q", walked, all)
		}
	})
	if got, err := db.Tags(t.Context(), "nowhere", "", 10); err != nil || got == nil || len(got) != 0 {
		t.Errorf("Tags of an unknown repository = %#v, %v; want an empty list", got, err)
	}
}

func TestRepositoriesPagination(t *testing.T) { forEachBackend(t, testRepositoriesPagination) }

func testRepositoriesPagination(t *testing.T, be backend) {
	db := be.open(t, newClock())
	b := newBlob("x")
	for _, repo := range []string{"c", "a/x", "b", "a", "a-b", "a/x/y"} {
		link(t, db, repo, b)
	}
	// '-' (0x2d) sorts before '/' (0x2f).
	all := []string{"a", "a-b", "a/x", "a/x/y", "b", "c"}
	tests := []struct {
		last string
		n    int
		want []string
	}{
		{"", 100, all},
		{"", 2, all[:2]},
		{"a-b", 2, all[2:4]},
		{"a/x/y", 2, all[4:]},
		{"c", 2, []string{}},
		{"a/", 3, []string{"a/x", "a/x/y", "b"}},
	}
	for _, tt := range tests {
		got, err := db.Repositories(t.Context(), tt.last, tt.n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Repositories(last=%q, n=%d) = %q, want %q", tt.last, tt.n, got, tt.want)
		}
	}
	for name, want := range map[string]bool{"a/x": true, "a/z": false} {
		if ok, err := db.RepositoryExists(t.Context(), name); ok != want || err != nil {
			t.Errorf("RepositoryExists(%s) = %v, %v", name, ok, err)
		}
	}
}

func TestImmutableTags(t *testing.T) { forEachBackend(t, testImmutableTags) }

// testImmutableTags: a tag the change marks immutable keeps its manifest;
// re-pointing it at the same one is fine; other tags still move.
func testImmutableTags(t *testing.T, be backend) {
	db := be.open(t, newClock())
	config, l1, l2 := newBlob("config"), newBlob("one"), newBlob("two")
	link(t, db, "app", config, l1, l2)
	m1, m2 := image(t, config, l1), image(t, config, l2)
	push := func(m manifest, tag string) error {
		return db.InTx(t.Context(), func(tx *metadata.Tx) error {
			return tx.PutManifest(t.Context(), "app", m.digest, m.parsed, m.payload, []string{tag},
				metadata.Change{Action: metadata.ActionPush, Rules: metadata.TagRules{ImmutableNumbered: true}})
		})
	}
	for _, step := range []struct {
		m       manifest
		tag     string
		refused bool
	}{
		{m1, "42", false}, {m1, "42", false}, {m2, "42", true}, {m1, "latest", false}, {m2, "latest", false},
	} {
		err := push(step.m, step.tag)
		var ie *metadata.TagImmutableError
		if step.refused != errors.As(err, &ie) || (!step.refused && err != nil) {
			t.Fatalf("push %s to %s: %v", step.m.digest, step.tag, err)
		}
		if step.refused && (ie.Tag != "42" || ie.Current != m1.digest || !errors.Is(err, metadata.ErrTagImmutable)) {
			t.Fatalf("refusal %+v", ie)
		}
	}
	if got := resolve(t, db, "app", "42"); got.Digest != m1.digest {
		t.Fatalf("42 points at %s after a refused move", got.Digest)
	}
	if h, err := db.TagHistory(t.Context(), "app", "42"); err != nil || len(h) != 1 {
		t.Fatalf("history of 42: %d rows, %v", len(h), err)
	}
}
