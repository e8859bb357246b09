package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// statsImage is an image of several layers, pushed blob by blob.
type statsImage struct {
	config   []byte
	layers   [][]byte
	manifest []byte
}

// newStatsImage makes an image over layers with a config of its own.
func newStatsImage(t *testing.T, name string, layers ...[]byte) statsImage {
	t.Helper()
	img := statsImage{config: mustJSON(t, map[string]any{"architecture": "amd64", "os": "linux", "name": name}), layers: layers}
	m := manifest{SchemaVersion: 2, MediaType: mtOCIManifest,
		Config: &descriptor{MediaType: mtOCIConfig, Digest: digestOf(img.config), Size: int64(len(img.config))}}
	for _, l := range layers {
		m.Layers = append(m.Layers, descriptor{MediaType: mtOCILayerGzip, Digest: digestOf(l), Size: int64(len(l))})
	}
	img.manifest = mustJSON(t, m)
	return img
}

func (img statsImage) blobs() [][]byte { return append([][]byte{img.config}, img.layers...) }

// Storage figures as the admin API answers them.
type (
	storageStats struct {
		Blobs         int64   `json:"blobs"`
		PhysicalBytes int64   `json:"physicalBytes"`
		LogicalBytes  int64   `json:"logicalBytes"`
		DedupRatio    float64 `json:"dedupRatio"`
		Repositories  int64   `json:"repositories"`
		Manifests     int64   `json:"manifests"`
	}
	repositoryStats struct {
		Repository   string `json:"repository"`
		Blobs        int64  `json:"blobs"`
		LogicalBytes int64  `json:"logicalBytes"`
		SharedBytes  int64  `json:"sharedBytes"`
		Manifests    int64  `json:"manifests"`
	}
)

// expectedStats computes the figures of what was pushed, from the blobs
// themselves: pushed maps each repository to the images pushed to it.
func expectedStats(pushed map[string][]statsImage) (storageStats, map[string]repositoryStats) {
	sizes := map[string]int64{}            // every blob's size, by digest
	holders := map[string]int{}            // how many repositories link each blob
	linked := map[string]map[string]bool{} // each repository's blobs
	manifests := map[string]bool{}
	var total storageStats
	perRepo := map[string]repositoryStats{}
	for repo, images := range pushed {
		linked[repo] = map[string]bool{}
		own := map[string]bool{}
		for _, img := range images {
			own[digestOf(img.manifest)] = true
			manifests[digestOf(img.manifest)] = true
			for _, b := range img.blobs() {
				d := digestOf(b)
				sizes[d] = int64(len(b))
				if !linked[repo][d] {
					linked[repo][d] = true
					holders[d]++
				}
			}
		}
		perRepo[repo] = repositoryStats{Repository: repo, Manifests: int64(len(own))}
	}
	for repo, ds := range linked {
		s := perRepo[repo]
		for d := range ds {
			s.Blobs++
			s.LogicalBytes += sizes[d]
			if holders[d] > 1 {
				s.SharedBytes += sizes[d]
			}
		}
		perRepo[repo] = s
		total.LogicalBytes += s.LogicalBytes
	}
	for _, n := range sizes {
		total.Blobs++
		total.PhysicalBytes += n
	}
	total.Repositories, total.Manifests = int64(len(pushed)), int64(len(manifests))
	total.DedupRatio = float64(total.LogicalBytes) / float64(total.PhysicalBytes)
	return total, perRepo
}

// TestStorageStats: images sharing a base layer (twice in one repository,
// across three), and one image in two repositories; berth stats, the
// admin API and the Prometheus gauges all give the figures computed from
// the blobs pushed.
func TestStorageStats(t *testing.T) {
	t.Parallel()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	s := startBerth(t, serverOptions{Flags: []string{"--gc.interval", "0", "--debug.addr", metricsAddr}})
	cli := berthCLI(t, s)

	base, web1, web2, api := randBytes(t, 40<<10+7), randBytes(t, 9<<10+1), randBytes(t, 3<<10+5), randBytes(t, 17<<10+3)
	webV1 := newStatsImage(t, "web 1", base, web1)
	webV2 := newStatsImage(t, "web 2", base, web2)
	apiV1 := newStatsImage(t, "api 1", base, api)
	pushed := map[string][]statsImage{
		"stats/web":    {webV1, webV2},
		"stats/api":    {apiV1},
		"stats/mirror": {webV1},
	}
	for repo, images := range pushed {
		for i, img := range images {
			for _, b := range img.blobs() {
				pushBlob(t, s, repo, b)
			}
			pushManifest(t, s, repo, strconv.Itoa(i+1), mtOCIManifest, img.manifest)
		}
	}
	want, wantRepo := expectedStats(pushed)
	if want.PhysicalBytes >= want.LogicalBytes {
		t.Fatalf("the images share nothing: %+v", want) // the test's own mistake
	}

	var got storageStats
	runJSON(t, cli, &got, "stats")
	if got != want {
		t.Errorf("berth stats --json = %+v; want %+v", got, want)
	}
	resp, body := httpDo(t, http.MethodGet, s.URL+"/admin/v1/stats", nil, nil)
	expectStatus(t, resp, body, http.StatusOK)
	if err := json.Unmarshal(body, &got); err != nil || got != want {
		t.Errorf("GET /admin/v1/stats = %+v, %v; want %+v", got, err, want)
	}
	for repo, want := range wantRepo {
		var got repositoryStats
		runJSON(t, cli, &got, "stats", repo)
		if got != want {
			t.Errorf("berth stats %s --json = %+v; want %+v", repo, got, want)
		}
		resp, body := httpDo(t, http.MethodGet, s.URL+"/admin/v1/repositories/"+repo+"/stats", nil, nil)
		expectStatus(t, resp, body, http.StatusOK)
		if err := json.Unmarshal(body, &got); err != nil || got != want {
			t.Errorf("GET stats of %s = %+v, %v; want %+v", repo, got, err, want)
		}
	}
	if out := string(cli.run(t, "stats")); !strings.Contains(out, fmt.Sprintf("DEDUP RATIO           %.2fx", want.DedupRatio)) {
		t.Errorf("berth stats printed:\n%s", out)
	}
	expectExit(t, cli, 1, "NAME_UNKNOWN", "stats", "stats/nothing")

	// Nothing scraped the gauges before: the first scrape reads the figures.
	resp, body = httpDo(t, http.MethodGet, "http://"+metricsAddr+"/metrics", nil, nil)
	expectStatus(t, resp, body, http.StatusOK)
	gauges := map[string]string{}
	for sc := bufio.NewScanner(bytes.NewReader(body)); sc.Scan(); {
		if name, value, ok := strings.Cut(sc.Text(), " "); ok && strings.HasPrefix(name, "berth_storage_") {
			gauges[name] = value
		}
	}
	for name, want := range map[string]float64{
		"berth_storage_physical_bytes": float64(want.PhysicalBytes),
		"berth_storage_logical_bytes":  float64(want.LogicalBytes),
		"berth_storage_blobs":          float64(want.Blobs),
		"berth_storage_dedup_ratio":    want.DedupRatio,
	} {
		if got, err := strconv.ParseFloat(gauges[name], 64); err != nil || got != want {
			t.Errorf("%s = %q; want %v", name, gauges[name], want)
		}
	}
}
