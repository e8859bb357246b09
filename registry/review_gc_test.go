package registry

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/berthhq/berth/gc"
	"github.com/berthhq/berth/metadata"
)

// TestAdminGCClientGone: POST /admin/v1/gc runs in the request's context.
// A run waits gc.link-deadline (1m by default) after deleting bytes; a
// client or proxy that gives up first (nginx's proxy_read_timeout is 60s,
// berth gc's own client 5m) cancels the run after the bytes went and before
// their rows are forgotten. The run is lost, the caller sees a timeout, and
// the rows stay 'deleting' until another run.
func TestAdminGCClientGone(t *testing.T) {
	s := newServer(t, func(st *serverSetup) {
		st.opened = append(st.opened, func(_ testing.TB, db *metadata.DB, o *Options) {
			o.GC = gc.New(gc.Options{DB: db, Store: o.Store, Grace: time.Nanosecond, LinkDeadline: 2 * time.Second})
		})
	})
	_, gone := s.pushImage("app", "2", []byte("deleted layer"))
	s.do("DELETE", "/v2/app/manifests/"+string(gone), nil).expect(t, http.StatusAccepted, "")
	before := len(s.blobFiles())

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond) // the proxy's timeout, scaled down
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/admin/v1/gc", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the client got an answer within its timeout: %d", resp.StatusCode)
	}
	time.Sleep(2500 * time.Millisecond) // let the run go on, if it would
	after := len(s.blobFiles())
	var deleting int
	rows, err := s.db.DeletingBlobs(t.Context(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	deleting = len(rows)
	t.Logf("blob files %d -> %d; rows left deleting: %d", before, after, deleting)
	if after < before && deleting > 0 {
		t.Errorf("the run's bytes went (%d files) but it was cancelled with the request before forgetting %d rows", before-after, deleting)
	}
}
