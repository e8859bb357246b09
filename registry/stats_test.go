package registry

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// configSize is the size of the config pushImage writes for tag.
func configSize(tag string) int64 {
	return int64(len(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q}`, tag)))
}

// TestAdminStats: a and b hold the same image (config and layer shared),
// a also one of its own; the figures count shared blobs once in physical
// bytes and once per repository in logical bytes.
func TestAdminStats(t *testing.T) {
	s := newServer(t)
	shared, own := []byte("a layer both repositories hold"), []byte("a's own layer")
	s.pushImage("a", "1", shared)
	s.pushImage("b", "1", shared)
	s.pushImage("a", "2", own)

	sharedBytes := configSize("1") + int64(len(shared))
	ownBytes := configSize("2") + int64(len(own))
	physical, logical := sharedBytes+ownBytes, 2*sharedBytes+ownBytes
	var got statsJSON
	r := s.do("GET", "/admin/v1/stats", nil)
	r.expect(t, http.StatusOK, "")
	decode(t, r.body, &got)
	want := statsJSON{Blobs: 4, PhysicalBytes: physical, LogicalBytes: logical,
		DedupRatio: float64(logical) / float64(physical), Repositories: 2, Manifests: 2}
	if got != want {
		t.Errorf("GET /admin/v1/stats = %+v; want %+v", got, want)
	}

	for _, want := range []repositoryStatsJSON{
		{Repository: "a", Blobs: 4, LogicalBytes: sharedBytes + ownBytes, SharedBytes: sharedBytes, Manifests: 2},
		{Repository: "b", Blobs: 2, LogicalBytes: sharedBytes, SharedBytes: sharedBytes, Manifests: 1},
	} {
		var got repositoryStatsJSON
		r := s.do("GET", "/admin/v1/repositories/"+want.Repository+"/stats", nil)
		r.expect(t, http.StatusOK, "")
		decode(t, r.body, &got)
		if got != want {
			t.Errorf("stats of %s = %+v; want %+v", want.Repository, got, want)
		}
	}
	s.do("GET", "/admin/v1/repositories/nothing/stats", nil).expect(t, http.StatusNotFound, codeNameUnknown)
	s.do("GET", "/admin/v1/repositories/Not_A_Name/stats", nil).expect(t, http.StatusBadRequest, codeNameInvalid)
	s.do("POST", "/admin/v1/stats", nil).expect(t, http.StatusMethodNotAllowed, codeUnsupported)
}

// statsClock is a collector's clock that moves only when told to.
type statsClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *statsClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *statsClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// gauges gathers c's metrics by name.
func gauges(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		out[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
	}
	return out
}

// TestStatsCollector: the gauges hold the figures, read again only once
// they are a period old.
func TestStatsCollector(t *testing.T) {
	s := newServer(t)
	clock := &statsClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := newStatsCollector(s.db, time.Minute, clock.now)
	want := func(physical, logical, blobs, ratio float64) map[string]float64 {
		return map[string]float64{"berth_storage_physical_bytes": physical, "berth_storage_logical_bytes": logical,
			"berth_storage_blobs": blobs, "berth_storage_dedup_ratio": ratio}
	}
	check := func(name string, want map[string]float64) {
		t.Helper()
		if got := gauges(t, c); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: gauges %v; want %v", name, got, want)
		}
	}
	check("empty", want(0, 0, 0, 0))

	layer := []byte("one layer")
	s.pushImage("a", "1", layer)
	s.pushImage("b", "1", layer)
	check("within the period", want(0, 0, 0, 0))

	clock.add(time.Minute)
	n := float64(configSize("1") + int64(len(layer)))
	check("a period later", want(n, 2*n, 2, 2))
}
