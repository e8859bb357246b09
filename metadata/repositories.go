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

// RepositorySummary is what a repository holds, for the admin API.
type RepositorySummary struct {
	Name         string
	Created      int64 // Unix nanoseconds
	Tags         int64 // live tags
	NumberedTags int64 // live tags that are versions
	Manifests    int64
	Size         int64 // bytes of the blobs and manifests it links, each once
}

// RepositorySummaries returns up to n repositories after the name after,
// in lexical order. The numbered-tag counts are those of the version keys
// (EnsureVersionKeys).
func (db *DB) RepositorySummaries(ctx context.Context, after string, n int) ([]RepositorySummary, error) {
	rows, err := db.query(ctx, summaryColumns+` WHERE r.name > $1 ORDER BY r.name LIMIT $2`, after, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []RepositorySummary{}
	for rows.Next() {
		s, err := scanSummary(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// RepositorySummary describes one repository, or is ErrNotFound.
func (db *DB) RepositorySummary(ctx context.Context, name string) (RepositorySummary, error) {
	s, err := scanSummary(db.queryRow(ctx, summaryColumns+` WHERE r.name = $1`, name))
	return s, noRows(err)
}

func scanSummary(r row) (RepositorySummary, error) {
	var s RepositorySummary
	err := r.Scan(&s.Name, &s.Created, &s.Tags, &s.NumberedTags, &s.Manifests, &s.Size)
	return s, err
}

const summaryColumns = `SELECT r.name, r.created_at,
		(SELECT count(*) FROM tags t WHERE t.repository_id = r.id AND t.ended_at IS NULL),
		(SELECT count(*) FROM tags t WHERE t.repository_id = r.id AND t.ended_at IS NULL AND t.version_key IS NOT NULL),
		(SELECT count(*) FROM repository_manifests rm WHERE rm.repository_id = r.id),
		(SELECT COALESCE(sum(b.size), 0) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = r.id)
		+ (SELECT COALESCE(sum(m.size), 0) FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest WHERE rm.repository_id = r.id)
	FROM repositories r`

// UnixNanos is t in Unix nanoseconds, clamped to what an int64 holds (the
// years 1678 to 2262), where UnixNano's result is undefined.
func UnixNanos(t time.Time) int64 {
	switch {
	case t.Before(unixTime(math.MinInt64)):
		return math.MinInt64
	case t.After(unixTime(math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
