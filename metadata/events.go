package metadata

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/berthhq/berth/oci"
	"github.com/jackc/pgx/v5"
)

// Event is a change to a tag or manifest that webhooks announce. It is
// written to the outbox in the transaction that makes the change.
type Event struct {
	ID         string     `json:"id"`   // unique and stable: the webhook-id of every delivery of it
	Seq        int64      `json:"-"`    // the outbox row; within a repository, in commit order
	Time       int64      `json:"time"` // Unix nanoseconds
	Action     string     `json:"action"`
	Repository string     `json:"repository"`
	Tag        string     `json:"tag,omitempty"` // "" for a manifest delete
	Digest     oci.Digest `json:"digest"`
	Previous   oci.Digest `json:"previous,omitempty"` // where the tag pointed before ("" if nowhere)
	MediaType  string     `json:"mediaType"`          // of the manifest Digest names
	Size       int64      `json:"size"`               // of that manifest
	Numbered   bool       `json:"numbered,omitempty"` // the tag is a version under the repository's ordering
	Newest     bool       `json:"newest,omitempty"`   // and, after the change, the newest live one
	Actor      string     `json:"actor,omitempty"`
}

// The actions of events that are not tag history.
const (
	// ActionManifestDelete: a manifest deleted by digest (tag history
	// records the tags it ended as deletes).
	ActionManifestDelete = "manifest-delete"
	// ActionBlobPush and ActionBlobPull: a blob uploaded (or mounted) into
	// a repository, and one served from it. Only webhooks that ask for
	// them get them.
	ActionBlobPush = "blob-push"
	ActionBlobPull = "blob-pull"
)

// Router picks the webhooks that want an event, by name, from the enabled
// ones. The notify package provides it; metadata stores what it picks.
type Router func(e Event, hooks []Webhook) []string

// emit writes an event to the outbox, with a delivery for each webhook the
// router picks; an event no webhook wants is not written. key is the
// tag's version key (nil for a moving tag), to tell whether it is newest.
func (tx *Tx) emit(ctx context.Context, repoID int64, e Event, key []byte) error {
	if tx.db.route == nil {
		return nil
	}
	// FOR KEY SHARE: a webhook being deleted waits for this transaction,
	// and one deleted first is not routed to (see DeleteWebhook).
	hooks, err := tx.db.webhooks(ctx, tx.tx, `WHERE disabled_at IS NULL`, tx.rowLock(" FOR KEY SHARE"))
	if err != nil || len(hooks) == 0 {
		return err
	}
	if err := tx.queryRow(ctx, `SELECT r.name, m.media_type, m.size FROM repositories r, manifests m
		WHERE r.id = $1 AND m.digest = $2`, repoID, e.Digest).Scan(&e.Repository, &e.MediaType, &e.Size); err != nil {
		return err
	}
	if key != nil {
		// Newest: live after the change (a deleted tag is not, even if it
		// was the newest) with no live version newer.
		var newer, live int
		if err := tx.queryRow(ctx, `SELECT
			(SELECT count(*) FROM tags WHERE repository_id = $1 AND ended_at IS NULL
				AND version_key IS NOT NULL AND version_key > $2),
			(SELECT count(*) FROM tags WHERE repository_id = $1 AND name = $3 AND ended_at IS NULL)`,
			repoID, key, e.Tag).Scan(&newer, &live); err != nil {
			return err
		}
		e.Numbered, e.Newest = true, live > 0 && newer == 0
	}
	return tx.writeEvent(ctx, e, tx.db.route(e, hooks))
}

// writeEvent writes an event and its deliveries to the webhooks named.
func (tx *Tx) writeEvent(ctx context.Context, e Event, names []string) error {
	if len(names) == 0 {
		return nil
	}
	e.ID, e.Time = newEventID(), tx.now
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	// Under lockTags: the repository's events take their seq in commit order.
	var seq int64
	if err := tx.queryRow(ctx, `INSERT INTO events (id, created_at, repository, body) VALUES ($1, $2, $3, $4)
		RETURNING seq`, e.ID, e.Time, e.Repository, string(body)).Scan(&seq); err != nil {
		return err
	}
	for _, name := range names {
		// Behind a pending delivery, a new one is queued rather than due:
		// the settling of the one ahead makes it due (RecordAttempt). So the
		// due deliveries are the heads of their lines, however long a line
		// grows behind a failing receiver, and claiming stays cheap.
		// Only for a webhook that still exists: blob events are routed
		// from a list that may be a second old.
		if _, err := tx.exec(ctx, `INSERT INTO deliveries (event_seq, webhook, repository, next_at, due_since, created_at)
			SELECT $1, $2, $3, CASE WHEN EXISTS (SELECT 1 FROM deliveries WHERE webhook = $2 AND repository = $3
				AND state = 'pending') THEN CAST($5 AS BIGINT) ELSE CAST($4 AS BIGINT) END, $4, $4
			WHERE EXISTS (SELECT 1 FROM webhooks WHERE name = $2 AND disabled_at IS NULL)`,
			seq, name, e.Repository, tx.now, queued); err != nil {
			return err
		}
	}
	return tx.outboxChanged(ctx)
}

// EmitBlobEvent writes a blob event (ActionBlobPush, ActionBlobPull) to
// the outbox, in a transaction of its own, if a webhook wants it: for a
// pull, which changes nothing. Repository, Digest and Size must be set.
func (db *DB) EmitBlobEvent(ctx context.Context, e Event) error {
	names, err := db.blobRoute(ctx, e)
	if err != nil || len(names) == 0 {
		return err
	}
	return db.InTx(ctx, func(tx *Tx) error { return tx.writeBlobEvent(ctx, e, names) })
}

// EmitBlobEvent writes a blob event in the transaction of the change it
// announces (a blob linked by an upload or a mount).
func (tx *Tx) EmitBlobEvent(ctx context.Context, e Event) error {
	names, err := tx.db.blobRoute(ctx, e)
	if err != nil || len(names) == 0 {
		return err
	}
	return tx.writeBlobEvent(ctx, e, names)
}

// blobRoute picks the webhooks that want a blob event, from the enabled
// ones as read within the last second (writeEvent skips any gone since).
func (db *DB) blobRoute(ctx context.Context, e Event) ([]string, error) {
	if db.route == nil {
		return nil, nil
	}
	hooks, err := db.enabledWebhooks(ctx)
	if err != nil || len(hooks) == 0 {
		return nil, err
	}
	return db.route(e, hooks), nil
}

func (tx *Tx) writeBlobEvent(ctx context.Context, e Event, names []string) error {
	id, err := tx.repositoryID(ctx, e.Repository)
	if err != nil {
		return err
	}
	if err := tx.lockTags(ctx, id); err != nil { // in seq order with the repository's tag events
		return err
	}
	return tx.writeEvent(ctx, e, names)
}

// enabledWebhooks returns the enabled webhooks as read within the last
// second: a blob event comes with every pull, and the list rarely changes.
func (db *DB) enabledWebhooks(ctx context.Context) ([]Webhook, error) {
	if c := db.hooks.Load(); c != nil && time.Since(c.read) < time.Second {
		return c.hooks, nil
	}
	hooks, err := db.webhooks(ctx, db.read, `WHERE disabled_at IS NULL`, "")
	if err == nil {
		db.hooks.Store(&webhookList{time.Now(), hooks})
	}
	return hooks, err
}

type webhookList struct {
	read  time.Time
	hooks []Webhook
}

// outboxChanged makes the commit wake the dispatchers: this process's
// through OutboxWritten, every replica's through a PostgreSQL notification
// (delivered at commit, and not at all on rollback).
func (tx *Tx) outboxChanged(ctx context.Context) error {
	tx.emitted = true
	if !tx.db.dialect.rowLocks {
		return nil
	}
	_, err := tx.exec(ctx, `SELECT pg_notify('`+outboxChannel+`', '')`)
	return err
}

// queued is the next_at of a delivery waiting behind another.
const queued = math.MaxInt64

// outboxChannel is the PostgreSQL notification channel of new deliveries.
const outboxChannel = "berth_outbox"

func newEventID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "evt_" + hex.EncodeToString(b)
}

// OutboxWritten receives a value after a transaction that wrote to the
// outbox commits, in this process or, on PostgreSQL, in any replica.
// Values coalesce: one receive may stand for many commits.
func (db *DB) OutboxWritten() <-chan struct{} {
	if db.pgConfig != nil {
		db.listenOnce.Do(func() { db.stopListen = db.listen(db.pgConfig) })
	}
	return db.outbox
}

// listen relays PostgreSQL notifications of new deliveries to
// OutboxWritten until stopped, reconnecting when its connection drops.
func (db *DB) listen(cfg *pgx.ConnConfig) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err == nil {
				_, err = conn.Exec(ctx, "LISTEN "+outboxChannel)
				db.outboxWritten() // for what committed while nobody listened
				for err == nil {
					if _, err = conn.WaitForNotification(ctx); err == nil {
						db.outboxWritten()
					}
				}
				conn.Close(context.Background())
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (db *DB) outboxWritten() {
	select {
	case db.outbox <- struct{}{}:
	default:
	}
}

// Webhook is a stored webhook endpoint. Body is the endpoint as JSON, which
// only the notify package reads.
type Webhook struct {
	Name           string
	Body           string
	Source         string // config or api
	Created        int64
	Updated        int64
	Disabled       int64 // when it was disabled (410 Gone, or by hand); 0 if enabled
	DisabledReason string
	Failures       int64 // consecutive failed attempts
	PausedUntil    int64
}

const webhookColumns = `SELECT name, body, source, created_at, updated_at, COALESCE(disabled_at, 0), disabled_reason,
	failures, paused_until FROM webhooks `

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (db *DB) webhooks(ctx context.Context, q querier, where, lock string, args ...any) ([]Webhook, error) {
	rows, err := q.QueryContext(ctx, webhookColumns+where+` ORDER BY name`+lock, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Webhook
	for rows.Next() {
		var w Webhook
		if err := rows.Scan(&w.Name, &w.Body, &w.Source, &w.Created, &w.Updated, &w.Disabled, &w.DisabledReason,
			&w.Failures, &w.PausedUntil); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// Webhooks returns every webhook, by name.
func (db *DB) Webhooks(ctx context.Context) ([]Webhook, error) {
	return db.webhooks(ctx, db.read, "", "")
}

// Webhook returns one webhook, locked until the transaction ends, or
// ErrNotFound: for a change that depends on what is stored.
func (tx *Tx) Webhook(ctx context.Context, name string) (Webhook, error) {
	ws, err := tx.db.webhooks(ctx, tx.tx, `WHERE name = $1`, tx.forUpdate(), name)
	if err != nil || len(ws) == 0 {
		return Webhook{}, orNotFound(err)
	}
	return ws[0], nil
}

// GetWebhook returns one webhook, or ErrNotFound.
func (db *DB) GetWebhook(ctx context.Context, name string) (Webhook, error) {
	ws, err := db.webhooks(ctx, db.read, `WHERE name = $1`, "", name)
	if err != nil || len(ws) == 0 {
		return Webhook{}, orNotFound(err)
	}
	return ws[0], nil
}

func orNotFound(err error) error {
	if err == nil {
		return ErrNotFound
	}
	return err
}

// PutWebhook creates or replaces a webhook's endpoint; its state (enabled,
// failures) stays.
func (tx *Tx) PutWebhook(ctx context.Context, name, body, source string) error {
	_, err := tx.exec(ctx, `INSERT INTO webhooks (name, body, source, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (name) DO UPDATE SET body = excluded.body, source = excluded.source, updated_at = excluded.updated_at`,
		name, body, source, tx.now)
	return err
}

// CreateWebhook creates a webhook; it reports false, and changes nothing,
// if one has the name already.
func (tx *Tx) CreateWebhook(ctx context.Context, name, body, source string) (bool, error) {
	res, err := tx.exec(ctx, `INSERT INTO webhooks (name, body, source, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (name) DO NOTHING`, name, body, source, tx.now)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// DeleteWebhook removes a webhook with its deliveries and their log.
func (tx *Tx) DeleteWebhook(ctx context.Context, name string) error {
	// Locked first, so that a tag change routing to the webhook (which
	// key-share locks it) finishes before its deliveries are deleted here,
	// and one starting after sees it gone.
	var one int
	if err := tx.queryRow(ctx, `SELECT 1 FROM webhooks WHERE name = $1`+tx.forUpdate(), name).Scan(&one); err != nil {
		return noRows(err)
	}
	if _, err := tx.exec(ctx, `DELETE FROM delivery_attempts WHERE delivery_id IN
		(SELECT id FROM deliveries WHERE webhook = $1)`, name); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, `DELETE FROM deliveries WHERE webhook = $1`, name); err != nil {
		return err
	}
	res, err := tx.exec(ctx, `DELETE FROM webhooks WHERE name = $1`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetWebhookEnabled enables a webhook (clearing its failures and pause) or
// disables it, saying why.
func (tx *Tx) SetWebhookEnabled(ctx context.Context, name string, enabled bool, reason string) error {
	q := `UPDATE webhooks SET disabled_at = NULL, disabled_reason = '', failures = 0, paused_until = 0 WHERE name = $1`
	args := []any{name}
	if !enabled {
		q = `UPDATE webhooks SET disabled_at = $2, disabled_reason = $3 WHERE name = $1`
		args = append(args, tx.now, reason)
	}
	res, err := tx.exec(ctx, q, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// The states of a delivery.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead"
)

// Delivery is an event to deliver to one webhook.
type Delivery struct {
	ID         int64
	Webhook    string
	Repository string
	State      string
	Attempts   int64
	NextAt     int64 // Unix nanoseconds
	Created    int64
	DueSince   int64 // when it last became due (created, reached the head of its line, or redelivered)
	Claim      int64 // the claim this copy was handed out under (ClaimDeliveries); RecordAttempt checks it
	Done       int64 // when it was delivered or given up; 0 while pending
	Event      Event
	LastStatus int64 // the status of the last attempt (0: none, or no answer)
}

const deliveryColumns = `SELECT d.id, d.webhook, d.repository, d.state, d.attempts, d.next_at, d.created_at,
	d.due_since, d.claimed_until, COALESCE(d.done_at, 0), e.seq, e.body,
	COALESCE((SELECT a.status FROM delivery_attempts a WHERE a.delivery_id = d.id AND a.attempt = d.attempts), 0)
	FROM deliveries d JOIN events e ON e.seq = d.event_seq `

func scanDeliveries(rows *sql.Rows, err error) ([]Delivery, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var body string
		if err := rows.Scan(&d.ID, &d.Webhook, &d.Repository, &d.State, &d.Attempts, &d.NextAt, &d.Created, &d.DueSince,
			&d.Claim, &d.Done, &d.Event.Seq, &body, &d.LastStatus); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &d.Event); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDeliveries claims up to n deliveries that are due, for lease: for
// each webhook and repository, only the oldest pending delivery, so that
// deliveries stay in order; none of a disabled or paused webhook; none
// another dispatcher holds. A claim that is not settled (RecordAttempt)
// within its lease is claimed again.
func (db *DB) ClaimDeliveries(ctx context.Context, lease time.Duration, n int) ([]Delivery, error) {
	var claimed []Delivery
	err := db.InTx(ctx, func(tx *Tx) error {
		// Only heads of lines are due (writeEvent queues the rest), so the
		// due ones are few however long the lines; the NOT EXISTS keeps a
		// line in order when a redelivery puts an older one back in front.
		rows, err := tx.tx.QueryContext(ctx, `SELECT d.id FROM deliveries d JOIN webhooks w ON w.name = d.webhook
			WHERE d.state = 'pending' AND d.next_at <= $1 AND d.claimed_until <= $1
			AND w.disabled_at IS NULL AND w.paused_until <= $1
			AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.webhook = d.webhook AND p.repository = d.repository
				AND p.state = 'pending' AND p.id < d.id)
			ORDER BY d.id LIMIT $2`+tx.rowLock(" FOR UPDATE OF d SKIP LOCKED"), tx.now, n)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		claimed = claimed[:0]
		for _, id := range ids {
			if _, err := tx.exec(ctx, `UPDATE deliveries SET claimed_until = $1 WHERE id = $2`,
				tx.now+int64(lease), id); err != nil {
				return err
			}
			ds, err := scanDeliveries(tx.tx.QueryContext(ctx, deliveryColumns+`WHERE d.id = $1`, id))
			if err != nil {
				return err
			}
			claimed = append(claimed, ds...)
		}
		return nil
	})
	if err != nil {
		return nil, err // rolled back: nothing is claimed
	}
	return claimed, nil
}

// Attempt is one try at a delivery.
type Attempt struct {
	Number   int64
	At       int64 // Unix nanoseconds
	Status   int64 // the HTTP status; 0 when there was none
	Latency  time.Duration
	Response string // the start of the body, or the error
}

// Outcome is what a dispatcher decided after an attempt.
type Outcome struct {
	State  string // DeliveryDelivered, DeliveryDead, or DeliveryPending to retry
	NextAt int64  // when to retry, for DeliveryPending
	// For the webhook: Disable says why to disable it (410 Gone); else a
	// failure counts towards pausing it, PauseAfter failures in a row
	// pausing it until PauseUntil (PauseAfter 0: never).
	Disable    string
	PauseAfter int64
	PauseUntil int64
}

// ErrNotClaimed: the delivery was settled by another dispatcher meanwhile
// (its claim had expired).
var ErrNotClaimed = errors.New("metadata: the delivery is no longer pending")

// RecordAttempt logs an attempt at a delivery and settles it as out says.
// It reports whether this attempt's failure paused the webhook.
func (db *DB) RecordAttempt(ctx context.Context, d Delivery, a Attempt, out Outcome) (paused bool, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		settled := out.State != DeliveryPending
		if settled {
			// The next delivery of the line becomes due below; under the
			// lock that queues deliveries (writeEvent), so that none is
			// queued behind this one unseen.
			id, err := tx.repositoryID(ctx, d.Repository)
			if err == nil {
				err = tx.lockTags(ctx, id)
			}
			if err != nil {
				return err
			}
		}
		// Only under the claim it was handed out with: one that lapsed and
		// was claimed again, or a redelivered copy, is settled by its holder.
		var attempts int64
		err := tx.queryRow(ctx, `SELECT attempts FROM deliveries WHERE id = $1 AND webhook = $2 AND state = 'pending'
			AND claimed_until = $3`+tx.forUpdate(), d.ID, d.Webhook, d.Claim).Scan(&attempts)
		if err == sql.ErrNoRows {
			return ErrNotClaimed
		}
		if err != nil {
			return err
		}
		attempts++
		if _, err := tx.exec(ctx, `INSERT INTO delivery_attempts (delivery_id, attempt, at, status, latency, response)
			VALUES ($1, $2, $3, $4, $5, $6)`, d.ID, attempts, a.At, a.Status, int64(a.Latency), a.Response); err != nil {
			return err
		}
		var done any
		if settled {
			done = tx.now
		}
		if _, err := tx.exec(ctx, `UPDATE deliveries SET state = $1, attempts = $2, next_at = $3, claimed_until = 0,
			done_at = $4 WHERE id = $5`, out.State, attempts, out.NextAt, done, d.ID); err != nil {
			return err
		}
		if settled {
			if _, err := tx.exec(ctx, `UPDATE deliveries SET next_at = $1, due_since = $1 WHERE next_at = $2 AND id =
				(SELECT min(id) FROM deliveries WHERE webhook = $3 AND repository = $4 AND state = 'pending')`,
				tx.now, queued, d.Webhook, d.Repository); err != nil {
				return err
			}
		}
		switch {
		case out.State == DeliveryDelivered:
			_, err = tx.exec(ctx, `UPDATE webhooks SET failures = 0 WHERE name = $1`, d.Webhook)
		case out.Disable != "":
			_, err = tx.exec(ctx, `UPDATE webhooks SET disabled_at = $1, disabled_reason = $2 WHERE name = $3`,
				tx.now, out.Disable, d.Webhook)
		default:
			// A failure while the webhook is paused already (an attempt
			// made before the pause) counts, but neither pauses it again
			// nor extends the pause.
			var failures, until int64
			// NO KEY: pushes key-share lock the row (emit) and need not wait.
			if err = tx.queryRow(ctx, `SELECT failures, paused_until FROM webhooks WHERE name = $1`+tx.rowLock(" FOR NO KEY UPDATE"),
				d.Webhook).Scan(&failures, &until); err != nil {
				break
			}
			failures++
			paused = out.PauseAfter > 0 && failures >= out.PauseAfter && until <= tx.now
			if paused {
				until = out.PauseUntil
			}
			_, err = tx.exec(ctx, `UPDATE webhooks SET failures = $1, paused_until = $2 WHERE name = $3`,
				failures, until, d.Webhook)
		}
		return noRows(err)
	})
	return paused, err
}

// Deliveries returns up to n deliveries of a webhook, newest first, below
// the id before (0: from the newest).
func (db *DB) Deliveries(ctx context.Context, webhook string, before int64, n int) ([]Delivery, error) {
	return scanDeliveries(db.query(ctx, deliveryColumns+`WHERE d.webhook = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3`,
		webhook, below(before), n))
}

// Attempts returns the attempts at a delivery of a webhook, oldest first.
func (db *DB) Attempts(ctx context.Context, webhook string, delivery int64) ([]Attempt, error) {
	rows, err := db.query(ctx, `SELECT a.attempt, a.at, a.status, a.latency, a.response FROM delivery_attempts a
		JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook = $1 AND a.delivery_id = $2 ORDER BY a.attempt`,
		webhook, delivery)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var a Attempt
		var latency int64
		if err := rows.Scan(&a.Number, &a.At, &a.Status, &latency, &a.Response); err != nil {
			return nil, err
		}
		a.Latency = time.Duration(latency)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Redeliver makes a delivery of a webhook pending and due now, whatever
// became of it; it is ErrNotFound if the webhook has no such delivery.
func (tx *Tx) Redeliver(ctx context.Context, webhook string, delivery int64) error {
	// A claim still running stays: the copy in flight settles it, and no
	// second copy goes out meanwhile.
	res, err := tx.exec(ctx, `UPDATE deliveries SET state = 'pending', next_at = $1, due_since = $1, done_at = NULL,
		claimed_until = CASE WHEN claimed_until > $1 THEN claimed_until ELSE 0 END
		WHERE id = $2 AND webhook = $3`, tx.now, delivery, webhook)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return tx.outboxChanged(ctx)
}

// PendingDeliveries counts the deliveries not yet delivered or given up.
func (db *DB) PendingDeliveries(ctx context.Context) (int64, error) {
	var n int64
	err := db.queryRow(ctx, `SELECT count(*) FROM deliveries WHERE state = 'pending'`).Scan(&n)
	return n, err
}

// DeadDeliveries counts the deliveries given up (and not redelivered).
func (db *DB) DeadDeliveries(ctx context.Context) (int64, error) {
	var n int64
	err := db.queryRow(ctx, `SELECT count(*) FROM deliveries WHERE state = 'dead'`).Scan(&n)
	return n, err
}

// SyncConfigWebhooks makes the webhooks from the configuration file those
// given (name → endpoint body): it creates or replaces them, and deletes
// the ones the file no longer has. A webhook of the API with the name of
// one in the file becomes the file's.
func (tx *Tx) SyncConfigWebhooks(ctx context.Context, bodies map[string]string) error {
	stored, err := tx.db.webhooks(ctx, tx.tx, `WHERE source = 'config'`, "")
	if err != nil {
		return err
	}
	for _, w := range stored {
		if _, ok := bodies[w.Name]; !ok {
			if err := tx.DeleteWebhook(ctx, w.Name); err != nil {
				return err
			}
		}
	}
	for name, body := range bodies {
		if err := tx.PutWebhook(ctx, name, body, "config"); err != nil {
			return err
		}
	}
	return nil
}

// PruneOutbox forgets the deliveries delivered before before (Unix
// nanoseconds), with their attempts, and the events left with no delivery.
// Dead and pending deliveries stay. It returns how many deliveries went.
func (tx *Tx) PruneOutbox(ctx context.Context, before int64) (int64, error) {
	if _, err := tx.exec(ctx, `DELETE FROM delivery_attempts WHERE delivery_id IN
		(SELECT id FROM deliveries WHERE state = 'delivered' AND done_at < $1)`, before); err != nil {
		return 0, err
	}
	res, err := tx.exec(ctx, `DELETE FROM deliveries WHERE state = 'delivered' AND done_at < $1`, before)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	// Safety nets, cheap once an hour: deliveries of webhooks gone, and a
	// line whose head is still queued (nothing ahead to make it due).
	if _, err := tx.exec(ctx, `DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries d
		WHERE NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.name = d.webhook))`); err != nil {
		return 0, err
	}
	if _, err := tx.exec(ctx, `DELETE FROM deliveries WHERE NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.name = deliveries.webhook)`); err != nil {
		return 0, err
	}
	if _, err := tx.exec(ctx, `UPDATE deliveries SET next_at = $1, due_since = $1 WHERE state = 'pending' AND next_at = $2
		AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.webhook = deliveries.webhook
			AND p.repository = deliveries.repository AND p.state = 'pending' AND p.id < deliveries.id)`, tx.now, queued); err != nil {
		return 0, err
	}
	_, err = tx.exec(ctx, `DELETE FROM events WHERE created_at < $1
		AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq)`, before)
	return n, err
}
