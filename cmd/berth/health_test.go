package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealth: berth health succeeds on a 200 from /readyz and fails on a
// 503 or no answer, which is what a container health check needs.
func TestHealth(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, `{"ready":false,"draining":true}`)
	}))
	if err := health([]string{"--url", srv.URL}, io.Discard); err != nil {
		t.Errorf("ready registry: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := health([]string{"--url", srv.URL + "/"}, io.Discard); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Errorf("draining registry: %v, want an error naming the answer", err)
	}
	srv.Close()
	if err := health([]string{"--url", srv.URL}, io.Discard); err == nil {
		t.Error("no registry: no error")
	}
}
