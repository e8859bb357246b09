package metadata_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
)

func delHook(t *testing.T, db *metadata.DB, name string) {
	t.Helper()
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.DeleteWebhook(ctx, name) })
}

// TestDeliveryIDsNotReused: a delivery in flight when its webhook is
// deleted keeps its id to itself (SQLite would reuse max(rowid)+1 without
// AUTOINCREMENT), so its attempt settles nothing else.
func TestDeliveryIDsNotReused(t *testing.T) { forEachBackend(t, testDeliveryIDsNotReused) }

func testDeliveryIDsNotReused(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	addHook(t, db, "doomed", "app")
	mustPut(t, db, "app", imageIn(t, db, "app", "one"), "1")
	inflight := claimOne(t, db, time.Minute, "doomed app:1")
	delHook(t, db, "doomed") // while the attempt is in flight

	addHook(t, db, "other", "app")
	c.tick()
	mustPut(t, db, "app", imageIn(t, db, "app", "two"), "2")
	ds := deliveries(t, db, "other")
	t.Logf("in-flight delivery id %d (doomed); new delivery id %d (other)", inflight.ID, ds[0].ID)

	// The old attempt comes back with 200.
	_, err := db.RecordAttempt(t.Context(), inflight, metadata.Attempt{Status: 200}, delivered)
	if !errors.Is(err, metadata.ErrNotClaimed) {
		t.Errorf("RecordAttempt of the deleted webhook's delivery: %v, want ErrNotClaimed", err)
	}
	got := delivery(t, db, "other", ds[0].ID)
	if got.State != metadata.DeliveryPending || got.Attempts != 0 {
		t.Fatalf("other's delivery of app:2, never sent: state %s after %d attempts (LOST)", got.State, got.Attempts)
	}
}

// TestBlobEventsSkipDeletedWebhooks: blob events route on a list of
// webhooks up to a second old; a webhook deleted within that second gets
// no delivery, which no claim would ever read.
func TestBlobEventsSkipDeletedWebhooks(t *testing.T) {
	forEachBackend(t, testBlobEventsSkipDeletedWebhooks)
}

func testBlobEventsSkipDeletedWebhooks(t *testing.T, be backend) {
	o := be.fresh(t)
	o.Route = actionRouter
	db := openWith(t, o, nil)
	layer := newBlob("layer")
	link(t, db, "app", layer)
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.PutWebhook(ctx, "pulls", `{"actions":["blob-pull"]}`, "api")
	})
	pull := metadata.Event{Action: metadata.ActionBlobPull, Repository: "app", Digest: layer.digest, Size: layer.size}
	if err := db.EmitBlobEvent(t.Context(), pull); err != nil {
		t.Fatal(err)
	}
	for _, d := range claim(t, db, time.Minute) {
		record(t, db, d, 200, delivered)
	}
	delHook(t, db, "pulls")
	if err := db.EmitBlobEvent(t.Context(), pull); err != nil { // within the second
		t.Fatal(err)
	}
	n, _ := db.PendingDeliveries(t.Context())
	if n != 0 {
		t.Errorf("after deleting the only webhook: %d pending deliveries (orphans of the deleted webhook)", n)
	}
	if ds, _ := db.Deliveries(t.Context(), "pulls", 0, 10); len(ds) != 0 {
		t.Errorf("deleted webhook 'pulls' has deliveries: %d", len(ds))
	}
}

// TestRedeliverInFlightKeepsClaim: redelivering a delivery that is claimed
// and in flight does not hand it out a second time meanwhile.
func TestRedeliverInFlightKeepsClaim(t *testing.T) {
	forEachBackend(t, testRedeliverInFlightKeepsClaim)
}

func testRedeliverInFlightKeepsClaim(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	addHook(t, db, "h", "app")
	mustPut(t, db, "app", imageIn(t, db, "app", "one"), "1")
	first := claimOne(t, db, time.Minute, "h app:1")
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.Redeliver(ctx, "h", first.ID) })
	if again := claim(t, db, time.Minute); len(again) != 0 {
		t.Errorf("delivery %d claimed a second time while its first attempt is in flight", again[0].ID)
	}
}

// TestDisabledWebhookResumesInOrder: a 410 disables the webhook and leaves
// the delivery it answered first of its line, so that enabling the webhook
// resumes with it, before the later ones.
func TestDisabledWebhookResumesInOrder(t *testing.T) {
	forEachBackend(t, testDisabledWebhookResumesInOrder)
}

func testDisabledWebhookResumesInOrder(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	addHook(t, db, "h", "app")
	mustPut(t, db, "app", imageIn(t, db, "app", "one"), "1")
	c.tick()
	mustPut(t, db, "app", imageIn(t, db, "app", "two"), "2")
	d1 := claimOne(t, db, time.Minute, "h app:1")
	record(t, db, d1, 410, metadata.Outcome{State: metadata.DeliveryPending, NextAt: c.Now().UnixNano(), Disable: "the endpoint answered 410 Gone"})
	c.tick()
	if got := claim(t, db, time.Minute); len(got) != 0 {
		t.Fatalf("claimed %d deliveries of a disabled webhook", len(got))
	}
	setEnabled(t, db, "h", true)
	if got := claim(t, db, time.Minute); len(got) != 1 || got[0].ID != d1.ID {
		t.Errorf("after the 410 on app:1 and enable, claimed %+v; want app:1 again", got)
	}
}

// TestDeleteWebhookWaitsForPush (PostgreSQL): a push that routed to a
// webhook and queued its delivery behind a pending one must not commit it
// after the webhook's delete, where it would outlive the webhook, queued
// with nothing ahead, and stick the line of a webhook created again under
// the name.
func TestDeleteWebhookWaitsForPush(t *testing.T) { forEachBackend(t, testDeleteWebhookWaitsForPush) }

func testDeleteWebhookWaitsForPush(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	addHook(t, db, "w", "app")
	mustPut(t, db, "app", imageIn(t, db, "app", "one"), "1") // pending, not yet delivered
	m2 := imageIn(t, db, "app", "two")
	c.tick()
	// The push holds its transaction open until the delete waits for it
	// (or has ended).
	errPush, errDelete := interleave(t, db, func(tx *metadata.Tx) error {
		return tx.PutManifest(t.Context(), "app", m2.digest, m2.parsed, m2.payload, []string{"2"},
			metadata.Change{Actor: "x", Action: metadata.ActionPush})
	}, func(tx *metadata.Tx) error { return tx.DeleteWebhook(t.Context(), "w") })
	if err := errors.Join(errPush, errDelete); err != nil {
		t.Fatal(err)
	}
	n, _ := db.PendingDeliveries(t.Context())
	t.Logf("pending deliveries after the webhook's delete: %d", n)
	addHook(t, db, "w", "app") // created again
	c.tick()
	mustPut(t, db, "app", imageIn(t, db, "app", "three"), "3")
	c.advance(time.Hour)
	got := claim(t, db, time.Minute)
	if len(got) == 0 {
		for _, d := range deliveries(t, db, "w") {
			t.Logf("  w delivery %d %s:%s state %s next_at %d", d.ID, d.Repository, d.Event.Tag, d.State, d.NextAt)
		}
		t.Fatalf("webhook w created again: nothing claimable an hour after app:3 was pushed (line stuck)")
	}
}
