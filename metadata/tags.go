package metadata

import (
	"context"
	"database/sql"

	"github.com/berthhq/berth/oci"
)

// moveTag points a tag at d: it closes the tag's live history row, if any,
// and opens a new one. Pointing a tag where it already points changes
// nothing. It returns the previous digest ("" for a new tag).
func (tx *Tx) moveTag(ctx context.Context, repoID int64, tag string, d oci.Digest, c Change) (oci.Digest, error) {
	var old oci.Digest
	err := tx.queryRow(ctx, `SELECT manifest_digest FROM tags
		WHERE repository_id = $1 AND name = $2 AND ended_at IS NULL`, repoID, tag).Scan(&old)
	switch {
	case err == sql.ErrNoRows:
	case err != nil:
		return "", err
	case old == d:
		return old, nil
	default:
		if _, err := tx.exec(ctx, `UPDATE tags SET ended_at = $1, ended_by = $2, end_action = $3
			WHERE repository_id = $4 AND name = $5 AND ended_at IS NULL`, tx.now, c.Actor, c.Action, repoID, tag); err != nil {
			return "", err
		}
	}
	_, err = tx.exec(ctx, `INSERT INTO tags (repository_id, name, manifest_digest, started_at, actor, action)
		VALUES ($1, $2, $3, $4, $5, $6)`, repoID, tag, d, tx.now, c.Actor, c.Action)
	return old, err
}

// DeleteTag ends a tag's live history row; the manifest stays.
func (tx *Tx) DeleteTag(ctx context.Context, repo, tag string, c Change) error {
	res, err := tx.exec(ctx, `UPDATE tags SET ended_at = $1, ended_by = $2, end_action = $3
		WHERE repository_id = (SELECT id FROM repositories WHERE name = $4) AND name = $5 AND ended_at IS NULL`,
		tx.now, c.Actor, c.Action, repo, tag)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// Tags returns up to n live tag names of the repository after last, in
// lexical (byte) order.
func (db *DB) Tags(ctx context.Context, repo, last string, n int) ([]string, error) {
	return db.strings(ctx, `SELECT t.name FROM repositories r JOIN tags t ON t.repository_id = r.id
		WHERE r.name = $1 AND t.ended_at IS NULL AND t.name > $2 ORDER BY t.name LIMIT $3`, repo, last, n)
}

// TagEvent is one row of a tag's history.
type TagEvent struct {
	Tag       string
	Digest    oci.Digest
	Start     int64 // Unix nanoseconds
	End       int64 // 0 while the tag still points here
	Actor     string
	Action    string
	EndedBy   string
	EndAction string
}

// TagHistory returns every row of a tag's history, oldest first.
func (db *DB) TagHistory(ctx context.Context, repo, tag string) ([]TagEvent, error) {
	rows, err := db.query(ctx, `SELECT t.name, t.manifest_digest, t.started_at, COALESCE(t.ended_at, 0),
		t.actor, t.action, COALESCE(t.ended_by, ''), COALESCE(t.end_action, '')
		FROM repositories r JOIN tags t ON t.repository_id = r.id
		WHERE r.name = $1 AND t.name = $2 ORDER BY t.started_at, t.id`, repo, tag)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TagEvent
	for rows.Next() {
		var e TagEvent
		if err := rows.Scan(&e.Tag, &e.Digest, &e.Start, &e.End, &e.Actor, &e.Action, &e.EndedBy, &e.EndAction); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
