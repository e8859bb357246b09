package metadata

import (
	"context"
	"database/sql"
	"errors"

	"github.com/berthhq/berth/oci"
)

// Garbage collection reads a repository's graph without locks, decides in
// Go what is garbage, then deletes each piece in a transaction that asks
// again. On PostgreSQL each delete first locks the row it removes and only
// then re-checks, in a statement of its own, that nothing needs it: every
// write that makes a row needed locks that row too (a manifest PUT links
// its manifest and locks its references' links FOR SHARE, a tag move locks
// its manifest's link, LinkBlob updates the blob's row), so the re-check
// sees such a write committed, or the write waits and then finds the row
// gone and fails cleanly. SQLite has one writer at a time, which gives the
// same.

// ErrGCRunning: another collection holds the lock (TryLockGC).
var ErrGCRunning = errors.New("metadata: garbage collection is running elsewhere")

// RepositoryRef names a repository by id and name.
type RepositoryRef struct {
	ID   int64
	Name string
}

// RepositoryRefs returns up to n repositories with ids above after, by id.
func (db *DB) RepositoryRefs(ctx context.Context, after int64, n int) ([]RepositoryRef, error) {
	rows, err := db.query(ctx, `SELECT id, name FROM repositories WHERE id > $1 ORDER BY id LIMIT $2`, after, n)
	if err != nil {
		return nil, err
	}
	var out []RepositoryRef
	err = scanRows(rows, func() error {
		var r RepositoryRef
		if err := rows.Scan(&r.ID, &r.Name); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// ManifestNode is a manifest a repository links, with what garbage
// collection weighs: what it references, what it refers to, who points at it.
type ManifestNode struct {
	Digest  oci.Digest
	Size    int64
	Linked  int64      // when the repository last linked or needed it (Unix nanoseconds)
	Subject oci.Digest // empty without a subject
	// Tagged: a live tag points at it, or a tag that ended at or after the
	// restore horizon, which a restore could bring back.
	Tagged   bool
	Children []oci.Digest // child manifests (an index's)
	Blobs    []oci.Digest // layers and config
}

// BlobLink is a blob a repository links.
type BlobLink struct {
	Digest oci.Digest
	Size   int64
	Linked int64 // Unix nanoseconds
}

// RepositoryGraph returns every manifest and blob link of a repository;
// tags ended before horizon (Unix nanoseconds) no longer count.
func (db *DB) RepositoryGraph(ctx context.Context, repoID, horizon int64) ([]*ManifestNode, []BlobLink, error) {
	byDigest := map[oci.Digest]*ManifestNode{}
	var nodes []*ManifestNode
	rows, err := db.query(ctx, `SELECT m.digest, m.size, rm.linked_at, COALESCE(m.subject_digest, '')
		FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
		WHERE rm.repository_id = $1 ORDER BY m.digest`, repoID)
	if err != nil {
		return nil, nil, err
	}
	err = scanRows(rows, func() error {
		n := &ManifestNode{}
		if err := rows.Scan(&n.Digest, &n.Size, &n.Linked, &n.Subject); err != nil {
			return err
		}
		byDigest[n.Digest] = n
		nodes = append(nodes, n)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	rows, err = db.query(ctx, `SELECT DISTINCT manifest_digest FROM tags
		WHERE repository_id = $1 AND (ended_at IS NULL OR ended_at >= $2)`, repoID, horizon)
	if err != nil {
		return nil, nil, err
	}
	err = scanRows(rows, func() error {
		var d oci.Digest
		if err := rows.Scan(&d); err != nil {
			return err
		}
		if n := byDigest[d]; n != nil {
			n.Tagged = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	rows, err = db.query(ctx, `SELECT mr.manifest_digest, mr.child_digest, mr.kind
		FROM repository_manifests rm JOIN manifest_references mr ON mr.manifest_digest = rm.digest
		WHERE rm.repository_id = $1`, repoID)
	if err != nil {
		return nil, nil, err
	}
	err = scanRows(rows, func() error {
		var parent, child oci.Digest
		var kind oci.Kind
		if err := rows.Scan(&parent, &child, &kind); err != nil {
			return err
		}
		n := byDigest[parent]
		if n == nil {
			return nil // linked after the first query
		}
		if kind == oci.KindManifest {
			n.Children = append(n.Children, child)
		} else {
			n.Blobs = append(n.Blobs, child)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	rows, err = db.query(ctx, `SELECT rb.digest, b.size, rb.linked_at FROM repository_blobs rb
		JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = $1 ORDER BY rb.digest`, repoID)
	if err != nil {
		return nil, nil, err
	}
	var links []BlobLink
	err = scanRows(rows, func() error {
		var l BlobLink
		if err := rows.Scan(&l.Digest, &l.Size, &l.Linked); err != nil {
			return err
		}
		links = append(links, l)
		return nil
	})
	return nodes, links, err
}

// scanRows calls fn for each row, then closes rows.
func scanRows(rows *sql.Rows, fn func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(); err != nil {
			return err
		}
	}
	return rows.Err()
}

// UnlinkGarbageManifest removes manifest d from a repository if, asked
// again under lock, nothing needs it: its link is older than cutoff, no
// tag points at it that ended at or after horizon (or is live), no manifest
// of the repository references it or is a referrer of it linked at or
// after cutoff or tagged, and its own subject is gone from the repository
// (a referrer lives as long as its subject). It reports whether it did.
// (The unary plus keeps SQLite from scanning the repository's links for
// referrers: it starts from the manifests_subject index instead.)
func (tx *Tx) UnlinkGarbageManifest(ctx context.Context, repoID int64, d oci.Digest, cutoff, horizon int64) (bool, error) {
	if ok, err := tx.lockRow(ctx, `SELECT 1 FROM repository_manifests WHERE repository_id = $1 AND digest = $2`, repoID, d); !ok {
		return false, err
	}
	res, err := tx.exec(ctx, `DELETE FROM repository_manifests
		WHERE repository_id = $1 AND digest = $2 AND linked_at < $3
		AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = $1 AND t.manifest_digest = $2
			AND (t.ended_at IS NULL OR t.ended_at >= $4))
		AND NOT EXISTS (SELECT 1 FROM manifest_references mr
			JOIN repository_manifests p ON p.digest = mr.manifest_digest AND p.repository_id = $1
			WHERE mr.child_digest = $2)
		AND NOT EXISTS (SELECT 1 FROM manifests r
			JOIN repository_manifests rr ON rr.digest = r.digest AND +rr.repository_id = $1
			WHERE r.subject_digest = $2 AND (rr.linked_at >= $3 OR EXISTS (SELECT 1 FROM tags t
				WHERE t.repository_id = $1 AND t.manifest_digest = r.digest AND (t.ended_at IS NULL OR t.ended_at >= $4))))
		AND NOT EXISTS (SELECT 1 FROM manifests m JOIN repository_manifests s
			ON s.digest = m.subject_digest AND s.repository_id = $1 WHERE m.digest = $2)`,
		repoID, d, cutoff, horizon)
	return affected(res, err)
}

// UnlinkGarbageBlob removes blob d from a repository's links if, asked
// again under lock, the link is older than cutoff and no manifest of the
// repository references the blob. It reports whether it did.
func (tx *Tx) UnlinkGarbageBlob(ctx context.Context, repoID int64, d oci.Digest, cutoff int64) (bool, error) {
	if ok, err := tx.lockRow(ctx, `SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2`, repoID, d); !ok {
		return false, err
	}
	res, err := tx.exec(ctx, `DELETE FROM repository_blobs
		WHERE repository_id = $1 AND digest = $2 AND linked_at < $3
		AND NOT EXISTS (SELECT 1 FROM manifest_references mr
			JOIN repository_manifests rm ON rm.digest = mr.manifest_digest AND rm.repository_id = $1
			WHERE mr.child_digest = $2)`, repoID, d, cutoff)
	return affected(res, err)
}

// BlobUse is a live blob and how many repositories link it.
type BlobUse struct {
	Digest     oci.Digest
	Size       int64
	LastLinked int64 // Unix nanoseconds
	Links      int
}

// BlobUses returns up to n live blobs with digests after after, in digest
// order, with their link counts.
func (db *DB) BlobUses(ctx context.Context, after oci.Digest, n int) ([]BlobUse, error) {
	rows, err := db.query(ctx, `SELECT b.digest, b.size, b.last_linked_at,
		(SELECT count(*) FROM repository_blobs rb WHERE rb.digest = b.digest)
		FROM blobs b WHERE b.digest > $1 AND b.state = 'live' ORDER BY b.digest LIMIT $2`, after, n)
	if err != nil {
		return nil, err
	}
	out := []BlobUse{}
	err = scanRows(rows, func() error {
		var u BlobUse
		if err := rows.Scan(&u.Digest, &u.Size, &u.LastLinked, &u.Links); err != nil {
			return err
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// MarkBlobDeleting marks blob d as being deleted if, asked again under
// lock, it is live, no repository links it and it was last linked before
// cutoff. From then on LinkBlob refuses it (ErrBlobDeleting), until
// ForgetBlob. It reports whether it marked the blob.
func (tx *Tx) MarkBlobDeleting(ctx context.Context, d oci.Digest, cutoff int64) (bool, error) {
	if ok, err := tx.lockRow(ctx, `SELECT 1 FROM blobs WHERE digest = $1 AND state = 'live'`, d); !ok {
		return false, err
	}
	res, err := tx.exec(ctx, `UPDATE blobs SET state = 'deleting'
		WHERE digest = $1 AND state = 'live' AND last_linked_at < $2
		AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $1)`, d, cutoff)
	return affected(res, err)
}

// ClaimOrphanBlob records stored bytes that have no blobs row as a blob
// being deleted, so that they are deleted the way collected blobs are. It
// reports false when the blob has a row (a push recorded it meanwhile).
func (tx *Tx) ClaimOrphanBlob(ctx context.Context, d oci.Digest, size int64) (bool, error) {
	res, err := tx.exec(ctx, `INSERT INTO blobs (digest, size, created_at, last_linked_at, state)
		VALUES ($1, $2, $3, $3, 'deleting') ON CONFLICT (digest) DO NOTHING`, d, size, tx.now)
	return affected(res, err)
}

// DeletingBlobs returns up to n blobs being deleted with digests after
// after, in digest order.
func (db *DB) DeletingBlobs(ctx context.Context, after oci.Digest, n int) ([]BlobRecord, error) {
	return db.blobRecords(ctx, `SELECT digest, size, created_at, last_linked_at, state FROM blobs
		WHERE state = 'deleting' AND digest > $1 ORDER BY digest LIMIT $2`, after, n)
}

// ForgetBlob deletes the row of a blob being deleted, once its bytes are.
func (tx *Tx) ForgetBlob(ctx context.Context, d oci.Digest) (bool, error) {
	res, err := tx.exec(ctx, `DELETE FROM blobs WHERE digest = $1 AND state = 'deleting'`, d)
	return affected(res, err)
}

// UnusedManifests returns up to n manifests after after, in digest order,
// that no repository links and no tag row (live or history) names, stored
// before cutoff.
func (db *DB) UnusedManifests(ctx context.Context, after oci.Digest, cutoff int64, n int) ([]oci.Digest, error) {
	rows, err := db.query(ctx, `SELECT m.digest FROM manifests m WHERE m.digest > $1 AND m.created_at < $2
		AND NOT EXISTS (SELECT 1 FROM repository_manifests rm WHERE rm.digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_digest = m.digest)
		ORDER BY m.digest LIMIT $3`, after, cutoff, n)
	if err != nil {
		return nil, err
	}
	var out []oci.Digest
	err = scanRows(rows, func() error {
		var d oci.Digest
		if err := rows.Scan(&d); err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// ForgetManifest deletes a stored manifest and its references if, asked
// again under lock, no repository links it and no tag row names it.
func (tx *Tx) ForgetManifest(ctx context.Context, d oci.Digest) (bool, error) {
	if ok, err := tx.lockRow(ctx, `SELECT 1 FROM manifests WHERE digest = $1`, d); !ok {
		return false, err
	}
	var used int
	if err := tx.queryRow(ctx, `SELECT
		(SELECT count(*) FROM repository_manifests WHERE digest = $1) + (SELECT count(*) FROM tags WHERE manifest_digest = $1)`,
		d).Scan(&used); err != nil || used > 0 {
		return false, err
	}
	if _, err := tx.exec(ctx, `DELETE FROM manifest_references WHERE manifest_digest = $1`, d); err != nil {
		return false, err
	}
	res, err := tx.exec(ctx, `DELETE FROM manifests WHERE digest = $1`, d)
	return affected(res, err)
}

// lockRow runs query, a SELECT of one row, locking that row FOR UPDATE
// where the dialect has row locks; it reports whether the row exists.
func (tx *Tx) lockRow(ctx context.Context, query string, args ...any) (bool, error) {
	return tx.scanOne(ctx, query+tx.forUpdate(), args...)
}

// lockRowShared is lockRow with a FOR SHARE lock.
func (tx *Tx) lockRowShared(ctx context.Context, query string, args ...any) (bool, error) {
	return tx.scanOne(ctx, query+tx.forShare(), args...)
}

func (tx *Tx) scanOne(ctx context.Context, query string, args ...any) (bool, error) {
	var one int
	err := tx.queryRow(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func affected(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
