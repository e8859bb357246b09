// Package storage keeps bytes, and only bytes: it has no idea what a
// repository or a tag is. A Driver is a backend (a local disk, S3); the Store
// lays content-addressed blobs and in-progress uploads out over any Driver:
//
//	<root>/
//	├── blobs/
//	│   └── sha256/
//	│       └── ab/
//	│           └── ab12…ef      one file per blob, named by its digest
//	└── uploads/
//	    └── <id>                 bytes of an upload in progress
//
// An upload hashes while it writes, can be resumed from its serialised state
// (by another process, after a restart), and becomes visible under a digest
// only when its bytes hash to that digest: it is written under uploads/ and
// moved into blobs/ in one atomic step. A blob that already exists is never
// written again.
package storage
