package metadata

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // the embedded database
)

// Errors callers test for with errors.Is.
var (
	// ErrNotFound: no such repository, blob, manifest, tag or upload.
	ErrNotFound = errors.New("metadata: not found")
	// ErrMissingReference: a manifest names content its repository does not
	// have; the error is a *MissingReferenceError saying which.
	ErrMissingReference = errors.New("metadata: referenced content is not in the repository")
	// ErrBlobDeleting: garbage collection is deleting the blob; it cannot
	// be linked until it is gone, and stored again.
	ErrBlobDeleting = errors.New("metadata: the blob is being garbage-collected")
	// ErrConflict: the state changed under the caller (an upload written concurrently).
	ErrConflict = errors.New("metadata: conflict")
)

//go:embed migrations
var migrations embed.FS

// Options say which database to open: exactly one of SQLitePath and
// PostgresURL.
type Options struct {
	// SQLitePath is the database file of the embedded SQLite.
	SQLitePath string
	// PostgresURL is a PostgreSQL connection URL or keyword/value string, as
	// pgx reads it (postgres://user:password@host:5432/berth?sslmode=require).
	PostgresURL string
	// PostgresConns caps the PostgreSQL connections that queries and
	// transactions share; 0 means 4 × GOMAXPROCS, at least 16.
	PostgresConns int
	// PostgresLockConns caps the PostgreSQL connections that upload locks
	// hold (one per upload being written); 0 means 64. They are a pool of
	// their own so that held locks never starve the queries made under them.
	PostgresLockConns int
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
	// Route picks the webhooks that want an event; nil writes no events.
	Route Router
	// Metrics registers the database's Prometheus metrics (query times,
	// connection pools); nil registers none.
	Metrics prometheus.Registerer
}

// DB is the metadata store.
type DB struct {
	dialect *dialect
	// On SQLite, which allows one writer at a time, writes go through a
	// pool of one connection, so they queue in Go rather than spin on
	// SQLITE_BUSY, while reads proceed in parallel (WAL mode). On
	// PostgreSQL read and write are one pool.
	read, write *sql.DB
	reads       *stmts // prepared statements of the read pool
	uploads     uploadLocks
	sqlitePath  string // the SQLite file; empty on PostgreSQL
	now         func() time.Time
	route       Router
	outbox      chan struct{}               // see OutboxWritten
	pgConfig    *pgx.ConnConfig             // PostgreSQL: for the connection that listens for outbox notifications
	listenOnce  sync.Once                   // starts it, on the first OutboxWritten
	stopListen  func()                      // stops it
	hooks       atomic.Pointer[webhookList] // the enabled webhooks, for blob events
	pools       []*sql.DB                   // every pool, for their statistics
	metrics     *metrics
}

// dialect is what differs between the two databases: the migrations, and
// how concurrent writers are kept apart. The queries are shared.
type dialect struct {
	name string // the directory of its migrations
	// migrationsTable creates the record of applied migrations.
	migrationsTable string
	// prepareInTx prepares a transaction's statements: SQLite spends more
	// parsing a statement than running it. pgx already prepares and caches
	// every statement per connection by itself, and a statement prepared
	// in a transaction would cost PostgreSQL two more round trips.
	prepareInTx bool
	// rowLocks: SELECT … FOR UPDATE and advisory locks exist (PostgreSQL).
	// SQLite needs neither: it has one writer at a time.
	rowLocks bool
}

var (
	sqlite = &dialect{
		name: "sqlite",
		migrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`,
		prepareInTx: true,
	}
	postgres = &dialect{
		name: "postgres",
		migrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`,
		rowLocks: true,
	}
)

// Open opens (creating if needed) the database and brings its schema up to date.
func Open(ctx context.Context, o Options) (*DB, error) {
	var db *DB
	var err error
	switch {
	case o.SQLitePath != "" && o.PostgresURL != "":
		return nil, errors.New("metadata: both a SQLite path and a PostgreSQL URL are configured; choose one")
	case o.SQLitePath != "":
		db, err = openSQLite(o.SQLitePath)
	case o.PostgresURL != "":
		db, err = openPostgres(o)
	default:
		return nil, errors.New("metadata: no database configured")
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	db.reads = &stmts{pool: db.read}
	db.route = o.Route
	db.outbox = make(chan struct{}, 1)
	db.now = o.Now
	db.metrics = newMetrics()
	if db.now == nil {
		db.now = time.Now
	}
	err = db.migrate(ctx)
	// Processes opening a new SQLite file at once race to switch it to
	// WAL, and SQLite answers the losers "busy" at once, without waiting.
	for attempt := 1; isSQLiteBusy(err) && attempt < 20 && ctx.Err() == nil; attempt++ {
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond)
		err = db.migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	// Registered last, so that a failed Open leaves nothing registered.
	if o.Metrics != nil {
		o.Metrics.MustRegister(db.metrics.duration, poolStats{db.pools})
	}
	return db, nil
}

func openSQLite(path string) (*DB, error) {
	q := url.Values{}
	// busy_timeout first: the pragmas run in order, and switching a new
	// file to WAL needs a lock another connection may hold.
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	write, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	read, err := sql.Open("sqlite", dsn)
	if err != nil {
		write.Close()
		return nil, err
	}
	read.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	read.SetMaxIdleConns(max(4, 2*runtime.GOMAXPROCS(0)))
	return &DB{dialect: sqlite, read: read, write: write, uploads: &localLocks{}, sqlitePath: path,
		pools: []*sql.DB{read, write}}, nil
}

func openPostgres(o Options) (*DB, error) {
	cfg, err := pgx.ParseConfig(o.PostgresURL)
	if err != nil {
		return nil, err
	}
	pool := stdlib.OpenDB(*cfg)
	n := o.PostgresConns
	if n <= 0 {
		n = max(16, 4*runtime.GOMAXPROCS(0))
	}
	pool.SetMaxOpenConns(n)
	pool.SetMaxIdleConns(n)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	locks := stdlib.OpenDB(*cfg)
	n = o.PostgresLockConns
	if n <= 0 {
		n = 64
	}
	locks.SetMaxOpenConns(n)
	locks.SetMaxIdleConns(min(n, 8))
	locks.SetConnMaxIdleTime(5 * time.Minute)
	return &DB{dialect: postgres, read: pool, write: pool, uploads: &pgLocks{pool: locks}, pgConfig: cfg,
		pools: []*sql.DB{pool, locks}}, nil
}

// Close closes the database.
func (db *DB) Close() error {
	db.listenOnce.Do(func() {}) // no listener starts after this
	if db.stopListen != nil {
		db.stopListen()
	}
	errs := []error{db.reads.close(), db.uploads.close(), db.read.Close()}
	if db.write != db.read {
		errs = append(errs, db.write.Close())
	}
	return errors.Join(errs...)
}

// Ping checks that the database answers a query of its schema.
func (db *DB) Ping(ctx context.Context) error {
	var version sql.NullInt64
	return db.queryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&version)
}

// migrationLock is the PostgreSQL advisory lock that replicas starting at
// once take around their migrations, so exactly one applies each.
var migrationLock = lockKey("berth", "migrations")

// createMigrationsTable runs ddl, the dialect's migrationsTable, in a
// transaction of its own on conn.
func createMigrationsTable(ctx context.Context, conn *sql.Conn, ddl string) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return err
	}
	return tx.Commit()
}

// migrate applies the embedded migrations not yet recorded, each in its own
// transaction, in file-name order. On PostgreSQL it holds an advisory lock
// meanwhile: the others wait, then find every migration recorded.
func (db *DB) migrate(ctx context.Context) error {
	// One connection throughout: the advisory lock belongs to a session.
	var conn *sql.Conn
	var err error
	if db.dialect.rowLocks {
		conn, err = advisoryLock(ctx, db.write, migrationLock)
		if err == nil {
			defer advisoryUnlock(conn, migrationLock)
		}
	} else {
		conn, err = db.write.Conn(ctx)
		if err == nil {
			defer conn.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("metadata: migrations: %w", err)
	}
	// In a transaction, which on SQLite takes the write lock first (BEGIN
	// IMMEDIATE): as a lone statement it would read, then fail to upgrade to
	// a write without waiting if another process created the table meanwhile.
	if err := createMigrationsTable(ctx, conn, db.dialect.migrationsTable); err != nil {
		return fmt.Errorf("metadata: migrations: %w", err)
	}
	dir := path.Join("migrations", db.dialect.name)
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
		if err := db.applyMigration(ctx, conn, version, e.Name(), string(body)); err != nil {
			return fmt.Errorf("metadata: migration %s: %w", e.Name(), err)
		}
	}
	return nil
}

func (db *DB) applyMigration(ctx context.Context, conn *sql.Conn, version int, name, body string) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil || n > 0 {
		return err
	}
	// No arguments: pgx sends the file as one simple query, so it may hold
	// several statements, as SQLite's Exec allows.
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		version, name, db.now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// Tx is a write transaction; see DB.InTx.
type Tx struct {
	tx      *sql.Tx
	db      *DB
	stmts   map[string]*sql.Stmt // closed with the transaction
	now     int64                // one timestamp for every row the transaction writes
	emitted bool                 // it wrote to the outbox
}

// maxAttempts bounds how often InTx runs a transaction that PostgreSQL
// aborted because of a concurrent one.
const maxAttempts = 10

// InTx runs fn in one write transaction: it commits if fn returns nil and
// rolls back otherwise, so the facts fn records land together or not at all.
//
// On PostgreSQL a transaction that loses a race with another replica's
// (a deadlock, a serialization failure) is rolled back and run again, up to
// a few times: fn may run more than once and must only record facts
// through tx, keeping nothing from a failed attempt.
func (db *DB) InTx(ctx context.Context, fn func(*Tx) error) error {
	defer db.metrics.observe(opTx, time.Now())
	for attempt := 1; ; attempt++ {
		err := db.tryTx(ctx, fn)
		if err == nil || attempt == maxAttempts || !db.retryable(err) || ctx.Err() != nil {
			return err
		}
		// Back off, with jitter, so that the winners finish first and the
		// losers do not meet again.
		t := time.NewTimer(time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 7))))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (db *DB) tryTx(ctx context.Context, fn func(*Tx) error) error {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("metadata: begin: %w", err)
	}
	defer sqlTx.Rollback() // after Commit this does nothing; after a panic it frees the connection
	tx := &Tx{tx: sqlTx, db: db, stmts: map[string]*sql.Stmt{}, now: db.now().UnixNano()}
	if err := fn(tx); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("metadata: commit: %w", err)
	}
	if tx.emitted {
		db.outboxWritten()
	}
	return nil
}

// retryable reports whether err means that PostgreSQL aborted the
// transaction for a concurrent one's sake, so running it again will do.
func (db *DB) retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !db.dialect.rowLocks || !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return true
	case "23505": // unique_violation: only where two writers raced to open a tag's live row
		return pgErr.ConstraintName == "tags_live"
	}
	return false
}

// isSQLiteBusy reports whether err is SQLite's SQLITE_BUSY.
func isSQLiteBusy(err error) bool {
	var coded interface{ Code() int }
	return errors.As(err, &coded) && coded.Code()&0xff == 5 // SQLITE_BUSY and its extended codes
}

func noRows(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
