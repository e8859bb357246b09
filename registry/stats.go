package registry

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/prometheus/client_golang/prometheus"
)

// statsJSON is the registry's storage figures on the wire (metadata's
// StorageStats says what each counts).
type statsJSON struct {
	Blobs         int64   `json:"blobs"`
	PhysicalBytes int64   `json:"physicalBytes"`
	LogicalBytes  int64   `json:"logicalBytes"`
	DedupRatio    float64 `json:"dedupRatio"`
	Repositories  int64   `json:"repositories"`
	Manifests     int64   `json:"manifests"`
}

// repositoryStatsJSON is one repository's storage figures on the wire.
type repositoryStatsJSON struct {
	Repository   string `json:"repository"`
	Blobs        int64  `json:"blobs"`
	LogicalBytes int64  `json:"logicalBytes"`
	SharedBytes  int64  `json:"sharedBytes"`
	Manifests    int64  `json:"manifests"`
}

// stats answers the registry's storage figures: what it stores, what its
// repositories reference, and the ratio of the two.
//
// GET /admin/v1/stats
func (reg *Registry) stats(w http.ResponseWriter, r *http.Request, _ adminRoute) error {
	s, err := reg.db.StorageStats(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json",
		statsJSON{s.Blobs, s.PhysicalBytes, s.LogicalBytes, s.DedupRatio(), s.Repositories, s.Manifests})
}

// repositoryStats answers one repository's storage figures.
//
// GET /admin/v1/repositories/<name>/stats
func (reg *Registry) repositoryStats(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	s, err := reg.db.RepositoryStatsOf(r.Context(), rt.name)
	if err != nil {
		return orNameUnknown(err, rt.name)
	}
	return writeJSON(w, "application/json",
		repositoryStatsJSON{s.Name, s.Blobs, s.LogicalBytes, s.SharedBytes, s.Manifests})
}

// statsEvery is how often the collector reads the figures at most: the
// query sums every blob, too much for each scrape of a large registry.
const statsEvery = time.Minute

// statsCollector serves the storage figures as Prometheus gauges, read
// from the database at most once per period and kept in between.
type statsCollector struct {
	db     *metadata.DB
	period time.Duration
	now    func() time.Time

	physical, logical, blobs, ratio *prometheus.Desc

	mu     sync.Mutex
	read   time.Time // when the figures were last asked for (zero: never)
	last   metadata.StorageStats
	loaded bool // last holds figures read
}

// NewStatsCollector returns the collector of the storage gauges
// berth_storage_physical_bytes, _logical_bytes, _blobs and _dedup_ratio.
func NewStatsCollector(db *metadata.DB) prometheus.Collector {
	return newStatsCollector(db, statsEvery, time.Now)
}

func newStatsCollector(db *metadata.DB, period time.Duration, now func() time.Time) *statsCollector {
	return &statsCollector{db: db, period: period, now: now,
		physical: prometheus.NewDesc("berth_storage_physical_bytes",
			"Bytes of the blobs stored, each once however many repositories link it.", nil, nil),
		logical: prometheus.NewDesc("berth_storage_logical_bytes",
			"Bytes of the blobs each repository links, summed over the repositories: a blob counts once per repository.", nil, nil),
		blobs: prometheus.NewDesc("berth_storage_blobs",
			"Blobs stored.", nil, nil),
		ratio: prometheus.NewDesc("berth_storage_dedup_ratio",
			"Logical over physical bytes (0 when nothing is stored).", nil, nil),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.physical
	ch <- c.logical
	ch <- c.blobs
	ch <- c.ratio
}

// Collect sends the figures, read again when the last read is a period
// old. A read that fails is tried again a period later; meanwhile the last
// figures read are sent, and none before any was.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.figures()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.physical, prometheus.GaugeValue, float64(s.PhysicalBytes))
	ch <- prometheus.MustNewConstMetric(c.logical, prometheus.GaugeValue, float64(s.LogicalBytes))
	ch <- prometheus.MustNewConstMetric(c.blobs, prometheus.GaugeValue, float64(s.Blobs))
	ch <- prometheus.MustNewConstMetric(c.ratio, prometheus.GaugeValue, s.DedupRatio())
}

// figures returns the figures to send, reading them if they are stale.
// Scrapes at once wait for one read.
func (c *statsCollector) figures() (metadata.StorageStats, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.read.IsZero() || now.Sub(c.read) >= c.period {
		c.read = now
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if s, err := c.db.StorageStats(ctx); err == nil {
			c.last, c.loaded = s, true
		}
	}
	return c.last, c.loaded
}
