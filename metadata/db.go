package metadata

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the embedded database
)

// Errors callers test for with errors.Is.
var (
	// ErrNotFound: no such repository, blob, manifest, tag or upload.
	ErrNotFound = errors.New("metadata: not found")
	// ErrMissingReference: a manifest names content its repository does not
	// have; the error is a *MissingReferenceError saying which.
	ErrMissingReference = errors.New("metadata: referenced content is not in the repository")
	// ErrConflict: the state changed under the caller (an upload written concurrently).
	ErrConflict = errors.New("metadata: conflict")
)

//go:embed migrations
var migrations embed.FS

// Options say which database to open.
type Options struct {
	// SQLitePath is the database file of the embedded SQLite.
	SQLitePath string
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// DB is the metadata store.
type DB struct {
	// SQLite allows one writer at a time: writes go through a pool of one
	// connection, so they queue in Go rather than spin on SQLITE_BUSY, while
	// reads proceed in parallel (WAL mode).
	read, write *sql.DB
	reads       *stmts // prepared statements of the read pool
	now         func() time.Time
}

// Open opens (creating if needed) the database and brings its schema up to date.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.SQLitePath == "" {
		return nil, errors.New("metadata: no database configured")
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + o.SQLitePath + "?" + q.Encode()
	write, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	write.SetMaxOpenConns(1)
	read, err := sql.Open("sqlite", dsn)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("metadata: %w", err)
	}
	read.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	read.SetMaxIdleConns(max(4, 2*runtime.GOMAXPROCS(0)))
	db := &DB{read: read, write: write, reads: &stmts{pool: read}, now: o.Now}
	if db.now == nil {
		db.now = time.Now
	}
	if err := db.migrate(ctx, "sqlite"); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	return errors.Join(db.reads.close(), db.read.Close(), db.write.Close())
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.read.PingContext(ctx) }

// migrate applies the embedded migrations not yet recorded, each in its own
// transaction, in file-name order.
func (db *DB) migrate(ctx context.Context, dialect string) error {
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("metadata: migrations: %w", err)
	}
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		version, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("metadata: migration %s: name must start with a number", e.Name())
		}
		body, err := migrations.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = db.InTx(ctx, func(tx *Tx) error {
			var n int
			if err := tx.tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil || n > 0 {
				return err
			}
			if _, err := tx.tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				version, e.Name(), tx.now)
			return err
		})
		if err != nil {
			return fmt.Errorf("metadata: migration %s: %w", e.Name(), err)
		}
	}
	return nil
}

// Tx is a write transaction; see DB.InTx.
type Tx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt // closed with the transaction
	now   int64                // one timestamp for every row the transaction writes
}

// InTx runs fn in one write transaction: it commits if fn returns nil and
// rolls back otherwise, so the facts fn records land together or not at all.
func (db *DB) InTx(ctx context.Context, fn func(*Tx) error) error {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("metadata: begin: %w", err)
	}
	defer sqlTx.Rollback() // after Commit this does nothing; after a panic it frees the write connection
	if err := fn(&Tx{tx: sqlTx, stmts: map[string]*sql.Stmt{}, now: db.now().UnixNano()}); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("metadata: commit: %w", err)
	}
	return nil
}

func noRows(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
