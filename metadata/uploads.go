package metadata

import (
	"context"
	"time"
)

// UploadRecord is an upload session: where it is and how far it got.
type UploadRecord struct {
	ID        string
	Repo      string
	Size      int64
	HashState []byte
	StartedAt time.Time
}

// CreateUpload records a new, empty upload session in the repository.
func (tx *Tx) CreateUpload(ctx context.Context, repo, id string) error {
	repoID, err := tx.EnsureRepository(ctx, repo)
	if err != nil {
		return err
	}
	_, err = tx.exec(ctx, `INSERT INTO uploads (id, repository_id, started_at, updated_at) VALUES ($1, $2, $3, $3)`,
		id, repoID, tx.now)
	return err
}

// Upload returns the repository's upload session id, or ErrNotFound.
func (db *DB) Upload(ctx context.Context, repo, id string) (*UploadRecord, error) {
	var u UploadRecord
	var started int64
	err := db.queryRow(ctx, `SELECT u.id, r.name, u.size, u.hash_state, u.started_at
		FROM uploads u JOIN repositories r ON r.id = u.repository_id WHERE u.id = $1 AND r.name = $2`, id, repo).
		Scan(&u.ID, &u.Repo, &u.Size, &u.HashState, &started)
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
