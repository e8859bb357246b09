package metadata

import (
	"context"
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
