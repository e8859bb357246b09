// Package s3 is a storage.Driver over Amazon S3 and S3-compatible stores.
//
// Layout in the bucket, under the optional Prefix:
//
//	<prefix>/<key>                      committed objects (blobs/…, and uploads/<id> between Commit and Move)
//	<prefix>/.tails/<key>/<start>       a closed writer's unflushed bytes, from byte <start> of the upload
//	(multipart upload on <prefix>/<key>) an uncommitted writer's full parts
//
// A Writer is an S3 multipart upload that any process can continue, because
// its whole state lives in the bucket: full parts (PartSize bytes each) are
// uploaded as they fill, and Close stores the partial part that is left as a
// tail object. The tail's metadata names the upload and fingerprints the
// parts before it, so a resume keeps exactly the parts that tail follows and
// ignores any uploaded later by a writer that failed or was discarded. A
// resume can start at any offset inside a tail's bytes (or at its end);
// offsets that fall inside an uploaded part cannot be resumed, since S3
// cannot read back or truncate a part, and get storage.ErrInvalidOffset.
// Resuming also deletes the key's other tails (those past offset hold
// dropped bytes; earlier ones are superseded), so an offset below the start
// of the tail a writer last resumed from cannot be resumed either. The Store
// only resumes at sizes that a Close recorded, at or after the last resume,
// which are always resumable.
//
// Nothing is visible under <key> until Commit completes the multipart upload
// (or, for objects smaller than one part, puts the object whole); Move copies
// server-side and deletes the source, so the destination appears whole.
package s3
