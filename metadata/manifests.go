package metadata

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/berthhq/berth/oci"
)

// ManifestRecord is a stored manifest: its exact bytes and what they are.
type ManifestRecord struct {
	Digest       oci.Digest
	MediaType    string
	ArtifactType string
	Subject      oci.Digest // empty when the manifest has no subject
	Payload      []byte
}

// Size is the manifest's length in bytes.
func (m *ManifestRecord) Size() int64 { return int64(len(m.Payload)) }

// PutManifest stores a manifest in a repository, checking first that the
// repository has everything the manifest references, and points the given
// tags at it.
func (tx *Tx) PutManifest(ctx context.Context, repo string, d oci.Digest, m *oci.Manifest, payload []byte, tags []string, c Change) error {
	id, err := tx.EnsureRepository(ctx, repo)
	if err != nil {
		return err
	}
	for _, ref := range m.Refs {
		if ref.Foreign {
			continue
		}
		if err := tx.checkRef(ctx, id, ref); err != nil {
			return err
		}
	}
	var subject, config sql.NullString
	if m.Subject != nil {
		subject = sql.NullString{String: string(m.Subject.Digest), Valid: true}
	}
	if m.Config != nil {
		config = sql.NullString{String: string(m.Config.Digest), Valid: true}
	}
	if m.Subject != nil {
		// Hold the subject's link, if the repository has the subject: a
		// collection deciding whether anything still refers to it waits
		// for this push, then sees this referrer.
		if _, err := tx.lockRowShared(ctx, `SELECT 1 FROM repository_manifests WHERE repository_id = $1 AND digest = $2`,
			id, m.Subject.Digest); err != nil {
			return err
		}
	}
	// On PostgreSQL an existing row is updated to itself, which locks it: a
	// collection forgetting an unused manifest waits for this push, then
	// sees its link. (SQLite's one writer needs no lock.)
	onConflict := `DO NOTHING`
	if tx.db.dialect.rowLocks {
		onConflict = `DO UPDATE SET created_at = manifests.created_at`
	}
	if _, err := tx.exec(ctx, `INSERT INTO manifests
		(digest, media_type, artifact_type, subject_digest, config_digest, payload, size, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (digest) `+onConflict,
		d, m.MediaType, m.ArtifactType, subject, config, payload, len(payload), tx.now); err != nil {
		return err
	}
	for _, ref := range m.Refs {
		if _, err := tx.exec(ctx, `INSERT INTO manifest_references (manifest_digest, child_digest, kind)
			VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, d, ref.Digest, ref.Kind); err != nil {
			return err
		}
	}
	if _, err := tx.exec(ctx, `INSERT INTO repository_manifests (repository_id, digest, linked_at) VALUES ($1, $2, $3)
		ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at`, id, d, tx.now); err != nil {
		return err
	}
	// In one order, so that two pushes naming the same tags never wait on
	// each other's tag locks in a cycle.
	for _, tag := range slices.Compact(slices.Sorted(slices.Values(tags))) {
		if _, err := tx.moveTag(ctx, id, tag, d, c); err != nil {
			return err
		}
	}
	return nil
}

// MissingReferenceError names content a manifest references that its
// repository does not have. It matches ErrMissingReference.
type MissingReferenceError struct {
	Kind   oci.Kind
	Digest oci.Digest
}

func (e *MissingReferenceError) Error() string {
	return fmt.Sprintf("the manifest references %s %s, which the repository does not have", e.Kind, e.Digest)
}

// Is makes errors.Is(err, ErrMissingReference) true.
func (e *MissingReferenceError) Is(target error) bool { return target == ErrMissingReference }

// checkRef verifies that the repository links the referenced content, with
// the size the manifest claims. The link rows stay locked until the
// transaction ends, so a concurrent delete cannot slip in between the check
// and the commit of a manifest that needs them.
func (tx *Tx) checkRef(ctx context.Context, repoID int64, ref oci.Ref) error {
	var size int64
	var err error
	if ref.Kind == oci.KindManifest {
		err = tx.queryRow(ctx, `SELECT m.size FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
			WHERE rm.repository_id = $1 AND rm.digest = $2`+tx.forShare(), repoID, ref.Digest).Scan(&size)
	} else {
		err = tx.queryRow(ctx, `SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
			WHERE rb.repository_id = $1 AND rb.digest = $2 AND b.state = 'live'`+tx.forShare(), repoID, ref.Digest).Scan(&size)
	}
	if err == sql.ErrNoRows {
		return &MissingReferenceError{Kind: ref.Kind, Digest: ref.Digest}
	}
	if err != nil {
		return err
	}
	if size != ref.Size {
		return fmt.Errorf("%w: %s %s is %d bytes, the manifest says %d", oci.ErrManifestInvalid, ref.Kind, ref.Digest, size, ref.Size)
	}
	return nil
}

const manifestColumns = `m.digest, m.media_type, m.artifact_type, COALESCE(m.subject_digest, ''), m.payload`

func scanManifest(r row) (*ManifestRecord, error) {
	var m ManifestRecord
	if err := r.Scan(&m.Digest, &m.MediaType, &m.ArtifactType, &m.Subject, &m.Payload); err != nil {
		return nil, noRows(err)
	}
	return &m, nil
}

// Resolve returns the manifest a tag or digest names in the repository.
func (db *DB) Resolve(ctx context.Context, repo string, ref oci.Reference) (*ManifestRecord, error) {
	if ref.IsDigest() {
		return scanManifest(db.queryRow(ctx, `SELECT `+manifestColumns+`
			FROM repositories r JOIN repository_manifests rm ON rm.repository_id = r.id JOIN manifests m ON m.digest = rm.digest
			WHERE r.name = $1 AND rm.digest = $2`, repo, ref.Digest))
	}
	return scanManifest(db.queryRow(ctx, `SELECT `+manifestColumns+`
		FROM repositories r JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.digest = t.manifest_digest
		WHERE r.name = $1 AND t.name = $2 AND t.ended_at IS NULL`, repo, ref.Tag))
}

// HasManifest reports whether the repository links the manifest, without
// reading it.
func (db *DB) HasManifest(ctx context.Context, repo string, d oci.Digest) (bool, error) {
	var n int
	err := db.queryRow(ctx, `SELECT count(*) FROM repository_manifests
		WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2`, repo, d).Scan(&n)
	return n > 0, err
}

// Referrers returns the repository's manifests whose subject is d, oldest first.
func (db *DB) Referrers(ctx context.Context, repo string, d oci.Digest) ([]*ManifestRecord, error) {
	rows, err := db.query(ctx, `SELECT `+manifestColumns+`
		FROM repositories r JOIN repository_manifests rm ON rm.repository_id = r.id JOIN manifests m ON m.digest = rm.digest
		WHERE r.name = $1 AND m.subject_digest = $2 ORDER BY rm.linked_at, m.digest`, repo, d)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*ManifestRecord
	for rows.Next() {
		m, err := scanManifest(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteManifest removes a manifest from a repository and ends every tag of
// the repository that pointed at it. The manifest's bytes stay until garbage
// collection finds no repository needs them.
func (tx *Tx) DeleteManifest(ctx context.Context, repo string, d oci.Digest, c Change) error {
	id, err := tx.repositoryID(ctx, repo)
	if err != nil {
		return err
	}
	res, err := tx.exec(ctx, `DELETE FROM repository_manifests WHERE repository_id = $1 AND digest = $2`, id, d)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	// Concurrent pushes (PostgreSQL): one that points a tag at d linked d
	// first, so the DELETE above waited for it to commit and this statement
	// sees its row; one that moves a tag away from d holds the tags lock,
	// so this waits for it and then leaves the row as it ended.
	if err := tx.lockTags(ctx, id); err != nil {
		return err
	}
	if _, err = tx.exec(ctx, `UPDATE tags SET ended_at = `+endAt+`, ended_by = $2, end_action = $3
		WHERE repository_id = $4 AND manifest_digest = $5 AND ended_at IS NULL`, tx.now, c.Actor, c.Action, id, d); err != nil {
		return err
	}
	return tx.emit(ctx, id, Event{Action: ActionManifestDelete, Repository: repo, Digest: d, Actor: c.Actor}, nil)
}
