package s3

import (
	"context"
	"errors"
	"strconv"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the driver's Prometheus metrics, counted per HTTP request
// sent to S3: an operation the SDK retries is several requests.
type metrics struct {
	requests *prometheus.CounterVec   // by operation and code
	duration *prometheus.HistogramVec // by operation
	retries  *prometheus.CounterVec   // by operation
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_s3_requests_total",
			Help: "Requests sent to S3, by operation (HeadObject, UploadPart, …) and code: the HTTP status, or error when none came back.",
		}, []string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_s3_request_duration_seconds",
			Help:    "How long requests to S3 took until their response's headers, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.002, 4, 9), // 2 ms to 131 s
		}, []string{"operation"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_s3_retries_total",
			Help: "Requests to S3 that retried an earlier one of the same operation call, by operation.",
		}, []string{"operation"}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.duration, m.retries)
	}
	return m
}

// attemptsKey keys the attempt count of one operation call in its context.
type attemptsKey struct{}

// instrument adds the metrics' middleware to an operation's stack: one
// that gives each call an attempt count, and one, below the retry loop,
// that observes each request sent. Presigning never reaches the second.
func (m *metrics) instrument(st *middleware.Stack) error {
	err := st.Initialize.Add(middleware.InitializeMiddlewareFunc("BerthCountAttempts",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			return next.HandleInitialize(context.WithValue(ctx, attemptsKey{}, new(int)), in)
		}), middleware.Before)
	if err != nil {
		return err
	}
	return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("BerthObserveRequest",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			op := awsmiddleware.GetOperationName(ctx)
			if n, ok := ctx.Value(attemptsKey{}).(*int); ok {
				if *n++; *n > 1 {
					m.retries.WithLabelValues(op).Inc()
				}
			}
			start := time.Now()
			out, md, err := next.HandleFinalize(ctx, in)
			m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
			m.requests.WithLabelValues(op, statusCode(md, err)).Inc()
			return out, md, err
		}), middleware.After)
}

// statusCode is the HTTP status of a request's response, or "error" when
// none came back (a dial failure, a timeout): the SDK then records an empty
// response, of status 0.
func statusCode(md middleware.Metadata, err error) string {
	status := 0
	if raw, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response); ok && raw != nil && raw.Response != nil {
		status = raw.StatusCode
	}
	var re interface{ HTTPStatusCode() int }
	if status == 0 && errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	if status == 0 {
		return "error"
	}
	return strconv.Itoa(status)
}
