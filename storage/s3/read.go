package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berthhq/berth/storage"
)

// Open starts a GET of the whole object at key and returns a reader of it.
// Reading from the start costs that one request however the reader was
// seeked before (http.ServeContent seeks to the end for the size and back);
// a read elsewhere costs one ranged GET, pinned to the same version of the
// object by its ETag.
func (d *Driver) Open(ctx context.Context, key string) (io.ReadSeekCloser, error) {
	out, err := d.c.GetObject(ctx, &awss3.GetObjectInput{Bucket: &d.bucket, Key: aws.String(d.path(key))})
	if isNotFound(err) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("s3: open %s: %w", key, err)
	}
	return &reader{
		ctx: ctx, d: d, key: key,
		size: aws.ToInt64(out.ContentLength), etag: out.ETag,
		body: out.Body,
	}, nil
}

// reader reads an object through one GET response at a time.
type reader struct {
	ctx  context.Context // Open's, for the GETs that reads need
	d    *Driver
	key  string
	size int64
	etag *string

	pos     int64         // where the next Read reads
	body    io.ReadCloser // nil, or a response positioned at bodyPos
	bodyPos int64
}

func (r *reader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if r.body != nil && r.bodyPos != r.pos {
		r.body.Close()
		r.body = nil
	}
	if r.body == nil {
		out, err := r.d.c.GetObject(r.ctx, &awss3.GetObjectInput{
			Bucket:  &r.d.bucket,
			Key:     aws.String(r.d.path(r.key)),
			Range:   aws.String(fmt.Sprintf("bytes=%d-", r.pos)),
			IfMatch: r.etag,
		})
		if err != nil {
			return 0, fmt.Errorf("s3: read %s from byte %d: %w", r.key, r.pos, err)
		}
		r.body, r.bodyPos = out.Body, r.pos
	}
	if rest := r.size - r.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := r.body.Read(p)
	r.pos += int64(n)
	r.bodyPos += int64(n)
	if err == io.EOF {
		if r.pos < r.size {
			return n, fmt.Errorf("s3: read %s: %w at byte %d of %d", r.key, io.ErrUnexpectedEOF, r.pos, r.size)
		}
		err = nil
	}
	return n, err
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return r.pos, errors.New("s3: seek: invalid whence")
	}
	if offset < 0 {
		return r.pos, errors.New("s3: seek before the start")
	}
	r.pos = offset // the response is kept: seeking back to it costs nothing
	return r.pos, nil
}

func (r *reader) Close() error {
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}

// Move copies from to to inside S3 (in parts if it is larger than one
// CopyObject allows) and deletes from. The copy appears whole.
func (d *Driver) Move(ctx context.Context, from, to string) error {
	head, err := d.c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &d.bucket, Key: aws.String(d.path(from))})
	if isNotFound(err) {
		return storage.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("s3: move %s: %w", from, err)
	}
	size := aws.ToInt64(head.ContentLength)
	if size <= d.maxCopy {
		_, err = d.c.CopyObject(ctx, &awss3.CopyObjectInput{
			Bucket: &d.bucket, Key: aws.String(d.path(to)),
			CopySource:        aws.String(d.copySource(d.path(from))),
			CopySourceIfMatch: head.ETag,
			StorageClass:      d.class, ServerSideEncryption: d.sse, SSEKMSKeyId: d.kmsKey,
		})
	} else {
		err = d.copyParts(ctx, from, to, size, head.ETag)
	}
	if isNotFound(err) {
		return storage.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("s3: move %s to %s: %w", from, to, err)
	}
	return d.deleteObject(ctx, d.path(from))
}

// copyParts copies an object too large for CopyObject with a multipart
// upload of UploadPartCopy parts.
func (d *Driver) copyParts(ctx context.Context, from, to string, size int64, etag *string) error {
	up, err := d.c.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
		Bucket: &d.bucket, Key: aws.String(d.path(to)),
		StorageClass: d.class, ServerSideEncryption: d.sse, SSEKMSKeyId: d.kmsKey,
	})
	if err != nil {
		return err
	}
	partSize := max(d.copyPart, (size+maxParts-1)/maxParts)
	var parts []types.CompletedPart
	for start := int64(0); start < size && err == nil; start += partSize {
		end := min(start+partSize, size) - 1
		var out *awss3.UploadPartCopyOutput
		out, err = d.c.UploadPartCopy(ctx, &awss3.UploadPartCopyInput{
			Bucket: &d.bucket, Key: aws.String(d.path(to)), UploadId: up.UploadId,
			PartNumber:        aws.Int32(int32(len(parts) + 1)),
			CopySource:        aws.String(d.copySource(d.path(from))),
			CopySourceIfMatch: etag,
			CopySourceRange:   aws.String(fmt.Sprintf("bytes=%d-%d", start, end)),
		})
		if err == nil {
			parts = append(parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(int32(len(parts) + 1))})
		}
	}
	if err == nil {
		_, err = d.c.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{
			Bucket: &d.bucket, Key: aws.String(d.path(to)), UploadId: up.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
	}
	if err != nil {
		// Best effort: the error that matters is the copy's.
		d.abort(context.WithoutCancel(ctx), to, aws.ToString(up.UploadId))
	}
	return err
}

// List reports committed objects under prefix, then the keys of uncommitted
// writers (multipart uploads and tails) that have no committed object.
func (d *Driver) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	pending, err := d.pending(ctx, prefix)
	if err != nil {
		return err
	}
	p := awss3.NewListObjectsV2Paginator(d.c, &awss3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: aws.String(d.path(prefix))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3: list %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), d.prefix)
			if strings.HasPrefix(key, tailsRoot) {
				continue
			}
			delete(pending, key)
			if err := fn(storage.Object{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	for _, o := range pending {
		if err := fn(*o); err != nil {
			return err
		}
	}
	return nil
}

// pending finds the uncommitted writers under prefix: each key's Size is
// what its newest tail says was stored, its ModTime the later of the
// upload's start and the tail's write.
func (d *Driver) pending(ctx context.Context, prefix string) (map[string]*storage.Object, error) {
	found := map[string]*storage.Object{}
	see := func(key string, size int64, mod time.Time) {
		o := found[key]
		if o == nil {
			o = &storage.Object{Key: key, Pending: true}
			found[key] = o
		}
		o.Size = max(o.Size, size)
		if mod.After(o.ModTime) {
			o.ModTime = mod
		}
	}
	up := awss3.NewListMultipartUploadsPaginator(d.c, &awss3.ListMultipartUploadsInput{Bucket: &d.bucket, Prefix: aws.String(d.path(prefix))})
	for up.HasMorePages() {
		page, err := up.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: listing multipart uploads under %q: %w", prefix, err)
		}
		for _, u := range page.Uploads {
			see(strings.TrimPrefix(aws.ToString(u.Key), d.prefix), 0, aws.ToTime(u.Initiated))
		}
	}
	root := d.prefix + tailsRoot
	tp := awss3.NewListObjectsV2Paginator(d.c, &awss3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: aws.String(root + prefix)})
	for tp.HasMorePages() {
		page, err := tp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: listing tails under %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			key, start, ok := parseTail(strings.TrimPrefix(aws.ToString(o.Key), root))
			if ok && strings.HasPrefix(key, prefix) {
				see(key, start+aws.ToInt64(o.Size), aws.ToTime(o.LastModified))
			}
		}
	}
	return found, nil
}
