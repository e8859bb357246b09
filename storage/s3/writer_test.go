package s3

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/storage"
)

const mib = 1 << 20

// write resumes key at offset on d, writes data and closes or commits.
func write(t *testing.T, d *Driver, key string, offset int64, data []byte, commit bool) {
	t.Helper()
	w, err := d.Writer(t.Context(), key, offset)
	if err != nil {
		t.Fatalf("Writer(%s, %d): %v", key, offset, err)
	}
	if w.Size() != offset {
		t.Fatalf("Size() of a writer resumed at %d = %d", offset, w.Size())
	}
	if n, err := w.Write(data); err != nil || n != len(data) {
		t.Fatalf("Write(%d bytes) = %d, %v", len(data), n, err)
	}
	if commit {
		err = w.Commit(t.Context())
	} else {
		err = w.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// bucketKeys lists every key in the bucket, the driver's hidden ones too.
func bucketKeys(t *testing.T, srv testserver.S3Server) (keys, uploads []string) {
	t.Helper()
	c := srv.Client()
	objs, err := c.ListObjectsV2(t.Context(), &awss3.ListObjectsV2Input{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	ups, err := c.ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups.Uploads {
		uploads = append(uploads, aws.ToString(u.Key))
	}
	return keys, uploads
}

// TestResumeOnAnotherReplica continues uploads with drivers that share
// nothing but the bucket, as replicas behind a load balancer do.
func TestResumeOnAnotherReplica(t *testing.T) {
	srv := testserver.S3(t)
	replica := func() *Driver { return newTest(t, options(srv)) } // 5 MiB parts
	data := random(23*mib + 17)
	tests := []struct {
		name  string
		steps []int64 // where each request ends; the last one commits
	}{
		{"at the end of a tail", []int64{7 * mib, 13 * mib, 23*mib + 17}},
		{"at a part boundary", []int64{5 * mib, 10 * mib, 23*mib + 17}},
		{"small requests", []int64{1, 1000, 2 * mib, 23*mib + 17}},
		{"one part per request", []int64{6 * mib, 12 * mib, 18 * mib, 23*mib + 17}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "uploads/" + strings.ReplaceAll(tt.name, " ", "-")
			var at int64
			for i, end := range tt.steps {
				write(t, replica(), key, at, data[at:end], i == len(tt.steps)-1)
				at = end
			}
			if got := get(t, replica(), key); !bytes.Equal(got, data) {
				t.Errorf("resumed upload reads back %d other bytes", len(got))
			}
			if keys, ups := bucketKeys(t, srv); len(ups) != 0 || strings.Contains(strings.Join(keys, " "), tailsRoot) {
				t.Errorf("after Commit the bucket holds %q and uploads %q", keys, ups)
			}
		})
	}
}

// TestResumeInsideTail resumes at offsets inside what a closed writer left:
// inside its tail works and drops the rest; inside an uploaded part cannot.
func TestResumeInsideTail(t *testing.T) {
	srv := testserver.S3(t)
	a, b := newTest(t, options(srv)), newTest(t, options(srv))
	first := random(8 * mib) // part 1 (5 MiB) and a 3 MiB tail
	write(t, a, "up", 0, first, false)

	for _, off := range []int64{3 * mib, 5*mib - 1, 8*mib + 1} {
		if _, err := b.Writer(t.Context(), "up", off); !errors.Is(err, storage.ErrInvalidOffset) {
			t.Errorf("Writer at %d = %v, want ErrInvalidOffset", off, err)
		}
	}
	// Resume 1 MiB before the end, write across the next part boundary and
	// close: bytes past 7 MiB are the new ones.
	second := random(4 * mib)
	write(t, b, "up", 7*mib, second, false)
	// Resume where that writer started, as Store.Discard does: the part it
	// uploaded (5–10 MiB) is dropped, and the older tail takes over again.
	third := random(2 * mib)
	write(t, a, "up", 7*mib, third, true)
	want := append(first[:7*mib:7*mib], third...)
	if got := get(t, b, "up"); !bytes.Equal(got, want) {
		t.Errorf("object reads back %d bytes that differ from the %d written", len(got), len(want))
	}
}

func TestPartSize(t *testing.T) {
	srv := testserver.S3(t)
	d := newTest(t, options(srv))
	data := random(20*mib + 1)
	w, err := d.Writer(t.Context(), "big", 0)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := range slices.Chunk(data, 3*mib+5) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	ww := w.(*writer)
	if cap(ww.buf) != MinPartSize || len(ww.parts) != 4 || ww.flushed != 20*mib {
		t.Errorf("after 20 MiB + 1: buffer of %d, %d parts, %d bytes uploaded; want 5 MiB, 4 parts, 20 MiB",
			cap(ww.buf), len(ww.parts), ww.flushed)
	}
	parts, err := srv.Client().ListParts(t.Context(), &awss3.ListPartsInput{Bucket: &srv.Bucket, Key: aws.String("big"), UploadId: &ww.uploadID})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts.Parts {
		if aws.ToInt64(p.Size) != MinPartSize {
			t.Errorf("part %d has %d bytes, want %d", aws.ToInt32(p.PartNumber), aws.ToInt64(p.Size), MinPartSize)
		}
	}
	if _, err := d.Stat(t.Context(), "big"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat before Commit = %v, want ErrNotFound", err)
	}
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := get(t, d, "big"); !bytes.Equal(got, data) {
		t.Errorf("20 MiB object in 5 MiB parts reads back %d other bytes", len(got))
	}
}

// TestListAndDeleteInProgress: an upload with parts in S3 is listed before
// it closes, once, and Delete aborts it and its tail.
func TestListAndDeleteInProgress(t *testing.T) {
	srv := testserver.S3(t)
	d := newTest(t, options(srv))
	put(t, d, "uploads/old", []byte("committed"))
	w, err := d.Writer(t.Context(), "uploads/old", 0) // a new writer over a committed object
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(random(6 * mib)); err != nil { // one part uploaded
		t.Fatal(err)
	}
	w2, err := d.Writer(t.Context(), "uploads/new", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write(random(6 * mib)); err != nil {
		t.Fatal(err)
	}
	if got := listedKeys(t, d, "uploads/"); got != "uploads/new=0 uploads/old=9" {
		t.Errorf("List before Close = %s", got)
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := listedKeys(t, d, "uploads/"); got != "uploads/new=6291456 uploads/old=9" {
		t.Errorf("List after Close = %s", got)
	}
	for _, key := range []string{"uploads/new", "uploads/old"} {
		if err := d.Delete(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
	if got := listedKeys(t, d, "uploads/"); got != "" {
		t.Errorf("List after Delete = %s", got)
	}
	if keys, ups := bucketKeys(t, srv); len(keys)+len(ups) != 0 {
		t.Errorf("after Delete the bucket holds %q and uploads %q", keys, ups)
	}
	if _, err := d.Writer(t.Context(), "uploads/new", 6*mib); !errors.Is(err, storage.ErrInvalidOffset) {
		t.Errorf("resuming a deleted upload = %v, want ErrInvalidOffset", err)
	}
	if err := w.Commit(t.Context()); err == nil {
		t.Error("Commit of a writer whose upload was deleted succeeded")
	}
}

// listedKeys is what List(prefix) reports, as sorted "key=size" words.
func listedKeys(t *testing.T, d storage.Driver, prefix string) string {
	t.Helper()
	var got []string
	err := d.List(t.Context(), prefix, func(o storage.Object) error {
		if o.ModTime.IsZero() {
			t.Errorf("List reports %s with no ModTime", o.Key)
		}
		got = append(got, fmt.Sprintf("%s=%d", o.Key, o.Size))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return strings.Join(got, " ")
}
