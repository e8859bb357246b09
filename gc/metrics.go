package gc

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collector's Prometheus metrics; those of this process's
// runs (each replica counts its own).
type metrics struct {
	runs      *prometheus.CounterVec // by result: ok, error, busy
	duration  prometheus.Histogram
	deleted   *prometheus.CounterVec // by kind: manifests, links, blobs
	bytes     prometheus.Counter
	candidate prometheus.Gauge
	failures  prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_gc_runs_total",
			Help: "Garbage collection runs by this process, by result: ok, error, or busy (another replica was running one).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_gc_duration_seconds",
			Help:    "How long garbage collection runs took.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 8), // 100 ms to 27 min
		}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_gc_deleted_total",
			Help: "What garbage collection deleted, by kind: manifests (unlinked from a repository), links (blob links), blobs (bytes deleted from storage).",
		}, []string{"kind"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_gc_deleted_bytes_total",
			Help: "Bytes of blobs garbage collection deleted from storage.",
		}),
		candidate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_gc_candidates",
			Help: "Blobs and blob links the last run weighed as garbage.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_gc_errors_total",
			Help: "Garbage collection runs that failed, plus blobs whose bytes a run could not delete.",
		}),
	}
	if r != nil {
		r.MustRegister(m.runs, m.duration, m.deleted, m.bytes, m.candidate, m.failures)
	}
	return m
}

func (m *metrics) run(result string, took time.Duration) {
	m.runs.WithLabelValues(result).Inc()
	if result == "error" {
		m.failures.Inc()
	}
	if result != "busy" {
		m.duration.Observe(took.Seconds())
	}
}

func (m *metrics) collected(r *Report) {
	m.deleted.WithLabelValues("manifests").Add(float64(len(r.Manifests)))
	m.deleted.WithLabelValues("links").Add(float64(len(r.Links)))
	m.deleted.WithLabelValues("blobs").Add(float64(len(r.Blobs)))
	m.bytes.Add(float64(r.Bytes))
	m.candidate.Set(float64(r.Candidates))
	m.failures.Add(float64(len(r.Failed)))
}
