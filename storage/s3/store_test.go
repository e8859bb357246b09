package s3

import (
	"bytes"
	"errors"
	"testing"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
)

// TestStore runs an upload through storage.Store the way the registry does
// across replicas: each request on a new Store over a new Driver, resumed
// from the UploadState the previous request left, one request failing and
// discarding its bytes; then dedup of a blob that exists and a mismatch.
func TestStore(t *testing.T) {
	srv := testserver.S3(t)
	replica := func() *storage.Store { return storage.NewStore(newTest(t, options(srv))) }
	blob := random(64*mib + 5)
	digest := oci.FromBytes(blob)

	// Request 1 starts the upload and sends 20 MiB and a bit.
	up, err := replica().StartUpload(t.Context(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	st := send(t, up, blob[:20*mib+3])

	// Request 2 sends 30 MiB more, then fails: Discard restores the state.
	up, err = replica().ResumeUpload(t.Context(), "u1", st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.ReadFrom(bytes.NewReader(random(30 * mib))); err != nil {
		t.Fatal(err)
	}
	if err := up.Discard(t.Context()); err != nil {
		t.Fatalf("Discard: %v", err)
	}

	// Request 3 resumes from request 1's state, sends the rest and commits.
	store := replica()
	up, err = store.ResumeUpload(t.Context(), "u1", st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.ReadFrom(bytes.NewReader(blob[st.Size:])); err != nil {
		t.Fatal(err)
	}
	created, err := up.Commit(t.Context(), digest)
	if err != nil || !created {
		t.Fatalf("Commit = %v, %v; want true, nil", created, err)
	}
	wantBlob(t, replica(), digest, blob)

	// The same bytes again: nothing new is stored, the upload is gone.
	up, err = store.StartUpload(t.Context(), "u2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.ReadFrom(bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	if created, err := up.Commit(t.Context(), digest); err != nil || created {
		t.Fatalf("Commit of an existing blob = %v, %v; want false, nil", created, err)
	}

	// Bytes that do not match the digest are discarded.
	up, err = store.StartUpload(t.Context(), "u3")
	if err != nil {
		t.Fatal(err)
	}
	other := []byte("not the blob")
	if _, err := up.Write(other); err != nil {
		t.Fatal(err)
	}
	bad := oci.FromBytes([]byte("something else"))
	if _, err := up.Commit(t.Context(), bad); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("Commit with the wrong digest = %v, want ErrDigestMismatch", err)
	}
	if _, err := store.Stat(t.Context(), bad); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat of the mismatched digest = %v, want ErrNotFound", err)
	}

	wantBlob(t, store, digest, blob)
	if err := store.ListUploads(t.Context(), func(o storage.Object) error {
		t.Errorf("upload %s left behind", o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	keys, ups := bucketKeys(t, srv)
	if len(ups) != 0 || len(keys) != 1 || keys[0] != storage.BlobKey(digest) {
		t.Errorf("the bucket holds %q and uploads %q, want only the blob", keys, ups)
	}
}

// send writes data to up and ends the request as the registry does.
func send(t *testing.T, up *storage.Upload, data []byte) storage.UploadState {
	t.Helper()
	if _, err := up.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	st, err := up.State()
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	return st
}

func wantBlob(t *testing.T, s *storage.Store, d oci.Digest, data []byte) {
	t.Helper()
	if n, err := s.Stat(t.Context(), d); err != nil || n != int64(len(data)) {
		t.Fatalf("Stat(%s) = %d, %v; want %d", d, n, err, len(data))
	}
	r, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := storage.Verify(r, d); err != nil || n != int64(len(data)) {
		t.Errorf("reading %s back: %d bytes, %v", d, n, err)
	}
}

// TestPutBlob: a blob whose digest is known before its bytes goes straight
// to its key, as a multipart upload that appears only once the bytes are
// verified; wrong bytes leave nothing, not even an unfinished upload, and
// never disturb a blob already stored.
func TestPutBlob(t *testing.T) {
	srv := testserver.S3(t)
	d := newTest(t, options(srv))
	store := storage.NewStore(d)
	blob := random(20*mib + 7) // several parts
	digest := oci.FromBytes(blob)

	// Before Commit nothing is visible at the key, although parts are uploaded.
	w, err := d.Create(t.Context(), storage.BlobKey(digest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(blob[:12*mib]); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Stat(t.Context(), digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat while the object is being created = %v, want ErrNotFound", err)
	}
	if err := w.Cancel(t.Context()); err != nil {
		t.Fatal(err)
	}

	bad := oci.FromBytes([]byte("something else"))
	if _, err := store.PutBlob(t.Context(), "u1", bad, bytes.NewReader(blob)); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("PutBlob with the wrong digest = %v, want ErrDigestMismatch", err)
	}
	if keys, ups := bucketKeys(t, srv); len(keys) != 0 || len(ups) != 0 {
		t.Fatalf("after a mismatch the bucket holds %q and uploads %q", keys, ups)
	}

	put, err := store.PutBlob(t.Context(), "u2", digest, bytes.NewReader(blob))
	if err != nil || !put.Created || put.Size != int64(len(blob)) || put.Placed.IsZero() {
		t.Fatalf("PutBlob = %+v, %v", put, err)
	}
	wantBlob(t, store, digest, blob)
	// Forged bytes for a stored blob are refused, and the blob stays.
	if _, err := store.PutBlob(t.Context(), "u3", digest, bytes.NewReader(random(1*mib))); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("PutBlob of forged bytes = %v", err)
	}
	// A writer of the key that gives up leaves the stored blob alone.
	w, err = d.Create(t.Context(), storage.BlobKey(digest))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(blob[:6*mib])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantBlob(t, store, digest, blob)
	keys, ups := bucketKeys(t, srv)
	if len(ups) != 0 || len(keys) != 1 || keys[0] != storage.BlobKey(digest) {
		t.Errorf("the bucket holds %q and uploads %q, want only the blob (no copy, no staging)", keys, ups)
	}
}
