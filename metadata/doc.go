// Package metadata keeps every fact about the registry that is not bytes:
// repositories, which blobs and manifests each repository links, manifests
// themselves (their exact bytes), what they reference, tags with their full
// history, and upload sessions. Facts live in SQL: embedded SQLite by
// default, PostgreSQL for replicas. Reads are single indexed queries; writes
// that belong together (a manifest, its references, the tag move and its
// history row) commit in one transaction through DB.InTx.
//
// Both databases run the same queries. SQLite has one writer at a time, so
// transactions are serial. On PostgreSQL, where replicas write at once under
// READ COMMITTED, the few writes that read before they write take locks: a
// transaction changing a tag holds an advisory lock on that tag and locks
// its live history row (FOR UPDATE); everything else is an upsert. InTx
// runs a transaction again when PostgreSQL aborts it for a deadlock or a
// serialization failure. Upload sessions are locked across replicas with
// session advisory locks (DB.LockUpload), and migrations run under one.
package metadata
