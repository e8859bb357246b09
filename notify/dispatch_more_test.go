package notify_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
)

// TestRedirectIsNotDelivered: a receiver that answers the POST with a
// redirect has not received the event: a client following it would send a
// bodiless GET and count its 200. The 3xx is a failed attempt.
func TestRedirectIsNotDelivered(t *testing.T) {
	var posts, gets atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) { // moved, as a proxy's http->https or path rewrite says
		http.Redirect(w, r, "/hook/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/hook/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable) // never reached
			return
		}
		gets.Add(1)
		w.Write([]byte("hello")) // a status page, 200
	})
	receiver := httptest.NewServer(mux)
	defer receiver.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := blobPushPending(t, ctx, receiver.URL+"/hook")
	d := notify.New(notify.Options{DB: db, Schedule: []time.Duration{time.Millisecond}, Poll: 10 * time.Millisecond})
	stopped := make(chan struct{})
	go func() { defer close(stopped); d.Run(ctx) }()
	var ds []metadata.Delivery
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ds, _ = db.Deliveries(ctx, "ci", 0, 1)
		if len(ds) == 1 && ds[0].Attempts > 0 {
			break
		}
	}
	cancel()
	<-stopped
	if len(ds) != 1 {
		t.Fatalf("deliveries: %+v, want one", ds)
	}
	t.Logf("state %s, last status %d; POSTs %d, GETs %d", ds[0].State, ds[0].LastStatus, posts.Load(), gets.Load())
	if ds[0].State != metadata.DeliveryPending || ds[0].LastStatus != http.StatusMovedPermanently || gets.Load() != 0 {
		t.Errorf("after a 301: state %s, last status %d, %d GETs; want a failed attempt and no GET", ds[0].State, ds[0].LastStatus, gets.Load())
	}
}

// TestRedeliveredDeadLetterRetries: a redelivered dead letter's age counts
// from its redelivery, so it is retried on the schedule again rather than
// dead-lettered at its first failure.
func TestRedeliveredDeadLetterRetries(t *testing.T) {
	var n atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusBadGateway) // flaky, for now
	}))
	defer receiver.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := blobPushPending(t, ctx, receiver.URL)
	d := notify.New(notify.Options{DB: db, Schedule: []time.Duration{50 * time.Millisecond}, MaxAge: 300 * time.Millisecond,
		PauseAfter: 1000, Poll: 10 * time.Millisecond})
	stopped := make(chan struct{})
	go func() { defer close(stopped); d.Run(ctx) }()
	defer func() { cancel(); <-stopped }() // before the database closes
	waitState := func(want string) metadata.Delivery {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			ds, _ := db.Deliveries(ctx, "ci", 0, 1)
			if len(ds) == 1 && ds[0].State == want {
				return ds[0]
			}
		}
		t.Fatalf("never %s", want)
		return metadata.Delivery{}
	}
	dead := waitState(metadata.DeliveryDead)
	time.Sleep(time.Second) // the receiver is still flaky a second later, when an admin redelivers
	if err := db.InTx(ctx, func(tx *metadata.Tx) error { return tx.Redeliver(ctx, "ci", dead.ID) }); err != nil {
		t.Fatal(err)
	}
	// Redeliver has committed: the delivery reads pending until it is dead again.
	again := waitState(metadata.DeliveryDead)
	t.Logf("attempts before redelivery %d, after %d", dead.Attempts, again.Attempts)
	if again.Attempts-dead.Attempts <= 1 { // 0: the redelivery did not happen
		t.Errorf("the redelivery was dead-lettered after %d attempts, want it retried on the schedule", again.Attempts-dead.Attempts)
	}
}
