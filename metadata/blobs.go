package metadata

import (
	"context"
	"database/sql"
	"errors"

	"github.com/berthhq/berth/oci"
)

// LinkBlob records that a stored blob exists and that the repository may
// serve it. Called after the bytes are published, never before. A blob that
// garbage collection is deleting is ErrBlobDeleting: its bytes may be gone
// or going, so the caller must store them again.
func (tx *Tx) LinkBlob(ctx context.Context, repo string, d oci.Digest, size int64) error {
	id, err := tx.EnsureRepository(ctx, repo)
	if err != nil {
		return err
	}
	// The update locks the row and changes it, so a collection marking
	// the blob at once either waits and sees the fresh link, or wins and
	// this finds the row no longer live.
	var one int
	err = tx.queryRow(ctx, `INSERT INTO blobs (digest, size, created_at, last_linked_at) VALUES ($1, $2, $3, $3)
		ON CONFLICT (digest) DO UPDATE SET last_linked_at = excluded.last_linked_at WHERE blobs.state = 'live'
		RETURNING 1`, d, size, tx.now).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrBlobDeleting
	}
	if err != nil {
		return err
	}
	return tx.linkRepository(ctx, id, d)
}

// MountBlob links into repo a blob that repository from already links, as a
// cross-repository mount does; it returns the blob's size, or ErrNotFound
// when from does not link it. No bytes move.
func (tx *Tx) MountBlob(ctx context.Context, repo, from string, d oci.Digest) (int64, error) {
	var size int64
	err := tx.queryRow(ctx, blobInRepoQuery, from, d).Scan(&size)
	if err != nil {
		return 0, noRows(err)
	}
	id, err := tx.EnsureRepository(ctx, repo)
	if err != nil {
		return 0, err
	}
	// Never a new blobs row: the source's link was read without a lock, and
	// a collection may have forgotten the blob since, its bytes gone. A row
	// still live has its bytes; the update locks it against a marking.
	var state string
	err = tx.queryRow(ctx, `UPDATE blobs SET last_linked_at = CASE WHEN state = 'live' THEN $2 ELSE last_linked_at END
		WHERE digest = $1 RETURNING state`, d, tx.now).Scan(&state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, ErrNotFound
	case err != nil:
		return 0, err
	case state != "live":
		return 0, ErrBlobDeleting
	}
	return size, tx.linkRepository(ctx, id, d)
}

// linkRepository records that the repository with id may serve blob d, or
// refreshes the time it last did.
func (tx *Tx) linkRepository(ctx context.Context, id int64, d oci.Digest) error {
	_, err := tx.exec(ctx, `INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3)
		ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at`, id, d, tx.now)
	return err
}

// UnlinkBlob removes a blob from a repository's access list. The bytes stay
// until garbage collection finds no one needs them.
func (tx *Tx) UnlinkBlob(ctx context.Context, repo string, d oci.Digest) error {
	res, err := tx.exec(ctx, `DELETE FROM repository_blobs
		WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2`, repo, d)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// BlobInRepo returns the size of a blob the repository links, or ErrNotFound.
func (db *DB) BlobInRepo(ctx context.Context, repo string, d oci.Digest) (int64, error) {
	var size int64
	err := db.queryRow(ctx, blobInRepoQuery, repo, d).Scan(&size)
	return size, noRows(err)
}

// blobInRepoQuery selects the size of a live blob that a repository links.
const blobInRepoQuery = `SELECT b.size FROM repository_blobs rb
	JOIN repositories r ON r.id = rb.repository_id
	JOIN blobs b ON b.digest = rb.digest
	WHERE r.name = $1 AND rb.digest = $2 AND b.state = 'live'`

// BlobRecord is one row of the blobs table: a blob the registry stored.
type BlobRecord struct {
	Digest     oci.Digest
	Size       int64
	Created    int64 // Unix nanoseconds
	LastLinked int64 // Unix nanoseconds
	State      string
}

// Blobs returns up to n blobs rows with digests after the digest after, in
// digest order, whatever their state: pages for a walk over every blob.
func (db *DB) Blobs(ctx context.Context, after oci.Digest, n int) ([]BlobRecord, error) {
	return db.blobRecords(ctx, `SELECT digest, size, created_at, last_linked_at, state FROM blobs
		WHERE digest > $1 ORDER BY digest LIMIT $2`, after, n)
}

// blobRecords runs query, which selects the columns of BlobRecord.
func (db *DB) blobRecords(ctx context.Context, query string, args ...any) ([]BlobRecord, error) {
	rows, err := db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	out := []BlobRecord{}
	err = scanRows(rows, func() error {
		var b BlobRecord
		if err := rows.Scan(&b.Digest, &b.Size, &b.Created, &b.LastLinked, &b.State); err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	return out, err
}

// BlobExists reports whether the blobs table has a row for d, whatever its state.
func (db *DB) BlobExists(ctx context.Context, d oci.Digest) (bool, error) {
	var n int
	err := db.queryRow(ctx, `SELECT count(*) FROM blobs WHERE digest = $1`, d).Scan(&n)
	return n > 0, err
}
