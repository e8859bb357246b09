package storage

import (
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/oci"
)

// ErrDigestMismatch: an upload's bytes do not hash to the digest the client claimed.
var ErrDigestMismatch = errors.New("storage: digest mismatch")

// Store keeps content-addressed blobs and their uploads over a Driver.
type Store struct {
	d Driver
}

// NewStore returns a Store over d.
func NewStore(d Driver) *Store { return &Store{d: d} }

// BlobKey is where the blob with digest d lives: blobs/<alg>/<first two hex>/<hex>.
func BlobKey(d oci.Digest) string {
	hex := d.Encoded()
	return fmt.Sprintf("blobs/%s/%s/%s", d.Algorithm(), hex[:2], hex)
}

// BlobsPrefix starts the key of every blob's bytes.
const BlobsPrefix = "blobs/"

// BlobDigest returns the digest whose BlobKey is key, or false when key is
// not where any blob lives.
func BlobDigest(key string) (oci.Digest, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0]+"/" != BlobsPrefix {
		return "", false
	}
	d, err := oci.ParseDigest(parts[1] + ":" + parts[3])
	if err != nil || BlobKey(d) != key {
		return "", false
	}
	return d, true
}

// ListBlobs calls fn for every object under blobs/, blob or not.
func (s *Store) ListBlobs(ctx context.Context, fn func(Object) error) error {
	return s.d.List(ctx, BlobsPrefix, fn)
}

// UploadsPrefix starts the key of every upload's bytes.
const UploadsPrefix = "uploads/"

func uploadKey(id string) string { return UploadsPrefix + id }

// ListUploads calls fn for the bytes of every upload in storage.
func (s *Store) ListUploads(ctx context.Context, fn func(Object) error) error {
	return s.d.List(ctx, UploadsPrefix, fn)
}

// Stat returns the size of a stored blob, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, d oci.Digest) (int64, error) {
	return s.d.Stat(ctx, BlobKey(d))
}

// Open returns a reader of a stored blob, or ErrNotFound.
func (s *Store) Open(ctx context.Context, d oci.Digest) (io.ReadSeekCloser, error) {
	return s.d.Open(ctx, BlobKey(d))
}

// Creator is a Driver that can write a new object straight to its key,
// where it appears at Commit and not before (S3: a multipart upload is
// invisible until completed). Close and Cancel of such a writer discard only
// its own bytes, never an object already at the key.
type Creator interface {
	Create(ctx context.Context, key string) (Writer, error)
}

// Stored is what PutBlob did.
type Stored struct {
	Size    int64
	Created bool // the bytes were written; false when the blob was stored already
	// Placed is when the blob's bytes were last known to be in place: just
	// before the existence check that found them, or just after the write
	// that put them there. Whoever records the blob measures from it (see
	// Upload.Placed).
	Placed time.Time
}

// PutBlob stores r's bytes as blob d, for uploads whose digest is known
// before the bytes arrive (one request). A blob already stored is only
// verified, not written (dedup). On a Creator the bytes go straight to the
// blob's key, since nothing is visible there before they are verified;
// elsewhere they are staged as upload id and moved.
func (s *Store) PutBlob(ctx context.Context, id string, d oci.Digest, r io.Reader) (Stored, error) {
	if _, err := oci.ParseDigest(string(d)); err != nil {
		return Stored{}, err
	}
	switch _, err := s.Stat(ctx, d); {
	case err == nil:
		n, err := Verify(r, d)
		if err != nil {
			return Stored{Size: n}, err
		}
		// Reading the body may take minutes: look again, so that Placed is
		// recent. Bytes collected meanwhile are ErrNotFound: the body is
		// spent, and the client must send it again.
		placed := time.Now()
		if _, err := s.Stat(ctx, d); err != nil {
			return Stored{Size: n}, fmt.Errorf("storage: blob %s went while its upload was verified: %w", d, err)
		}
		return Stored{Size: n, Placed: placed}, nil
	case !errors.Is(err, ErrNotFound):
		return Stored{}, err
	}
	c, ok := s.d.(Creator)
	if !ok {
		up, err := s.StartUpload(ctx, id)
		if err != nil {
			return Stored{}, err
		}
		if _, err := up.ReadFrom(r); err != nil {
			return Stored{}, errors.Join(err, up.Cancel(ctx))
		}
		created, err := up.Commit(ctx, d)
		return Stored{Size: up.Size(), Created: created, Placed: up.Placed()}, err
	}
	w, err := c.Create(ctx, BlobKey(d))
	if err != nil {
		return Stored{}, err
	}
	h := oci.NewHash(d.Algorithm())
	buf := copyBuffers.Get().(*[copyBufferSize]byte)
	defer copyBuffers.Put(buf)
	n, err := io.CopyBuffer(io.MultiWriter(w, h), r, buf[:])
	if err == nil && oci.DigestOf(d.Algorithm(), h) != d {
		err = ErrDigestMismatch
	}
	placed := time.Now() // before the bytes can appear at the key
	if err == nil {
		err = w.Commit(ctx)
	}
	if err != nil {
		return Stored{Size: n}, errors.Join(err, w.Cancel(ctx))
	}
	return Stored{Size: n, Created: true, Placed: placed}, nil
}

// Presigner is a Driver whose objects clients can fetch directly, by a URL
// that grants access for a while (S3's presigned URLs).
type Presigner interface {
	PresignGet(ctx context.Context, key string, expiry time.Duration) (string, error)
}

// RedirectURL returns a URL from which a client can fetch blob d directly
// for the next expiry, or "" when the driver serves bytes only through Berth.
func (s *Store) RedirectURL(ctx context.Context, d oci.Digest, expiry time.Duration) (string, error) {
	p, ok := s.d.(Presigner)
	if !ok {
		return "", nil
	}
	return p.PresignGet(ctx, BlobKey(d), expiry)
}

// Delete removes a blob's bytes. Metadata must have forgotten it first.
func (s *Store) Delete(ctx context.Context, d oci.Digest) error {
	return s.d.Delete(ctx, BlobKey(d))
}

// UploadState is what a later request, or another process, needs to continue
// an upload: how many bytes it has and the sha256 state after them.
type UploadState struct {
	Size int64
	Hash []byte
}

// Upload is a blob being written. It is not safe for concurrent use; the
// registry serialises requests on one upload.
type Upload struct {
	s     *Store
	id    string
	w     Writer
	h     hash.Hash
	start UploadState // where this writer began, for Discard
	// placed is when Commit last knew the blob's bytes in place.
	placed time.Time
}

// StartUpload begins an empty upload under id.
func (s *Store) StartUpload(ctx context.Context, id string) (*Upload, error) {
	w, err := s.d.Writer(ctx, uploadKey(id), 0)
	if err != nil {
		return nil, err
	}
	return &Upload{s: s, id: id, w: w, h: sha256.New()}, nil
}

// ResumeUpload continues the upload id from a state returned by Upload.State.
func (s *Store) ResumeUpload(ctx context.Context, id string, st UploadState) (*Upload, error) {
	h := sha256.New()
	if st.Size > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.Hash); err != nil {
			return nil, fmt.Errorf("storage: upload %s: hash state: %w", id, err)
		}
	}
	key := uploadKey(id)
	w, err := s.d.Writer(ctx, key, st.Size)
	if errors.Is(err, ErrInvalidOffset) && st.Size > 0 {
		// The bytes may be committed already, by a final PUT whose commit
		// went through before a later step failed: still under the upload's
		// key, or already moved to their blob. Commit verifies them.
		size, serr := s.d.Stat(ctx, key)
		if (serr == nil && size == st.Size) || errors.Is(serr, ErrNotFound) {
			w, err = committed{size: st.Size, cancel: func(ctx context.Context) error { return s.d.Delete(ctx, key) }}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return &Upload{s: s, id: id, w: w, h: h, start: st}, nil
}

// committed stands for the writer of an upload whose bytes were committed:
// nothing more can be written, and committing again does nothing.
type committed struct {
	size   int64
	cancel func(context.Context) error
}

func (c committed) Write([]byte) (int, error) {
	return 0, fmt.Errorf("%w: the upload's bytes are already committed", ErrInvalidOffset)
}
func (c committed) Size() int64                      { return c.size }
func (c committed) Commit(context.Context) error     { return nil }
func (c committed) Close() error                     { return nil }
func (c committed) Cancel(ctx context.Context) error { return c.cancel(ctx) }

// CancelUpload discards the bytes of upload id.
func (s *Store) CancelUpload(ctx context.Context, id string) error {
	return s.d.Delete(ctx, uploadKey(id))
}

// Write appends p to the upload.
func (u *Upload) Write(p []byte) (int, error) {
	n, err := u.w.Write(p)
	u.h.Write(p[:n])
	return n, err
}

// ReadFrom appends everything r yields. Hashing is the costliest step of an
// upload, so a second goroutine hashes each buffer while the next one is read
// and written: hashing overlaps the network and the disk instead of adding
// to them.
func (u *Upload) ReadFrom(r io.Reader) (int64, error) {
	free := make(chan *[copyBufferSize]byte, 2)
	full := make(chan []byte, 2)
	for range 2 {
		free <- copyBuffers.Get().(*[copyBufferSize]byte)
	}
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for p := range full {
			u.h.Write(p)
			free <- (*[copyBufferSize]byte)(p[:copyBufferSize])
		}
	}()

	var total int64
	var err error
	for {
		buf := <-free
		n, rerr := fill(r, buf[:])
		if n > 0 {
			if _, err = u.w.Write(buf[:n]); err != nil {
				free <- buf
				break
			}
			total += int64(n)
			full <- buf[:n]
		} else {
			free <- buf
		}
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
	}
	close(full)
	<-hashed
	for range 2 {
		copyBuffers.Put(<-free)
	}
	return total, err
}

// fill reads into buf until it is full or r fails; io.EOF means r ended.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// copyBufferSize is the unit of upload I/O: large enough that a write and a
// hash call per buffer cost nothing beside the bytes.
const copyBufferSize = 1 << 20

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// Size is the number of bytes uploaded so far.
func (u *Upload) Size() int64 { return u.w.Size() }

// State returns what ResumeUpload needs to continue after the bytes written so far.
func (u *Upload) State() (UploadState, error) {
	b, err := u.h.(encoding.BinaryMarshaler).MarshalBinary()
	return UploadState{Size: u.w.Size(), Hash: b}, err
}

// Close ends this request's part of the upload, keeping its bytes for a resume.
func (u *Upload) Close() error { return u.w.Close() }

// Discard drops the bytes written since the upload was started or resumed,
// keeping those before, so a failed request leaves the upload as it found it.
func (u *Upload) Discard(ctx context.Context) error {
	if err := u.w.Close(); err != nil {
		return err
	}
	w, err := u.s.d.Writer(ctx, uploadKey(u.id), u.start.Size)
	if err != nil {
		return err
	}
	return w.Close()
}

// Cancel discards the upload and its bytes.
func (u *Upload) Cancel(ctx context.Context) error { return u.w.Cancel(ctx) }

// Commit verifies that the uploaded bytes hash to want and publishes them as
// that blob. If the blob already exists its bytes are not written again: the
// upload is discarded (that is deduplication) and created is false. Bytes
// that do not hash to want are discarded and ErrDigestMismatch returned. On
// any other error the bytes stay where they are, so that ResumeUpload and
// Commit can finish the upload later.
func (u *Upload) Commit(ctx context.Context, want oci.Digest) (created bool, err error) {
	// An unaccepted algorithm would be hashed as sha256 by oci.NewHash; refuse it first.
	if _, err := oci.ParseDigest(string(want)); err != nil {
		return false, err
	}
	if err := u.w.Commit(ctx); err != nil {
		return false, err
	}
	got, err := u.digest(ctx, want.Algorithm())
	if err != nil {
		return false, err
	}
	if got != want {
		return false, errors.Join(ErrDigestMismatch, u.w.Cancel(ctx))
	}
	return u.publish(ctx, want)
}

// Placed is when the committed blob's bytes were last known to be in
// place: just before the existence check that found them stored already
// (Commit then dropped the upload's own), or just after the move that put
// them there. The blob must be recorded in metadata soon after: garbage
// collection may be deleting bytes it found unrecorded, and it forgets them
// only a bounded while after (see gc.Options.LinkDeadline).
func (u *Upload) Placed() time.Time { return u.placed }

// publish makes the committed bytes of upload id the blob d: moved into
// place, or dropped when the blob is stored already. On failure the bytes
// stay, for a retry to publish.
func (u *Upload) publish(ctx context.Context, d oci.Digest) (created bool, err error) {
	s, key := u.s, uploadKey(u.id)
	checked := time.Now()
	_, err = s.Stat(ctx, d)
	switch {
	case err == nil:
		// Leftover bytes, should this fail, are the upload purge's to reclaim.
		s.d.Delete(ctx, key)
		u.placed = checked
		return false, nil
	case !errors.Is(err, ErrNotFound):
		return false, err
	}
	// Before the move: the bytes may appear at the blob key (and a
	// collection delete them) well before Move returns (S3 copies, then
	// deletes the upload's key).
	placed := time.Now()
	err = s.d.Move(ctx, key, BlobKey(d))
	if errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("%w: the upload's bytes are gone", ErrInvalidOffset)
	}
	u.placed = placed
	return err == nil, err
}

// digest returns the digest of the committed upload under alg. The running
// hash is sha256; other algorithms (sha512) re-read the bytes.
func (u *Upload) digest(ctx context.Context, alg oci.Algorithm) (oci.Digest, error) {
	if alg == oci.SHA256 {
		return oci.DigestOf(alg, u.h), nil
	}
	r, err := u.s.d.Open(ctx, uploadKey(u.id))
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := oci.NewHash(alg)
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return oci.DigestOf(alg, h), nil
}

// Verify reads r to its end and reports whether its bytes hash to want,
// without storing anything: an upload of a blob that already exists needs
// proof that the client has the bytes, not another copy of them.
func Verify(r io.Reader, want oci.Digest) (int64, error) {
	if _, err := oci.ParseDigest(string(want)); err != nil {
		return 0, err
	}
	h := oci.NewHash(want.Algorithm())
	n, err := io.Copy(h, r)
	if err != nil {
		return n, err
	}
	if oci.DigestOf(want.Algorithm(), h) != want {
		return n, ErrDigestMismatch
	}
	return n, nil
}
