package metadata

import (
	"database/sql"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The operations berth_metadata_query_duration_seconds tells apart.
const (
	opTx    = "tx"    // a write transaction (InTx), retries included
	opQuery = "query" // a read outside transactions, until its first row
)

// metrics time the database's work; poolStats reports its connections.
type metrics struct {
	duration *prometheus.HistogramVec // by op
}

// newMetrics returns the database's metrics; Open registers them with
// poolStats, the connection pools' state read at each scrape.
func newMetrics() *metrics {
	return &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_metadata_query_duration_seconds",
			Help:    "How long metadata database work took, by op: tx (a write transaction, with its retries) or query (a read, until its first row).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9), // 0.5 ms to 33 s
		}, []string{"op"}),
	}
}

// observe records how long op has taken since start.
func (m *metrics) observe(op string, start time.Time) {
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// poolStats is a collector of the connection pools' statistics, summed
// over the pools (SQLite's read and write pools; PostgreSQL's query and
// upload-lock pools).
type poolStats struct{ pools []*sql.DB }

var (
	connectionsDesc = prometheus.NewDesc("berth_metadata_connections",
		"Connections to the metadata database, by state: in_use, idle, open (the two together).", []string{"state"}, nil)
	waitDesc = prometheus.NewDesc("berth_metadata_wait_seconds_total",
		"Time spent waiting for a free connection to the metadata database.", nil, nil)
)

// Describe implements prometheus.Collector.
func (p poolStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- connectionsDesc
	ch <- waitDesc
}

// Collect implements prometheus.Collector.
func (p poolStats) Collect(ch chan<- prometheus.Metric) {
	var inUse, idle, open int
	var wait time.Duration
	for _, pool := range p.pools {
		s := pool.Stats()
		inUse, idle, open = inUse+s.InUse, idle+s.Idle, open+s.OpenConnections
		wait += s.WaitDuration
	}
	ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(inUse), "in_use")
	ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(idle), "idle")
	ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(open), "open")
	ch <- prometheus.MustNewConstMetric(waitDesc, prometheus.CounterValue, wait.Seconds())
}
