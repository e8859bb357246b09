package metadata

// The list queries, for the tests that check their plans.
const (
	TagsQuery         = tagsQuery
	RepositoriesQuery = repositoriesQuery
)
