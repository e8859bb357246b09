package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/storage"
)

// Options configure a Driver.
type Options struct {
	// Bucket holds the objects; it must exist. Required.
	Bucket string
	// Region of the bucket. Empty: from the SDK's environment (AWS_REGION,
	// shared config), else us-east-1.
	Region string
	// Endpoint is the URL of an S3-compatible server (MinIO, Ceph, R2, …).
	// Empty: AWS S3 itself.
	Endpoint string
	// PathStyle addresses the bucket as <endpoint>/<bucket>/<key> instead of
	// <bucket>.<endpoint>/<key>; most S3-compatible servers need it.
	PathStyle bool
	// Prefix, if set, is put before every key (as <prefix>/<key>), so several
	// registries or other data can share one bucket.
	Prefix string
	// AccessKey and SecretKey are static credentials, with SessionToken for
	// temporary ones. Empty: the SDK's default chain (environment, shared
	// config and credentials files, web identity / IRSA, ECS, EC2 instance
	// role).
	AccessKey, SecretKey, SessionToken string
	// StorageClass of stored objects (STANDARD, INTELLIGENT_TIERING, …).
	// Empty: the bucket's default.
	StorageClass string
	// SSE is the server-side encryption to request: "AES256" or "aws:kms".
	// Empty: the bucket's default.
	SSE string
	// SSEKMSKeyID is the KMS key for SSE "aws:kms"; empty: the AWS managed key.
	SSEKMSKeyID string
	// PartSize is the size of a multipart upload's parts, and so the memory
	// each open writer buffers. Default 8 MiB; at least 5 MiB (S3's minimum).
	// Objects are limited to 10,000 parts: 80 GB at 8 MiB.
	PartSize int64
	// MaxAttempts is how many times a request is tried before its error is
	// returned (transient errors and throttling only). Default 5.
	MaxAttempts int
	// Metrics registers the driver's Prometheus metrics (requests to S3
	// by operation and status, their duration, retries); nil registers none.
	Metrics prometheus.Registerer
}

const (
	// DefaultPartSize is PartSize when Options leave it zero.
	DefaultPartSize = 8 << 20
	// MinPartSize is S3's smallest part but the last.
	MinPartSize = 5 << 20
	// maxParts is S3's limit on a multipart upload's parts.
	maxParts = 10000
	// maxCopySize is the largest object CopyObject copies in one request.
	maxCopySize = 5 << 30
	// copyPartSize is the size of each part of a multipart copy.
	copyPartSize = 512 << 20
)

// Driver stores objects in an S3 bucket.
type Driver struct {
	c        *awss3.Client
	bucket   string
	prefix   string // "" or ends with "/"
	partSize int64
	class    types.StorageClass
	sse      types.ServerSideEncryption
	kmsKey   *string

	maxCopy, copyPart int64 // maxCopySize and copyPartSize, smaller in tests
}

var (
	_ storage.Driver    = (*Driver)(nil)
	_ storage.Presigner = (*Driver)(nil)
)

// New returns a driver for the bucket o names. It makes no request: a wrong
// bucket or credentials show up as errors from the first operation.
func New(ctx context.Context, o Options) (*Driver, error) {
	return newDriver(ctx, o, nil)
}

// newDriver is New with the HTTP client replaceable, for tests.
func newDriver(ctx context.Context, o Options, hc aws.HTTPClient) (*Driver, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3: part size %d is below S3's minimum of %d", o.PartSize, MinPartSize)
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	switch o.SSE {
	case "", "AES256", "aws:kms":
	default:
		return nil, fmt.Errorf("s3: unknown server-side encryption %q (want AES256 or aws:kms)", o.SSE)
	}
	if o.SSEKMSKeyID != "" && o.SSE != "aws:kms" {
		return nil, errors.New("s3: a KMS key needs server-side encryption aws:kms")
	}
	loads := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient()),
		config.WithRetryer(func() aws.Retryer {
			r := retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = 10 * time.Second
				// The client-side retry quota would fail requests outright
				// under load; S3's own throttling (503 SlowDown) is retried.
				so.RateLimiter = ratelimit.None
			})
			// Stores that keep objects as files (versitygw's POSIX backend)
			// answer a PUT that races the removal of an emptied parent
			// directory with this transient conflict; AWS never sends it.
			return retry.AddWithErrorCodes(r, "ExistingObjectIsDirectory")
		}),
	}
	if o.Region != "" {
		loads = append(loads, config.WithRegion(o.Region))
	}
	if o.AccessKey != "" || o.SecretKey != "" {
		loads = append(loads, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, o.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("s3: loading configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	m := newMetrics(o.Metrics)
	c := awss3.NewFromConfig(cfg, func(so *awss3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
		if hc != nil {
			so.HTTPClient = hc
		}
		// Checksums only where S3 requires them: many S3-compatible servers
		// reject the newer default trailers. Integrity in transit is TLS's
		// (or SigV4's signed payload over plain HTTP), and the Store checks
		// every blob's digest.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		so.APIOptions = append(so.APIOptions, markUnavailable, m.instrument)
	})
	d := &Driver{
		c:        c,
		bucket:   o.Bucket,
		partSize: o.PartSize,
		class:    types.StorageClass(o.StorageClass),
		sse:      types.ServerSideEncryption(o.SSE),
		maxCopy:  maxCopySize,
		copyPart: copyPartSize,
	}
	if p := strings.Trim(o.Prefix, "/"); p != "" {
		d.prefix = p + "/"
	}
	if o.SSEKMSKeyID != "" {
		d.kmsKey = aws.String(o.SSEKMSKeyID)
	}
	return d, nil
}

// httpClient has timeouts on each step of a request but none on the whole,
// since bodies are large and their reading is paced by the caller.
func httpClient() aws.HTTPClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = 10 * time.Second
			d.KeepAlive = 30 * time.Second
		}).
		WithTransportOptions(func(t *http.Transport) {
			t.TLSHandshakeTimeout = 10 * time.Second
			// Long enough for a server to answer a CompleteMultipartUpload
			// or a 5 GiB CopyObject; everything else answers in far less.
			t.ResponseHeaderTimeout = 2 * time.Minute
			t.ExpectContinueTimeout = time.Second
			t.IdleConnTimeout = 90 * time.Second
			t.MaxIdleConns = 256
			t.MaxIdleConnsPerHost = 256
		})
}

// path is the bucket key of key.
func (d *Driver) path(key string) string { return d.prefix + key }

// tailsDir is the bucket prefix of key's tail objects.
func (d *Driver) tailsDir(key string) string { return d.prefix + tailsRoot + key + "/" }

// tailsRoot starts the keys of tail objects, under the driver's prefix.
const tailsRoot = ".tails/"

// markUnavailable makes an operation that S3 throttled, or answered 503,
// through every retry fail with an error matching storage.ErrUnavailable, so
// the registry can tell the client to come back rather than report a fault.
func markUnavailable(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("BerthMarkUnavailable",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			if err != nil && isUnavailable(err) {
				err = unavailableError{err}
			}
			return out, md, err
		}), middleware.Before)
}

func isUnavailable(err error) bool {
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusServiceUnavailable
}

// unavailableError is an S3 error that also matches storage.ErrUnavailable.
type unavailableError struct{ error }

func (e unavailableError) Unwrap() error        { return e.error }
func (e unavailableError) Is(target error) bool { return target == storage.ErrUnavailable }

// isNotFound reports whether err is S3 saying that the object, or the
// multipart upload, does not exist. A missing bucket is a real error.
func isNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchUpload":
			return true
		case "NoSuchBucket":
			return false
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// Check reports whether the bucket exists and the credentials reach it. A
// missing bucket is otherwise hard to tell from missing objects: S3 answers
// a HEAD of a key in a missing bucket with a bare 404, which Stat reports as
// storage.ErrNotFound.
func (d *Driver) Check(ctx context.Context) error {
	if _, err := d.c.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &d.bucket}); err != nil {
		return fmt.Errorf("s3: bucket %s: %w", d.bucket, err)
	}
	return nil
}

// Stat returns the size of the object at key.
func (d *Driver) Stat(ctx context.Context, key string) (int64, error) {
	out, err := d.c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &d.bucket, Key: aws.String(d.path(key))})
	if isNotFound(err) {
		return 0, storage.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("s3: stat %s: %w", key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Delete removes the object at key, aborts any multipart upload to it and
// deletes its tails.
func (d *Driver) Delete(ctx context.Context, key string) error {
	_, err := d.c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &d.bucket, Key: aws.String(d.path(key))})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3: delete %s: %w", key, err)
	}
	return d.discardUploads(ctx, key, "")
}

// discardUploads aborts every multipart upload to key and deletes every
// tail of key except the one named keep.
func (d *Driver) discardUploads(ctx context.Context, key, keep string) error {
	ids, err := d.uploadIDs(ctx, key)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := d.abort(ctx, key, id); err != nil {
			return err
		}
	}
	tails, err := d.tails(ctx, key)
	if err != nil {
		return err
	}
	for _, t := range tails {
		if t.name != keep {
			if err := d.deleteObject(ctx, t.name); err != nil {
				return err
			}
		}
	}
	return nil
}

// uploadIDs lists the multipart uploads to exactly key.
func (d *Driver) uploadIDs(ctx context.Context, key string) ([]string, error) {
	var ids []string
	p := awss3.NewListMultipartUploadsPaginator(d.c, &awss3.ListMultipartUploadsInput{
		Bucket: &d.bucket, Prefix: aws.String(d.path(key)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: listing multipart uploads of %s: %w", key, err)
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) == d.path(key) {
				ids = append(ids, aws.ToString(u.UploadId))
			}
		}
	}
	return ids, nil
}

func (d *Driver) abort(ctx context.Context, key, id string) error {
	_, err := d.c.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{
		Bucket: &d.bucket, Key: aws.String(d.path(key)), UploadId: aws.String(id),
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3: aborting the multipart upload of %s: %w", key, err)
	}
	return nil
}

// deleteObject deletes a bucket key (not a driver key).
func (d *Driver) deleteObject(ctx context.Context, name string) error {
	_, err := d.c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &d.bucket, Key: aws.String(name)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3: delete %s: %w", name, err)
	}
	return nil
}

// PresignGet returns a URL from which anyone can GET the object at key for
// the next expiry, without credentials.
func (d *Driver) PresignGet(ctx context.Context, key string, expiry time.Duration) (string, error) {
	req, err := awss3.NewPresignClient(d.c).PresignGetObject(ctx,
		&awss3.GetObjectInput{Bucket: &d.bucket, Key: aws.String(d.path(key))},
		awss3.WithPresignExpires(expiry))
	if err != nil {
		return "", fmt.Errorf("s3: presigning %s: %w", key, err)
	}
	return req.URL, nil
}

// copySource names a bucket key as CopyObject's source: bucket/key, escaped.
func (d *Driver) copySource(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return d.bucket + "/" + strings.Join(segs, "/")
}
