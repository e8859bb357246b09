package metadata_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// push stores m in repo under tags with the given tag rules.
func push(t *testing.T, db *metadata.DB, repo string, m manifest, rules metadata.TagRules, tags ...string) error {
	t.Helper()
	return db.InTx(t.Context(), pushTx(t, repo, m, rules, tags...))
}

// pushTx is push as a transaction's function.
func pushTx(t *testing.T, repo string, m manifest, rules metadata.TagRules, tags ...string) func(*metadata.Tx) error {
	return func(tx *metadata.Tx) error {
		return tx.PutManifest(t.Context(), repo, m.digest, m.parsed, m.payload, tags,
			metadata.Change{Actor: "tester", Action: metadata.ActionPush, Rules: rules})
	}
}

// setTag runs SetTag in a transaction of its own.
func setTag(t *testing.T, db *metadata.DB, repo, tag string, d oci.Digest, c metadata.Change) (oci.Digest, error) {
	t.Helper()
	var prev oci.Digest
	err := db.InTx(t.Context(), func(tx *metadata.Tx) (err error) {
		prev, err = tx.SetTag(t.Context(), repo, tag, d, c)
		return err
	})
	return prev, err
}

// deleteTag runs DeleteTag in a transaction of its own.
func deleteTag(t *testing.T, db *metadata.DB, repo, tag string, c metadata.Change) (oci.Digest, error) {
	t.Helper()
	c.Action = metadata.ActionDelete
	var d oci.Digest
	err := db.InTx(t.Context(), func(tx *metadata.Tx) (err error) {
		d, err = tx.DeleteTag(t.Context(), repo, tag, c)
		return err
	})
	return d, err
}

func mustDeleteTag(t *testing.T, db *metadata.DB, repo, tag string) {
	t.Helper()
	if _, err := deleteTag(t, db, repo, tag, metadata.Change{Actor: "tester"}); err != nil {
		t.Fatalf("DeleteTag(%s:%s): %v", repo, tag, err)
	}
}

// wantError returns err as an E, failing the test if it is not one.
func wantError[E error](t *testing.T, err error, what string) E {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("%s = %v, want a %T", what, err, e)
	}
	return e
}

func wantNotFound(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("%s = %v, want ErrNotFound", what, err)
	}
}

func eventTags(rows []metadata.TagEvent) []string {
	out := []string{}
	for _, e := range rows {
		out = append(out, e.Tag)
	}
	return out
}

// versions returns the repository's live numbered tags, newest first.
func versions(t *testing.T, db *metadata.DB, repo string) []string {
	t.Helper()
	rows, err := db.Versions(t.Context(), repo, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return eventTags(rows)
}

func wantVersions(t *testing.T, db *metadata.DB, repo string, want ...string) {
	t.Helper()
	if got := versions(t, db, repo); !slices.Equal(got, want) {
		t.Errorf("Versions(%s) = %q, want %q", repo, got, want)
	}
}

// history returns a tag's history in repository app, oldest first.
func history(t *testing.T, db *metadata.DB, tag string) []metadata.TagEvent {
	t.Helper()
	h, err := db.TagHistory(t.Context(), "app", tag)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func ns(t time.Time) int64 { return t.UnixNano() }

func TestVersions(t *testing.T) { forEachBackend(t, testVersions) }

// testVersions: numbered tags list newest first under the default
// versioning; pages that start after the key of the previous page's last
// row add up to the whole list; moving and deleted tags are never listed.
func testVersions(t *testing.T, be backend) {
	db := be.open(t, newClock())
	ms := untaggedImages(t, db, 2)
	var pushed []string
	for i := 1; i <= 12; i++ {
		pushed = append(pushed, strconv.Itoa(i))
	}
	pushed = append(pushed, "v1.0.0-rc.1", "latest", "gone")
	rules := metadata.TagRules{Versioning: oci.DefaultVersioning()}
	if err := push(t, db, "app", ms[0], rules, pushed...); err != nil {
		t.Fatal(err)
	}
	if err := push(t, db, "app", ms[1], rules, "13"); err != nil {
		t.Fatal(err)
	}
	mustDeleteTag(t, db, "app", "13")
	mustDeleteTag(t, db, "app", "gone")

	// 10 > 9 as numbers, and a pre-release of 1.0.0 is older than 1.
	want := []string{"12", "11", "10", "9", "8", "7", "6", "5", "4", "3", "2", "1", "v1.0.0-rc.1"}
	all, err := db.Versions(t.Context(), "app", nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventTags(all); !slices.Equal(got, want) {
		t.Fatalf("Versions = %q, want %q", got, want)
	}
	for _, e := range all {
		if e.Digest != ms[0].digest || e.End != 0 || e.VersionKey == "" {
			t.Errorf("version %s: %+v, want a live row of %s with a key", e.Tag, e, ms[0].digest)
		}
	}
	keys, err := db.VersionKeys(t.Context(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(all) {
		t.Fatalf("VersionKeys has %d keys, Versions %d rows", len(keys), len(all))
	}
	for i := range keys {
		if string(keys[i]) != all[i].VersionKey {
			t.Errorf("VersionKeys[%d] = %q, Versions says %q", i, keys[i], all[i].VersionKey)
		}
	}

	for n := 1; n <= len(want)+1; n++ {
		var walked []string
		for after := []byte(nil); ; {
			page, err := db.Versions(t.Context(), "app", after, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > n {
				t.Fatalf("n=%d: a page of %d rows", n, len(page))
			}
			walked = append(walked, eventTags(page)...)
			if len(page) < n {
				break
			}
			after = []byte(page[len(page)-1].VersionKey)
		}
		if !slices.Equal(walked, want) {
			t.Errorf("pages of %d: %q, want %q", n, walked, want)
		}
	}
	if got := versions(t, db, "nowhere"); len(got) != 0 {
		t.Errorf("Versions of an unknown repository = %q", got)
	}
}

func TestVersionRekey(t *testing.T) { forEachBackend(t, testVersionRekey) }

// testVersionRekey: when the versioning changes, the keys follow it,
// whether EnsureVersionKeys or a push under the new rules finds out.
func testVersionRekey(t *testing.T, be backend) {
	db := be.open(t, newClock())
	ms := untaggedImages(t, db, 1)
	builds, err := oci.NewVersioning([]oci.Ordering{oci.OrderPattern}, `(?P<n>[0-9]+)-(?P<b>[0-9]+)`)
	if err != nil {
		t.Fatal(err)
	}
	def := oci.DefaultVersioning()
	// 2024-7 reads as both (semver 2024.0.0-7, and build 2024 number 7);
	// 01-5 only as a build; 3, 10 and v2.0 only under the default.
	if err := push(t, db, "app", ms[0], metadata.TagRules{Versioning: def}, "3", "10", "v2.0", "2024-7", "01-5", "latest"); err != nil {
		t.Fatal(err)
	}
	defaultView := []string{"2024-7", "10", "3", "v2.0"}
	wantVersions(t, db, "app", defaultView...)
	numbered := func(want int64) {
		t.Helper()
		s, err := db.RepositorySummary(t.Context(), "app")
		if err != nil || s.NumberedTags != want {
			t.Errorf("NumberedTags = %d, %v; want %d", s.NumberedTags, err, want)
		}
	}
	numbered(4)

	if err := db.EnsureVersionKeys(t.Context(), "app", builds); err != nil {
		t.Fatal(err)
	}
	wantVersions(t, db, "app", "2024-7", "01-5")
	numbered(2)
	// And back.
	if err := db.EnsureVersionKeys(t.Context(), "app", def); err != nil {
		t.Fatal(err)
	}
	wantVersions(t, db, "app", defaultView...)

	// A push under the new rules rekeys the tags it did not name too.
	if err := push(t, db, "app", ms[0], metadata.TagRules{Versioning: builds}, "2024-8"); err != nil {
		t.Fatal(err)
	}
	wantVersions(t, db, "app", "2024-8", "2024-7", "01-5")
	numbered(3)

	wantNotFound(t, db.EnsureVersionKeys(t.Context(), "nowhere", builds), "EnsureVersionKeys(nowhere)")
}

func TestTagRules(t *testing.T) { forEachBackend(t, testTagRules) }

// testTagRules: ImmutableNumbered and RefuseLower, through PutManifest and
// SetTag. A refusal says why and changes nothing; pointing a tag where it
// points is no change, so never refused; moving tags are not bound.
func testTagRules(t *testing.T, be backend) {
	db := be.open(t, newClock())
	ms := untaggedImages(t, db, 2)
	m1, m2 := ms[0], ms[1]
	both := metadata.TagRules{ImmutableNumbered: true, RefuseLower: true}
	lowerOnly := metadata.TagRules{RefuseLower: true}
	const (
		ok = iota
		immutable
		tooLow
	)
	for i, step := range []struct {
		viaSetTag bool
		rules     metadata.TagRules
		m         manifest
		tag       string
		want      int
		newest    string // of a tooLow refusal
	}{
		{false, both, m1, "5", ok, ""},
		{false, both, m1, "10", ok, ""},
		{false, both, m2, "7", tooLow, "10"},
		{true, both, m2, "7", tooLow, "10"},
		{false, both, m2, "v1.0.0", tooLow, "10"}, // semver 1.0.0 < 10
		{false, both, m1, "5", ok, ""},            // 5 < 10, but not new
		{false, both, m2, "10", immutable, ""},
		{true, both, m2, "5", immutable, ""},
		{false, both, m2, "latest", ok, ""},
		{true, both, m1, "latest", ok, ""},
		{false, both, m2, "11", ok, ""},
		{true, both, m2, "10.5.0", tooLow, "11"},
		{false, lowerOnly, m2, "5", ok, ""}, // a move, not a new number
		{false, metadata.TagRules{}, m2, "6", ok, ""},
	} {
		var err error
		if step.viaSetTag {
			_, err = setTag(t, db, "app", step.tag, step.m.digest, metadata.Change{Action: metadata.ActionMove, Rules: step.rules})
		} else {
			err = push(t, db, "app", step.m, step.rules, step.tag)
		}
		what := fmt.Sprintf("step %d: %s to %s", i, step.tag, step.m.digest)
		switch step.want {
		case ok:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got := resolve(t, db, "app", step.tag); got.Digest != step.m.digest {
				t.Fatalf("%s: the tag points at %s", what, got.Digest)
			}
		case immutable:
			ie := wantError[*metadata.TagImmutableError](t, err, what)
			if ie.Tag != step.tag || ie.Current == step.m.digest || !errors.Is(err, metadata.ErrTagImmutable) {
				t.Fatalf("%s: %+v", what, ie)
			}
			if got := resolve(t, db, "app", step.tag); got.Digest != ie.Current {
				t.Fatalf("%s: refused, yet the tag points at %s, not %s", what, got.Digest, ie.Current)
			}
		case tooLow:
			tl := wantError[*metadata.TagTooLowError](t, err, what)
			if tl.Tag != step.tag || tl.Newest != step.newest {
				t.Fatalf("%s: %+v, want the newest to be %s", what, tl, step.newest)
			}
			wantUnresolved(t, db, "app", step.tag)
		}
	}
	for tag, rows := range map[string]int{"7": 0, "10.5.0": 0, "10": 1, "5": 2, "latest": 2} {
		if h := history(t, db, tag); len(h) != rows {
			t.Errorf("%s has %d history rows, want %d: %+v", tag, len(h), rows, h)
		}
	}
	wantVersions(t, db, "app", "11", "10", "6", "5")
}

// interleave runs first in a transaction that it holds open, then second
// in another, and lets the first commit only once the second waits for it
// (or has ended regardless, which a test of a lock that should make it
// wait then reports). It returns their errors.
func interleave(t *testing.T, db *metadata.DB, first, second func(*metadata.Tx) error) (error, error) {
	t.Helper()
	held, release := make(chan struct{}), make(chan struct{})
	var holding sync.Once
	firstDone, secondDone := make(chan error, 1), make(chan error, 1)
	go func() {
		firstDone <- db.InTx(t.Context(), func(tx *metadata.Tx) error {
			defer holding.Do(func() { close(held) })
			if err := first(tx); err != nil {
				return err
			}
			holding.Do(func() { close(held) })
			<-release
			return nil
		})
	}()
	<-held
	waits, err := db.Waits(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	go func() { secondDone <- db.InTx(t.Context(), second) }()
	var errSecond error
	ended := false
	for blocked := false; !blocked && !ended; {
		select {
		case errSecond = <-secondDone:
			ended = true
			t.Logf("the second transaction ended while the first was open: %v", errSecond)
		case err := <-firstDone:
			t.Fatalf("the first transaction ended (%v) before it was released", err)
		case <-time.After(time.Millisecond): // poll interval
			n, err := db.Waits(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			blocked = n > waits
		}
	}
	close(release)
	errFirst := <-firstDone
	if !ended {
		errSecond = <-secondDone
	}
	return errFirst, errSecond
}

func TestRefuseLowerConcurrent(t *testing.T) { forEachBackend(t, testRefuseLowerConcurrent) }

// testRefuseLowerConcurrent: two pushes of new numbers under RefuseLower
// run at once. The lower one is refused if the higher commits first, and
// never are both accepted against the same newest. (PostgreSQL runs them
// concurrently, the lower one waiting for the version lock; SQLite's one
// writer makes it wait for the whole transaction.)
func testRefuseLowerConcurrent(t *testing.T, be backend) {
	for _, tt := range []struct {
		first, second string
		refused       bool
		want          []string
	}{
		{"10", "5", true, []string{"10", "1"}},
		{"5", "10", false, []string{"10", "5", "1"}},
	} {
		t.Run(tt.first+" then "+tt.second, func(t *testing.T) {
			db := be.open(t, newClock())
			ms := untaggedImages(t, db, 3)
			rules := metadata.TagRules{RefuseLower: true}
			// A first number, so that the version keys are in place.
			if err := push(t, db, "app", ms[0], rules, "1"); err != nil {
				t.Fatal(err)
			}
			errFirst, errSecond := interleave(t, db, pushTx(t, "app", ms[1], rules, tt.first), pushTx(t, "app", ms[2], rules, tt.second))
			if errFirst != nil {
				t.Fatalf("push of %s: %v", tt.first, errFirst)
			}
			if tt.refused {
				tl := wantError[*metadata.TagTooLowError](t, errSecond, "push of "+tt.second)
				if tl.Tag != tt.second || tl.Newest != tt.first {
					t.Errorf("refusal %+v", tl)
				}
			} else if errSecond != nil {
				t.Fatalf("push of %s: %v", tt.second, errSecond)
			}
			wantVersions(t, db, "app", tt.want...)
		})
	}
}

func TestSetTagCompareAndSwap(t *testing.T) { forEachBackend(t, testSetTagCompareAndSwap) }

func testSetTagCompareAndSwap(t *testing.T, be backend) {
	db := be.open(t, newClock())
	ms := untaggedImages(t, db, 2)
	a, b := ms[0].digest, ms[1].digest
	none := oci.Digest("")
	cas := func(expect *oci.Digest) metadata.Change {
		return metadata.Change{Actor: "tester", Action: metadata.ActionMove, Expect: expect}
	}
	steps := []struct {
		tag      string
		to       oci.Digest
		expect   *oci.Digest
		prev     oci.Digest
		conflict bool
		current  oci.Digest // of the conflict
	}{
		{"latest", a, &none, "", false, ""}, // must not be live, and is not
		{"latest", b, &none, "", true, a},   // must not be live, but is
		{"latest", b, &b, "", true, a},
		{"latest", b, &a, a, false, ""},
		{"latest", b, &b, b, false, ""}, // no change
		{"gone", a, &a, "", true, ""},   // expected live, but is not
		{"latest", a, nil, b, false, ""},
	}
	for i, s := range steps {
		prev, err := setTag(t, db, "app", s.tag, s.to, cas(s.expect))
		what := fmt.Sprintf("step %d: SetTag(%s, %s)", i, s.tag, s.to)
		if s.conflict {
			ce := wantError[*metadata.TagConflictError](t, err, what)
			if ce.Tag != s.tag || ce.Current != s.current {
				t.Fatalf("%s: %+v, want the current digest %q", what, ce, s.current)
			}
			continue
		}
		if err != nil || prev != s.prev {
			t.Fatalf("%s = %s, %v; want %s", what, prev, err, s.prev)
		}
	}
	if got := historyDigests(history(t, db, "latest")); !slices.Equal(got, []oci.Digest{a, b, a}) {
		t.Errorf("history of latest: %v, want %s %s %s", got, a, b, a)
	}
	wantUnresolved(t, db, "app", "gone")

	// DeleteTag as a compare-and-swap.
	ce := wantError[*metadata.TagConflictError](t, errOf(deleteTag(t, db, "app", "latest", cas(&b))), "DeleteTag expecting b")
	if ce.Current != a {
		t.Errorf("conflict %+v, want the current digest %s", ce, a)
	}
	if got := resolve(t, db, "app", "latest"); got.Digest != a {
		t.Fatalf("a refused DeleteTag moved latest to %s", got.Digest)
	}
	if d, err := deleteTag(t, db, "app", "latest", cas(&a)); err != nil || d != a {
		t.Fatalf("DeleteTag expecting a = %s, %v", d, err)
	}
	wantUnresolved(t, db, "app", "latest")

	// Manifests the repository lacks, and repositories that do not exist.
	nowhere := oci.FromBytes([]byte("no such manifest"))
	mr := wantError[*metadata.MissingReferenceError](t, errOf(setTag(t, db, "app", "x", nowhere, cas(nil))), "SetTag of an unknown digest")
	if mr.Digest != nowhere || mr.Kind != oci.KindManifest || !errors.Is(mr, metadata.ErrMissingReference) {
		t.Errorf("missing reference %+v", mr)
	}
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.DeleteManifest(ctx, "app", b, metadata.Change{Action: metadata.ActionDelete})
	})
	wantError[*metadata.MissingReferenceError](t, errOf(setTag(t, db, "app", "x", b, cas(nil))), "SetTag of a deleted manifest")
	wantUnresolved(t, db, "app", "x")
	wantNotFound(t, errOf(setTag(t, db, "nowhere", "x", a, cas(nil))), "SetTag in an unknown repository")
}

func errOf[T any](_ T, err error) error { return err }

func TestRestoreTag(t *testing.T) { forEachBackend(t, testRestoreTag) }

func testRestoreTag(t *testing.T, be backend) {
	c := newClock()
	o := be.fresh(t)
	db := openWith(t, o, c)
	ms := untaggedImages(t, db, 2)
	a, b := ms[0].digest, ms[1].digest
	restore := func(db *metadata.DB, tag string, since int64) (oci.Digest, error) {
		var d oci.Digest
		err := db.InTx(t.Context(), func(tx *metadata.Tx) (err error) {
			d, err = tx.RestoreTag(t.Context(), "app", tag, since, metadata.Change{Actor: "restorer", Action: metadata.ActionMove})
			return err
		})
		return d, err
	}
	c.tick()
	mustPut(t, db, "app", ms[0], "1")
	mustPut(t, db, "app", ms[1], "2")
	deleted := c.tick()
	mustDeleteTag(t, db, "app", "1")
	c.tick()

	wantNotFound(t, errOf(restore(db, "1", ns(deleted)+1)), "restore of a tag deleted before the window")
	wantNotFound(t, errOf(restore(db, "never", 0)), "restore of a tag that never was")
	ce := wantError[*metadata.TagConflictError](t, errOf(restore(db, "2", 0)), "restore of a live tag")
	if ce.Current != b {
		t.Errorf("conflict %+v, want the current digest %s", ce, b)
	}
	if d, err := restore(db, "1", ns(deleted)); err != nil || d != a {
		t.Fatalf("restore within the window = %s, %v; want %s", d, err, a)
	}
	if got := resolve(t, db, "app", "1"); got.Digest != a {
		t.Fatalf("restored 1 points at %s", got.Digest)
	}
	wantRestored := func(h []metadata.TagEvent) {
		t.Helper()
		last, prev := h[len(h)-1], h[len(h)-2]
		if last.Action != metadata.ActionRestore || last.Actor != "restorer" || last.Digest != prev.Digest || last.End != 0 {
			t.Errorf("restored row %+v", last)
		}
		if last.Start < prev.End {
			t.Errorf("restored row starts at %d, before the delete at %d", last.Start, prev.End)
		}
	}
	wantRestored(history(t, db, "1"))
	wantError[*metadata.TagConflictError](t, errOf(restore(db, "1", 0)), "a second restore")

	// A replica whose clock is an hour behind restores a tag just deleted:
	// the restored row still starts at or after the delete.
	c.tick()
	mustDeleteTag(t, db, "app", "1")
	behind := openWith(t, o, &clock{t: c.Now().Add(-time.Hour)})
	if _, err := restore(behind, "1", 0); err != nil {
		t.Fatal(err)
	}
	wantRestored(history(t, db, "1"))

	// A tag whose manifest is gone has nothing to restore.
	c.tick()
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.DeleteManifest(ctx, "app", b, metadata.Change{Action: metadata.ActionDelete})
	})
	wantNotFound(t, errOf(restore(db, "2", 0)), "restore of a tag whose manifest is deleted")
	wantUnresolved(t, db, "app", "2")
}

func TestTagStates(t *testing.T) { forEachBackend(t, testTagStates) }

// testTagStates: each tag once, as its latest history row, by name.
func testTagStates(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	ms := untaggedImages(t, db, 2)
	a, b := ms[0].digest, ms[1].digest
	c.tick()
	mustPut(t, db, "app", ms[0], "a", "b", "c", "d", "e")
	c.tick()
	mustPut(t, db, "app", ms[1], "e") // moved: its latest row is the second
	mustDeleteTag(t, db, "app", "b")
	mustDeleteTag(t, db, "app", "c")
	c.tick()
	mustPut(t, db, "app", ms[1], "c") // deleted, then pushed again
	c.tick()
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { // ends d
		return tx.DeleteManifest(ctx, "app", a, metadata.Change{Action: metadata.ActionDelete})
	})
	// a was deleted with its manifest too.
	type state struct {
		tag    string
		digest oci.Digest
		live   bool
	}
	live := []state{{"c", b, true}, {"e", b, true}}
	deleted := []state{{"a", a, false}, {"b", a, false}, {"d", a, false}}
	all := []state{deleted[0], deleted[1], live[0], deleted[2], live[1]}
	for _, tt := range []struct {
		state string
		want  []state
	}{{metadata.TagsLive, live}, {metadata.TagsDeleted, deleted}, {metadata.TagsAll, all}} {
		for n := 1; n <= len(tt.want)+1; n++ {
			var got []state
			for after := ""; ; {
				page, err := db.TagStates(t.Context(), "app", tt.state, after, n)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range page {
					got = append(got, state{e.Tag, e.Digest, e.End == 0})
				}
				if len(page) < n {
					break
				}
				after = page[len(page)-1].Tag
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("TagStates(%s), pages of %d = %+v, want %+v", tt.state, n, got, tt.want)
			}
		}
	}
	// The rows are the latest: c's second life, b's delete.
	rows, err := db.TagStates(t.Context(), "app", metadata.TagsAll, "a", 2)
	if err != nil || len(rows) != 2 {
		t.Fatalf("TagStates = %+v, %v", rows, err)
	}
	if h := history(t, db, "b"); rows[0] != h[len(h)-1] || rows[0].EndAction != metadata.ActionDelete {
		t.Errorf("b's row %+v, its latest history row %+v", rows[0], h[len(h)-1])
	}
	if h := history(t, db, "c"); len(h) != 2 || rows[1] != h[1] {
		t.Errorf("c's row %+v, its history %+v", rows[1], h)
	}
	if got, err := db.TagStates(t.Context(), "nowhere", metadata.TagsAll, "", 10); err != nil || len(got) != 0 {
		t.Errorf("TagStates of an unknown repository = %+v, %v", got, err)
	}
}

func TestRepositoryHistoryPage(t *testing.T) { forEachBackend(t, testRepositoryHistoryPage) }

// testRepositoryHistoryPage: the rows of every tag of one repository that
// started or ended in a window, newest first, a page at a time.
func testRepositoryHistoryPage(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	ms := untaggedImages(t, db, 2)
	link(t, db, "other", newBlob("config"))
	other := image(t, newBlob("config"))
	t1 := ns(c.tick())
	mustPut(t, db, "app", ms[0], "a")
	t2 := ns(c.tick())
	mustPut(t, db, "app", ms[0], "b")
	t3 := ns(c.tick())
	mustPut(t, db, "app", ms[1], "a")
	mustPut(t, db, "other", other, "a")
	t4 := ns(c.tick())
	mustDeleteTag(t, db, "app", "b")
	t5 := ns(c.tick())
	mustPut(t, db, "app", ms[1], "c")
	t6 := ns(c.tick())
	// The rows: a:0 [t1, t3), b:0 [t2, t4), a:1 [t3, -), c:1 [t5, -).
	type row struct {
		tag        string
		digest     oci.Digest
		start, end int64
	}
	a0, b0 := row{"a", ms[0].digest, t1, t3}, row{"b", ms[0].digest, t2, t4}
	a1, c1 := row{"a", ms[1].digest, t3, 0}, row{"c", ms[1].digest, t5, 0}
	const forever = int64(1<<63 - 1)
	for _, tt := range []struct {
		since, until int64
		want         []row
	}{
		{0, forever, []row{c1, a1, b0, a0}},
		{t1, t2, []row{a0}},
		{t2, t3, []row{b0}},
		{t3, t4, []row{a1, a0}}, // a1 started, a0 ended
		{t4, t5, []row{b0}},
		{t5, forever, []row{c1}},
		{t6, forever, nil}, // a1 and c1 are live, but neither started nor ended since
		{t2, t2, nil},
	} {
		for n := 1; n <= len(tt.want)+1; n++ {
			var got []row
			for before := int64(0); ; {
				page, err := db.RepositoryHistoryPage(t.Context(), "app", tt.since, tt.until, before, n)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range page {
					got = append(got, row{e.Tag, e.Digest, e.Start, e.End})
				}
				if len(page) < n {
					break
				}
				before = page[len(page)-1].ID
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("history in [%d, %d), pages of %d = %+v, want %+v", tt.since-t1, tt.until-t1, n, got, tt.want)
			}
		}
	}
	if got, err := db.RepositoryHistoryPage(t.Context(), "nowhere", 0, forever, 0, 10); err != nil || len(got) != 0 {
		t.Errorf("history of an unknown repository = %+v, %v", got, err)
	}
}

func TestRepositorySummary(t *testing.T) { forEachBackend(t, testRepositorySummary) }

// testRepositorySummary: the counts, and a size that counts each blob and
// manifest the repository links once, however many manifests share it.
func testRepositorySummary(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	config, l1, l2, loose := newBlob("config"), newBlob("one"), newBlob("two"), newBlob("linked, never referenced")
	created := c.tick()
	link(t, db, "app", config, l1, l2, loose)
	c.tick()
	link(t, db, "other", config)
	m1, m2 := image(t, config, l1), image(t, config, l1, l2) // share config and l1
	idx := index(t, m1, m2)
	mustPut(t, db, "app", m1, "1", "latest", "gone")
	mustPut(t, db, "app", m2, "2", "v2.0.0", "stable")
	mustPut(t, db, "app", idx)
	mustPut(t, db, "other", image(t, config), "x")
	mustDeleteTag(t, db, "app", "gone")
	if err := db.EnsureVersionKeys(t.Context(), "app", oci.DefaultVersioning()); err != nil {
		t.Fatal(err)
	}
	blobs := config.size + l1.size + l2.size + loose.size
	want := metadata.RepositorySummary{Name: "app", Created: ns(created), Tags: 5, NumberedTags: 3, Manifests: 3,
		Size: blobs + m1.blob().size + m2.blob().size + idx.blob().size}
	wantSummary := func(want metadata.RepositorySummary) {
		t.Helper()
		if got, err := db.RepositorySummary(t.Context(), want.Name); err != nil || got != want {
			t.Errorf("RepositorySummary(%s) = %+v, %v\nwant %+v", want.Name, got, err, want)
		}
	}
	wantSummary(want)

	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.DeleteManifest(ctx, "app", m2.digest, metadata.Change{Action: metadata.ActionDelete})
	})
	want.Tags, want.NumberedTags, want.Manifests, want.Size = 2, 1, 2, want.Size-m2.blob().size
	wantSummary(want)

	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		_, err := tx.EnsureRepository(ctx, "bare")
		return err
	})
	// By name, after the cursor; the same as RepositorySummary of each.
	var names []string
	for after := ""; ; {
		page, err := db.RepositorySummaries(t.Context(), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			names = append(names, s.Name)
			wantSummary(s)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].Name
	}
	if !slices.Equal(names, []string{"app", "bare", "other"}) {
		t.Errorf("RepositorySummaries walked %q", names)
	}
	wantSummary(metadata.RepositorySummary{Name: "bare", Created: ns(c.Now())})
	_, err := db.RepositorySummary(t.Context(), "nowhere")
	wantNotFound(t, err, "RepositorySummary(nowhere)")
}

func TestPolicies(t *testing.T) { forEachBackend(t, testPolicies) }

func testPolicies(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	set := func(repos, body, actor string) {
		t.Helper()
		inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.SetPolicy(ctx, repos, body, actor) })
	}
	del := func(repos string) error {
		return db.InTx(t.Context(), func(tx *metadata.Tx) error { return tx.DeletePolicy(t.Context(), repos) })
	}
	wantPolicies := func(want ...metadata.PolicyRecord) {
		t.Helper()
		got, err := db.Policies(t.Context())
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Policies = %+v, %v\nwant %+v", got, err, want)
		}
	}
	wantPolicies()
	t1 := ns(c.tick())
	set("team/a", `{"refuseLower":true}`, "alice")
	set("team/*", `{"immutableNumbered":false}`, "alice")
	t2 := ns(c.tick())
	set("app", `{"ordering":["semver"]}`, "bob")
	// In byte order: '*' sorts before letters.
	wantPolicies(
		metadata.PolicyRecord{Repositories: "app", Body: `{"ordering":["semver"]}`, Updated: t2, UpdatedBy: "bob"},
		metadata.PolicyRecord{Repositories: "team/*", Body: `{"immutableNumbered":false}`, Updated: t1, UpdatedBy: "alice"},
		metadata.PolicyRecord{Repositories: "team/a", Body: `{"refuseLower":true}`, Updated: t1, UpdatedBy: "alice"},
	)
	t3 := ns(c.tick())
	set("team/*", `{"retention":{"keepNewest":3}}`, "carol") // replaces
	if err := del("app"); err != nil {
		t.Fatal(err)
	}
	wantPolicies(
		metadata.PolicyRecord{Repositories: "team/*", Body: `{"retention":{"keepNewest":3}}`, Updated: t3, UpdatedBy: "carol"},
		metadata.PolicyRecord{Repositories: "team/a", Body: `{"refuseLower":true}`, Updated: t1, UpdatedBy: "alice"},
	)
	wantNotFound(t, del("app"), "DeletePolicy of a deleted policy")
	wantNotFound(t, del("team/b"), "DeletePolicy of a policy never set")
	wantNotFound(t, del("team/?"), "DeletePolicy of a glob never set")
}

func TestRekeyConcurrentTagChange(t *testing.T) { forEachBackend(t, testRekeyConcurrentTagChange) }

// testRekeyConcurrentTagChange: a push under a new versioning rekeys the
// repository while a change of a tag under the old one runs, in either
// order. The keys end up all of one versioning, the one the repository
// records: after EnsureVersionKeys, Versions lists exactly the tags it
// numbers.
func testRekeyConcurrentTagChange(t *testing.T, be backend) {
	builds, err := oci.NewVersioning([]oci.Ordering{oci.OrderPattern}, `(?P<n>[0-9]+)-(?P<b>[0-9]+)`)
	if err != nil {
		t.Fatal(err)
	}
	def := metadata.TagRules{Versioning: oci.DefaultVersioning()}
	// Under the old versioning, tag 3 (numbered by it, not by builds).
	setOld := func(t *testing.T, m manifest) func(*metadata.Tx) error {
		return func(tx *metadata.Tx) error {
			_, err := tx.SetTag(t.Context(), "app", "3", m.digest, metadata.Change{Action: metadata.ActionMove, Rules: def})
			return err
		}
	}
	for _, tt := range []struct {
		name  string
		rekey bool // the rekeying push goes first
		old   func(t *testing.T, m manifest) func(*metadata.Tx) error
	}{
		{"rekey, then SetTag", true, setOld},
		{"SetTag, then rekey", false, setOld},
		{"push, then rekey", false, func(t *testing.T, m manifest) func(*metadata.Tx) error {
			return pushTx(t, "app", m, def, "3")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := be.open(t, newClock())
			ms := untaggedImages(t, db, 3)
			if err := push(t, db, "app", ms[0], def, "1", "2024-1"); err != nil {
				t.Fatal(err)
			}
			rekey, old := pushTx(t, "app", ms[1], metadata.TagRules{Versioning: builds}, "2024-2"), tt.old(t, ms[2])
			if !tt.rekey {
				rekey, old = old, rekey
			}
			if errFirst, errSecond := interleave(t, db, rekey, old); errFirst != nil || errSecond != nil {
				t.Fatalf("changes: %v, %v", errFirst, errSecond)
			}
			if err := db.EnsureVersionKeys(t.Context(), "app", builds); err != nil {
				t.Fatal(err)
			}
			wantVersions(t, db, "app", "2024-2", "2024-1")
			if err := db.EnsureVersionKeys(t.Context(), "app", oci.DefaultVersioning()); err != nil {
				t.Fatal(err)
			}
			wantVersions(t, db, "app", "2024-2", "2024-1", "3", "1")
		})
	}
}
