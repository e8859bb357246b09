package metadata_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
)

func TestBlobEvents(t *testing.T) { forEachBackend(t, testBlobEvents) }

// testBlobEvents: a blob event is written, with a delivery, only for the
// webhooks the router picks for it, and carries what the caller gave.
func testBlobEvents(t *testing.T, be backend) {
	o := be.fresh(t)
	o.Route = actionRouter
	db := openWith(t, o, nil)
	layer := newBlob("layer")
	link(t, db, "app", layer)
	pull := metadata.Event{Action: metadata.ActionBlobPull, Repository: "app", Digest: layer.digest, Size: layer.size,
		MediaType: "application/octet-stream"}

	if err := db.EmitBlobEvent(t.Context(), pull); err != nil {
		t.Fatal(err)
	}
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		if err := tx.PutWebhook(ctx, "tags", `{"actions":["push"]}`, "api"); err != nil {
			return err
		}
		return tx.PutWebhook(ctx, "pulls", `{"actions":["blob-pull"]}`, "api")
	})
	for _, name := range []string{"tags", "pulls"} {
		if ds, err := db.Deliveries(t.Context(), name, 0, 10); err != nil || len(ds) != 0 {
			t.Fatalf("deliveries to %s before any webhook wanted the event: %v, %v", name, ds, err)
		}
	}
	// The enabled webhooks are read at most once a second for blob events:
	// a fresh handle sees the two just stored.
	db = openWith(t, o, nil)
	if err := db.EmitBlobEvent(t.Context(), pull); err != nil {
		t.Fatal(err)
	}
	ds, err := db.Deliveries(t.Context(), "pulls", 0, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries to pulls: %v, %v; want one", ds, err)
	}
	got := ds[0].Event
	if got.ID == "" || got.Action != pull.Action || got.Repository != "app" || got.Digest != layer.digest ||
		got.Size != layer.size || got.Tag != "" || got.Numbered {
		t.Errorf("event %+v, want a pull of %s", got, layer.digest)
	}
	if ds, _ := db.Deliveries(t.Context(), "tags", 0, 10); len(ds) != 0 {
		t.Errorf("the tags webhook got %d blob events", len(ds))
	}
	if err := db.EmitBlobEvent(t.Context(), metadata.Event{Action: metadata.ActionBlobPull, Repository: "nowhere",
		Digest: layer.digest}); err == nil {
		t.Error("a blob event of an unknown repository was written")
	}
	if n, err := db.PendingDeliveries(t.Context()); err != nil || n != 1 {
		t.Errorf("pending deliveries %d, %v; want 1", n, err)
	}
}

// actionRouter picks the webhooks whose body names the event's action.
func actionRouter(e metadata.Event, hooks []metadata.Webhook) []string {
	var names []string
	for _, h := range hooks {
		if strings.Contains(h.Body, e.Action) {
			names = append(names, h.Name)
		}
	}
	return names
}

func TestPruneOutbox(t *testing.T) { forEachBackend(t, testPruneOutbox) }

// testPruneOutbox: pruning forgets what was delivered before the cut-off,
// with its attempts and events, and keeps what is pending or dead.
func testPruneOutbox(t *testing.T, be backend) {
	o := be.fresh(t)
	o.Route = actionRouter
	c := newClock()
	db := openWith(t, o, c)
	layer := newBlob("layer")
	link(t, db, "app", layer)
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.PutWebhook(ctx, "pulls", `{"actions":["blob-pull"]}`, "api")
	})
	for range 3 {
		if err := db.EmitBlobEvent(t.Context(), metadata.Event{Action: metadata.ActionBlobPull, Repository: "app",
			Digest: layer.digest, Size: layer.size}); err != nil {
			t.Fatal(err)
		}
	}
	// The three are one line: settle them in turn, delivered, dead, pending.
	for _, state := range []string{metadata.DeliveryDelivered, metadata.DeliveryDead, metadata.DeliveryPending} {
		claimed, err := db.ClaimDeliveries(t.Context(), time.Minute, 10)
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claimed %v, %v", claimed, err)
		}
		out := metadata.Outcome{State: state, NextAt: c.Now().Add(time.Hour).UnixNano()}
		if _, err := db.RecordAttempt(t.Context(), claimed[0], metadata.Attempt{At: c.Now().UnixNano(), Status: 200}, out); err != nil {
			t.Fatal(err)
		}
	}
	c.tick()
	var pruned int64
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) (err error) {
		pruned, err = tx.PruneOutbox(ctx, c.Now().UnixNano())
		return err
	})
	ds, err := db.Deliveries(t.Context(), "pulls", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, d := range ds {
		states = append(states, d.State)
	}
	if pruned != 1 || !slices.Equal(states, []string{metadata.DeliveryPending, metadata.DeliveryDead}) {
		t.Errorf("pruned %d; left %v, want pending and dead", pruned, states)
	}
	if events, err := db.Events(t.Context()); err != nil || len(events) != 2 {
		t.Errorf("%d events left, %v; want 2", len(events), err)
	}
}
