package metadata

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"
)

// LockUpload takes the lock of an upload session, waiting for it while
// another request holds it, so requests on one upload never interleave
// their bytes. It excludes every process that shares the database: on
// PostgreSQL it is a session advisory lock (other replicas wait for it), on
// SQLite a lock inside this process (the only one writing the file). The
// caller must call unlock once done. An error means the lock was not taken:
// ctx ended, or the database did not answer.
func (db *DB) LockUpload(ctx context.Context, id string) (unlock func(), err error) {
	return db.uploads.lock(ctx, id)
}

// TryLockGC takes the garbage collection lock if no one holds it, or
// returns ErrGCRunning. It excludes every process that shares the database:
// on PostgreSQL it is a session advisory lock, held until Unlock or until
// the holder's connection ends (a crash frees it); on SQLite a lock inside
// this process and a lock on a file beside the database (berth check runs
// as a process of its own).
func (db *DB) TryLockGC(ctx context.Context) (*GCLock, error) {
	l, ok, err := db.uploads.tryLock(ctx, "\x00gc") // no upload id starts with a NUL
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrGCRunning
	}
	if db.sqlitePath == "" {
		return l, nil
	}
	unlockFile, err := lockFile(db.sqlitePath + "-gc.lock")
	if err != nil {
		l.Unlock()
		return nil, err
	}
	unlockLocal := l.unlock
	l.unlock = func() { unlockFile(); unlockLocal() }
	return l, nil
}

// GCLock is the garbage collection lock, held until Unlock.
type GCLock struct {
	unlock func()
	held   func(context.Context) error // nil: cannot be lost while held
}

// Unlock releases the lock.
func (l *GCLock) Unlock() { l.unlock() }

// ErrGCLockLost: the collection lock's PostgreSQL session ended under a
// run; another collection may be running.
var ErrGCLockLost = errors.New("metadata: the garbage collection lock was lost")

// Held returns ErrGCLockLost unless the lock is still held. On PostgreSQL
// the lock is the session's: if the session still answers and holds it,
// it held it throughout, and no other collection ran meanwhile. A run asks
// before destructive steps that a listing made earlier decided. The locks
// of SQLite (in this process, and on a file) cannot be lost while held.
func (l *GCLock) Held(ctx context.Context) error {
	if l.held == nil {
		return nil
	}
	return l.held(ctx)
}

// uploadLocks are the two ways of keeping upload requests apart (and
// collections).
type uploadLocks interface {
	lock(ctx context.Context, key string) (unlock func(), err error)
	// tryLock is lock without waiting: ok is false when the lock is held.
	tryLock(ctx context.Context, key string) (l *GCLock, ok bool, err error)
	close() error
}

// lockKey is the 64-bit PostgreSQL advisory lock key of a named thing:
// FNV-1a of its parts. The first part says what kind of thing it is, so
// that, say, an upload id and a tag name never share a key on purpose.
func lockKey(parts ...string) int64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return int64(h.Sum64())
}

// localLocks is a lock per key, made on demand and dropped when free.
type localLocks struct {
	mu    sync.Mutex
	locks map[string]*localLock
}

type localLock struct {
	held chan struct{} // holds a token while locked
	refs int           // holders and waiters; guarded by localLocks.mu
}

func (l *localLocks) lock(ctx context.Context, key string) (func(), error) {
	m := l.ref(key)
	select {
	case m.held <- struct{}{}:
		return l.unlocker(key, m), nil
	case <-ctx.Done():
		l.release(key, m)
		return nil, ctx.Err()
	}
}

// ref returns key's lock, made if needed, counting the caller in.
func (l *localLocks) ref(key string) *localLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locks == nil {
		l.locks = map[string]*localLock{}
	}
	m := l.locks[key]
	if m == nil {
		m = &localLock{held: make(chan struct{}, 1)}
		l.locks[key] = m
	}
	m.refs++
	return m
}

func (l *localLocks) tryLock(_ context.Context, key string) (*GCLock, bool, error) {
	m := l.ref(key)
	select {
	case m.held <- struct{}{}:
		return &GCLock{unlock: l.unlocker(key, m)}, true, nil
	default:
		l.release(key, m)
		return nil, false, nil
	}
}

func (l *localLocks) unlocker(key string, m *localLock) func() {
	return sync.OnceFunc(func() {
		<-m.held
		l.release(key, m)
	})
}

func (l *localLocks) release(key string, m *localLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m.refs--; m.refs == 0 {
		delete(l.locks, key)
	}
}

func (l *localLocks) close() error { return nil }

// pgLocks are session advisory locks, each held by a connection of a pool
// of their own: an upload holds its lock for as long as its bytes take to
// arrive, and the queries it makes meanwhile must still find a connection.
type pgLocks struct{ pool *sql.DB }

func (p *pgLocks) lock(ctx context.Context, key string) (func(), error) {
	k := lockKey("upload", key)
	conn, err := advisoryLock(ctx, p.pool, k)
	if err != nil {
		return nil, err
	}
	return sync.OnceFunc(func() { advisoryUnlock(conn, k) }), nil
}

func (p *pgLocks) tryLock(ctx context.Context, key string) (*GCLock, bool, error) {
	k := lockKey("upload", key)
	conn, err := p.pool.Conn(ctx)
	if err != nil {
		return nil, false, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, k).Scan(&ok); err != nil || !ok {
		if err != nil {
			discard(conn)
		} else {
			conn.Close()
		}
		return nil, false, err
	}
	held := func(ctx context.Context) error {
		var held bool
		err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted)`).Scan(&held)
		if err != nil || !held {
			return fmt.Errorf("%w: %v", ErrGCLockLost, err)
		}
		return nil
	}
	return &GCLock{unlock: sync.OnceFunc(func() { advisoryUnlock(conn, k) }), held: held}, true, nil
}

func (p *pgLocks) close() error { return p.pool.Close() }

// advisoryLock takes a session advisory lock on a connection of pool and
// returns the connection, which holds the lock until advisoryUnlock.
func advisoryLock(ctx context.Context, pool *sql.DB, key int64) (*sql.Conn, error) {
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		// Whether or not the server took the lock before the error, a
		// session that ends holds nothing.
		discard(conn)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return conn, nil
}

// advisoryUnlock releases a lock advisoryLock took and returns the
// connection to its pool, or closes it if the release fails: ending the
// session is what releases the lock then.
func advisoryUnlock(conn *sql.Conn, key int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var released bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock($1)`, key).Scan(&released); err != nil || !released {
		discard(conn)
		return
	}
	conn.Close()
}

// discard closes a connection rather than return it to its pool.
func discard(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}
