package s3

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthhq/berth/internal/metricstest"
	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/storage"
)

// TestMetrics: every request sent to S3 is counted by operation and
// status, a retried one once more as a retry, one that got no answer as
// "error"; presigning sends nothing and counts nothing.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := &faulty{c: httpClient()}
	o := options(testserver.S3(t))
	o.Metrics = reg
	d, err := newDriver(t.Context(), o, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(t.Context(), "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat of a missing key = %v, want ErrNotFound", err)
	}
	put(t, d, "k", random(100))
	f.inject(1, func(r *http.Request) bool { return r.Method == http.MethodHead })
	if _, err := d.Stat(t.Context(), "k"); err != nil {
		t.Fatalf("Stat through a transient error: %v", err)
	}
	if _, err := d.PresignGet(t.Context(), "k", time.Minute); err != nil {
		t.Fatal(err)
	}

	// A server that is not there: no status to count.
	downReg := prometheus.NewRegistry()
	o.Metrics, o.Endpoint, o.MaxAttempts = downReg, "http://127.0.0.1:1", 1
	down, err := newDriver(t.Context(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Stat(t.Context(), "k"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat on a server that is not there = %v, want an error", err)
	}

	for _, c := range []struct {
		g      prometheus.Gatherer
		name   string
		labels []string
		want   float64
	}{
		{reg, "berth_s3_requests_total", []string{"operation", "HeadObject", "code", "404"}, 1},
		{reg, "berth_s3_requests_total", []string{"operation", "HeadObject", "code", "503"}, 1},
		{reg, "berth_s3_requests_total", []string{"operation", "HeadObject", "code", "200"}, 1},
		{reg, "berth_s3_retries_total", []string{"operation", "HeadObject"}, 1},
		{reg, "berth_s3_request_duration_seconds", []string{"operation", "HeadObject"}, 3},
		{reg, "berth_s3_requests_total", []string{"operation", "PutObject", "code", "200"}, 1},
		{reg, "berth_s3_requests_total", []string{"operation", "GetObject"}, 0},
		{downReg, "berth_s3_requests_total", []string{"operation", "HeadObject", "code", "error"}, 1},
		{downReg, "berth_s3_retries_total", []string{"operation", "HeadObject"}, 0},
	} {
		if got := sample(t, c.g, c.name, c.labels...); got != c.want {
			t.Errorf("%s%q = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// sample is the value of one series of a family, as g gathers it.
var sample = metricstest.Sample
