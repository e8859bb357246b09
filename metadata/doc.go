// Package metadata keeps every fact about the registry that is not bytes:
// repositories, which blobs and manifests each repository links, manifests
// themselves (their exact bytes), what they reference, tags with their full
// history, and upload sessions. Facts live in SQL: embedded SQLite by
// default, PostgreSQL for replicas. Reads are single indexed queries; writes
// that belong together (a manifest, its references, the tag move and its
// history row) commit in one transaction through DB.InTx.
package metadata
