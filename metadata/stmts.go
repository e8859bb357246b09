package metadata

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"
)

// stmts prepares each query once per pool and keeps it: parsing and planning
// a statement costs SQLite more than running it, and every read of the
// registry's hot paths (a manifest GET, a tag list) is one small query. On
// PostgreSQL database/sql prepares it on each connection of the pool the
// first time that connection runs it.
type stmts struct {
	pool *sql.DB
	m    sync.Map // query text → *sql.Stmt
}

func (s *stmts) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.m.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

func (s *stmts) close() error {
	var errs []error
	s.m.Range(func(_, st any) bool {
		errs = append(errs, st.(*sql.Stmt).Close())
		return true
	})
	return errors.Join(errs...)
}

// row is what QueryRow returns, or the error of preparing it.
type row interface{ Scan(dest ...any) error }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (db *DB) queryRow(ctx context.Context, query string, args ...any) row {
	start := time.Now()
	st, err := db.reads.get(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return timedRow{st.QueryRowContext(ctx, args...), db.metrics, start}
}

// timedRow observes the time of its query when it is scanned, which is
// when the row is read.
type timedRow struct {
	row   *sql.Row
	m     *metrics
	start time.Time
}

func (r timedRow) Scan(dest ...any) error {
	defer r.m.observe(opQuery, r.start)
	return r.row.Scan(dest...)
}

func (db *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	defer db.metrics.observe(opQuery, time.Now())
	st, err := db.reads.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// stmt returns the statement prepared for query in this transaction, or
// nil where the dialect does not prepare in transactions. SQLite's write
// pool has one connection, the transaction's, so statements cannot be
// prepared outside it; reuse within it is what matters (a manifest's
// references are checked with one statement).
func (tx *Tx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if !tx.db.dialect.prepareInTx {
		return nil, nil
	}
	if st, ok := tx.stmts[query]; ok {
		return st, nil
	}
	st, err := tx.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	tx.stmts[query] = st
	return st, nil
}

func (tx *Tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := tx.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.tx.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

func (tx *Tx) queryRow(ctx context.Context, query string, args ...any) row {
	st, err := tx.stmt(ctx, query)
	if err != nil {
		return errRow{err}
	}
	if st == nil {
		return tx.tx.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}
