package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/berthhq/berth/gc"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// withGC gives the server a collector with no grace period.
func withGC(untagged time.Duration) serverOption {
	return func(s *serverSetup) {
		s.opened = append(s.opened, func(_ testing.TB, db *metadata.DB, o *Options) {
			o.GC = gc.New(gc.Options{DB: db, Store: o.Store, Grace: time.Nanosecond, Untagged: untagged,
				LinkDeadline: time.Millisecond})
		})
	}
}

// TestAdminGC: GET reports what POST then deletes; a manifest deleted by
// digest and its layer go, the tagged image stays; a run in progress
// elsewhere answers 409.
func TestAdminGC(t *testing.T) {
	s := newServer(t, withGC(0))
	_, kept := s.pushImage("app", "1", []byte("kept layer"))
	_, gone := s.pushImage("app", "2", []byte("deleted layer"))
	s.do("DELETE", "/v2/app/manifests/"+string(gone), nil).expect(t, http.StatusAccepted, "")

	var dry, run gc.Report
	r := s.do("GET", "/admin/v1/gc", nil)
	r.expect(t, http.StatusOK, "")
	if err := json.Unmarshal(r.body, &dry); err != nil || !dry.DryRun {
		t.Fatalf("dry run: %v, %s", err, r.body)
	}
	if len(s.blobFiles()) != 4 {
		t.Fatalf("the dry run changed storage: %v", s.blobFiles())
	}
	r = s.do("POST", "/admin/v1/gc", nil)
	r.expect(t, http.StatusOK, "")
	if err := json.Unmarshal(r.body, &run); err != nil || run.DryRun {
		t.Fatalf("run: %v, %s", err, r.body)
	}
	// The config and the layer of image 2.
	if len(dry.Blobs) != 2 || len(run.Blobs) != 2 || run.Bytes != dry.Bytes || len(s.blobFiles()) != 2 {
		t.Errorf("dry run %+v, run %+v, files left %v", dry, run, s.blobFiles())
	}
	s.do("GET", "/v2/app/manifests/1", nil).expect(t, http.StatusOK, "")
	s.do("GET", "/v2/app/blobs/"+string(run.Blobs[0].Digest), nil).expect(t, http.StatusNotFound, codeBlobUnknown)
	s.do("GET", "/v2/app/manifests/"+string(kept), nil).expect(t, http.StatusOK, "")

	lock, err := s.db.TryLockGC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	r = s.do("POST", "/admin/v1/gc", nil)
	r.expect(t, http.StatusConflict, codeGCRunning)
	if r.Header.Get("Retry-After") == "" {
		t.Error("409 without Retry-After")
	}
}

// TestLinkDeadline: an upload that records its blob later than the link
// deadline after finding its bytes in place is refused with 503, and the
// repository does not get the blob.
func TestLinkDeadline(t *testing.T) {
	s := newServer(t, func(st *serverSetup) { st.reg.LinkDeadline = time.Nanosecond })
	data := []byte("late")
	d := oci.FromBytes(data)
	r := s.do("POST", "/v2/app/blobs/uploads/?digest="+string(d), data)
	if r.StatusCode != http.StatusServiceUnavailable || r.code() != codeUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("late monolithic upload: %d %s", r.StatusCode, r.body)
	}
	s.do("HEAD", "/v2/app/blobs/"+string(d), nil).expect(t, http.StatusNotFound, "")
	// A chunked upload too, and its session is over.
	r = s.do("POST", "/v2/app/blobs/uploads/", nil)
	r.expect(t, http.StatusAccepted, "")
	loc := r.Header.Get("Location")
	r = s.do("PUT", loc+"?digest="+string(d), data)
	if r.StatusCode != http.StatusServiceUnavailable || r.code() != codeUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("late chunked upload: %d %s", r.StatusCode, r.body)
	}
	s.do("GET", loc, nil).expect(t, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
}

// TestAdminGCClientGone: a run started by POST /admin/v1/gc outlives its
// client. A run waits gc.link-deadline (1m by default) after deleting bytes;
// a client or proxy that gives up first (nginx's proxy_read_timeout is 60s)
// must not cut it short between deleting the bytes and forgetting them.
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
