package registry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthhq/berth/internal/metricstest"
	"github.com/berthhq/berth/oci"
)

// withMetrics registers the registry's metrics with r.
func withMetrics(r prometheus.Registerer) serverOption {
	return func(s *serverSetup) { s.reg.Metrics = r }
}

// TestMetrics: requests are counted by route (never by path), method and
// status, with their bytes and durations; re-uploads of a stored blob
// count as deduplicated, mounts as mounts.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newServer(t, withMetrics(reg))
	layer := []byte("a layer pushed in two requests")
	config := []byte(`{"architecture":"amd64","os":"linux"}`)

	// Push: the layer by POST then PUT, the config in one POST, the manifest.
	ld := pushChunked(s, "app", layer)
	cd := s.pushBlob("app", config)
	m := imageManifest(desc("application/vnd.oci.image.config.v1+json", cd, len(config)),
		desc("application/vnd.oci.image.layer.v1.tar", ld, len(layer)))
	s.do("PUT", "/v2/app/manifests/1", m, "Content-Type", oci.MediaTypeImageManifest).expect(t, http.StatusCreated, "")
	// Pull.
	s.do("GET", "/v2/app/manifests/1", nil, "Accept", oci.MediaTypeImageManifest).expect(t, http.StatusOK, "")
	s.do("GET", "/v2/app/blobs/"+string(ld), nil).expect(t, http.StatusOK, "")
	// A mount, and the layer uploaded again in one POST: stored already.
	s.do("POST", "/v2/other/blobs/uploads/?from=app&mount="+string(ld), nil).expect(t, http.StatusCreated, "")
	s.pushBlob("third", layer)
	s.do("GET", "/v2/app/manifests/missing", nil).expect(t, http.StatusNotFound, codeManifestUnknown)
	s.do("GET", "/healthz", nil).expect(t, http.StatusOK, "")

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"berth_http_requests_total", []string{"route", "uploads", "method", "POST", "code", "202"}, 1},
		{"berth_http_requests_total", []string{"route", "upload", "method", "PUT", "code", "201"}, 1},
		{"berth_http_requests_total", []string{"route", "uploads", "method", "POST", "code", "201"}, 3}, // config, mount, again
		{"berth_http_requests_total", []string{"route", "manifest", "method", "PUT", "code", "201"}, 1},
		{"berth_http_requests_total", []string{"route", "manifest", "method", "GET", "code", "200"}, 1},
		{"berth_http_requests_total", []string{"route", "blob", "method", "GET", "code", "200"}, 1},
		{"berth_http_requests_total", []string{"route", "manifest", "method", "GET", "code", "404"}, 1},
		{"berth_http_requests_total", []string{"route", "health", "method", "GET", "code", "200"}, 1},
		{"berth_http_request_duration_seconds", []string{"route", "manifest", "method", "PUT"}, 1},
		{"berth_http_request_duration_seconds", []string{"route", "uploads", "method", "POST"}, 4},
		{"berth_http_request_bytes_total", []string{"route", "upload"}, float64(len(layer))},
		{"berth_http_request_bytes_total", []string{"route", "manifest"}, float64(len(m))},
		{"berth_http_response_bytes_total", []string{"route", "blob"}, float64(len(layer))},
		{"berth_http_uploads_in_flight", nil, 0},
		{"berth_uploads_deduplicated_total", nil, 1},
		{"berth_blob_mounts_total", nil, 1},
	} {
		if got := sample(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%q = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// A chunked re-upload is deduplicated too.
	pushChunked(s, "fourth", layer)
	if got := sample(t, reg, "berth_uploads_deduplicated_total"); got != 2 {
		t.Errorf("berth_uploads_deduplicated_total after a chunked re-upload = %v, want 2", got)
	}
}

// TestUploadsInFlight: an upload request counts while it is served.
func TestUploadsInFlight(t *testing.T) {
	s := newServer(t)
	reg := s.handler.(*Registry)
	loc := s.do("POST", "/v2/app/blobs/uploads/", nil).Header.Get("Location")
	body := &gatedBody{reading: make(chan struct{}), release: make(chan struct{})}
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, httptest.NewRequest("PATCH", loc, body))
		done <- rec.Code
	}()
	<-body.reading
	if got := testutil.ToFloat64(reg.metrics.uploading); got != 1 {
		t.Errorf("uploads in flight during a PATCH = %v, want 1", got)
	}
	close(body.release)
	if code := <-done; code != http.StatusAccepted {
		t.Fatalf("PATCH: %d", code)
	}
	if got := testutil.ToFloat64(reg.metrics.uploading); got != 0 {
		t.Errorf("uploads in flight after the PATCH = %v, want 0", got)
	}
}

// gatedBody is a request body that says when it is first read and then
// ends when released.
type gatedBody struct {
	reading, release chan struct{}
	started          bool
}

func (b *gatedBody) Read(p []byte) (int, error) {
	if !b.started {
		b.started = true
		close(b.reading)
		<-b.release
	}
	return 0, io.EOF
}

// pushChunked uploads data to repo by POST, then PUT with the bytes, and
// returns its digest.
func pushChunked(s *testServer, repo string, data []byte) oci.Digest {
	s.t.Helper()
	d := oci.FromBytes(data)
	r := s.do("POST", "/v2/"+repo+"/blobs/uploads/", nil)
	r.expect(s.t, http.StatusAccepted, "")
	s.do("PUT", r.Header.Get("Location")+"?digest="+string(d), data).expect(s.t, http.StatusCreated, "")
	return d
}

// sample is the value of one series of a family, as g gathers it.
var sample = metricstest.Sample
