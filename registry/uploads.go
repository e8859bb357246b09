package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/berthhq/berth/auth"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
)

// startUpload begins a blob upload: a cross-repository mount, a whole blob
// in one request, or an empty session for PATCH requests to fill.
//
// Spec: "Pushing blobs", POST /v2/<name>/blobs/uploads/.
func (reg *Registry) startUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	q := r.URL.Query()
	if q.Has("mount") {
		d, err := oci.ParseDigest(q.Get("mount"))
		if err != nil {
			return err
		}
		from := q.Get("from")
		if from != "" {
			if err := oci.ValidateName(from); err != nil {
				return err
			}
		}
		// A mount reads from: a token never asked about it is challenged
		// for it (Docker asks up front; other clients on this 401). One the
		// caller may not pull falls back to an upload, as an unknown blob.
		id := identity(r)
		if from != "" && id.Access != nil && !id.Asked(from) {
			return reg.refuse(r, id, []auth.Access{
				{Type: "repository", Name: rt.name, Actions: []string{"pull", "push"}},
				{Type: "repository", Name: from, Actions: []string{"pull"}}})
		}
		if from != "" && reg.auth.Allowed(id, from, auth.Pull) {
			err := reg.db.InTx(ctx, func(tx *metadata.Tx) error {
				size, err := tx.MountBlob(ctx, rt.name, from, d)
				if err != nil {
					return err
				}
				return tx.EmitBlobEvent(ctx, blobEvent(metadata.ActionBlobPush, rt.name, d, size))
			})
			if err == nil {
				reg.metrics.mounts.Inc()
				blobCreated(w, rt.name, d)
				return nil
			}
			if !errors.Is(err, metadata.ErrNotFound) && !errors.Is(err, metadata.ErrBlobDeleting) {
				return err
			}
		}
		// The source cannot lend the blob (or it is being collected): the spec says to fall back to
		// an ordinary upload session.
	}
	if q.Has("digest") {
		d, err := oci.ParseDigest(q.Get("digest"))
		if err != nil {
			return err
		}
		return reg.uploadWhole(w, r, rt.name, d)
	}
	id := newUploadID()
	if err := reg.db.InTx(ctx, func(tx *metadata.Tx) error { return tx.CreateUpload(ctx, rt.name, id, actor(r), reg.maxUploads) }); err != nil {
		return err
	}
	uploadProgress(w, http.StatusAccepted, rt.name, id, 0)
	return nil
}

// uploadWhole stores a blob sent in one POST. A blob that is already stored
// is only hashed, to prove the client has its bytes, and not written again.
func (reg *Registry) uploadWhole(w http.ResponseWriter, r *http.Request, name string, d oci.Digest) error {
	ctx := r.Context()
	body := &bodyReader{r: r.Body}
	put, err := reg.store.PutBlob(ctx, newUploadID(), d, body)
	if errors.Is(err, storage.ErrNotFound) {
		return errCollected
	}
	if err != nil {
		return body.blame(err)
	}
	size := put.Size
	if err := reg.db.InTx(ctx, func(tx *metadata.Tx) error {
		if err := reg.linkPlaced(ctx, tx, name, d, size, put.Placed); err != nil {
			return err
		}
		return tx.EmitBlobEvent(ctx, blobEvent(metadata.ActionBlobPush, name, d, size))
	}); err != nil {
		return err
	}
	if !put.Created {
		reg.metrics.deduplicated.Inc()
	}
	blobCreated(w, name, d)
	return nil
}

// linkPlaced links a blob whose bytes were last known in place at placed,
// unless that was longer ago than the link deadline: garbage collection
// deletes the bytes of a blob it found unrecorded, waits that deadline, and
// only then forgets it, so a link made later could name bytes already gone.
func (reg *Registry) linkPlaced(ctx context.Context, tx *metadata.Tx, name string, d oci.Digest, size int64, placed time.Time) error {
	if err := tx.LinkBlob(ctx, name, d, size); err != nil {
		return err
	}
	if time.Since(placed) > reg.linkDeadline {
		reg.log.WarnContext(ctx, "an upload took longer than the link deadline to record its blob; asking the client to retry",
			"repository", name, "digest", d, "deadline", reg.linkDeadline)
		return errCollected
	}
	return nil
}

// uploadStatus reports how many bytes an upload has.
//
// Spec: "Pushing a blob in chunks", GET /v2/<name>/blobs/uploads/<reference>.
func (reg *Registry) uploadStatus(w http.ResponseWriter, r *http.Request, rt route) error {
	return reg.withUpload(r, rt, func(u *metadata.UploadRecord) error {
		uploadProgress(w, http.StatusNoContent, rt.name, u.ID, u.Size)
		return nil
	})
}

// patchUpload appends a chunk to an upload. A chunk must start where the
// upload ends; one that leaves a gap or overlaps gets 416 and changes nothing.
//
// Spec: "Pushing a blob in chunks", PATCH /v2/<name>/blobs/uploads/<reference>.
func (reg *Registry) patchUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	return reg.withUpload(r, rt, func(u *metadata.UploadRecord) error {
		up, err := reg.appendChunk(r, rt.name, u)
		if err != nil {
			return err
		}
		st, err := up.State()
		// Close is what keeps the bytes for the next request (on S3 it
		// stores the part-sized remainder), so its failure fails the chunk.
		if cerr := up.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		err = reg.db.InTx(ctx, func(tx *metadata.Tx) error { return tx.SaveUpload(ctx, u.ID, u.Size, st.Size, st.Hash) })
		if errors.Is(err, metadata.ErrConflict) {
			return rangeError(rt.name, u.ID, u.Size, "the upload changed during this request")
		}
		if err != nil {
			return err
		}
		uploadProgress(w, http.StatusAccepted, rt.name, u.ID, st.Size)
		return nil
	})
}

// finishUpload appends an optional last chunk, verifies the digest and
// publishes the blob.
//
// Spec: "Pushing a blob in chunks", PUT /v2/<name>/blobs/uploads/<reference>?digest=<digest>.
func (reg *Registry) finishUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	d, err := oci.ParseDigest(r.URL.Query().Get("digest"))
	if err != nil {
		return err
	}
	return reg.withUpload(r, rt, func(u *metadata.UploadRecord) error {
		up, err := reg.appendChunk(r, rt.name, u)
		if err != nil {
			return err
		}
		size := up.Size()
		created, err := up.Commit(ctx, d)
		if errors.Is(err, storage.ErrDigestMismatch) {
			// Commit discarded the bytes; the session is over too.
			derr := reg.db.InTx(ctx, func(tx *metadata.Tx) error { return tx.DeleteUpload(ctx, u.ID) })
			return errors.Join(err, derr)
		}
		if err != nil {
			// The bytes and the session stay: the client's retry of this
			// PUT finishes the upload (storage may only have been busy).
			up.Close()
			return err
		}
		err = reg.db.InTx(ctx, func(tx *metadata.Tx) error {
			if err := reg.linkPlaced(ctx, tx, rt.name, d, size, up.Placed()); err != nil {
				return err
			}
			if err := tx.EmitBlobEvent(ctx, blobEvent(metadata.ActionBlobPush, rt.name, d, size)); err != nil {
				return err
			}
			return tx.DeleteUpload(ctx, u.ID)
		})
		if errors.Is(err, errCollected) || errors.Is(err, metadata.ErrBlobDeleting) {
			// The upload's bytes were published or dropped: the session
			// cannot finish, and the client must push the blob again.
			derr := reg.db.InTx(ctx, func(tx *metadata.Tx) error { return tx.DeleteUpload(ctx, u.ID) })
			return errors.Join(err, derr)
		}
		if err != nil {
			return err
		}
		if !created {
			reg.metrics.deduplicated.Inc()
		}
		blobCreated(w, rt.name, d)
		return nil
	})
}

// cancelUpload abandons an upload and frees its bytes.
//
// Spec: "Deleting an upload", DELETE /v2/<name>/blobs/uploads/<reference>.
func (reg *Registry) cancelUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	ctx := r.Context()
	return reg.withUpload(r, rt, func(u *metadata.UploadRecord) error {
		if err := reg.db.InTx(ctx, func(tx *metadata.Tx) error { return tx.DeleteUpload(ctx, u.ID) }); err != nil {
			return err
		}
		if err := reg.store.CancelUpload(ctx, u.ID); err != nil {
			return err
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// appendChunk checks the request's Content-Range against the upload and
// writes the body after the upload's bytes. The caller owns the returned
// upload; the metadata is not yet updated.
func (reg *Registry) appendChunk(r *http.Request, name string, u *metadata.UploadRecord) (*storage.Upload, error) {
	want := int64(-1)
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, err := parseContentRange(cr)
		if err != nil {
			return nil, newError(http.StatusBadRequest, codeBlobUploadInvalid, err.Error())
		}
		if start != u.Size {
			return nil, rangeError(name, u.ID, u.Size, fmt.Sprintf("chunk starts at %d, the upload has %d bytes", start, u.Size))
		}
		want = end - start + 1
		if r.ContentLength >= 0 && r.ContentLength != want {
			return nil, newError(http.StatusBadRequest, codeSizeInvalid,
				fmt.Sprintf("Content-Length %d does not match Content-Range %s", r.ContentLength, cr))
		}
	}
	ctx := r.Context()
	up, err := reg.store.ResumeUpload(ctx, u.ID, storage.UploadState{Size: u.Size, Hash: u.HashState})
	if err != nil {
		return nil, err
	}
	body := &bodyReader{r: r.Body}
	n, err := up.ReadFrom(body)
	if err == nil && want >= 0 && n != want {
		err = newError(http.StatusBadRequest, codeSizeInvalid, fmt.Sprintf("body has %d bytes, Content-Range says %d", n, want))
	}
	if err != nil {
		if derr := up.Discard(ctx); derr != nil {
			reg.log.WarnContext(ctx, "discarding a failed chunk", "upload", u.ID, "error", derr)
		}
		return nil, body.blame(err)
	}
	return up, nil
}

// withUpload loads an upload session and runs fn while holding the
// session's lock, so requests on one upload never interleave their bytes,
// whichever replica they reach.
func (reg *Registry) withUpload(r *http.Request, rt route, fn func(*metadata.UploadRecord) error) error {
	ctx := r.Context()
	unknown := newError(http.StatusNotFound, codeBlobUploadUnknown, "upload unknown to repository")
	if !uploadIDRE.MatchString(rt.arg) {
		return unknown
	}
	unlock, err := reg.db.LockUpload(ctx, rt.arg)
	if err != nil {
		return err
	}
	defer unlock()
	u, err := reg.db.Upload(ctx, rt.name, rt.arg)
	if errors.Is(err, metadata.ErrNotFound) {
		return unknown
	}
	if err != nil {
		return err
	}
	// A session is its opener's: another user with push here who learns
	// its id may not write, finish or cancel it.
	if reg.auth.Enabled() && u.Client != actor(r) {
		return unknown
	}
	return fn(u)
}

// uploadProgress answers a request that leaves an upload open.
func uploadProgress(w http.ResponseWriter, status int, name, id string, size int64) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	h.Set("Docker-Upload-UUID", id)
	h.Set("Range", uploadRange(size))
	h.Set("Content-Length", "0")
	w.WriteHeader(status)
}

// uploadRange is the Range header for an upload of size bytes: the inclusive
// range it holds, "0-0" when empty, as clients expect.
func uploadRange(size int64) string {
	return "0-" + strconv.FormatInt(max(size-1, 0), 10)
}

func rangeError(name, id string, size int64, msg string) *apiError {
	e := newError(http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid, msg)
	e.header = http.Header{
		"Location":           {"/v2/" + name + "/blobs/uploads/" + id},
		"Range":              {uploadRange(size)},
		"Docker-Upload-Uuid": {id},
	}
	return e
}

// parseContentRange reads a chunk's Content-Range: "<start>-<end>",
// inclusive, optionally prefixed by "bytes " or "bytes=" as some clients send.
func parseContentRange(s string) (start, end int64, err error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "bytes"), " ")
	s = strings.TrimPrefix(s, "=")
	a, b, ok := strings.Cut(s, "-")
	if ok {
		start, err = strconv.ParseInt(a, 10, 64)
	}
	if ok && err == nil {
		end, err = strconv.ParseInt(b, 10, 64)
	}
	if !ok || err != nil || start < 0 || end < start || a[0] == '+' || b[0] == '+' {
		return 0, 0, fmt.Errorf("invalid Content-Range %q", s)
	}
	return start, end, nil
}

var uploadIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func newUploadID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// bodyReader remembers a failure to read the request body, so an upload
// that fails can blame the client (400) or the server (500) correctly.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *bodyReader) blame(err error) error {
	var ae *apiError
	if b.err != nil && !errors.As(err, &ae) && !errors.Is(err, storage.ErrDigestMismatch) {
		return newError(http.StatusBadRequest, codeBlobUploadInvalid, "reading the request body: "+b.err.Error())
	}
	return err
}
