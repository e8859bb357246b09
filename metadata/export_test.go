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
