package metadata

import (
	"context"
	"math"
	"time"
)

// EnsureRepository returns the id of the named repository, creating it on
// first use: repositories come into being when something is pushed to them.
func (tx *Tx) EnsureRepository(ctx context.Context, name string) (int64, error) {
	if _, err := tx.tx.ExecContext(ctx,
		`INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		name, tx.now); err != nil {
		return 0, err
	}
	return tx.repositoryID(ctx, name)
}

// repositoryID returns the id of an existing repository, or ErrNotFound.
func (tx *Tx) repositoryID(ctx context.Context, name string) (int64, error) {
	var id int64
	err := tx.queryRow(ctx, `SELECT id FROM repositories WHERE name = $1`, name).Scan(&id)
	return id, noRows(err)
}

// RepositoryExists reports whether anything was ever pushed to the repository.
func (db *DB) RepositoryExists(ctx context.Context, name string) (bool, error) {
	var n int
	err := db.queryRow(ctx, `SELECT count(*) FROM repositories WHERE name = $1`, name).Scan(&n)
	return n > 0, err
}

// Repositories returns up to n repository names after last, in lexical order.
func (db *DB) Repositories(ctx context.Context, last string, n int) ([]string, error) {
	return db.strings(ctx, repositoriesQuery, last, n)
}

// repositoriesQuery lists repositories in the order of their unique index.
const repositoriesQuery = `SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2`

// strings runs a query whose rows are one text column.
func (db *DB) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// unixNanos is t in Unix nanoseconds, clamped to what an int64 holds (the
// years 1678 to 2262), where UnixNano's result is undefined.
func unixNanos(t time.Time) int64 {
	switch {
	case t.Before(unixTime(math.MinInt64)):
		return math.MinInt64
	case t.After(unixTime(math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
