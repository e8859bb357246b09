package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/storage"
	"github.com/berthhq/berth/storage/disk"
)

// failingDriver is a driver whose Stat fails while fail is set, as storage
// that cannot be reached does.
type failingDriver struct {
	storage.Driver
	fail atomic.Bool
}

func (d *failingDriver) Stat(ctx context.Context, key string) (int64, error) {
	if d.fail.Load() {
		return 0, errors.New("storage unreachable")
	}
	return d.Driver.Stat(ctx, key)
}

// withDriver stores blobs through d.
func withDriver(d storage.Driver) serverOption {
	return func(s *serverSetup) { s.reg.Store = storage.NewStore(d) }
}

// TestHealth: /healthz and /readyz answer without credentials and past the
// rate limit; /readyz answers 503 naming what failed when storage or the
// metadata database does not answer, and once the registry drains.
func TestHealth(t *testing.T) {
	inner, err := disk.New(t.TempDir(), disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &failingDriver{Driver: inner}
	s := newServer(t, withAuth(t, Limits{Rate: 0.001, Burst: 2}), withDriver(d))
	reg := s.handler.(*Registry)
	s.do("GET", "/v2/", nil).expect(t, http.StatusUnauthorized, codeUnauthorized)

	for _, c := range []struct {
		name   string
		before func()
		ready  readyStatus
	}{
		{"serving", func() {}, readyStatus{Ready: true}},
		{"storage down", func() { d.fail.Store(true) }, readyStatus{Failed: []string{"storage"}}},
		{"storage back", func() { d.fail.Store(false) }, readyStatus{Ready: true}},
		{"metadata closed", func() { s.db.Close() }, readyStatus{Failed: []string{"metadata"}}},
		{"both down", func() { d.fail.Store(true) }, readyStatus{Failed: []string{"metadata", "storage"}}},
		// An answer is reused for a second: a flood of /readyz is not a
		// flood of queries. (Both are down here: the reused answer says ready.)
		{"reused", func() { reg.ready.last, reg.ready.at = readyStatus{Ready: true}, time.Now().Add(time.Hour) }, readyStatus{Ready: true}},
		{"draining", reg.Drain, readyStatus{Draining: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg.ready.at = time.Time{} // each row asks afresh, unless it says otherwise
			c.before()
			r := s.do("GET", "/healthz", nil)
			if r.StatusCode != http.StatusOK || string(r.body) != "ok\n" {
				t.Errorf("GET /healthz: %d %q, want 200 ok", r.StatusCode, r.body)
			}
			r = s.do("GET", "/readyz", nil)
			var got readyStatus
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatalf("GET /readyz: %v: %s", err, r.body)
			}
			want := http.StatusServiceUnavailable
			if c.ready.Ready {
				want = http.StatusOK
			}
			if r.StatusCode != want || got.Ready != c.ready.Ready || got.Draining != c.ready.Draining || !slices.Equal(got.Failed, c.ready.Failed) {
				t.Errorf("GET /readyz: %d %s, want %d %+v", r.StatusCode, r.body, want, c.ready)
			}
		})
	}
	if r := s.do("POST", "/readyz", nil); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d, want 405", r.StatusCode)
	}
}
