package metadata

import (
	"context"
	"database/sql"
	"math"
	"strconv"
	"time"

	"github.com/berthhq/berth/oci"
)

// moveTag points a tag at d: it closes the tag's live history row, if any,
// and opens a new one. Pointing a tag where it already points changes
// nothing. It returns the previous digest ("" for a new tag).
//
// A move happens after the row it closes opened, and after the tag's last
// delete, even when this transaction's clock reads earlier (it began before
// the other committed, or another replica's clock is ahead): the new row
// starts at the latest of the three, so history rows chain without overlap.
func (tx *Tx) moveTag(ctx context.Context, repoID int64, tag string, d oci.Digest, c Change) (oci.Digest, error) {
	if err := tx.lockTag(ctx, repoID, tag); err != nil {
		return "", err
	}
	var old oci.Digest
	var started int64
	at := tx.now
	// FOR UPDATE (PostgreSQL): a concurrent DeleteManifest that ends this
	// row makes us wait for its outcome and then see no live row.
	err := tx.queryRow(ctx, `SELECT manifest_digest, started_at FROM tags
		WHERE repository_id = $1 AND name = $2 AND ended_at IS NULL`+tx.forUpdate(), repoID, tag).Scan(&old, &started)
	switch {
	case err == sql.ErrNoRows:
		var ended int64
		if err := tx.queryRow(ctx, `SELECT COALESCE(max(ended_at), 0) FROM tags WHERE repository_id = $1 AND name = $2`,
			repoID, tag).Scan(&ended); err != nil {
			return "", err
		}
		at = max(at, ended)
	case err != nil:
		return "", err
	case old == d:
		return old, nil
	case c.Immutable != nil && c.Immutable(tag):
		return "", &TagImmutableError{Tag: tag, Current: old}
	default:
		at = max(at, started)
		if _, err := tx.exec(ctx, `UPDATE tags SET ended_at = $1, ended_by = $2, end_action = $3
			WHERE repository_id = $4 AND name = $5 AND ended_at IS NULL`, at, c.Actor, c.Action, repoID, tag); err != nil {
			return "", err
		}
	}
	_, err = tx.exec(ctx, `INSERT INTO tags (repository_id, name, manifest_digest, started_at, actor, action)
		VALUES ($1, $2, $3, $4, $5, $6)`, repoID, tag, d, at, c.Actor, c.Action)
	return old, err
}

// lockTag serialises the transactions that change one tag (PostgreSQL):
// two replicas moving a tag that has no live row yet would both insert one,
// and a row lock cannot cover a row that does not exist. The lock is held
// until the transaction ends.
func (tx *Tx) lockTag(ctx context.Context, repoID int64, tag string) error {
	if !tx.db.dialect.rowLocks {
		return nil
	}
	_, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("tag", strconv.FormatInt(repoID, 10), tag))
	return err
}

// forUpdate is the clause that locks the rows a SELECT reads, where the
// dialect has row locks.
func (tx *Tx) forUpdate() string { return tx.rowLock(" FOR UPDATE") }

// forShare is the clause that keeps the rows a SELECT reads from being
// deleted or changed until the transaction ends, where the dialect has row
// locks. (SQLite has one writer at a time, which gives the same.)
func (tx *Tx) forShare() string { return tx.rowLock(" FOR SHARE") }

func (tx *Tx) rowLock(clause string) string {
	if tx.db.dialect.rowLocks {
		return clause
	}
	return ""
}

// endAt is the ended_at of rows a transaction closes: its time, or the
// row's start if that is later (see moveTag).
const endAt = `CASE WHEN started_at > $1 THEN started_at ELSE $1 END`

// DeleteTag ends a tag's live history row; the manifest stays.
func (tx *Tx) DeleteTag(ctx context.Context, repo, tag string, c Change) error {
	id, err := tx.repositoryID(ctx, repo)
	if err != nil {
		return err
	}
	if err := tx.lockTag(ctx, id, tag); err != nil {
		return err
	}
	res, err := tx.exec(ctx, `UPDATE tags SET ended_at = `+endAt+`, ended_by = $2, end_action = $3
		WHERE repository_id = $4 AND name = $5 AND ended_at IS NULL`, tx.now, c.Actor, c.Action, id, tag)
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
	return db.strings(ctx, tagsQuery, repo, last, n)
}

// tagsQuery lists live tags. The repository's id is a scalar subquery
// rather than a join: then both databases read tags_live in order from
// (id, last) on and stop after n rows, with no sort.
const tagsQuery = `SELECT name FROM tags
	WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND ended_at IS NULL AND name > $2
	ORDER BY name LIMIT $3`

// TagEvent is one row of a tag's history.
type TagEvent struct {
	ID        int64 // increases with each change of the tag
	Tag       string
	Digest    oci.Digest
	Start     int64 // Unix nanoseconds
	End       int64 // 0 while the tag still points here
	Actor     string
	Action    string
	EndedBy   string
	EndAction string
}

// TagHistoryPage returns up to n rows of a tag's history, newest first,
// starting below the row with id before (0: from the newest). A tag's rows
// are written in order under the tag's lock, so id order is time order.
func (db *DB) TagHistoryPage(ctx context.Context, repo, tag string, before int64, n int) ([]TagEvent, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	return db.tagEvents(ctx, `SELECT `+tagEventColumns+`
		FROM tags t WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.name = $2 AND t.id < $3
		ORDER BY t.id DESC LIMIT $4`, repo, tag, before, n)
}

const tagEventColumns = `t.id, t.name, t.manifest_digest, t.started_at, COALESCE(t.ended_at, 0),
	t.actor, t.action, COALESCE(t.ended_by, ''), COALESCE(t.end_action, '')`

// HistoryFilter narrows TagHistoryDescriptors; its zero value keeps every row.
type HistoryFilter struct {
	Digest oci.Digest // only rows that pointed at this manifest
	Before time.Time  // only rows that started before this
	After  time.Time  // only rows that started, or ended, after this
}

// TagDescriptor is a row of a tag's history with what a descriptor of its
// manifest needs besides the digest.
type TagDescriptor struct {
	TagEvent
	MediaType string
	Size      int64
}

// TagHistoryDescriptors is TagHistoryPage narrowed by f, with each row's
// manifest media type and size. Those are read whether or not the
// repository still links the manifest: history names manifests deleted
// since, and the tags table's foreign key keeps their rows.
func (db *DB) TagHistoryDescriptors(ctx context.Context, repo, tag string, before int64, n int, f HistoryFilter) ([]TagDescriptor, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	// Bounds that keep every row stand in for absent ones, so that the
	// query text, and its prepared statement, is always the same.
	startedBefore, after := int64(math.MaxInt64), int64(math.MinInt64)
	if !f.Before.IsZero() {
		startedBefore = unixNanos(f.Before)
	}
	if !f.After.IsZero() {
		after = unixNanos(f.After)
	}
	rows, err := db.query(ctx, tagDescriptorsQuery, repo, tag, before, n, startedBefore, after, string(f.Digest))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TagDescriptor
	for rows.Next() {
		var d TagDescriptor
		e := &d.TagEvent
		if err := rows.Scan(&e.ID, &e.Tag, &e.Digest, &e.Start, &e.End, &e.Actor, &e.Action, &e.EndedBy, &e.EndAction,
			&d.MediaType, &d.Size); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

const tagDescriptorsQuery = `SELECT ` + tagEventColumns + `, m.media_type, m.size
	FROM tags t JOIN manifests m ON m.digest = t.manifest_digest
	WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.name = $2 AND t.id < $3
	AND t.started_at < $5 AND COALESCE(t.ended_at, t.started_at) > $6 AND ($7 = '' OR t.manifest_digest = $7)
	ORDER BY t.id DESC LIMIT $4`

// LiveTags returns where every tag of the repository points and since
// when (the Tag, Digest and Start of each live row).
func (db *DB) LiveTags(ctx context.Context, repo string) ([]TagEvent, error) {
	rows, err := db.query(ctx, `SELECT t.name, t.manifest_digest, t.started_at FROM tags t
		WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.ended_at IS NULL`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TagEvent
	for rows.Next() {
		var e TagEvent
		if err := rows.Scan(&e.Tag, &e.Digest, &e.Start); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (db *DB) tagEvents(ctx context.Context, query string, args ...any) ([]TagEvent, error) {
	rows, err := db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TagEvent
	for rows.Next() {
		var e TagEvent
		if err := rows.Scan(&e.ID, &e.Tag, &e.Digest, &e.Start, &e.End, &e.Actor, &e.Action, &e.EndedBy, &e.EndAction); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
