package registry

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the registry's Prometheus metrics. Requests are labelled by
// route, the endpoint's name, never by path: paths hold repository names
// and digests without bound.
type metrics struct {
	requests     *prometheus.CounterVec   // by route, method, code
	duration     *prometheus.HistogramVec // by route, method
	bytesIn      *prometheus.CounterVec   // by route
	bytesOut     *prometheus.CounterVec   // by route
	uploading    prometheus.Gauge
	deduplicated prometheus.Counter
	mounts       prometheus.Counter
}

// The routes of requests outside /v2/ endpoints, as the metrics name them.
const (
	routeAdmin  = "admin"
	routeToken  = "token"
	routeHealth = "health"
	routeOther  = "other"
)

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_requests_total",
			Help: "HTTP requests answered, by route (base, catalog, manifest, blob, uploads, upload, tags, referrers, tag-history, admin, token, health, other), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_http_request_duration_seconds",
			Help:    "How long HTTP requests took to answer, bodies included, by route and method.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms to 4.4 min
		}, []string{"route", "method"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_request_bytes_total",
			Help: "Bytes of request bodies read, by route.",
		}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_response_bytes_total",
			Help: "Bytes of response bodies written, by route.",
		}, []string{"route"}),
		uploading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_http_uploads_in_flight",
			Help: "Upload requests (POST, PATCH and PUT of blob uploads) being served now.",
		}),
		deduplicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_uploads_deduplicated_total",
			Help: "Blob uploads whose bytes were stored already, so that nothing was written.",
		}),
		mounts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_blob_mounts_total",
			Help: "Blobs mounted from another repository, which copies nothing.",
		}),
	}
	if r != nil {
		r.MustRegister(m.requests, m.duration, m.bytesIn, m.bytesOut, m.uploading, m.deduplicated, m.mounts)
	}
	return m
}

// observe counts an answered request.
func (m *metrics) observe(route, method string, status int, in, out int64, took time.Duration) {
	method = methodLabel(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(took.Seconds())
	m.bytesIn.WithLabelValues(route).Add(float64(in))
	m.bytesOut.WithLabelValues(route).Add(float64(out))
}

// routeName names the endpoint r asks for, for the metrics.
func (reg *Registry) routeName(r *http.Request, rt route, v2 bool) string {
	switch p := r.URL.Path; {
	case p == healthzPath || p == readyzPath:
		return routeHealth
	case reg.isTokenRequest(r):
		return routeToken
	case strings.HasPrefix(p, "/admin/"):
		return routeAdmin
	}
	if v2 {
		return rt.endpoint
	}
	return routeOther
}

// isUpload reports whether a request to route writes a blob upload.
func isUpload(route, method string) bool {
	return route == epUploads && method == http.MethodPost ||
		route == epUpload && (method == http.MethodPatch || method == http.MethodPut)
}

// methodLabel is method, or "other" for a method no client of a registry
// sends, so that a hostile client cannot make series without end.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return routeOther
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
