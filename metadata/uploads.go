package metadata

import (
	"context"
	"errors"
	"time"
)

// UploadRecord is an upload session: where it is and how far it got.
type UploadRecord struct {
	ID        string
	Repo      string
	Size      int64
	HashState []byte
	StartedAt time.Time
	// Client opened the session: a user, or an address.
	Client string
}

// ErrTooManyUploads: the client already has as many open upload sessions
// as it may.
var ErrTooManyUploads = errors.New("metadata: too many open upload sessions")

// CreateUpload records a new, empty upload session in the repository,
// opened by client. With max > 0 it fails with ErrTooManyUploads when the
// client already has max sessions open, in any repository, on any replica.
func (tx *Tx) CreateUpload(ctx context.Context, repo, id, client string, max int) error {
	if max > 0 {
		// Two sessions opened at once by one client must not both see
		// max-1: on PostgreSQL they queue on a lock per client; SQLite has
		// one writer at a time.
		if tx.db.dialect.rowLocks {
			if _, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("uploads", client)); err != nil {
				return err
			}
		}
		var open int
		if err := tx.queryRow(ctx, `SELECT count(*) FROM uploads WHERE client = $1`, client).Scan(&open); err != nil {
			return err
		}
		if open >= max {
			return ErrTooManyUploads
		}
	}
	repoID, err := tx.EnsureRepository(ctx, repo)
	if err != nil {
		return err
	}
	_, err = tx.exec(ctx, `INSERT INTO uploads (id, repository_id, started_at, updated_at, client) VALUES ($1, $2, $3, $3, $4)`,
		id, repoID, tx.now, client)
	return err
}

// Upload returns the repository's upload session id, or ErrNotFound.
func (db *DB) Upload(ctx context.Context, repo, id string) (*UploadRecord, error) {
	var u UploadRecord
	var started int64
	err := db.queryRow(ctx, `SELECT u.id, r.name, u.size, u.hash_state, u.started_at, u.client
		FROM uploads u JOIN repositories r ON r.id = u.repository_id WHERE u.id = $1 AND r.name = $2`, id, repo).
		Scan(&u.ID, &u.Repo, &u.Size, &u.HashState, &started, &u.Client)
	if err != nil {
		return nil, noRows(err)
	}
	u.StartedAt = unixTime(started)
	return &u, nil
}

// SaveUpload records an upload's progress from size from to size to. It
// fails with ErrConflict if the session is no longer at from, so of two
// writers racing on one session only one records its bytes.
func (tx *Tx) SaveUpload(ctx context.Context, id string, from, to int64, hashState []byte) error {
	res, err := tx.exec(ctx, `UPDATE uploads SET size = $1, hash_state = $2, updated_at = $3
		WHERE id = $4 AND size = $5`, to, hashState, tx.now, id, from)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrConflict
	}
	return nil
}

// DeleteUpload forgets an upload session.
func (tx *Tx) DeleteUpload(ctx context.Context, id string) error {
	_, err := tx.exec(ctx, `DELETE FROM uploads WHERE id = $1`, id)
	return err
}

// DeleteStaleUpload forgets an upload session only if it is still
// untouched since before, and reports whether it did.
func (tx *Tx) DeleteStaleUpload(ctx context.Context, id string, before time.Time) (bool, error) {
	res, err := tx.exec(ctx, `DELETE FROM uploads WHERE id = $1 AND updated_at < $2`, id, before.UnixNano())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// StaleUploads returns the ids of uploads untouched since before.
func (db *DB) StaleUploads(ctx context.Context, before time.Time) ([]string, error) {
	return db.strings(ctx, `SELECT id FROM uploads WHERE updated_at < $1 ORDER BY updated_at`, before.UnixNano())
}

// UploadExists reports whether an upload session id is recorded.
func (db *DB) UploadExists(ctx context.Context, id string) (bool, error) {
	var n int
	err := db.queryRow(ctx, `SELECT count(*) FROM uploads WHERE id = $1`, id).Scan(&n)
	return n > 0, err
}
