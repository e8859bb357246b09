package metadata

import "context"

// Storage figures: what the registry stores against what its repositories
// reference, which is what deduplication saves.
//
// A blob is live when its row is not being deleted (state 'deleting', set by
// garbage collection until its bytes are gone). Only live blobs count.
//
//   - Physical bytes: the sizes of the live blobs, each once, however many
//     repositories link it: the blob bytes storage holds.
//   - Logical bytes of a repository: the sizes of the distinct live blobs it
//     links (repository_blobs), each once in that repository: what it would
//     hold alone. A layer two of its manifests share counts once.
//   - Logical bytes of the registry: the sum of its repositories' logical
//     bytes, so a layer counts once per repository that links it.
//   - Shared bytes of a repository: the part of its logical bytes in blobs
//     that at least one other repository links too.
//
// Manifests are stored in the database, not as blobs, and count in none of
// these bytes.

// StorageStats is the registry's storage figures.
type StorageStats struct {
	Blobs         int64 // live blobs
	PhysicalBytes int64
	LogicalBytes  int64
	Repositories  int64
	Manifests     int64 // manifests stored, each once however many repositories link it
}

// DedupRatio is logical over physical bytes: how many times over the
// stored bytes would be held without deduplication; 0 when nothing is
// stored.
func (s StorageStats) DedupRatio() float64 {
	if s.PhysicalBytes == 0 {
		return 0
	}
	return float64(s.LogicalBytes) / float64(s.PhysicalBytes)
}

// RepositoryStats is one repository's storage figures.
type RepositoryStats struct {
	Name         string
	Blobs        int64 // live blobs linked
	LogicalBytes int64
	SharedBytes  int64
	Manifests    int64 // manifests linked
}

// StorageStats reads the registry's storage figures, in one query.
func (db *DB) StorageStats(ctx context.Context) (StorageStats, error) {
	var s StorageStats
	err := db.queryRow(ctx, `SELECT
		(SELECT count(*) FROM blobs WHERE state <> 'deleting'),
		(SELECT COALESCE(sum(size), 0) FROM blobs WHERE state <> 'deleting'),
		(SELECT COALESCE(sum(b.size), 0) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
			WHERE b.state <> 'deleting'),
		(SELECT count(*) FROM repositories),
		(SELECT count(*) FROM manifests)`).
		Scan(&s.Blobs, &s.PhysicalBytes, &s.LogicalBytes, &s.Repositories, &s.Manifests)
	return s, err
}

// RepositoryStatsOf returns the figures of the named repository, or
// ErrNotFound. The repository is found first, by the names' index, and only
// its links are read.
func (db *DB) RepositoryStatsOf(ctx context.Context, name string) (RepositoryStats, error) {
	var s RepositoryStats
	err := db.queryRow(ctx, `SELECT p.name, count(b.digest), COALESCE(sum(b.size), 0),
		COALESCE(sum(CASE WHEN EXISTS (SELECT 1 FROM repository_blobs o
			WHERE o.digest = b.digest AND o.repository_id <> p.id) THEN b.size ELSE 0 END), 0),
		(SELECT count(*) FROM repository_manifests rm WHERE rm.repository_id = p.id)
	FROM (SELECT id, name FROM repositories WHERE name = $1) p
	LEFT JOIN repository_blobs rb ON rb.repository_id = p.id
	LEFT JOIN blobs b ON b.digest = rb.digest AND b.state <> 'deleting'
	GROUP BY p.id, p.name`, name).Scan(&s.Name, &s.Blobs, &s.LogicalBytes, &s.SharedBytes, &s.Manifests)
	return s, noRows(err)
}
