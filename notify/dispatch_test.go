package notify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDispatcherRetriesAndCounts: a dispatcher over a real database sends
// an event, retries it while the receiver fails, with one webhook-id, and
// counts each attempt by outcome; the outbox is empty afterwards.
func TestDispatcherRetriesAndCounts(t *testing.T) {
	const failures = 2
	var mu sync.Mutex
	var ids []string
	done := make(chan struct{})
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, r.Header.Get("webhook-id"))
		if len(ids) <= failures {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		close(done)
	}))
	defer receiver.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := blobPushPending(t, ctx, receiver.URL)

	reg := prometheus.NewRegistry()
	d := notify.New(notify.Options{DB: db, Metrics: reg, Schedule: []time.Duration{time.Millisecond}, Poll: 10 * time.Millisecond})
	stopped := make(chan struct{})
	go func() { defer close(stopped); d.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(time.Minute): // a bound to fail at, not a measurement
		t.Fatal("the event was not delivered")
	}
	// The receiver has answered; wait for the dispatcher to record it.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		ds, err := db.Deliveries(ctx, "ci", 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 && ds[0].State == metadata.DeliveryDelivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the delivery was not recorded as delivered: %+v", ds)
		}
	}
	cancel()
	<-stopped

	if len(ids) != failures+1 || ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("webhook-ids of the attempts: %q, want %d equal ones", ids, failures+1)
	}
	want := `
		# HELP berth_webhook_attempts_total Webhook delivery attempts by this process, by webhook and outcome (delivered, retry, dead, disabled).
		# TYPE berth_webhook_attempts_total counter
		berth_webhook_attempts_total{outcome="delivered",webhook="ci"} 1
		berth_webhook_attempts_total{outcome="retry",webhook="ci"} 2
		# HELP berth_webhook_pending_deliveries Webhook deliveries not yet delivered or dead-lettered (the outbox's depth), across replicas.
		# TYPE berth_webhook_pending_deliveries gauge
		berth_webhook_pending_deliveries 0
	`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "berth_webhook_attempts_total", "berth_webhook_pending_deliveries"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "berth_webhook_attempt_duration_seconds"); n != 1 {
		t.Errorf("latency histograms: %d, want 1", n)
	}
}

// blobPushPending opens a database on SQLite with the notify Router, adds
// the webhook "ci" for blob pushes to url (CloudEvents), and emits one blob
// push in repository "app": one delivery is pending.
func blobPushPending(t *testing.T, ctx context.Context, url string) *metadata.DB {
	t.Helper()
	db, err := metadata.Open(ctx, metadata.Options{SQLitePath: filepath.Join(t.TempDir(), "berth.db"), Route: notify.Router()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ep := notify.Endpoint{Name: "ci", URL: url, Format: notify.FormatCloudEvents, Secrets: []string{"s"},
		Actions: []string{metadata.ActionBlobPush}}
	body, err := json.Marshal(ep)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(tx *metadata.Tx) error {
		if _, err := tx.EnsureRepository(ctx, "app"); err != nil {
			return err
		}
		return tx.PutWebhook(ctx, "ci", string(body), "api")
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.EmitBlobEvent(ctx, metadata.Event{Action: metadata.ActionBlobPush, Repository: "app",
		Digest: oci.FromBytes([]byte("layer")), Size: 5}); err != nil {
		t.Fatal(err)
	}
	return db
}
