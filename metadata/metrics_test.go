package metadata_test

import (
	"testing"

	"github.com/berthhq/berth/internal/metricstest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: transactions and reads are timed, the pools' connections
// are reported at each scrape, and Ping fails once the database is closed.
func TestMetrics(t *testing.T) { forEachBackend(t, testMetrics) }

func testMetrics(t *testing.T, be backend) {
	reg := prometheus.NewRegistry()
	o := be.fresh(t)
	o.Metrics = reg
	db := openWith(t, o, nil)
	b := newBlob("timed")
	link(t, db, "app", b)
	if _, err := db.BlobInRepo(t.Context(), "app", b.digest); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	for op, min := range map[string]float64{"tx": 1, "query": 2} {
		if n := sample(t, reg, "berth_metadata_query_duration_seconds", "op", op); n < min {
			t.Errorf("op %s: %v observations, want at least %v", op, n, min)
		}
	}
	if n := testutil.CollectAndCount(reg, "berth_metadata_connections", "berth_metadata_wait_seconds_total"); n != 4 {
		t.Errorf("%d connection series, want 4 (in_use, idle, open, wait)", n)
	}
	if open := sample(t, reg, "berth_metadata_connections", "state", "open"); open < 1 {
		t.Errorf("%v open connections after queries, want at least 1", open)
	}

	db.Close()
	if err := db.Ping(t.Context()); err == nil {
		t.Error("Ping of a closed database succeeded")
	}
}

// sample is the value of one series of a family, as g gathers it.
var sample = metricstest.Sample
