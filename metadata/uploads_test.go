package metadata_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
)

func save(t *testing.T, db *metadata.DB, id string, from, to int64, state string) error {
	t.Helper()
	return db.InTx(t.Context(), func(tx *metadata.Tx) error {
		return tx.SaveUpload(t.Context(), id, from, to, []byte(state))
	})
}

func TestUploadSessions(t *testing.T) { forEachBackend(t, testUploadSessions) }

func testUploadSessions(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	started := c.Now()
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.CreateUpload(ctx, "app", "u1", "", 0) })

	u, err := db.Upload(t.Context(), "app", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != "u1" || u.Repo != "app" || u.Size != 0 || len(u.HashState) != 0 || !u.StartedAt.Equal(started) {
		t.Errorf("new upload = %+v, want u1 in app, empty, started %v", u, started)
	}
	if _, err := db.Upload(t.Context(), "other", "u1"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("Upload from another repository = %v, want ErrNotFound", err)
	}
	if ok, err := db.RepositoryExists(t.Context(), "app"); !ok || err != nil {
		t.Errorf("CreateUpload did not create the repository: %v, %v", ok, err)
	}
	if err := db.InTx(t.Context(), func(tx *metadata.Tx) error { return tx.CreateUpload(t.Context(), "app", "u1", "", 0) }); err == nil {
		t.Error("CreateUpload with an id in use succeeded")
	}

	c.tick()
	if err := save(t, db, "u1", 0, 10, "state@10"); err != nil {
		t.Fatalf("SaveUpload 0→10: %v", err)
	}
	steps := []struct {
		name     string
		id       string
		from, to int64
		wantErr  error
	}{
		{"stale from", "u1", 0, 20, metadata.ErrConflict},
		{"from ahead", "u1", 15, 20, metadata.ErrConflict},
		{"unknown upload", "nope", 0, 5, metadata.ErrConflict},
		{"current from", "u1", 10, 25, nil},
		{"replayed step", "u1", 10, 25, metadata.ErrConflict},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := save(t, db, s.id, s.from, s.to, "state@"+s.name)
			if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
				t.Errorf("SaveUpload(%s, %d→%d) = %v, want %v", s.id, s.from, s.to, err, s.wantErr)
			}
		})
	}
	u, err = db.Upload(t.Context(), "app", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if u.Size != 25 || string(u.HashState) != "state@current from" || !u.StartedAt.Equal(started) {
		t.Errorf("upload after saves = size %d, state %q, started %v", u.Size, u.HashState, u.StartedAt)
	}

	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.DeleteUpload(ctx, "u1") })
	if _, err := db.Upload(t.Context(), "app", "u1"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("Upload after delete = %v, want ErrNotFound", err)
	}
	if ok, err := db.UploadExists(t.Context(), "u1"); ok || err != nil {
		t.Errorf("UploadExists after delete = %v, %v", ok, err)
	}
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.DeleteUpload(ctx, "u1") })
}

func TestStaleUploads(t *testing.T) { forEachBackend(t, testStaleUploads) }

func testStaleUploads(t *testing.T, be backend) {
	c := newClock()
	db := be.open(t, c)
	create := func(id string) {
		inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.CreateUpload(ctx, "app", id, "", 0) })
	}
	t0 := c.Now()
	create("old")
	create("touched")
	t1 := c.tick()
	create("young")
	t2 := c.tick()
	if err := save(t, db, "touched", 0, 1, "s"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		before time.Duration // after t0
		want   []string
	}{
		{"before anything", 0, []string{}},
		{"just after the first two", 1, []string{"old"}},
		{"after the third", t1.Sub(t0) + 1, []string{"old", "young"}},
		{"after the save", t2.Sub(t0) + 1, []string{"old", "young", "touched"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.StaleUploads(t.Context(), t0.Add(tt.before))
			if err != nil {
				t.Fatal(err)
			}
			// Equal timestamps have no defined order; compare as sets where they tie.
			if len(got) != len(tt.want) || !sameSet(got, tt.want) {
				t.Errorf("StaleUploads = %q, want %q", got, tt.want)
			}
			if len(got) == 3 && got[2] != "touched" {
				t.Errorf("StaleUploads = %q, want the most recently touched last", got)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestUploadCap: a client's open sessions are capped across repositories,
// also when it opens many at once; finishing one frees a place; other
// clients are not counted.
func TestUploadCap(t *testing.T) { forEachBackend(t, testUploadCap) }

func testUploadCap(t *testing.T, be backend) {
	db := be.open(t, newClock())
	const max = 5
	create := func(repo, id, client string) error {
		return db.InTx(t.Context(), func(tx *metadata.Tx) error {
			return tx.CreateUpload(t.Context(), repo, id, client, max)
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 4*max)
	for i := range errs {
		wg.Go(func() { errs[i] = create(fmt.Sprintf("app%d", i%3), fmt.Sprintf("u%d", i), "alice") })
	}
	wg.Wait()
	opened := 0
	for _, err := range errs {
		switch {
		case err == nil:
			opened++
		case !errors.Is(err, metadata.ErrTooManyUploads):
			t.Fatalf("CreateUpload: %v", err)
		}
	}
	if opened != max {
		t.Fatalf("%d of %d concurrent sessions opened, want the cap, %d", opened, len(errs), max)
	}
	if err := create("app", "bob-1", "bob"); err != nil {
		t.Errorf("another client's session: %v", err)
	}
	var done string
	for i, err := range errs {
		if err == nil {
			done = fmt.Sprintf("u%d", i)
			break
		}
	}
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.DeleteUpload(ctx, done) })
	if err := create("app", "again", "alice"); err != nil {
		t.Errorf("a session after one finished: %v", err)
	}
	if err := create("app", "over", "alice"); !errors.Is(err, metadata.ErrTooManyUploads) {
		t.Errorf("a session over the cap: %v, want ErrTooManyUploads", err)
	}
}
