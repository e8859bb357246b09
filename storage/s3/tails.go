package s3

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// The user metadata of a tail object: which multipart upload it continues,
// how many of its parts come before the tail, and a fingerprint of those
// parts (their numbers and ETags), so that parts uploaded after the tail was
// written, by a writer whose bytes were then discarded, are never mistaken
// for the ones it follows.
const (
	metaUpload = "upload-id"
	metaParts  = "parts"
	metaPrint  = "parts-fingerprint"
)

// tail is a tail object of a key: the bytes from start that were not yet a
// full part when a writer closed.
type tail struct {
	name  string // bucket key
	start int64
	size  int64
}

func tailName(dir string, start int64) string { return fmt.Sprintf("%s%020d", dir, start) }

// parseTail splits "<key>/<start>", a tail's bucket key after the tails
// root, into the key and the start.
func parseTail(rel string) (key string, start int64, ok bool) {
	i := strings.LastIndexByte(rel, '/')
	if i <= 0 || len(rel)-i-1 != 20 {
		return "", 0, false
	}
	start, err := strconv.ParseInt(rel[i+1:], 10, 64)
	return rel[:i], start, err == nil
}

// tails lists the tail objects of key.
func (d *Driver) tails(ctx context.Context, key string) ([]tail, error) {
	dir := d.tailsDir(key)
	var ts []tail
	p := awss3.NewListObjectsV2Paginator(d.c, &awss3.ListObjectsV2Input{
		Bucket: &d.bucket, Prefix: aws.String(dir), Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: listing the tails of %s: %w", key, err)
		}
		for _, o := range page.Contents {
			name := aws.ToString(o.Key)
			if k, start, ok := parseTail(strings.TrimPrefix(name, d.prefix+tailsRoot)); ok && k == key {
				ts = append(ts, tail{name: name, start: start, size: aws.ToInt64(o.Size)})
			}
		}
	}
	return ts, nil
}

// fingerprint identifies a list of parts of an upload.
func fingerprint(uploadID string, parts []types.CompletedPart) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", uploadID)
	for _, p := range parts {
		fmt.Fprintf(h, "%d %s\n", aws.ToInt32(p.PartNumber), strings.Trim(aws.ToString(p.ETag), `"`))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// resume returns a writer continuing at offset from tail t, or nil if t no
// longer matches the parts of its upload.
func (d *Driver) resume(ctx context.Context, key string, t tail, offset int64) (*writer, error) {
	n := offset - t.start
	var meta map[string]string
	var body io.ReadCloser // the tail's first n bytes
	if n > 0 {
		out, err := d.c.GetObject(ctx, &awss3.GetObjectInput{
			Bucket: &d.bucket, Key: aws.String(t.name), Range: aws.String(fmt.Sprintf("bytes=0-%d", n-1)),
		})
		if err == nil {
			meta, body = out.Metadata, out.Body
			defer body.Close()
		}
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("s3: reading a tail of %s: %w", key, err)
		}
	} else {
		out, err := d.c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &d.bucket, Key: aws.String(t.name)})
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("s3: reading a tail of %s: %w", key, err)
		}
		meta = out.Metadata
	}
	w := &writer{ctx: ctx, d: d, key: key, uploadID: meta[metaUpload], flushed: t.start}
	count, err := strconv.Atoi(meta[metaParts])
	if err != nil || (count > 0 && w.uploadID == "") {
		return nil, nil // not a tail this driver wrote
	}
	if count > 0 {
		if w.parts, err = d.listParts(ctx, key, w.uploadID, count); err != nil || w.parts == nil {
			return nil, err
		}
	}
	if fingerprint(w.uploadID, w.parts) != meta[metaPrint] {
		return nil, nil
	}
	w.buf = make([]byte, n, max(n, d.partSize))
	if n > 0 {
		if _, err := io.ReadFull(body, w.buf); err != nil {
			return nil, fmt.Errorf("s3: reading a tail of %s: %w", key, err)
		}
	}
	if t.size > n {
		// Drop the tail's bytes past offset now, as the contract says, not
		// only when this writer closes.
		if err := w.putTail(ctx); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// listParts returns parts 1 to count of an upload, or nil if the upload or
// any of those parts is missing.
func (d *Driver) listParts(ctx context.Context, key, uploadID string, count int) ([]types.CompletedPart, error) {
	parts := make([]types.CompletedPart, count)
	p := awss3.NewListPartsPaginator(d.c, &awss3.ListPartsInput{
		Bucket: &d.bucket, Key: aws.String(d.path(key)), UploadId: aws.String(uploadID),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("s3: listing the parts of %s: %w", key, err)
		}
		for _, part := range page.Parts {
			if i := int(aws.ToInt32(part.PartNumber)) - 1; i >= 0 && i < count {
				parts[i] = types.CompletedPart{PartNumber: part.PartNumber, ETag: part.ETag}
			}
		}
	}
	for _, part := range parts {
		if part.PartNumber == nil {
			return nil, nil
		}
	}
	return parts, nil
}
