package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/notify"
)

// TestMetricsAndHealth: the debug listener's /metrics counts a push and a
// pull by route, a webhook delivery and a garbage collection run, and the
// storage figures; /healthz and /readyz answer on both listeners; on SIGTERM
// /readyz answers 503 at once while an upload in flight finishes, and the
// process exits cleanly.
func TestMetricsAndHealth(t *testing.T) {
	if serverKind() != "berth" {
		t.Skip("Berth's own metrics and health endpoints")
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	debug := fmt.Sprintf("http://127.0.0.1:%d", port)
	r := newReceiver(t, always(http.StatusNoContent))
	s := startHookBerth(t, []string{"--debug.addr", strings.TrimPrefix(debug, "http://")}, hook("deploy", r, notify.FormatCloudEvents))

	img := newTestImage(t)
	repo := uniqueRepo(t, "metrics")
	img.push(t, s, repo, "1")
	getManifest(t, s, repo, "1")
	getBlob(t, s, repo, img.LayerDigest)
	r.waitFor(t, "the delivery of tag 1", func(reqs []received) bool { return len(successes(reqs)) >= 1 })
	// Counted once the dispatcher has recorded the answer, a moment after the receiver had it.
	poll(t, "a delivered webhook attempt counted", func() bool {
		return scrape(t, debug, `berth_webhook_attempts_total{outcome="delivered",webhook="deploy"}`) >= 1
	})
	resp, body := httpDo(t, http.MethodPost, s.URL+"/admin/v1/gc", nil, nil)
	expectStatus(t, resp, body, http.StatusOK)

	for _, u := range []string{s.URL + "/healthz", s.URL + "/readyz", debug + "/healthz", debug + "/readyz"} {
		resp, body := httpDo(t, http.MethodGet, u, nil, nil)
		expectStatus(t, resp, body, http.StatusOK)
	}
	for _, c := range []struct {
		series string
		min    float64
	}{
		{`berth_http_requests_total{code="201",method="PUT",route="manifest"}`, 1},
		{`berth_http_requests_total{code="200",method="GET",route="blob"}`, 1},
		{`berth_http_response_bytes_total{route="blob"}`, float64(len(img.Layer))},
		{`berth_metadata_connections{state="open"}`, 1},
		{`berth_gc_runs_total{result="ok"}`, 1},
		{`berth_storage_blobs`, 2}, // the image's config and layer
		{`berth_storage_physical_bytes`, float64(len(img.Config) + len(img.Layer))},
	} {
		if got := scrape(t, debug, c.series); got < c.min {
			t.Errorf("%s = %v, want at least %v", c.series, got, c.min)
		}
	}

	// An upload in flight when SIGTERM comes: its PATCH is served while
	// /readyz drains.
	resp, body = httpDo(t, http.MethodPost, s.URL+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	expectStatus(t, resp, body, http.StatusAccepted)
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPatch, location(t, s, resp), pr)
	if err != nil {
		t.Fatal(err)
	}
	patched := make(chan error, 1)
	go func() {
		resp, err := httpClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				err = fmt.Errorf("PATCH during shutdown: %s", resp.Status)
			}
		}
		patched <- err
	}()
	poll(t, "an upload in flight", func() bool { return scrape(t, debug, "berth_http_uploads_in_flight") == 1 })
	cmd, done := s.running()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	poll(t, "/readyz draining", func() bool {
		resp, _, err := tryDo(http.MethodGet, debug+"/readyz", nil, nil)
		return err == nil && resp.StatusCode == http.StatusServiceUnavailable
	})
	pw.Write(bytes.Repeat([]byte("x"), 1000))
	pw.Close()
	if err := <-patched; err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(stopTimeout):
		t.Fatalf("berth did not exit within %s of SIGTERM", stopTimeout)
	}
	if err := s.waitErr(); err != nil {
		t.Fatalf("berth exited uncleanly after SIGTERM: %v", err)
	}
}

// scrape returns the value of one series (name and labels, as exposed) on
// the metrics page at base, or -1 if it is absent.
func scrape(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, body := httpDo(t, http.MethodGet, base+"/metrics", nil, nil)
	expectStatus(t, resp, body, http.StatusOK)
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return -1
}
