package metadata

import (
	"context"
	"encoding/json"
	"slices"
)

// The list queries, for the tests that check their plans.
const (
	TagsQuery         = tagsQuery
	RepositoriesQuery = repositoriesQuery
)

// TagHistory returns every row of a tag's history, oldest first, read
// through TagHistoryPage with pages of 1,000 (the tests compare it with
// smaller pages).
func (db *DB) TagHistory(ctx context.Context, repo, tag string) ([]TagEvent, error) {
	var all []TagEvent
	for before := int64(0); ; {
		page, err := db.TagHistoryPage(ctx, repo, tag, before, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < 1000 {
			break
		}
		before = page[len(page)-1].ID
	}
	slices.Reverse(all)
	return all, nil
}

// Waits measures how transactions of this handle wait for each other, for
// the tests that hold one open and must know when another is blocked
// behind it: it rises once one is. On PostgreSQL it is the number of the
// database's sessions waiting for a lock; on SQLite, the number of times
// a transaction has waited for the one write connection.
func (db *DB) Waits(ctx context.Context) (int64, error) {
	if !db.dialect.rowLocks {
		return db.write.Stats().WaitCount, nil
	}
	var n int64
	err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	return n, err
}

// Events returns every event in the outbox, in seq order, for the tests
// that check what was (or was not) written.
func (db *DB) Events(ctx context.Context) ([]Event, error) {
	rows, err := db.query(ctx, `SELECT seq, body FROM events ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var body string
		if err := rows.Scan(&e.Seq, &body); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// WriteEvent writes an event with deliveries to the webhooks named, for
// the tests and benchmarks that need many in one transaction.
func (tx *Tx) WriteEvent(ctx context.Context, e Event, names []string) error {
	return tx.writeEvent(ctx, e, names)
}
