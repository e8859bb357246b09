package metadata

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/berthhq/berth/oci"
)

// TagRules is what a repository's policy says about changing its tags.
type TagRules struct {
	// Versioning says which tags are numbered; nil is oci.DefaultVersioning.
	Versioning *oci.Versioning
	// ImmutableNumbered: a numbered tag keeps the manifest it points at;
	// moving it fails with a *TagImmutableError.
	ImmutableNumbered bool
	// RefuseLower: a new numbered tag must be newer than every live one,
	// or it fails with a *TagTooLowError.
	RefuseLower bool
}

func (r TagRules) versioning() *oci.Versioning {
	if r.Versioning == nil {
		return oci.DefaultVersioning()
	}
	return r.Versioning
}

// Change records who changes a tag and why, for its history, and the
// rules the change must keep.
type Change struct {
	Actor  string
	Action string // one of the Action constants
	Rules  TagRules
	// Expect, if set, makes the change a compare-and-swap: the tag must
	// point at *Expect ("": the tag must not be live), or the change fails
	// with a *TagConflictError.
	Expect *oci.Digest
	// MinNewer, for a delete of a numbered tag: at least this many newer
	// versions must be live, or the delete fails with ErrKept (retention
	// decided on a snapshot; newer tags may have gone since).
	MinNewer int
}

// ErrKept: a delete would have left fewer newer versions than MinNewer.
var ErrKept = errors.New("metadata: too few newer versions remain; the tag is kept")

// The actions recorded in tag history.
const (
	ActionPush      = "push"
	ActionMove      = "move"
	ActionDelete    = "delete"
	ActionRestore   = "restore"
	ActionRollback  = "rollback"
	ActionRetention = "retention"
)

// ErrTagImmutable: a tag that may not move was asked to; the error is a
// *TagImmutableError saying where it points.
var ErrTagImmutable = errors.New("metadata: tag is immutable")

// TagImmutableError is the refusal to move an immutable tag.
type TagImmutableError struct {
	Tag     string
	Current oci.Digest
}

func (e *TagImmutableError) Error() string {
	return fmt.Sprintf("tag %s is immutable and points at %s", e.Tag, e.Current)
}

// Is makes errors.Is(err, ErrTagImmutable) true.
func (e *TagImmutableError) Is(target error) bool { return target == ErrTagImmutable }

// TagTooLowError is the refusal of a numbered tag older than the newest.
type TagTooLowError struct{ Tag, Newest string }

func (e *TagTooLowError) Error() string {
	return fmt.Sprintf("tag %s is older than the newest version, %s", e.Tag, e.Newest)
}

// TagConflictError: a compare-and-swap found the tag pointing elsewhere
// (Current is "" when the tag is not live).
type TagConflictError struct {
	Tag     string
	Current oci.Digest
}

func (e *TagConflictError) Error() string {
	if e.Current == "" {
		return fmt.Sprintf("tag %s is not live", e.Tag)
	}
	return fmt.Sprintf("tag %s points at %s", e.Tag, e.Current)
}

// moveTag points a tag at d: it closes the tag's live history row, if any,
// and opens a new one. Pointing a tag where it already points changes
// nothing. It returns the previous digest ("" for a new tag).
//
// A move happens after the row it closes opened, and after the tag's last
// delete, even when this transaction's clock reads earlier (it began before
// the other committed, or another replica's clock is ahead): the new row
// starts at the latest of the three, so history rows chain without overlap.
func (tx *Tx) moveTag(ctx context.Context, repoID int64, tag string, d oci.Digest, c Change) (oci.Digest, error) {
	if err := tx.lockTags(ctx, repoID); err != nil {
		return "", err
	}
	v := c.Rules.versioning()
	if err := tx.ensureKeys(ctx, repoID, v); err != nil {
		return "", err
	}
	ver, numbered := v.Parse(tag)
	var old oci.Digest
	var started int64
	at := tx.now
	// FOR UPDATE (PostgreSQL): a concurrent DeleteManifest that ends this
	// row makes us wait for its outcome and then see no live row.
	err := tx.queryRow(ctx, `SELECT manifest_digest, started_at FROM tags
		WHERE repository_id = $1 AND name = $2 AND ended_at IS NULL`+tx.forUpdate(), repoID, tag).Scan(&old, &started)
	switch {
	case err == sql.ErrNoRows:
		if c.Expect != nil && *c.Expect != "" {
			return "", &TagConflictError{Tag: tag}
		}
		if numbered && c.Rules.RefuseLower {
			if err := tx.checkNewest(ctx, repoID, ver); err != nil {
				return "", err
			}
		}
		var ended int64
		if err := tx.queryRow(ctx, `SELECT COALESCE(max(ended_at), 0) FROM tags WHERE repository_id = $1 AND name = $2`,
			repoID, tag).Scan(&ended); err != nil {
			return "", err
		}
		at = max(at, ended)
	case err != nil:
		return "", err
	case c.Expect != nil && *c.Expect != old:
		return "", &TagConflictError{Tag: tag, Current: old}
	case old == d:
		return old, nil
	case numbered && c.Rules.ImmutableNumbered:
		return "", &TagImmutableError{Tag: tag, Current: old}
	default:
		at = max(at, started)
		if _, err := tx.exec(ctx, `UPDATE tags SET ended_at = $1, ended_by = $2, end_action = $3
			WHERE repository_id = $4 AND name = $5 AND ended_at IS NULL`, at, c.Actor, c.Action, repoID, tag); err != nil {
			return "", err
		}
	}
	var key any // NULL for a moving tag
	var eventKey []byte
	if numbered {
		key, eventKey = ver.Key, ver.Key
	}
	if _, err = tx.exec(ctx, `INSERT INTO tags (repository_id, name, manifest_digest, started_at, actor, action, version_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, repoID, tag, d, at, c.Actor, c.Action, key); err != nil {
		return "", err
	}
	return old, tx.emit(ctx, repoID, Event{Action: c.Action, Tag: tag, Digest: d, Previous: old, Actor: c.Actor}, eventKey)
}

// checkNewest refuses a version older than the repository's newest (under
// lockTags, so that no newer one is being added meanwhile).
func (tx *Tx) checkNewest(ctx context.Context, repoID int64, ver oci.Version) error {
	var newest string
	err := tx.queryRow(ctx, `SELECT name FROM tags WHERE repository_id = $1 AND ended_at IS NULL
		AND version_key IS NOT NULL AND version_key > $2 ORDER BY version_key DESC LIMIT 1`, repoID, ver.Key).Scan(&newest)
	switch {
	case err == sql.ErrNoRows:
		return nil
	case err != nil:
		return err
	}
	return &TagTooLowError{Tag: ver.Tag, Newest: newest}
}

// ensureKeys makes the version keys of the repository's live tags those of
// v: after the ordering changed, it recomputes them all.
//
// On PostgreSQL the repository's row stays share-locked until the
// transaction ends, so that the keys it writes are of the scheme the
// repository records when it commits: a transaction that changes the
// scheme first waits for those writing keys under the old one to commit,
// then recomputes their keys too, and those that come later wait for it
// and see the new scheme.
func (tx *Tx) ensureKeys(ctx context.Context, repoID int64, v *oci.Versioning) error {
	var scheme string
	if err := tx.queryRow(ctx, `SELECT version_scheme FROM repositories WHERE id = $1`+tx.forShare(), repoID).Scan(&scheme); err != nil {
		return err
	}
	if scheme == v.Scheme() {
		return nil
	}
	if _, err := tx.exec(ctx, `UPDATE repositories SET version_scheme = $1 WHERE id = $2`, v.Scheme(), repoID); err != nil {
		return err
	}
	rows, err := tx.tx.QueryContext(ctx, `SELECT id, name FROM tags WHERE repository_id = $1 AND ended_at IS NULL`, repoID)
	if err != nil {
		return err
	}
	type live struct {
		id  int64
		tag string
	}
	var all []live
	for rows.Next() {
		var l live
		if err := rows.Scan(&l.id, &l.tag); err != nil {
			rows.Close()
			return err
		}
		all = append(all, l)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, l := range all {
		var key any
		if ver, ok := v.Parse(l.tag); ok {
			key = ver.Key
		}
		if _, err := tx.exec(ctx, `UPDATE tags SET version_key = $1 WHERE id = $2`, key, l.id); err != nil {
			return err
		}
	}
	return nil
}

// EnsureVersionKeys makes the repository's version keys those of v (see
// Versions), recomputing them if its ordering changed. It returns
// ErrNotFound for an unknown repository.
func (db *DB) EnsureVersionKeys(ctx context.Context, repo string, v *oci.Versioning) error {
	var scheme string
	if err := db.queryRow(ctx, `SELECT version_scheme FROM repositories WHERE name = $1`, repo).Scan(&scheme); err != nil {
		return noRows(err)
	}
	if scheme == v.Scheme() {
		return nil
	}
	return db.InTx(ctx, func(tx *Tx) error {
		id, err := tx.repositoryID(ctx, repo)
		if err != nil {
			return err
		}
		if err := tx.lockTags(ctx, id); err != nil {
			return err
		}
		return tx.ensureKeys(ctx, id, v)
	})
}

// lockTags serialises the transactions that change a repository's tags
// (PostgreSQL), until the transaction ends: two replicas creating one tag
// would both insert a live row, and a row lock cannot cover a row that
// does not exist yet; a new version must be checked against the newest
// while none is being added; and the repository's events must take their
// sequence numbers in commit order, so that webhooks deliver them in it.
// A transaction takes it after any lock on manifest links (FOR SHARE, or a
// manifest delete), so that two never wait on each other in a cycle.
func (tx *Tx) lockTags(ctx context.Context, repoID int64) error {
	if !tx.db.dialect.rowLocks {
		return nil
	}
	_, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("tags", strconv.FormatInt(repoID, 10)))
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

// SetTag points a tag at a manifest the repository has, as moveTag does,
// and returns the previous digest ("" for a new tag). A manifest the
// repository lacks is a *MissingReferenceError.
func (tx *Tx) SetTag(ctx context.Context, repo, tag string, d oci.Digest, c Change) (oci.Digest, error) {
	id, err := tx.repositoryID(ctx, repo)
	if err != nil {
		return "", err
	}
	return tx.setTag(ctx, id, tag, d, c)
}

// setTag is SetTag in the repository with id repoID.
func (tx *Tx) setTag(ctx context.Context, repoID int64, tag string, d oci.Digest, c Change) (oci.Digest, error) {
	var one int
	err := tx.queryRow(ctx, `SELECT 1 FROM repository_manifests WHERE repository_id = $1 AND digest = $2`+tx.forShare(),
		repoID, d).Scan(&one)
	if err == sql.ErrNoRows {
		return "", &MissingReferenceError{Kind: oci.KindManifest, Digest: d}
	}
	if err != nil {
		return "", err
	}
	return tx.moveTag(ctx, repoID, tag, d, c)
}

// DeleteTag ends a tag's live history row and returns where it pointed;
// the manifest stays. A tag that is not live is ErrNotFound.
func (tx *Tx) DeleteTag(ctx context.Context, repo, tag string, c Change) (oci.Digest, error) {
	id, err := tx.repositoryID(ctx, repo)
	if err != nil {
		return "", err
	}
	if err := tx.lockTags(ctx, id); err != nil {
		return "", err
	}
	var d oci.Digest
	var key []byte
	err = tx.queryRow(ctx, `SELECT manifest_digest, version_key FROM tags
		WHERE repository_id = $1 AND name = $2 AND ended_at IS NULL`+tx.forUpdate(), id, tag).Scan(&d, &key)
	if err != nil {
		return "", noRows(err)
	}
	if c.Expect != nil && *c.Expect != d {
		return "", &TagConflictError{Tag: tag, Current: d}
	}
	if c.MinNewer > 0 {
		var newer int
		if err := tx.queryRow(ctx, `SELECT count(*) FROM tags WHERE repository_id = $1 AND ended_at IS NULL
			AND version_key IS NOT NULL AND version_key > $2`, id, key).Scan(&newer); err != nil {
			return "", err
		}
		if key == nil || newer < c.MinNewer {
			return "", ErrKept
		}
	}
	if _, err = tx.exec(ctx, `UPDATE tags SET ended_at = `+endAt+`, ended_by = $2, end_action = $3
		WHERE repository_id = $4 AND name = $5 AND ended_at IS NULL`, tx.now, c.Actor, c.Action, id, tag); err != nil {
		return "", err
	}
	return d, tx.emit(ctx, id, Event{Action: c.Action, Repository: repo, Tag: tag, Digest: d, Previous: d, Actor: c.Actor}, key)
}

// RestoreTag points a deleted tag back at the manifest it pointed at when
// it was deleted, if that was at or after since (Unix nanoseconds) and the
// repository still has the manifest. A live tag is a *TagConflictError;
// nothing to restore is ErrNotFound.
func (tx *Tx) RestoreTag(ctx context.Context, repo, tag string, since int64, c Change) (oci.Digest, error) {
	id, err := tx.repositoryID(ctx, repo)
	if err != nil {
		return "", err
	}
	// Read without the lock (SetTag takes it after locking the manifest's
	// link); the swap below refuses a tag that became live meanwhile.
	var d oci.Digest
	var ended sql.NullInt64
	err = tx.queryRow(ctx, `SELECT manifest_digest, ended_at FROM tags WHERE repository_id = $1 AND name = $2
		ORDER BY id DESC LIMIT 1`, id, tag).Scan(&d, &ended)
	switch {
	case err != nil:
		return "", noRows(err)
	case !ended.Valid:
		return "", &TagConflictError{Tag: tag, Current: d}
	case ended.Int64 < since:
		return "", ErrNotFound
	}
	c.Action = ActionRestore
	c.Rules.RefuseLower = false // the number was accepted once; restoring is not a new push
	none := oci.Digest("")
	c.Expect = &none
	if _, err := tx.setTag(ctx, id, tag, d, c); err != nil {
		var missing *MissingReferenceError
		if errors.As(err, &missing) {
			return "", ErrNotFound
		}
		return "", err
	}
	return d, nil
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
	// VersionKey orders the tag among the repository's versions (the
	// bytes of oci.Version.Key); "" for a moving tag.
	VersionKey string
}

const tagEventColumns = `t.id, t.name, t.manifest_digest, t.started_at, COALESCE(t.ended_at, 0),
	t.actor, t.action, COALESCE(t.ended_by, ''), COALESCE(t.end_action, ''), t.version_key`

// TagHistoryPage returns up to n rows of a tag's history, newest first,
// starting below the row with id before (0: from the newest). A tag's rows
// are written in order under the tag's lock, so id order is time order.
func (db *DB) TagHistoryPage(ctx context.Context, repo, tag string, before int64, n int) ([]TagEvent, error) {
	return db.tagEvents(ctx, `SELECT `+tagEventColumns+`
		FROM tags t WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.name = $2 AND t.id < $3
		ORDER BY t.id DESC LIMIT $4`, repo, tag, below(before), n)
}

// RepositoryHistoryPage returns up to n history rows of the repository's
// tags that started or ended in [since, until) (Unix nanoseconds), newest
// first, starting below the row with id before (0: from the newest).
func (db *DB) RepositoryHistoryPage(ctx context.Context, repo string, since, until, before int64, n int) ([]TagEvent, error) {
	return db.tagEvents(ctx, `SELECT `+tagEventColumns+`
		FROM tags t WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.id < $2
		AND ((t.started_at >= $3 AND t.started_at < $4) OR (t.ended_at >= $3 AND t.ended_at < $4))
		ORDER BY t.id DESC LIMIT $5`, repo, below(before), since, until, n)
}

func below(id int64) int64 {
	if id <= 0 {
		return math.MaxInt64
	}
	return id
}

// Versions returns up to n live numbered tags of the repository, newest
// first, after the version whose key is after (nil: from the newest). The
// keys must be those of the repository's versioning (EnsureVersionKeys).
func (db *DB) Versions(ctx context.Context, repo string, after []byte, n int) ([]TagEvent, error) {
	if after == nil {
		return db.tagEvents(ctx, `SELECT `+tagEventColumns+` FROM tags t
			WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.ended_at IS NULL
			AND t.version_key IS NOT NULL ORDER BY t.version_key DESC LIMIT $2`, repo, n)
	}
	return db.tagEvents(ctx, `SELECT `+tagEventColumns+` FROM tags t
		WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.ended_at IS NULL
		AND t.version_key IS NOT NULL AND t.version_key < $2 ORDER BY t.version_key DESC LIMIT $3`, repo, after, n)
}

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
	// Bounds that keep every row stand in for absent ones, so that the
	// query text, and its prepared statement, is always the same.
	startedBefore, after := int64(math.MaxInt64), int64(math.MinInt64)
	if !f.Before.IsZero() {
		startedBefore = UnixNanos(f.Before)
	}
	if !f.After.IsZero() {
		after = UnixNanos(f.After)
	}
	rows, err := db.query(ctx, tagDescriptorsQuery, repo, tag, below(before), n, startedBefore, after, string(f.Digest))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TagDescriptor
	for rows.Next() {
		var d TagDescriptor
		if err := scanTagEvent(rows, &d.TagEvent, &d.MediaType, &d.Size); err != nil {
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

// HighestVersion returns the history row of the highest version the
// repository has had, live or deleted (keys of deleted tags are those of
// the ordering when they were deleted); ErrNotFound if none.
func (db *DB) HighestVersion(ctx context.Context, repo string) (TagEvent, error) {
	rows, err := db.tagEvents(ctx, `SELECT `+tagEventColumns+` FROM tags t
		WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.version_key IS NOT NULL
		ORDER BY t.version_key DESC, t.id DESC LIMIT 1`, repo)
	if err != nil || len(rows) == 0 {
		return TagEvent{}, orNotFound(err)
	}
	return rows[0], nil
}

// The states of tags TagStates lists.
const (
	TagsLive    = "live"
	TagsDeleted = "deleted"
	TagsAll     = "all"
)

// TagStates returns up to n tags of the repository after the name after, in
// lexical order, each as its latest history row: live tags (state
// TagsLive), deleted ones (TagsDeleted), or both (TagsAll).
func (db *DB) TagStates(ctx context.Context, repo, state, after string, n int) ([]TagEvent, error) {
	if state == TagsLive {
		return db.tagEvents(ctx, `SELECT `+tagEventColumns+` FROM tags t
			WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.ended_at IS NULL AND t.name > $2
			ORDER BY t.name LIMIT $3`, repo, after, n)
	}
	deleted := state == TagsDeleted
	return db.tagEvents(ctx, `SELECT `+tagEventColumns+` FROM tags t
		WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.name > $2
		AND t.id = (SELECT max(u.id) FROM tags u WHERE u.repository_id = t.repository_id AND u.name = t.name)
		AND ($3 = 0 OR t.ended_at IS NOT NULL)
		ORDER BY t.name LIMIT $4`, repo, after, boolInt(deleted), n)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// VersionKeys returns the version keys of the repository's live numbered
// tags, newest first.
func (db *DB) VersionKeys(ctx context.Context, repo string) ([][]byte, error) {
	rows, err := db.query(ctx, `SELECT t.version_key FROM tags t
		WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1) AND t.ended_at IS NULL
		AND t.version_key IS NOT NULL ORDER BY t.version_key DESC`, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
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
		if err := scanTagEvent(rows, &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// scanTagEvent scans the tagEventColumns of a row into e, and the columns
// that follow them into more.
func scanTagEvent(r row, e *TagEvent, more ...any) error {
	var key []byte
	dest := append([]any{&e.ID, &e.Tag, &e.Digest, &e.Start, &e.End, &e.Actor, &e.Action, &e.EndedBy, &e.EndAction, &key}, more...)
	if err := r.Scan(dest...); err != nil {
		return err
	}
	e.VersionKey = string(key)
	return nil
}
