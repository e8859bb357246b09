package metadata_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
)

// lockReplicas returns two handles whose upload locks must exclude each
// other: two replicas on PostgreSQL; on SQLite, where the lock is the
// process's, the one handle a process has, twice.
func lockReplicas(t *testing.T, be backend) (*metadata.DB, *metadata.DB) {
	t.Helper()
	o := be.fresh(t)
	o.PostgresLockConns = 2 // a leaked connection shows as a lock that never comes
	a := openWith(t, o, nil)
	if o.SQLitePath != "" {
		return a, a
	}
	return a, openWith(t, o, nil)
}

// lockWithin takes an upload lock, giving up after d.
func lockWithin(t *testing.T, db *metadata.DB, id string, d time.Duration) (func(), error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	return db.LockUpload(ctx, id)
}

func TestLockUpload(t *testing.T) { forEachBackend(t, testLockUpload) }

func testLockUpload(t *testing.T, be backend) {
	a, b := lockReplicas(t, be)
	unlockA, err := a.LockUpload(t.Context(), "u1")
	if err != nil {
		t.Fatal(err)
	}

	// While a holds u1, b cannot take it...
	if unlock, err := lockWithin(t, b, "u1", 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			unlock()
		}
		t.Fatalf("LockUpload(u1) while another holds it = %v, want to wait until the deadline", err)
	}
	// ...but takes another upload's lock at once.
	unlockOther, err := lockWithin(t, b, "u2", 10*time.Second)
	if err != nil {
		t.Fatalf("LockUpload(u2) while another holds u1: %v", err)
	}
	unlockOther()

	// A waiter gets the lock when the holder lets go.
	got := make(chan error, 1)
	var unlockB func()
	go func() {
		var err error
		unlockB, err = b.LockUpload(t.Context(), "u1")
		got <- err
	}()
	unlockA()
	if err := <-got; err != nil {
		t.Fatalf("LockUpload(u1) after the holder unlocked: %v", err)
	}
	unlockB()
	unlockB() // a second unlock does nothing

	// Locks taken and released many times more than the pool has
	// connections: none is left held.
	for range 10 {
		for _, db := range []*metadata.DB{a, b} {
			unlock, err := lockWithin(t, db, "u1", 10*time.Second)
			if err != nil {
				t.Fatalf("LockUpload after many unlocks: %v", err)
			}
			unlock()
		}
	}
}

// TestLockUploadExcludes: many goroutines on two handles take one upload's
// lock, many times; never two hold it at once.
func TestLockUploadExcludes(t *testing.T) { forEachBackend(t, testLockUploadExcludes) }

func testLockUploadExcludes(t *testing.T, be backend) {
	a, b := lockReplicas(t, be)
	const workers, rounds = 4, 50
	var holders, entered atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*rounds)
	for i := range 2 * workers {
		db := []*metadata.DB{a, b}[i%2]
		wg.Go(func() {
			for range rounds {
				unlock, err := db.LockUpload(t.Context(), "contended")
				if err != nil {
					errs <- err
					return
				}
				if n := holders.Add(1); n != 1 {
					errs <- errors.New("two holders at once")
				}
				entered.Add(1)
				// Work while holding it: a query, so the others have time to barge in.
				if _, err := db.UploadExists(t.Context(), "contended"); err != nil {
					errs <- err
				}
				holders.Add(-1)
				unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := entered.Load(); n != 2*workers*rounds {
		t.Errorf("%d lock holds, want %d", n, 2*workers*rounds)
	}
}

// TestLockUploadCancelled: a waiter whose context ends gives up, holding
// nothing, and the lock still works afterwards.
func TestLockUploadCancelled(t *testing.T) { forEachBackend(t, testLockUploadCancelled) }

func testLockUploadCancelled(t *testing.T, be backend) {
	a, b := lockReplicas(t, be)
	unlock, err := a.LockUpload(t.Context(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan error, 1)
	go func() {
		_, err := b.LockUpload(ctx, "u1")
		got <- err
	}()
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("LockUpload with a cancelled context = %v, want context.Canceled", err)
	}
	unlock()
	for _, db := range []*metadata.DB{b, a} {
		unlock, err := lockWithin(t, db, "u1", 10*time.Second)
		if err != nil {
			t.Fatalf("LockUpload after a cancelled wait: %v", err)
		}
		unlock()
	}
}
