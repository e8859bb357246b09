package metadata_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// The webhook outbox: events written with the tag changes they announce,
// deliveries claimed in order per webhook and repository, attempts, and
// the wake-ups of the dispatchers.

// patience bounds the waits on something that happens on another
// connection (a PostgreSQL notification, another handle's progress): a
// bound to fail at rather than hang, never a measurement.
const patience = time.Minute

// routeByBody is the tests' Router: a webhook's Body is the names of the
// repositories it wants, separated by spaces.
func routeByBody(e metadata.Event, hooks []metadata.Webhook) []string {
	var names []string
	for _, h := range hooks {
		if slices.Contains(strings.Fields(h.Body), e.Repository) {
			names = append(names, h.Name)
		}
	}
	return names
}

// outboxOptions are the options of a fresh database that routes events
// with routeByBody.
func outboxOptions(t *testing.T, be backend) metadata.Options {
	o := be.fresh(t)
	o.Route = routeByBody
	return o
}

func (c *clock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func nanos(c *clock) int64 { return c.Now().UnixNano() }

// addHook stores an API webhook that wants the events of repos.
func addHook(t *testing.T, db *metadata.DB, name string, repos ...string) {
	t.Helper()
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.PutWebhook(ctx, name, strings.Join(repos, " "), "api")
	})
}

func setEnabled(t *testing.T, db *metadata.DB, name string, enabled bool) {
	t.Helper()
	inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error {
		return tx.SetWebhookEnabled(ctx, name, enabled, "by hand")
	})
}

func hook(t *testing.T, db *metadata.DB, name string) metadata.Webhook {
	t.Helper()
	w, err := db.GetWebhook(t.Context(), name)
	if err != nil {
		t.Fatalf("GetWebhook(%s): %v", name, err)
	}
	return w
}

// imageIn links a small image's blobs to repo and returns the image.
func imageIn(t *testing.T, db *metadata.DB, repo, layer string) manifest {
	t.Helper()
	config, l := newBlob("config"), newBlob(layer)
	link(t, db, repo, config, l)
	return image(t, config, l)
}

func change(actor, action string) metadata.Change {
	return metadata.Change{Actor: actor, Action: action}
}

func events(t *testing.T, db *metadata.DB) []metadata.Event {
	t.Helper()
	es, err := db.Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// deliveries returns every delivery of a webhook, oldest first.
func deliveries(t *testing.T, db *metadata.DB, webhook string) []metadata.Delivery {
	t.Helper()
	ds, err := db.Deliveries(t.Context(), webhook, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(ds)
	return ds
}

// delivery returns one delivery of a webhook as it is now.
func delivery(t *testing.T, db *metadata.DB, webhook string, id int64) metadata.Delivery {
	t.Helper()
	ds, err := db.Deliveries(t.Context(), webhook, id+1, 1)
	if err != nil || len(ds) != 1 || ds[0].ID != id {
		t.Fatalf("delivery %d of %s: %+v, %v", id, webhook, ds, err)
	}
	return ds[0]
}

// line names a delivery by its webhook, repository and tag, as the
// ordering tests expect them.
func line(d metadata.Delivery) string {
	return d.Webhook + " " + d.Repository + ":" + d.Event.Tag
}

func claim(t *testing.T, db *metadata.DB, lease time.Duration) []metadata.Delivery {
	t.Helper()
	ds, err := db.ClaimDeliveries(t.Context(), lease, 100)
	if err != nil {
		t.Fatalf("ClaimDeliveries: %v", err)
	}
	return ds
}

// wantClaimed checks which deliveries a claim returned, in any order.
func wantClaimed(t *testing.T, got []metadata.Delivery, want ...string) {
	t.Helper()
	var names []string
	for _, d := range got {
		names = append(names, line(d))
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("claimed %q, want %q", names, want)
	}
}

// byLine keys claimed deliveries by line.
func byLine(ds []metadata.Delivery) map[string]metadata.Delivery {
	m := map[string]metadata.Delivery{}
	for _, d := range ds {
		m[line(d)] = d
	}
	return m
}

// claimOne claims and returns the one delivery of line name.
func claimOne(t *testing.T, db *metadata.DB, lease time.Duration, name string) metadata.Delivery {
	t.Helper()
	ds := claim(t, db, lease)
	wantClaimed(t, ds, name)
	return ds[0]
}

var delivered = metadata.Outcome{State: metadata.DeliveryDelivered}

// retry is the outcome of a failed attempt to try again at once.
func retry(c *clock) metadata.Outcome {
	return metadata.Outcome{State: metadata.DeliveryPending, NextAt: nanos(c)}
}

func record(t *testing.T, db *metadata.DB, d metadata.Delivery, status int64, out metadata.Outcome) (paused bool) {
	t.Helper()
	paused, err := db.RecordAttempt(t.Context(), d, metadata.Attempt{Status: status}, out)
	if err != nil {
		t.Fatalf("RecordAttempt(%s): %v", line(d), err)
	}
	return paused
}

// woken reports whether a wake-up is waiting, without waiting for one.
func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitWoken(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(patience):
		t.Fatalf("no wake-up for %s", what)
	}
}

// watchOutbox opens another handle on the database o names and returns
// its OutboxWritten with nothing on its way to it. On PostgreSQL the
// handle's listener sends one value when it starts listening (for what
// committed while nobody listened), which this waits for; after it only
// this handle's commits and the notifications of commits made after it
// wake the handle.
func watchOutbox(t *testing.T, o metadata.Options, c *clock) (*metadata.DB, <-chan struct{}) {
	t.Helper()
	db := openWith(t, o, c)
	ch := db.OutboxWritten()
	if o.PostgresURL != "" {
		waitWoken(t, ch, "the listener's start")
	}
	return db, ch
}

// TestOutboxAtomic: an event and its deliveries are written exactly when
// the tag change commits, and only for webhooks that want it.
func TestOutboxAtomic(t *testing.T) { forEachBackend(t, testOutboxAtomic) }

func testOutboxAtomic(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	m := imageIn(t, db, "app", "one")
	mustPut(t, db, "app", m, "v1")

	// No webhook, or none that wants app: no event is written.
	c.tick()
	mustPut(t, db, "app", m, "v2")
	addHook(t, db, "elsewhere", "lib")
	addHook(t, db, "off", "app")
	setEnabled(t, db, "off", false)
	c.tick()
	mustPut(t, db, "app", m, "v3")
	if es := events(t, db); len(es) != 0 {
		t.Fatalf("events without a webhook that wants them: %+v", es)
	}

	// A change that rolls back leaves no event and no delivery.
	addHook(t, db, "hook", "app")
	boom := errors.New("boom")
	for name, fn := range map[string]func(ctx context.Context, tx *metadata.Tx) error{
		"SetTag": func(ctx context.Context, tx *metadata.Tx) error {
			_, err := tx.SetTag(ctx, "app", "v4", m.digest, change("alice", metadata.ActionPush))
			return err
		},
		"PutManifest": func(ctx context.Context, tx *metadata.Tx) error {
			return tx.PutManifest(ctx, "app", m.digest, m.parsed, m.payload, []string{"v4"}, change("alice", metadata.ActionPush))
		},
		"DeleteTag": func(ctx context.Context, tx *metadata.Tx) error {
			_, err := tx.DeleteTag(ctx, "app", "v1", change("alice", metadata.ActionDelete))
			return err
		},
		"DeleteManifest": func(ctx context.Context, tx *metadata.Tx) error {
			return tx.DeleteManifest(ctx, "app", m.digest, change("alice", metadata.ActionDelete))
		},
	} {
		err := db.InTx(t.Context(), func(tx *metadata.Tx) error {
			if err := fn(t.Context(), tx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("%s then an error: %v", name, err)
		}
		if es := events(t, db); len(es) != 0 {
			t.Errorf("%s rolled back, and left events: %+v", name, es)
		}
		if ds := deliveries(t, db, "hook"); len(ds) != 0 {
			t.Errorf("%s rolled back, and left deliveries: %+v", name, ds)
		}
	}
	wantUnresolved(t, db, "app", "v4")

	// A committed change: one event, one delivery for each webhook that
	// wants it, none for one that is disabled or wants other repositories.
	c.tick()
	mustPut(t, db, "app", m, "v4")
	es := events(t, db)
	if len(es) != 1 || es[0].Tag != "v4" {
		t.Fatalf("events after one push: %+v", es)
	}
	ds := deliveries(t, db, "hook")
	if len(ds) != 1 || ds[0].Event != es[0] || ds[0].State != metadata.DeliveryPending || ds[0].NextAt != nanos(c) {
		t.Errorf("deliveries to hook: %+v; want one, pending and due, of %+v", ds, es[0])
	}
	for _, name := range []string{"elsewhere", "off"} {
		if ds := deliveries(t, db, name); len(ds) != 0 {
			t.Errorf("deliveries to %s: %+v", name, ds)
		}
	}
}

// TestOutboxEventFields: each kind of change writes one event that says
// what happened, to what, by whom.
func TestOutboxEventFields(t *testing.T) { forEachBackend(t, testOutboxEventFields) }

func testOutboxEventFields(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	addHook(t, db, "hook", "app")
	m1, m2 := imageIn(t, db, "app", "one"), imageIn(t, db, "app", "two")
	mustPut(t, db, "app", m2) // untagged: the pushes below only tag
	multi := index(t, m1, m2)
	setTag := func(tag string, m manifest, c metadata.Change) func(ctx context.Context, tx *metadata.Tx) error {
		return func(ctx context.Context, tx *metadata.Tx) error {
			_, err := tx.SetTag(ctx, "app", tag, m.digest, c)
			return err
		}
	}
	push := func(tag string, m manifest, actor string) func(ctx context.Context, tx *metadata.Tx) error {
		return func(ctx context.Context, tx *metadata.Tx) error {
			return tx.PutManifest(ctx, "app", m.digest, m.parsed, m.payload, []string{tag}, change(actor, metadata.ActionPush))
		}
	}
	deleteTag := func(tag string, c metadata.Change) func(ctx context.Context, tx *metadata.Tx) error {
		return func(ctx context.Context, tx *metadata.Tx) error {
			_, err := tx.DeleteTag(ctx, "app", tag, c)
			return err
		}
	}
	ev := func(action, tag string, m manifest, previous oci.Digest, actor string) metadata.Event {
		return metadata.Event{Action: action, Repository: "app", Tag: tag, Digest: m.digest, Previous: previous,
			MediaType: m.parsed.MediaType, Size: int64(len(m.payload)), Actor: actor}
	}
	newest := func(e metadata.Event, newest bool) metadata.Event {
		e.Numbered, e.Newest = true, newest
		return e
	}
	steps := []struct {
		name   string
		change func(ctx context.Context, tx *metadata.Tx) error
		want   metadata.Event
	}{
		{"push", push("latest", m1, "alice"), ev("push", "latest", m1, "", "alice")},
		{"move", setTag("latest", m2, change("bob", metadata.ActionMove)), ev("move", "latest", m2, m1.digest, "bob")},
		{"rollback", setTag("latest", m1, change("carol", metadata.ActionRollback)),
			ev("rollback", "latest", m1, m2.digest, "carol")},
		{"delete", deleteTag("latest", change("dave", metadata.ActionDelete)), ev("delete", "latest", m1, m1.digest, "dave")},
		{"restore", func(ctx context.Context, tx *metadata.Tx) error {
			_, err := tx.RestoreTag(ctx, "app", "latest", 0, change("erin", ""))
			return err
		}, ev("restore", "latest", m1, "", "erin")},
		{"push an index", push("multi", multi, "frank"), ev("push", "multi", multi, "", "frank")},
		{"push a version", push("10", m1, "gina"), newest(ev("push", "10", m1, "", "gina"), true)},
		{"push an older version", push("9", m2, "gina"), newest(ev("push", "9", m2, "", "gina"), false)},
		{"retention", deleteTag("9", change("policy", metadata.ActionRetention)),
			newest(ev("retention", "9", m2, m2.digest, "policy"), false)},
		{"push a newer version", push("11", m2, "gina"), newest(ev("push", "11", m2, "", "gina"), true)},
		// Newest is about the tag after the change: a deleted tag is not
		// the newest live one, even if it was before.
		{"delete the newest version", deleteTag("11", change("hal", metadata.ActionDelete)),
			newest(ev("delete", "11", m2, m2.digest, "hal"), false)},
		{"move a version", setTag("10", m2, change("ivan", metadata.ActionMove)),
			newest(ev("move", "10", m2, m1.digest, "ivan"), true)},
		{"manifest delete", func(ctx context.Context, tx *metadata.Tx) error {
			return tx.DeleteManifest(ctx, "app", m1.digest, change("judy", metadata.ActionDelete))
		}, ev(metadata.ActionManifestDelete, "", m1, "", "judy")},
	}
	ids := map[string]bool{}
	for i, s := range steps {
		at := c.tick()
		inTx(t, db, s.change)
		es := events(t, db)
		if len(es) != i+1 {
			t.Fatalf("%s: %d events after %d changes", s.name, len(es), i+1)
		}
		got := es[i]
		if !strings.HasPrefix(got.ID, "evt_") || ids[got.ID] {
			t.Errorf("%s: event id %q is not a new one", s.name, got.ID)
		}
		ids[got.ID] = true
		if got.Time != at.UnixNano() {
			t.Errorf("%s: event time %d, want the change's, %d", s.name, got.Time, at.UnixNano())
		}
		want := s.want
		want.ID, want.Seq, want.Time = got.ID, got.Seq, got.Time
		if got != want {
			t.Errorf("%s: event\n %+v, want\n %+v", s.name, got, want)
		}
		ds := deliveries(t, db, "hook")
		if len(ds) != i+1 || ds[i].Event != got {
			t.Errorf("%s: the delivery does not carry the event: %+v", s.name, ds[len(ds)-1])
		}
	}
}

// TestClaimHeadOfLine: a webhook gets a repository's events one at a time,
// in order; what holds up one line holds up no other.
func TestClaimHeadOfLine(t *testing.T) { forEachBackend(t, testClaimHeadOfLine) }

func testClaimHeadOfLine(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	addHook(t, db, "a", "app", "lib")
	addHook(t, db, "b", "app")
	app, lib := imageIn(t, db, "app", "app"), imageIn(t, db, "lib", "lib")
	for _, tag := range []string{"t1", "t2", "t3"} {
		mustPut(t, db, "app", app, tag)
	}
	mustPut(t, db, "lib", lib, "l1")
	const lease = time.Minute

	ds := claim(t, db, lease)
	wantClaimed(t, ds, "a app:t1", "a lib:l1", "b app:t1")
	first := byLine(ds)
	wantClaimed(t, claim(t, db, lease)) // every head is held

	record(t, db, first["a app:t1"], 200, delivered)
	first["a app:t2"] = claimOne(t, db, lease, "a app:t2")

	// The unsettled claims hold their lines until their leases pass, then
	// are claimed again (and t2, claimed at the same time, too).
	c.advance(lease - time.Second)
	wantClaimed(t, claim(t, db, lease))
	c.advance(time.Second)
	ds = claim(t, db, lease)
	wantClaimed(t, ds, "a app:t2", "a lib:l1", "b app:t1")
	again := byLine(ds)
	for name, d := range again {
		if d.ID != first[name].ID {
			t.Errorf("%s claimed again as delivery %d, was %d", name, d.ID, first[name].ID)
		}
	}

	// A head to retry later holds its line until then; the others go on.
	record(t, db, again["a app:t2"], 500, metadata.Outcome{State: metadata.DeliveryPending, NextAt: nanos(c) + int64(10*time.Second)})
	record(t, db, again["a lib:l1"], 200, delivered)
	record(t, db, again["b app:t1"], 200, delivered)
	bt2 := claimOne(t, db, lease, "b app:t2")
	record(t, db, bt2, 200, delivered)
	bt3 := claimOne(t, db, lease, "b app:t3")
	record(t, db, bt3, 200, delivered)
	wantClaimed(t, claim(t, db, lease))
	c.advance(10 * time.Second)
	retried := claimOne(t, db, lease, "a app:t2")
	if retried.Attempts != 1 || retried.LastStatus != 500 {
		t.Errorf("retried delivery: %d attempts, last status %d; want 1, 500", retried.Attempts, retried.LastStatus)
	}
	record(t, db, retried, 200, delivered)
	record(t, db, claimOne(t, db, lease, "a app:t3"), 200, delivered)
	wantClaimed(t, claim(t, db, lease))
	if n, err := db.PendingDeliveries(t.Context()); err != nil || n != 0 {
		t.Errorf("PendingDeliveries = %d, %v; want 0", n, err)
	}
}

// TestClaimDisabledPaused: a webhook disabled (410 Gone) or paused gets
// nothing claimed until it is enabled, or its pause ends.
func TestClaimDisabledPaused(t *testing.T) { forEachBackend(t, testClaimDisabledPaused) }

func testClaimDisabledPaused(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	for _, name := range []string{"gone", "flaky", "fine"} {
		addHook(t, db, name, "app")
	}
	m := imageIn(t, db, "app", "one")
	mustPut(t, db, "app", m, "t1")
	mustPut(t, db, "app", m, "t2")
	const lease = time.Minute
	ds := claim(t, db, lease)
	wantClaimed(t, ds, "fine app:t1", "flaky app:t1", "gone app:t1")
	heads := byLine(ds)

	at := c.tick()
	gone := retry(c)
	gone.Disable = "410 Gone"
	if record(t, db, heads["gone app:t1"], 410, gone) {
		t.Error("disabling reported a pause")
	}
	pause := retry(c)
	pause.PauseAfter, pause.PauseUntil = 1, nanos(c)+int64(time.Hour)
	if !record(t, db, heads["flaky app:t1"], 500, pause) {
		t.Error("the failure that paused flaky did not say so")
	}
	record(t, db, heads["fine app:t1"], 200, delivered)
	if w := hook(t, db, "gone"); w.Disabled != at.UnixNano() || w.DisabledReason != "410 Gone" {
		t.Errorf("gone: disabled at %d for %q; want %d, 410 Gone", w.Disabled, w.DisabledReason, at.UnixNano())
	}
	if w := hook(t, db, "flaky"); w.PausedUntil != pause.PauseUntil || w.Failures != 1 || w.Disabled != 0 {
		t.Errorf("flaky: %+v; want paused until %d after 1 failure", w, pause.PauseUntil)
	}
	wantClaimed(t, claim(t, db, lease), "fine app:t2")

	// A disabled webhook gets no new deliveries; a paused one does.
	mustPut(t, db, "app", m, "t3")
	if n := len(deliveries(t, db, "gone")); n != 2 {
		t.Errorf("gone has %d deliveries after it was disabled; want the 2 from before", n)
	}
	if n := len(deliveries(t, db, "flaky")); n != 3 {
		t.Errorf("flaky has %d deliveries; want 3", n)
	}
	wantClaimed(t, claim(t, db, lease)) // fine app:t3 waits behind t2

	// Enabling makes them claimable again, from their oldest delivery on,
	// and clears the pause and the failures.
	setEnabled(t, db, "gone", true)
	setEnabled(t, db, "flaky", true)
	if w := hook(t, db, "flaky"); w.PausedUntil != 0 || w.Failures != 0 || w.Disabled != 0 {
		t.Errorf("flaky enabled: %+v", w)
	}
	if w := hook(t, db, "gone"); w.Disabled != 0 || w.DisabledReason != "" {
		t.Errorf("gone enabled: %+v", w)
	}
	wantClaimed(t, claim(t, db, lease), "gone app:t1", "flaky app:t1")

	// Disabling by hand stops claims too.
	c.advance(lease)
	setEnabled(t, db, "gone", false)
	wantClaimed(t, claim(t, db, lease), "flaky app:t1", "fine app:t2")
	if err := db.InTx(t.Context(), func(tx *metadata.Tx) error {
		return tx.SetWebhookEnabled(t.Context(), "nobody", true, "")
	}); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("SetWebhookEnabled of an unknown webhook: %v, want ErrNotFound", err)
	}
}

// TestRecordAttempt: attempts are numbered and logged; a settled delivery
// takes no more; dead ones can be redelivered.
func TestRecordAttempt(t *testing.T) { forEachBackend(t, testRecordAttempt) }

func testRecordAttempt(t *testing.T, be backend) {
	c := newClock()
	o := outboxOptions(t, be)
	db := openWith(t, o, c)
	addHook(t, db, "hook", "app")
	m := imageIn(t, db, "app", "one")
	for _, tag := range []string{"t1", "t2", "t3"} {
		mustPut(t, db, "app", m, tag)
	}
	const lease = time.Minute

	// Three failures, then success: four attempts, numbered.
	want := []metadata.Attempt{
		{Status: 500, Latency: time.Second, Response: "internal error"},
		{Status: 0, Latency: 2 * time.Second, Response: "connection refused"},
		{Status: 503, Latency: 3 * time.Second, Response: "unavailable"},
		{Status: 204, Latency: 4 * time.Second},
	}
	var id int64
	for i := range want {
		at := c.tick()
		d := claimOne(t, db, lease, "hook app:t1")
		if id == 0 {
			id = d.ID
		}
		if d.ID != id || d.Attempts != int64(i) {
			t.Fatalf("claim %d: delivery %d with %d attempts; want %d with %d", i+1, d.ID, d.Attempts, id, i)
		}
		want[i].Number, want[i].At = int64(i+1), at.UnixNano()
		out := retry(c)
		if i == len(want)-1 {
			out = delivered
		}
		if _, err := db.RecordAttempt(t.Context(), d, want[i], out); err != nil {
			t.Fatal(err)
		}
		if got := delivery(t, db, "hook", id); got.Attempts != int64(i+1) || got.LastStatus != want[i].Status {
			t.Errorf("after attempt %d: %d attempts, last status %d", i+1, got.Attempts, got.LastStatus)
		}
	}
	got, err := db.Attempts(t.Context(), "hook", id)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Attempts = %+v, %v;\nwant %+v", got, err, want)
	}
	d := delivery(t, db, "hook", id)
	if d.State != metadata.DeliveryDelivered || d.Done != nanos(c) {
		t.Errorf("delivered: state %s, done %d; want delivered at %d", d.State, d.Done, nanos(c))
	}
	if _, err := db.RecordAttempt(t.Context(), d, metadata.Attempt{Status: 200}, delivered); !errors.Is(err, metadata.ErrNotClaimed) {
		t.Errorf("RecordAttempt after delivery: %v, want ErrNotClaimed", err)
	}
	if got, _ := db.Attempts(t.Context(), "hook", id); len(got) != len(want) {
		t.Errorf("an attempt after delivery was logged: %+v", got)
	}
	if got, _ := db.Attempts(t.Context(), "other", id); len(got) != 0 {
		t.Errorf("another webhook's Attempts list this one's: %+v", got)
	}

	// Dead: done, takes no more attempts, and no longer holds the line.
	c.tick()
	dead := claimOne(t, db, lease, "hook app:t2")
	record(t, db, dead, 400, metadata.Outcome{State: metadata.DeliveryDead})
	if got := delivery(t, db, "hook", dead.ID); got.State != metadata.DeliveryDead || got.Done != nanos(c) || got.Attempts != 1 {
		t.Errorf("dead delivery: %+v", got)
	}
	if _, err := db.RecordAttempt(t.Context(), dead, metadata.Attempt{Status: 200}, delivered); !errors.Is(err, metadata.ErrNotClaimed) {
		t.Errorf("RecordAttempt on a dead delivery: %v, want ErrNotClaimed", err)
	}
	record(t, db, claimOne(t, db, lease, "hook app:t3"), 200, delivered)
	wantClaimed(t, claim(t, db, lease))

	// Redeliver makes it pending and due, and wakes the dispatchers.
	watcher, wake := watchOutbox(t, o, c)
	at := c.tick()
	inTx(t, watcher, func(ctx context.Context, tx *metadata.Tx) error { return tx.Redeliver(ctx, "hook", dead.ID) })
	if !woken(wake) {
		t.Error("Redeliver did not wake OutboxWritten")
	}
	if got := delivery(t, db, "hook", dead.ID); got.State != metadata.DeliveryPending || got.NextAt != at.UnixNano() || got.Done != 0 {
		t.Errorf("redelivered: %+v; want pending, due at %d, not done", got, at.UnixNano())
	}
	again := claimOne(t, db, lease, "hook app:t2")
	record(t, db, again, 200, delivered)
	if got, err := db.Attempts(t.Context(), "hook", dead.ID); err != nil || len(got) != 2 || got[1].Number != 2 || got[1].Status != 200 {
		t.Errorf("attempts after redelivery: %+v, %v; want the dead one, then number 2", got, err)
	}
	for _, w := range []string{"hook", "other"} {
		err := db.InTx(t.Context(), func(tx *metadata.Tx) error { return tx.Redeliver(t.Context(), w, dead.ID+100) })
		if !errors.Is(err, metadata.ErrNotFound) {
			t.Errorf("Redeliver(%s, unknown id): %v, want ErrNotFound", w, err)
		}
	}
	if err := db.InTx(t.Context(), func(tx *metadata.Tx) error { return tx.Redeliver(t.Context(), "other", dead.ID) }); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("Redeliver of another webhook's delivery: %v, want ErrNotFound", err)
	}
}

// TestRecordAttemptPause: PauseAfter failures in a row pause a webhook,
// and say so once; a success starts the count again.
func TestRecordAttemptPause(t *testing.T) { forEachBackend(t, testRecordAttemptPause) }

func testRecordAttemptPause(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	addHook(t, db, "hook", "app", "lib")
	mustPut(t, db, "app", imageIn(t, db, "app", "one"), "t1", "t2")
	mustPut(t, db, "lib", imageIn(t, db, "lib", "one"), "l1")
	const lease, after = time.Minute, 3
	fail := func() metadata.Outcome {
		out := retry(c)
		out.PauseAfter, out.PauseUntil = after, nanos(c)+int64(time.Hour)
		return out
	}

	// The lib line's head is in flight while app's fails.
	ds := claim(t, db, lease)
	wantClaimed(t, ds, "hook app:t1", "hook lib:l1")
	app, lib := byLine(ds)["hook app:t1"], byLine(ds)["hook lib:l1"]
	for i := 1; i <= after; i++ {
		if i > 1 {
			app = claimOne(t, db, lease, "hook app:t1")
		}
		if paused := record(t, db, app, 500, fail()); paused != (i == after) {
			t.Fatalf("failure %d of %d: paused = %v", i, after, paused)
		}
	}
	until := hook(t, db, "hook").PausedUntil
	if until != nanos(c)+int64(time.Hour) {
		t.Errorf("paused until %d, want %d", until, nanos(c)+int64(time.Hour))
	}
	wantClaimed(t, claim(t, db, lease))

	// The failure in flight counts, but the webhook was paused already.
	c.tick()
	if record(t, db, lib, 500, fail()) {
		t.Error("a failure while paused reported the pause again")
	}
	if w := hook(t, db, "hook"); w.Failures != after+1 || w.PausedUntil != until {
		t.Errorf("after a failure while paused: %d failures, paused until %d; want %d, %d", w.Failures, w.PausedUntil, after+1, until)
	}

	// When the pause ends, a failure pauses it again at once: the
	// failures are still in a row.
	c.advance(time.Duration(until - nanos(c)))
	ds = claim(t, db, lease)
	wantClaimed(t, ds, "hook app:t1", "hook lib:l1")
	if !record(t, db, byLine(ds)["hook app:t1"], 500, fail()) {
		t.Error("a failure after the pause did not pause again")
	}
	// A success starts the count again.
	record(t, db, byLine(ds)["hook lib:l1"], 200, delivered)
	if w := hook(t, db, "hook"); w.Failures != 0 {
		t.Errorf("%d failures after a success, want 0", w.Failures)
	}
	c.advance(time.Hour)
	for i := 1; i <= after; i++ {
		d := claimOne(t, db, lease, "hook app:t1")
		if paused := record(t, db, d, 500, fail()); paused != (i == after) {
			t.Fatalf("after the success, failure %d of %d: paused = %v", i, after, paused)
		}
	}
	// PauseAfter 0 never pauses.
	c.advance(time.Hour)
	for range 2 * after {
		d := claimOne(t, db, lease, "hook app:t1")
		if record(t, db, d, 500, retry(c)) {
			t.Fatal("a failure with PauseAfter 0 paused")
		}
	}
	wantClaimed(t, claim(t, db, lease), "hook app:t1")
}

// TestOutboxWritten: a commit that writes to the outbox wakes the
// dispatchers, of this handle and, on PostgreSQL, of every replica; a
// rollback wakes none.
func TestOutboxWritten(t *testing.T) { forEachBackend(t, testOutboxWritten) }

func testOutboxWritten(t *testing.T, be backend) {
	o := outboxOptions(t, be)
	db := openWith(t, o, nil)
	addHook(t, db, "hook", "app")
	m := imageIn(t, db, "app", "one")
	link(t, db, "lib", newBlob("config"), newBlob("one"))

	// The handle's own commits: its send happens before InTx returns.
	handle, wake := watchOutbox(t, o, nil)
	boom := errors.New("boom")
	err := handle.InTx(t.Context(), func(tx *metadata.Tx) error {
		if err := tx.PutManifest(t.Context(), "app", m.digest, m.parsed, m.payload, []string{"rolled-back"}, change("a", "push")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if woken(wake) {
		t.Error("a rolled-back event woke OutboxWritten")
	}
	if err := put(t, handle, "lib", m, "a", "unwanted"); err != nil {
		t.Fatal(err)
	}
	if woken(wake) {
		t.Error("a change that no webhook wants woke OutboxWritten")
	}
	if err := put(t, handle, "app", m, "a", "v1"); err != nil {
		t.Fatal(err)
	}
	if !woken(wake) {
		t.Error("a committed event did not wake OutboxWritten")
	}

	if o.PostgresURL == "" {
		return
	}
	// Another replica's commit reaches this one by notification.
	_, replica := watchOutbox(t, o, nil)
	if err := put(t, db, "app", m, "a", "v2"); err != nil {
		t.Fatal(err)
	}
	waitWoken(t, replica, "another handle's event")
}

// TestSyncConfigWebhooks: the configuration file's webhooks are made
// exactly those it lists; API webhooks of other names stay.
func TestSyncConfigWebhooks(t *testing.T) { forEachBackend(t, testSyncConfigWebhooks) }

func testSyncConfigWebhooks(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	syncHooks := func(bodies map[string]string) {
		t.Helper()
		inTx(t, db, func(ctx context.Context, tx *metadata.Tx) error { return tx.SyncConfigWebhooks(ctx, bodies) })
	}
	names := func() map[string]string { // name → source
		ws, err := db.Webhooks(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, w := range ws {
			out[w.Name] = w.Source
		}
		return out
	}
	created := c.tick()
	syncHooks(map[string]string{"kept": "app", "dropped": "app"})
	addHook(t, db, "converted", "app")
	addHook(t, db, "api", "app")
	if got := names(); !maps.Equal(got, map[string]string{"api": "api", "converted": "api", "dropped": "config", "kept": "config"}) {
		t.Fatalf("webhooks: %v", got)
	}
	mustPut(t, db, "app", imageIn(t, db, "app", "one"), "t1")
	// dropped's delivery has an attempt, which goes with it.
	ds := claim(t, db, time.Minute)
	for _, d := range ds {
		if d.Webhook == "dropped" {
			record(t, db, d, 500, retry(c))
		}
	}

	updated := c.tick()
	syncHooks(map[string]string{"kept": "app lib", "converted": "app ops"})
	if got := names(); !maps.Equal(got, map[string]string{"api": "api", "converted": "config", "kept": "config"}) {
		t.Errorf("webhooks after the second sync: %v", got)
	}
	kept := hook(t, db, "kept")
	if kept.Body != "app lib" || kept.Created != created.UnixNano() || kept.Updated != updated.UnixNano() {
		t.Errorf("kept: %+v; want the new body, created at %d, updated at %d", kept, created.UnixNano(), updated.UnixNano())
	}
	if w := hook(t, db, "converted"); w.Body != "app ops" {
		t.Errorf("converted: %+v", w)
	}
	for name, n := range map[string]int{"kept": 1, "converted": 1, "api": 1, "dropped": 0} {
		if got := deliveries(t, db, name); len(got) != n {
			t.Errorf("%s has %d deliveries, want %d", name, len(got), n)
		}
	}
	// A webhook of the same name starts without the old one's deliveries.
	addHook(t, db, "dropped", "app")
	if got := deliveries(t, db, "dropped"); len(got) != 0 {
		t.Errorf("a new webhook named dropped has the old one's deliveries: %+v", got)
	}

	// An empty configuration removes every webhook it made, and
	// converted, and leaves the API's.
	syncHooks(nil)
	if got := names(); !maps.Equal(got, map[string]string{"api": "api", "dropped": "api"}) {
		t.Errorf("webhooks after an empty sync: %v", got)
	}
	if got := deliveries(t, db, "api"); len(got) != 1 || got[0].Event.Tag != "t1" {
		t.Errorf("api's deliveries: %+v", got)
	}
}

// TestDeleteWebhook: a webhook goes with its deliveries and their
// attempts; the events other webhooks deliver stay.
func TestDeleteWebhook(t *testing.T) { forEachBackend(t, testDeleteWebhook) }

func testDeleteWebhook(t *testing.T, be backend) {
	c := newClock()
	db := openWith(t, outboxOptions(t, be), c)
	addHook(t, db, "doomed", "app")
	addHook(t, db, "other", "app")
	mustPut(t, db, "app", imageIn(t, db, "app", "one"), "t1", "t2")
	var attempted int64
	for _, d := range claim(t, db, time.Minute) {
		record(t, db, d, 500, retry(c))
		if d.Webhook == "doomed" {
			attempted = d.ID
		}
	}
	del := func() error {
		return db.InTx(t.Context(), func(tx *metadata.Tx) error { return tx.DeleteWebhook(t.Context(), "doomed") })
	}
	if err := del(); err != nil {
		t.Fatalf("DeleteWebhook: %v", err)
	}
	if _, err := db.GetWebhook(t.Context(), "doomed"); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("GetWebhook after delete: %v", err)
	}
	if got := deliveries(t, db, "doomed"); len(got) != 0 {
		t.Errorf("deliveries left: %+v", got)
	}
	if got, err := db.Attempts(t.Context(), "doomed", attempted); err != nil || len(got) != 0 {
		t.Errorf("attempts left: %+v, %v", got, err)
	}
	if err := del(); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("deleting it again: %v, want ErrNotFound", err)
	}
	ds := deliveries(t, db, "other")
	if len(ds) != 2 || ds[0].Event.Tag != "t1" || ds[1].Event.Tag != "t2" || ds[0].Attempts != 1 {
		t.Errorf("other's deliveries: %+v", ds)
	}
	if n, err := db.PendingDeliveries(t.Context()); err != nil || n != 2 {
		t.Errorf("PendingDeliveries = %d, %v; want other's 2", n, err)
	}
}

// progress broadcasts settled deliveries: the channel next returns is
// closed at the first settle after the call.
type progress struct {
	mu sync.Mutex
	ch chan struct{}
}

func (p *progress) next() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch == nil {
		p.ch = make(chan struct{})
	}
	return p.ch
}

func (p *progress) settled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch != nil {
		close(p.ch)
	}
	p.ch = make(chan struct{})
}

// TestConcurrentClaims: two replicas drain the outbox at once. With leases
// that do not pass, each delivery is claimed once, and each webhook gets
// each repository's events in order.
func TestConcurrentClaims(t *testing.T) { forEachBackend(t, testConcurrentClaims) }

func testConcurrentClaims(t *testing.T, be backend) {
	c := newClock()
	o := outboxOptions(t, be)
	dbs := []*metadata.DB{openWith(t, o, c), openWith(t, o, c)}
	addHook(t, dbs[0], "a", "app", "lib", "ops")
	addHook(t, dbs[0], "b", "app", "lib")
	addHook(t, dbs[0], "c", "ops")
	repos := []string{"app", "lib", "ops"}
	images := map[string]manifest{}
	for _, r := range repos {
		images[r] = imageIn(t, dbs[0], r, r)
	}
	const perRepo = 12
	var pushed []string // tags in push order, the same in each repository
	for i := range perRepo {
		tag := fmt.Sprint("t", i)
		pushed = append(pushed, tag)
		for _, r := range repos { // interleaved, so a line's ids are not consecutive
			mustPut(t, dbs[0], r, images[r], tag)
		}
	}
	const total = perRepo * (3 + 2 + 1)

	var mu sync.Mutex
	claims := map[int64]int{}
	sent := map[string][]metadata.Delivery{} // webhook and repository → in the order they were sent
	var prog progress
	noErrors(t, race(len(dbs), func(i int) error {
		db := dbs[i]
		for {
			moved := prog.next()
			ds, err := db.ClaimDeliveries(t.Context(), time.Hour, 4)
			if err != nil {
				return err
			}
			if len(ds) == 0 {
				n, err := db.PendingDeliveries(t.Context())
				if err != nil || n == 0 {
					return err
				}
				// The other replica holds every line's head: wait for it to
				// settle one.
				select {
				case <-moved:
				case <-time.After(patience):
					return fmt.Errorf("%d deliveries pending, and none settled", n)
				}
				continue
			}
			for _, d := range ds {
				// Sent while claimed, before it is settled: that is the
				// order a receiver sees.
				mu.Lock()
				claims[d.ID]++
				key := d.Webhook + " " + d.Repository
				sent[key] = append(sent[key], d)
				mu.Unlock()
				_, err := db.RecordAttempt(t.Context(), d, metadata.Attempt{At: nanos(c), Status: 200}, delivered)
				switch {
				case errors.Is(err, metadata.ErrNotClaimed):
					// The other replica claimed and settled it too: the
					// count of claims below says so.
				case err != nil:
					return err
				}
				prog.settled()
			}
		}
	}))

	if len(claims) != total {
		t.Errorf("%d deliveries claimed, want %d", len(claims), total)
	}
	for id, n := range claims {
		if n != 1 {
			t.Errorf("delivery %d claimed %d times", id, n)
		}
	}
	for _, w := range []string{"a", "b", "c"} {
		for _, d := range deliveries(t, dbs[1], w) {
			if d.State != metadata.DeliveryDelivered || claims[d.ID] != 1 {
				t.Errorf("%s: %s, claimed %d times", line(d), d.State, claims[d.ID])
			}
		}
	}
	for key, ds := range sent {
		var order []string
		for i, d := range ds {
			order = append(order, d.Event.Tag)
			if i > 0 && (d.ID <= ds[i-1].ID || d.Event.Seq <= ds[i-1].Event.Seq) {
				t.Errorf("%s: delivery %d (event %d) sent after %d (event %d)", key, d.ID, d.Event.Seq, ds[i-1].ID, ds[i-1].Event.Seq)
			}
		}
		if !slices.Equal(order, pushed) {
			t.Errorf("%s: sent %q, pushed %q", key, order, pushed)
		}
	}
	if len(sent) != 3+2+1 {
		t.Errorf("%d lines sent, want 6: %v", len(sent), sent)
	}
}

// TestConcurrentEventOrder: pushes of different tags to one repository
// from two replicas at once. A repository's events take their seq in the
// order the changes commit, which is the order of the tags' history rows
// (both are written under the repository's tags lock); and each event's
// Newest is right for the tags committed before it.
func TestConcurrentEventOrder(t *testing.T) { forEachBackend(t, testConcurrentEventOrder) }

func testConcurrentEventOrder(t *testing.T, be backend) {
	o := outboxOptions(t, be)
	dbs := []*metadata.DB{openWith(t, o, nil), openWith(t, o, nil)}
	addHook(t, dbs[0], "hook", "app")
	// Images of their own, so that the pushes share no row they write
	// (a shared manifest's link row would serialise them by itself).
	const pushes = 50
	config := newBlob("config")
	ms := make([]manifest, pushes)
	blobs := []blob{config}
	for i := range ms {
		l := newBlob(fmt.Sprint("layer ", i))
		blobs = append(blobs, l)
		ms[i] = image(t, config, l)
	}
	link(t, dbs[0], "app", blobs...)
	noErrors(t, race(pushes, func(i int) error {
		return dbs[i%len(dbs)].InTx(t.Context(), func(tx *metadata.Tx) error {
			return tx.PutManifest(t.Context(), "app", ms[i].digest, ms[i].parsed, ms[i].payload, []string{fmt.Sprint(i + 1)},
				change(fmt.Sprint("writer ", i), metadata.ActionPush))
		})
	}))

	es := events(t, dbs[1])
	if len(es) != pushes {
		t.Fatalf("%d events for %d pushes", len(es), pushes)
	}
	var prevRow int64
	newestSoFar := 0
	for i, e := range es {
		h, err := dbs[1].TagHistory(t.Context(), "app", e.Tag)
		if err != nil || len(h) != 1 {
			t.Fatalf("history of %s: %+v, %v", e.Tag, h, err)
		}
		if h[0].ID <= prevRow {
			t.Errorf("event %d (seq %d, tag %s) has history row %d, after row %d", i, e.Seq, e.Tag, h[0].ID, prevRow)
		}
		prevRow = h[0].ID
		n, err := strconv.Atoi(e.Tag)
		if err != nil {
			t.Fatalf("event %d: tag %q", i, e.Tag)
		}
		if want := n > newestSoFar; !e.Numbered || e.Newest != want {
			t.Errorf("event %d (tag %s, after versions up to %d): numbered %v, newest %v; want newest %v",
				i, e.Tag, newestSoFar, e.Numbered, e.Newest, want)
		}
		newestSoFar = max(newestSoFar, n)
	}
}
