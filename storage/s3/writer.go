package s3

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berthhq/berth/storage"
)

// closeTimeout bounds Close, which saves the tail even when the request
// that wrote it has ended.
const closeTimeout = time.Minute

// Writer starts, or resumes, a multipart upload to key. Offset 0 discards
// whatever an earlier writer left; a larger offset continues from the tail
// that holds byte offset, keeping the parts before it.
func (d *Driver) Writer(ctx context.Context, key string, offset int64) (storage.Writer, error) {
	if offset < 0 {
		return nil, storage.ErrInvalidOffset
	}
	if offset == 0 {
		if err := d.discardUploads(ctx, key, ""); err != nil {
			return nil, err
		}
		return &writer{ctx: ctx, d: d, key: key}, nil
	}
	ts, err := d.tails(ctx, key)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ts, func(a, b tail) int { return cmp.Compare(b.start, a.start) }) // latest first
	for _, t := range ts {
		if t.start > offset || t.start+t.size < offset {
			continue
		}
		w, err := d.resume(ctx, key, t, offset)
		if err != nil {
			return nil, err
		}
		if w == nil {
			continue // a stale tail: its parts are gone or were replaced
		}
		// The other tails go: later ones hold bytes past offset, which are
		// dropped, and earlier ones are superseded by t (the Store never
		// resumes below a size it has resumed at).
		for _, o := range ts {
			if o.name != t.name {
				if err := d.deleteObject(ctx, o.name); err != nil {
					return nil, err
				}
			}
		}
		return w, nil
	}
	return nil, storage.ErrInvalidOffset
}

// Create returns a writer of a new object at key that appears at Commit and
// not before, since a multipart upload is invisible until completed (and an
// object smaller than a part is put whole at Commit). It shares nothing with
// other writers of the key: Close and Cancel abort only its own upload and
// never touch an object already there.
func (d *Driver) Create(ctx context.Context, key string) (storage.Writer, error) {
	return &writer{ctx: ctx, d: d, key: key, oneShot: true}, nil
}

// writer buffers up to a part's worth of bytes and uploads each full part.
type writer struct {
	oneShot  bool            // made by Create: no tails, no resume
	ctx      context.Context // Writer's, for uploading parts as Write fills them
	d        *Driver
	key      string
	uploadID string                // "" until the first part is uploaded
	parts    []types.CompletedPart // uploaded, in order
	flushed  int64                 // bytes in parts
	buf      []byte                // the bytes after them
	dirty    bool                  // written to since opened
	err      error                 // a failed upload, which ends the writer
	done     bool
}

var errDone = errors.New("s3: writer already closed")

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errDone
	}
	written := 0
	for len(p) > 0 {
		if w.err != nil {
			return written, w.err
		}
		if int64(len(w.buf)) >= w.d.partSize {
			w.err = w.uploadPart(w.ctx)
			continue
		}
		if w.buf == nil {
			w.buf = make([]byte, 0, w.d.partSize)
		}
		n := min(len(p), int(w.d.partSize)-len(w.buf))
		w.buf = append(w.buf, p[:n]...)
		p = p[n:]
		written += n
		w.dirty = true
	}
	return written, nil
}

func (w *writer) Size() int64 { return w.flushed + int64(len(w.buf)) }

// uploadPart uploads the buffer as the next part, starting the multipart
// upload if this is the first.
func (w *writer) uploadPart(ctx context.Context) error {
	d := w.d
	if len(w.parts) >= maxParts {
		return fmt.Errorf("s3: %s: an object has at most %d parts of %d bytes", w.key, maxParts, d.partSize)
	}
	if w.uploadID == "" {
		out, err := d.c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
			Bucket: &d.bucket, Key: aws.String(d.path(w.key)),
			StorageClass: d.class, ServerSideEncryption: d.sse, SSEKMSKeyId: d.kmsKey,
		})
		if err != nil {
			return fmt.Errorf("s3: starting the multipart upload of %s: %w", w.key, err)
		}
		w.uploadID = aws.ToString(out.UploadId)
	}
	num := aws.Int32(int32(len(w.parts) + 1))
	out, err := d.c.UploadPart(ctx, &awss3.UploadPartInput{
		Bucket: &d.bucket, Key: aws.String(d.path(w.key)), UploadId: aws.String(w.uploadID),
		PartNumber: num, Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
	})
	if err != nil {
		return fmt.Errorf("s3: uploading part %d of %s: %w", *num, w.key, err)
	}
	w.parts = append(w.parts, types.CompletedPart{PartNumber: num, ETag: out.ETag})
	w.flushed += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// putTail stores the buffer as the tail that follows the uploaded parts.
func (w *writer) putTail(ctx context.Context) error {
	d := w.d
	_, err := d.c.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: &d.bucket, Key: aws.String(tailName(d.tailsDir(w.key), w.flushed)),
		Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
		Metadata: map[string]string{
			metaUpload: w.uploadID,
			metaParts:  strconv.Itoa(len(w.parts)),
			metaPrint:  fingerprint(w.uploadID, w.parts),
		},
		// No storage class: tails are small and short-lived.
		ServerSideEncryption: d.sse, SSEKMSKeyId: d.kmsKey,
	})
	if err != nil {
		return fmt.Errorf("s3: saving the tail of %s: %w", w.key, err)
	}
	return nil
}

// Close saves the buffered bytes as a tail, so that a later Writer can
// resume after them. Earlier tails stay until then: the Store may discard
// this writer's bytes by resuming where it started.
func (w *writer) Close() error {
	if w.done {
		return nil
	}
	if w.oneShot {
		return w.Cancel(w.ctx)
	}
	w.done = true
	if !w.dirty {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), closeTimeout)
	defer cancel()
	if w.err == nil && int64(len(w.buf)) >= w.d.partSize {
		// A full part is uploaded rather than saved and fetched back as a
		// tail; if that fails, the tail keeps it.
		w.err = w.uploadPart(ctx)
	}
	return w.putTail(ctx)
}

// Commit uploads the buffer as the last part and completes the upload; an
// object smaller than a part is put whole instead.
func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return nil
	}
	if w.err != nil {
		return w.err
	}
	d := w.d
	if len(w.parts) == 0 {
		_, err := d.c.PutObject(ctx, &awss3.PutObjectInput{
			Bucket: &d.bucket, Key: aws.String(d.path(w.key)),
			Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
			StorageClass: d.class, ServerSideEncryption: d.sse, SSEKMSKeyId: d.kmsKey,
		})
		if err != nil {
			return fmt.Errorf("s3: commit %s: %w", w.key, err)
		}
		if w.uploadID != "" {
			d.abort(ctx, w.key, w.uploadID) // see below
		}
	} else {
		if len(w.buf) > 0 {
			if err := w.uploadPart(ctx); err != nil {
				return err
			}
		}
		_, err := d.c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{
			Bucket: &d.bucket, Key: aws.String(d.path(w.key)), UploadId: aws.String(w.uploadID),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
		})
		if err != nil {
			return fmt.Errorf("s3: commit %s: %w", w.key, err)
		}
	}
	w.done = true
	if w.oneShot {
		return nil
	}
	// The object is whole and visible. A tail or an empty upload that a
	// failure leaves here is listed under the key and goes when it is
	// deleted (after Move, by the purge of abandoned uploads).
	if ts, err := d.tails(ctx, w.key); err == nil {
		for _, t := range ts {
			d.deleteObject(ctx, t.name)
		}
	}
	return nil
}

// Cancel discards the writer and everything stored under its key; a writer
// made by Create discards only its own upload.
func (w *writer) Cancel(ctx context.Context) error {
	w.done = true
	if w.oneShot {
		if w.uploadID == "" {
			return nil
		}
		return w.d.abort(context.WithoutCancel(ctx), w.key, w.uploadID)
	}
	return w.d.Delete(ctx, w.key)
}
