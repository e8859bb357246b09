package test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
	"github.com/distribution/distribution/v3/notifications"
	"go.yaml.in/yaml/v3"
)

// Webhooks end to end: the built binary delivers its outbox to real HTTP receivers on loopback
// ports, its endpoints configured as users configure them (the YAML file's webhooks.endpoints, or
// /admin/v1/webhooks), its images pushed over /v2. Every scenario runs on SQLite and on
// PostgreSQL, each on servers and receivers of its own.

const (
	// publicURL is the registry's URL as --public-url tells receivers; nothing listens there.
	publicURL  = "https://registry.example.test:5443"
	publicHost = "registry.example.test:5443"
	// hookSecret is a Standard Webhooks signing secret: whsec_ and the base64 of the key bytes.
	hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	// fastRetries is the retry schedule of the tests (--webhooks.retry-schedule), so that no
	// test waits the default 5 s for a retry.
	fastRetries = "50ms"
	// deliveryTimeout bounds every wait for a delivery or a delivery's state: the failure
	// bound, never the pace of a test.
	deliveryTimeout = 90 * time.Second
	// signatureTolerance is the receivers' webhook-timestamp tolerance, Standard Webhooks' 5 min.
	signatureTolerance = 5 * time.Minute
)

// TestWebhookDeliveredAcrossRestart: an event committed while its receiver is down (its port
// closed, answering 503, or holding the request unanswered) is still delivered after Berth is
// stopped (SIGTERM) or killed (SIGKILL) and started again on the same data and database: once,
// with the webhook-id and the body the event was committed with. A stopped Berth has logged
// every attempt the receiver saw, the one it cut short too.
func TestWebhookDeliveredAcrossRestart(t *testing.T) {
	t.Parallel()
	stops := []struct {
		name string
		stop func(t *testing.T, s *server)
	}{
		{"SIGTERM", func(t *testing.T, s *server) {
			if err := s.stop(); err != nil {
				t.Fatal(err)
			}
		}},
		{"SIGKILL", func(t *testing.T, s *server) { s.kill() }},
	}
	// Each way a receiver is down: how it starts, and how it comes back.
	downs := []struct {
		name          string
		down, recover func(t *testing.T, r *receiver)
	}{
		{"ClosedPort", func(t *testing.T, r *receiver) { r.down() }, func(t *testing.T, r *receiver) { r.up(t) }},
		{"Answering503",
			func(t *testing.T, r *receiver) { r.setScript(always(http.StatusServiceUnavailable)) },
			func(t *testing.T, r *receiver) { r.setScript(always(http.StatusOK)) }},
		// The first request is held until Berth has stopped, then answered 503 to nobody.
		{"Hanging",
			func(t *testing.T, r *receiver) {
				r.setScript(func(n int) reply {
					if n == 0 {
						return reply{Status: http.StatusServiceUnavailable}
					}
					return reply{Status: http.StatusOK}
				})
				r.holdAnswers(t)
			},
			func(t *testing.T, r *receiver) { r.release() }},
	}
	for _, stop := range stops {
		for _, down := range downs {
			t.Run(stop.name+"/"+down.name, func(t *testing.T) {
				t.Parallel()
				eachDatabase(t, func(t *testing.T, db []string) {
					r := newReceiver(t, always(http.StatusOK))
					down.down(t, r)
					ep := hook("deploy", r, notify.FormatCloudEvents)
					// Retries every 100 ms that never pause the endpoint, so that Berth keeps
					// failing until it is stopped; a short timeout, so that the claim of an
					// attempt a killed Berth left (the timeout and 30 s) lapses sooner.
					s := startHookBerth(t, append(db, "--webhooks.retry-schedule", "100ms", "--webhooks.pause-after", "1000000",
						"--webhooks.timeout", "1s"), ep)
					repo := uniqueRepo(t, "restart")
					pushed := pushTags(t, s, repo, "1")["1"]
					// Committed, tried, not delivered.
					var tried hookDelivery
					if down.name == "Hanging" {
						r.waitFor(t, "the attempt held unanswered", func(reqs []received) bool { return len(reqs) == 1 })
						tried = waitDeliveries(t, s, "deploy", "the delivery", func(ds []hookDelivery) bool { return len(ds) == 1 })[0]
					} else {
						tried = waitDeliveries(t, s, "deploy", "a failed attempt at the delivery of "+repo+":1",
							func(ds []hookDelivery) bool { return len(ds) == 1 && ds[0].Attempts > 0 })[0]
					}
					committed := tried.Event.meta()
					if tried.State != metadata.DeliveryPending || committed.Tag != "1" || committed.Digest.String() != pushed ||
						committed.Repository != repo || committed.Action != metadata.ActionPush {
						t.Fatalf("delivery %+v, want a pending delivery of a push of %s:1 at %s", tried, repo, pushed)
					}

					stop.stop(t, s)
					down.recover(t, r)
					s.restart(t)
					r.waitFor(t, "the delivery of "+repo+":1 after the restart", func(reqs []received) bool {
						return len(successes(reqs)) >= 1
					})
					// The repository's next event is delivered after the first is settled.
					pushTags(t, s, repo, "2")
					reqs := r.waitFor(t, "the delivery of "+repo+":2", func(reqs []received) bool { return len(successes(reqs)) >= 2 })

					_, want, err := notify.Encode(committed, ep, notify.Registry{Host: publicHost, URL: publicURL})
					if err != nil {
						t.Fatal(err)
					}
					ok := successes(reqs)
					if len(ok) != 2 {
						t.Fatalf("%d successful deliveries of two events:\n%s", len(ok), describe(reqs))
					}
					if id := ok[0].Header.Get(notify.HeaderID); id != committed.ID {
						t.Fatalf("first delivery after the restart has webhook-id %s, want the committed event's %s", id, committed.ID)
					}
					seen := 0 // requests for the first event
					for _, rq := range reqs {
						if rq.Header.Get(notify.HeaderID) == committed.ID {
							seen++
							if !bytes.Equal(rq.Body, want) {
								t.Fatalf("request %d for event %s (answered %d) differs from the committed event's encoding:\n got  %s\n want %s",
									rq.N, committed.ID, rq.Status, rq.Body, want)
							}
						}
					}
					if ce := decodeCloudEvent(t, ok[1]); ce.ID == committed.ID || ce.Data.Tag != "2" {
						t.Fatalf("second delivery: event %s of tag %s, want another event, of tag 2", ce.ID, ce.Data.Tag)
					}
					d := waitDelivered(t, s, "deploy", committed.ID)
					if n := d.successfulAttempts(); n != 1 {
						t.Fatalf("delivery log of %s has %d successful attempts, want 1:\n%s", committed.ID, n, d.logLines())
					}
					// A killed Berth cannot log the attempt it was making; a stopped one can.
					if stop.name == "SIGTERM" && down.name != "ClosedPort" && len(d.Log) != seen {
						t.Fatalf("the receiver got %d requests for event %s, the delivery log has %d attempts:\n%s",
							seen, committed.ID, len(d.Log), d.logLines())
					}
				})
			})
		}
	}
}

// TestWebhookRetriedUntilDelivered: a receiver that fails five times and then succeeds gets the
// event once: six requests with one webhook-id and one body, and the delivery log shows the six
// attempts with their statuses.
func TestWebhookRetriedUntilDelivered(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, db []string) {
		r := newReceiver(t, func(n int) reply {
			if n < 5 {
				return reply{Status: http.StatusInternalServerError, Body: "failure " + strconv.Itoa(n+1)}
			}
			return reply{Status: http.StatusOK}
		})
		s := startHookBerth(t, db, hook("deploy", r, notify.FormatCloudEvents))
		repo := uniqueRepo(t, "retried")
		pushTags(t, s, repo, "1")
		r.waitFor(t, "a successful delivery", func(reqs []received) bool { return len(successes(reqs)) >= 1 })
		pushTags(t, s, repo, "2") // delivered once the first is settled
		reqs := r.waitFor(t, "the delivery of the second tag", func(reqs []received) bool { return len(successes(reqs)) >= 2 })

		if len(reqs) != 7 {
			t.Fatalf("%d requests, want 6 for the first event and 1 for the second:\n%s", len(reqs), describe(reqs))
		}
		first := reqs[0]
		id := first.Header.Get(notify.HeaderID)
		for _, rq := range reqs[:6] {
			if got := rq.Header.Get(notify.HeaderID); got != id || !bytes.Equal(rq.Body, first.Body) {
				t.Fatalf("request %d: webhook-id %s, body %s; want the first request's %s, %s", rq.N, got, rq.Body, id, first.Body)
			}
			if got := rq.Header.Get(notify.HeaderIdempotencyKey); got != id {
				t.Errorf("request %d: Idempotency-Key %q, want the webhook-id %s", rq.N, got, id)
			}
		}
		if ce := decodeCloudEvent(t, first); ce.ID != id || ce.Data.Tag != "1" {
			t.Fatalf("first event: id %s of tag %s, want id %s of tag 1", ce.ID, ce.Data.Tag, id)
		}
		if reqs[6].Header.Get(notify.HeaderID) == id {
			t.Fatal("the second event was delivered with the first's webhook-id")
		}

		d := waitDelivered(t, s, "deploy", id)
		var statuses []int64
		for i, a := range d.Log {
			statuses = append(statuses, a.Status)
			if a.Attempt != int64(i+1) || i > 0 && a.At.Before(d.Log[i-1].At) {
				t.Fatalf("delivery log of %s is not attempts 1… in time order:\n%s", id, d.logLines())
			}
			if i < 5 && a.Response != "failure "+strconv.Itoa(i+1) {
				t.Errorf("attempt %d logged response %q, want the receiver's %q", i+1, a.Response, "failure "+strconv.Itoa(i+1))
			}
		}
		if want := []int64{500, 500, 500, 500, 500, 200}; !slices.Equal(statuses, want) || d.Attempts != 6 || d.LastStatus != 200 || d.Done == nil {
			t.Fatalf("delivery %d: %d attempts, last status %d, done %v, log statuses %v; want 6, 200, a time, %v",
				d.ID, d.Attempts, d.LastStatus, d.Done, statuses, want)
		}
	})
}

// TestWebhookOrderUnderBurst: 100 numbered tags pushed at once by parallel clients reach a slow,
// sometimes failing receiver in the order they were committed (the order of their history rows)
// and each delivered once; with two replicas on one PostgreSQL database, both dispatching, still
// in order, and each event sent exactly once when the receiver does not fail.
func TestWebhookOrderUnderBurst(t *testing.T) {
	t.Parallel()
	const tags, clients = 100, 8
	const slow = 5 * time.Millisecond // each answer
	t.Run("OneServer", func(t *testing.T) {
		t.Parallel()
		eachDatabase(t, func(t *testing.T, db []string) {
			r := newReceiver(t, func(n int) reply {
				if n%7 == 3 {
					return reply{Status: http.StatusServiceUnavailable}
				}
				return reply{Status: http.StatusOK}
			})
			r.delay = slow
			s := startHookBerth(t, db, hook("deploy", r, notify.FormatCloudEvents))
			repo := uniqueRepo(t, "burst")
			burst(t, []*server{s}, repo, tags, clients)
			expectCommitOrder(t, s, repo, r, tags, false)
		})
	})
	t.Run("TwoReplicasOnPostgreSQL", func(t *testing.T) {
		t.Parallel()
		if k := serverKind(); k != "berth" {
			t.Skipf("webhooks are Berth's own; BERTH_E2E_SERVER=%s", k)
		}
		db := []string{"--database", testserver.Postgres(t)}
		r := newReceiver(t, always(http.StatusOK))
		r.delay = slow
		ep := hook("deploy", r, notify.FormatCloudEvents)
		replicas := []*server{startHookBerth(t, db, ep), startHookBerth(t, db, ep)}
		repo := uniqueRepo(t, "burst-replicas")
		burst(t, replicas, repo, tags, clients) // manifests through both
		expectCommitOrder(t, replicas[1], repo, r, tags, true)
	})
}

// burst pushes the numbered tags 1…n of repo, each an image of its own, from parallel clients
// that take turns at the servers. The blobs go through the first server; manifests are metadata,
// which the servers share.
func burst(t *testing.T, servers []*server, repo string, n, clients int) {
	t.Helper()
	imgs := newImages(t, servers[0], repo, n)
	pushAll(t, clients, n, func(i int) (*server, string, string, []byte) {
		return servers[i%len(servers)], repo, strconv.Itoa(i + 1), imgs[i].Manifest
	})
}

// pushAll PUTs n manifests from parallel clients, the i-th to the server, repository and tag that
// push(i) returns.
func pushAll(t testing.TB, clients, n int, push func(i int) (s *server, repo, tag string, manifest []byte)) {
	t.Helper()
	next := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := range next {
				s, repo, tag, manifest := push(i)
				resp, body, err := tryDo(http.MethodPut, s.URL+"/v2/"+repo+"/manifests/"+tag, manifest,
					map[string]string{"Content-Type": mtOCIManifest})
				if err != nil || resp.StatusCode != http.StatusCreated {
					t.Errorf("PUT %s:%s: %v %s", repo, tag, statusOrErr(resp, err), truncate(body))
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// expectCommitOrder waits until the receiver has n events of repo, then checks that their
// successful deliveries came in the order of the tags' history rows, each once and with the
// digest the history has; and, if once, that no event was sent more than once at all.
func expectCommitOrder(t *testing.T, s *server, repo string, r *receiver, n int, once bool) {
	t.Helper()
	reqs := r.waitFor(t, fmt.Sprintf("%d events delivered", n), func(reqs []received) bool { return len(successes(reqs)) >= n })
	rows := collect[event](t, s, repo, "/history", "events")
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	var committed, delivered []string
	digests := map[string]string{}
	for _, row := range rows {
		committed = append(committed, row.Tag)
		digests[row.Tag] = row.Digest
	}
	seen := map[string]int{}
	for _, rq := range successes(reqs) {
		ce := decodeCloudEvent(t, rq)
		if seen[ce.ID]++; seen[ce.ID] > 1 {
			t.Errorf("event %s (tag %s) delivered twice", ce.ID, ce.Data.Tag)
		}
		if ce.Data.Repository != repo || ce.Data.Digest != digests[ce.Data.Tag] {
			t.Errorf("event %s: %s:%s at %s; the history has %s", ce.ID, ce.Data.Repository, ce.Data.Tag, ce.Data.Digest, digests[ce.Data.Tag])
		}
		delivered = append(delivered, ce.Data.Tag)
	}
	if len(committed) != n || !slices.Equal(delivered, committed) {
		t.Fatalf("tags delivered, in order:\n%q\nthe commit order (history rows):\n%q", delivered, committed)
	}
	if once && len(reqs) != n {
		t.Fatalf("%d requests for %d events from a receiver that never failed:\n%s", len(reqs), n, describe(reqs))
	}
	t.Logf("%d events in commit order, %d requests", n, len(reqs))
}

// TestWebhookSignatures: every delivery verifies with notify.Verify and each configured secret
// alone (the newest first, for rotation) and not with another; its Standard Webhooks and
// X-Signature HMACs, computed here from the secrets, match; a changed body fails.
func TestWebhookSignatures(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, db []string) {
		r := newReceiver(t, always(http.StatusOK))
		one := hook("one", r, notify.FormatCloudEvents)
		rotating := hook("rotating", r, notify.FormatDistribution)
		rotating.Secrets = []string{"a new secret whose bytes are the key", hookSecret} // newest first
		endpoints := map[string]notify.Endpoint{"/one": one, "/rotating": rotating}
		s := startHookBerth(t, db, one, rotating)
		repo := uniqueRepo(t, "signed")
		pushTags(t, s, repo, "1", "latest")
		resp, body := httpDo(t, http.MethodDelete, s.URL+"/v2/"+repo+"/manifests/latest", nil, nil)
		expectStatus(t, resp, body, http.StatusAccepted)
		reqs := r.waitFor(t, "three events at each endpoint", func(reqs []received) bool { return len(reqs) >= 6 })
		if len(reqs) != 6 {
			t.Fatalf("%d requests for three events at two endpoints that answer 200:\n%s", len(reqs), describe(reqs))
		}

		wrong := "whsec_" + base64.StdEncoding.EncodeToString([]byte("not the key of any endpoint"))
		for _, rq := range reqs {
			ep := endpoints[rq.Path]
			id, ts := rq.Header.Get(notify.HeaderID), rq.Header.Get(notify.HeaderTimestamp)
			for _, secret := range ep.Secrets {
				if err := notify.Verify(rq.Header, rq.Body, []string{secret}, time.Now(), signatureTolerance); err != nil {
					t.Errorf("%s request %d: Verify with the secret %q: %v", rq.Path, rq.N, secret, err)
				}
			}
			if err := notify.Verify(rq.Header, rq.Body, []string{wrong}, time.Now(), signatureTolerance); err == nil {
				t.Errorf("%s request %d verifies with a secret it was not signed with", rq.Path, rq.N)
			}
			if err := notify.Verify(rq.Header, append(slices.Clone(rq.Body), ' '), ep.Secrets, time.Now(), signatureTolerance); err == nil {
				t.Errorf("%s request %d verifies with a changed body", rq.Path, rq.N)
			}
			// The signatures as a receiver computes them, from the specifications.
			var want []string
			for _, secret := range ep.Secrets {
				want = append(want, "v1,"+base64.StdEncoding.EncodeToString(hmacSHA256(secretKey(t, secret), []byte(id+"."+ts+"."+string(rq.Body)))))
			}
			if got := strings.Fields(rq.Header.Get(notify.HeaderSignature)); !slices.Equal(got, want) {
				t.Errorf("%s request %d: webhook-signature %q, want %q", rq.Path, rq.N, got, want)
			}
			if got, want := rq.Header.Get(notify.HeaderFluxSignature), "sha256="+hex.EncodeToString(hmacSHA256(secretKey(t, ep.Secrets[0]), rq.Body)); got != want {
				t.Errorf("%s request %d: X-Signature %q, want %q (HMAC-SHA256 of the body with the first secret)", rq.Path, rq.N, got, want)
			}
			if got := rq.Header.Get(notify.HeaderIdempotencyKey); got != id || !strings.HasPrefix(id, "evt_") {
				t.Errorf("%s request %d: webhook-id %q, Idempotency-Key %q", rq.Path, rq.N, id, got)
			}
		}
	})
}

// secretKey is the HMAC key of a secret, as Standard Webhooks defines it: the base64 after
// whsec_; any other secret is its own bytes.
func secretKey(t testing.TB, secret string) []byte {
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return []byte(secret)
	}
	k, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	return k
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// TestWebhookFormats checks every payload format field by field, end to end: pushes, a move of a
// numbered tag, a delete, in a two-segment and a one-segment repository. The distribution format
// is decoded, refusing unknown fields, into the reference registry's own types.
func TestWebhookFormats(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, db []string) {
		r := newReceiver(t, always(http.StatusOK))
		dist := hook("dist", r, notify.FormatDistribution)
		distV1 := hook("dist-v1", r, notify.FormatDistribution)
		distV1.DistributionMediaType = notify.DistributionMediaTypeV1
		harbor := hook("harbor", r, notify.FormatHarbor)
		ce := hook("cloudevents", r, notify.FormatCloudEvents)
		s := startHookBerth(t, append(db, "--tags.mutable-numbered"), dist, distV1, harbor, ce)

		repo := "team/app-" + hex.EncodeToString(randBytes(t, 4))
		imgs := newImages(t, s, repo, 2)
		a, b := imgs[0], imgs[1]
		pushManifest(t, s, repo, "1", mtOCIManifest, a.Manifest)
		pushManifest(t, s, repo, "2", mtOCIManifest, b.Manifest)
		admin(t, s, http.MethodPut, repo, "/tags/1", fmt.Sprintf(`{"digest": %q}`, b.Digest), &tagChange{})
		pushManifest(t, s, repo, "latest", mtOCIManifest, a.Manifest)
		resp, body := httpDo(t, http.MethodDelete, s.URL+"/v2/"+repo+"/manifests/latest", nil, nil)
		expectStatus(t, resp, body, http.StatusAccepted)
		solo := "solo-" + hex.EncodeToString(randBytes(t, 4))
		c := newImages(t, s, solo, 1)[0]
		pushManifest(t, s, solo, "1", mtOCIManifest, c.Manifest)

		size := func(img *testImage) int64 { return int64(len(img.Manifest)) }
		want := []metadata.Event{ // in commit order
			{Action: "push", Repository: repo, Tag: "1", Digest: digest(a), Size: size(a), Numbered: true, Newest: true},
			{Action: "push", Repository: repo, Tag: "2", Digest: digest(b), Size: size(b), Numbered: true, Newest: true},
			{Action: "move", Repository: repo, Tag: "1", Digest: digest(b), Previous: digest(a), Size: size(b), Numbered: true},
			{Action: "push", Repository: repo, Tag: "latest", Digest: digest(a), Size: size(a)},
			{Action: "delete", Repository: repo, Tag: "latest", Digest: digest(a), Previous: digest(a), Size: size(a)},
			{Action: "push", Repository: solo, Tag: "1", Digest: digest(c), Size: size(c), Numbered: true, Newest: true},
		}
		reqs := r.waitFor(t, "six events at each of four endpoints", func(reqs []received) bool { return len(reqs) >= 4*len(want) })
		if len(reqs) != 4*len(want) {
			t.Fatalf("%d requests for %d events at four endpoints that answer 200:\n%s", len(reqs), len(want), describe(reqs))
		}

		// The events as committed, as the admin API shows them: one event, so one id, per change,
		// whatever the endpoint.
		events := waitDeliveries(t, s, "cloudevents", "six deliveries", func(ds []hookDelivery) bool { return len(ds) == len(want) })
		byID := map[string]metadata.Event{}
		for i, d := range events {
			e := d.Event.meta()
			if e.ID == "" || e.Time == 0 || e.MediaType != mtOCIManifest {
				t.Errorf("committed event %d: %+v lacks an id, a time or the manifest's media type", i, e)
			}
			w := want[i]
			w.ID, w.Time, w.MediaType, w.Actor = e.ID, e.Time, e.MediaType, e.Actor
			if e != w {
				t.Errorf("committed event %d:\n got  %+v\n want %+v", i, e, w)
			}
			byID[e.ID] = e
		}
		for _, name := range []string{"dist", "dist-v1", "harbor"} {
			for i, d := range waitDeliveries(t, s, name, "six deliveries", func(ds []hookDelivery) bool { return len(ds) == len(want) }) {
				if d.Event != events[i].Event {
					t.Errorf("webhook %s, delivery %d: event %+v, the cloudevents webhook's %+v", name, i, d.Event, events[i].Event)
				}
			}
		}
		if t.Failed() {
			t.FailNow()
		}

		distBodies := map[string][]byte{} // by event id: the v1 and v2 bodies are one envelope
		for _, rq := range reqs {
			e, ok := byID[rq.Header.Get(notify.HeaderID)]
			if !ok {
				t.Fatalf("%s request %d: webhook-id %q is no committed event's", rq.Path, rq.N, rq.Header.Get(notify.HeaderID))
			}
			t.Run(fmt.Sprintf("%s/%s/%s:%s", strings.TrimPrefix(rq.Path, "/"), e.Action, e.Repository, e.Tag), func(t *testing.T) {
				switch rq.Path {
				case "/dist", "/dist-v1":
					wantType := notify.DistributionMediaTypeV2
					if rq.Path == "/dist-v1" {
						wantType = notify.DistributionMediaTypeV1
					}
					expectContentType(t, rq, wantType)
					expectDistribution(t, rq.Body, e)
					if other, ok := distBodies[e.ID]; ok && !bytes.Equal(other, rq.Body) {
						t.Errorf("v1 and v2 bodies differ:\n%s\n%s", other, rq.Body)
					}
					distBodies[e.ID] = rq.Body
				case "/harbor":
					expectContentType(t, rq, "application/json")
					expectHarbor(t, rq.Body, e)
				case "/cloudevents":
					expectContentType(t, rq, "application/cloudevents+json")
					expectCloudEvent(t, rq, e)
				default:
					t.Fatalf("request to %s", rq.Path)
				}
			})
		}
	})
}

func digest(img *testImage) oci.Digest { return oci.Digest(img.Digest) }

func expectContentType(t *testing.T, rq received, want string) {
	t.Helper()
	if got := rq.Header.Get("Content-Type"); got != want {
		t.Errorf("Content-Type %q, want %q", got, want)
	}
}

// strictJSON decodes b into v, refusing unknown fields and anything after the value.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

// expectDistribution checks a distribution envelope against the committed event e, as a
// receiver written for the reference registry reads it.
func expectDistribution(t *testing.T, body []byte, e metadata.Event) {
	t.Helper()
	var env notifications.Envelope
	if err := strictJSON(body, &env); err != nil || len(env.Events) != 1 {
		t.Fatalf("not an envelope of one event (%v): %s", err, body)
	}
	raw, err := json.Marshal(env.Events[0])
	if err != nil {
		t.Fatal(err)
	}
	var ev notifications.Event
	if err := strictJSON(raw, &ev); err != nil {
		t.Fatalf("not the reference registry's Event: %v\n%s", err, raw)
	}
	action, method := notifications.EventActionPush, http.MethodPut
	if e.Action == metadata.ActionDelete {
		action, method = notifications.EventActionDelete, http.MethodDelete
	}
	tg := ev.Target
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"id", ev.ID, e.ID},
		{"timestamp", ev.Timestamp.UnixNano(), e.Time},
		{"action", ev.Action, action},
		{"target.mediaType", tg.MediaType, mtOCIManifest},
		{"target.digest", tg.Digest.String(), e.Digest.String()},
		{"target.size", tg.Size, e.Size},
		{"target.length", tg.Length, e.Size},
		{"target.repository", tg.Repository, e.Repository},
		{"target.url", tg.URL, publicURL + "/v2/" + e.Repository + "/manifests/" + e.Digest.String()},
		{"target.tag", tg.Tag, e.Tag},
		{"target.fromRepository", tg.FromRepository, ""},
		{"request.id", ev.Request.ID, e.ID},
		{"request.host", ev.Request.Host, publicHost},
		{"request.method", ev.Request.Method, method},
		{"actor.name", ev.Actor.Name, e.Actor},
		{"source.addr", ev.Source.Addr, publicHost},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.field, c.got, c.want)
		}
	}
	if ev.Source.InstanceID == "" || ev.Request.UserAgent == "" {
		t.Errorf("source.instanceID %q, request.useragent %q: want both", ev.Source.InstanceID, ev.Request.UserAgent)
	}
}

// harborPayload is Harbor's webhook payload, in the fields Flux, Argo CD Image Updater and Keel
// read.
type harborPayload struct {
	Type      string `json:"type"`
	OccurAt   int64  `json:"occur_at"`
	Operator  string `json:"operator"`
	EventData struct {
		Resources []struct {
			Digest      string `json:"digest"`
			Tag         string `json:"tag"`
			ResourceURL string `json:"resource_url"`
		} `json:"resources"`
		Repository struct {
			DateCreated  int64  `json:"date_created"`
			Name         string `json:"name"`
			Namespace    string `json:"namespace"`
			RepoFullName string `json:"repo_full_name"`
			RepoType     string `json:"repo_type"`
		} `json:"repository"`
	} `json:"event_data"`
}

func expectHarbor(t *testing.T, body []byte, e metadata.Event) {
	t.Helper()
	var p harborPayload
	if err := strictJSON(body, &p); err != nil || len(p.EventData.Resources) != 1 {
		t.Fatalf("not a Harbor payload of one resource (%v): %s", err, body)
	}
	typ := "PUSH_ARTIFACT"
	if e.Action == metadata.ActionDelete {
		typ = "DELETE_ARTIFACT"
	}
	namespace, name := "library", e.Repository // Harbor's project of a one-segment name
	if i := strings.LastIndexByte(e.Repository, '/'); i >= 0 {
		namespace, name = e.Repository[:i], e.Repository[i+1:]
	}
	res, repo := p.EventData.Resources[0], p.EventData.Repository
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"type", p.Type, typ},
		{"occur_at", p.OccurAt, time.Unix(0, e.Time).Unix()},
		{"operator", p.Operator, e.Actor},
		{"resources[0].digest", res.Digest, e.Digest.String()},
		{"resources[0].tag", res.Tag, e.Tag},
		{"resources[0].resource_url", res.ResourceURL, publicHost + "/" + e.Repository + ":" + e.Tag},
		{"repository.name", repo.Name, name},
		{"repository.namespace", repo.Namespace, namespace},
		{"repository.repo_full_name", repo.RepoFullName, e.Repository},
		{"repository.repo_type", repo.RepoType, "private"},
		{"repository.date_created", repo.DateCreated, time.Unix(0, e.Time).Unix()},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.field, c.got, c.want)
		}
	}
}

// cloudEvent is a CloudEvents 1.0 event in structured mode with Berth's data.
type cloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            struct {
		Registry       string `json:"registry"`
		Repository     string `json:"repository"`
		Tag            string `json:"tag"`
		Digest         string `json:"digest"`
		PreviousDigest string `json:"previousDigest"`
		MediaType      string `json:"mediaType"`
		Size           int64  `json:"size"`
		Action         string `json:"action"`
		Numbered       bool   `json:"numbered"`
		Newest         bool   `json:"newest"`
		Actor          string `json:"actor"`
	} `json:"data"`
}

func decodeCloudEvent(t testing.TB, rq received) cloudEvent {
	t.Helper()
	var ce cloudEvent
	if err := strictJSON(rq.Body, &ce); err != nil {
		t.Fatalf("request %d to %s is not a CloudEvent: %v\n%s", rq.N, rq.Path, err, rq.Body)
	}
	return ce
}

// cloudEventTypes are the CloudEvents types of the actions.
var cloudEventTypes = map[string]string{
	"push":   "dev.berth.image.pushed",
	"move":   "dev.berth.tag.moved",
	"delete": "dev.berth.tag.deleted",
}

func expectCloudEvent(t *testing.T, rq received, e metadata.Event) {
	t.Helper()
	ce := decodeCloudEvent(t, rq)
	d := ce.Data
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"specversion", ce.SpecVersion, "1.0"},
		{"id", ce.ID, e.ID},
		{"source", ce.Source, publicURL},
		{"type", ce.Type, cloudEventTypes[e.Action]},
		{"subject", ce.Subject, e.Repository + ":" + e.Tag},
		{"time", ce.Time.UnixNano(), e.Time},
		{"datacontenttype", ce.DataContentType, "application/json"},
		{"data.registry", d.Registry, publicHost},
		{"data.repository", d.Repository, e.Repository},
		{"data.tag", d.Tag, e.Tag},
		{"data.digest", d.Digest, e.Digest.String()},
		{"data.previousDigest", d.PreviousDigest, e.Previous.String()},
		{"data.mediaType", d.MediaType, mtOCIManifest},
		{"data.size", d.Size, e.Size},
		{"data.action", d.Action, e.Action},
		{"data.numbered", d.Numbered, e.Numbered},
		{"data.newest", d.Newest, e.Newest},
		{"data.actor", d.Actor, e.Actor},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.field, c.got, c.want)
		}
	}
}

// TestWebhookGoneDisables: a receiver answering 410 Gone disables its endpoint (the admin API
// shows when and why) and the delivery waits; events while it is disabled are not sent to it,
// while another endpoint gets them; once enabled again it gets the waiting event, then the next.
func TestWebhookGoneDisables(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, db []string) {
		gone := newReceiver(t, func(n int) reply {
			if n == 0 {
				return reply{Status: http.StatusGone}
			}
			return reply{Status: http.StatusOK}
		})
		control := newReceiver(t, always(http.StatusOK))
		s := startHookBerth(t, db, hook("gone", gone, notify.FormatCloudEvents), hook("control", control, notify.FormatCloudEvents))
		repo := uniqueRepo(t, "gone")
		pushTags(t, s, repo, "1")
		gone.waitFor(t, "the 410", func(reqs []received) bool { return len(reqs) == 1 })
		w := waitWebhook(t, s, "gone", "disabled", func(w hookState) bool { return w.Disabled != nil })
		if !strings.Contains(w.DisabledReason, "410") {
			t.Errorf("disabledReason %q does not name the 410", w.DisabledReason)
		}
		listed := webhookList(t, s)
		if i := slices.IndexFunc(listed, func(w hookState) bool { return w.Name == "gone" }); i < 0 || listed[i].Disabled == nil {
			t.Errorf("GET /admin/v1/webhooks does not show gone disabled: %+v", listed)
		}
		// The delivery answered 410 waits, first of its line, for the endpoint to come back.
		if d := waitDeliveries(t, s, "gone", "the attempt answered 410", func(ds []hookDelivery) bool { return len(ds) == 1 && ds[0].Attempts == 1 })[0]; d.State != metadata.DeliveryPending || d.LastStatus != http.StatusGone {
			t.Errorf("the delivery answered 410: state %s, last status %d; want pending, 410", d.State, d.LastStatus)
		}

		pushTags(t, s, repo, "2")
		control.waitFor(t, "both events at the other endpoint", func(reqs []received) bool { return len(reqs) == 2 })
		if ds := deliveries(t, s, "gone"); len(ds) != 1 {
			t.Fatalf("the disabled endpoint has %d deliveries, want only the first", len(ds))
		}

		var enabled hookState
		webhookAPI(t, s, http.MethodPost, "/gone/enable", "", http.StatusOK, &enabled)
		if enabled.Disabled != nil || enabled.DisabledReason != "" || enabled.Failures != 0 {
			t.Fatalf("after POST enable: %+v", enabled)
		}
		pushTags(t, s, repo, "3")
		reqs := gone.waitFor(t, "the events after enabling", func(reqs []received) bool { return len(reqs) >= 3 })
		control.waitFor(t, "the third event at the other endpoint", func(reqs []received) bool { return len(reqs) >= 3 })
		// In order: first the one answered 410, then the one pushed after; not the one pushed while disabled.
		if first, next := decodeCloudEvent(t, reqs[1]), decodeCloudEvent(t, reqs[2]); len(reqs) != 3 || first.Data.Tag != "1" || next.Data.Tag != "3" {
			t.Fatalf("after enabling the endpoint got tags %s, %s; want 1 again, then 3:\n%s", first.Data.Tag, next.Data.Tag, describe(reqs))
		}
		if n := len(control.requests()); n != 3 {
			t.Fatalf("the other endpoint got %d requests for three events", n)
		}
	})
}

// TestWebhookRetryAfter: a 503 with Retry-After: 2 puts the next attempt at least two seconds
// after the first, as the delivery log records them, although the retry schedule says 100 ms.
func TestWebhookRetryAfter(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, db []string) {
		r := newReceiver(t, func(n int) reply {
			if n == 0 {
				return reply{Status: http.StatusServiceUnavailable, RetryAfter: "2", Body: "busy"}
			}
			return reply{Status: http.StatusOK}
		})
		s := startHookBerth(t, append(db, "--webhooks.retry-schedule", "100ms"), hook("busy", r, notify.FormatCloudEvents))
		pushTags(t, s, uniqueRepo(t, "retry-after"), "1")
		reqs := r.waitFor(t, "the retry", func(reqs []received) bool { return len(successes(reqs)) >= 1 })
		d := waitDelivered(t, s, "busy", reqs[0].Header.Get(notify.HeaderID))
		if len(d.Log) != 2 || d.Log[0].Status != 503 || d.Log[0].Response != "busy" || d.Log[1].Status != 200 {
			t.Fatalf("delivery log, want a 503 answered busy then a 200:\n%s", d.logLines())
		}
		if gap := d.Log[1].At.Sub(d.Log[0].At); gap < 2*time.Second {
			t.Fatalf("the retry started %s after the 503 with Retry-After: 2:\n%s", gap, d.logLines())
		}
	})
}

// TestWebhookDeadLetter: a delivery still failing at --webhooks.max-age is dead-lettered, visible
// as dead with its attempts, and POST …/redeliver delivers it with its webhook-id and body.
func TestWebhookDeadLetter(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, db []string) {
		r := newReceiver(t, always(http.StatusInternalServerError))
		s := startHookBerth(t, append(db, "--webhooks.max-age", "1s", "--webhooks.retry-schedule", "200ms"),
			hook("flaky", r, notify.FormatCloudEvents))
		pushTags(t, s, uniqueRepo(t, "dead"), "1")
		dead := waitDeliveries(t, s, "flaky", "a dead letter", func(ds []hookDelivery) bool {
			return len(ds) == 1 && ds[0].State == metadata.DeliveryDead
		})[0]
		d := delivery(t, s, "flaky", dead.ID)
		if d.Attempts < 2 || int64(len(d.Log)) != d.Attempts || d.LastStatus != 500 || d.Done == nil || d.NextAt != nil {
			t.Fatalf("dead delivery: %d attempts, last status %d, done %v, next %v; log:\n%s", d.Attempts, d.LastStatus, d.Done, d.NextAt, d.logLines())
		}
		for _, a := range d.Log {
			if a.Status != 500 {
				t.Fatalf("dead delivery's log:\n%s", d.logLines())
			}
		}
		before := r.requests()
		if int64(len(before)) != d.Attempts {
			t.Fatalf("the receiver got %d requests, the log has %d attempts", len(before), d.Attempts)
		}

		r.setScript(always(http.StatusOK))
		var redelivered hookDelivery
		webhookAPI(t, s, http.MethodPost, "/flaky/deliveries/"+strconv.FormatInt(d.ID, 10)+"/redeliver", "", http.StatusOK, &redelivered)
		if redelivered.ID != d.ID || redelivered.Event != d.Event {
			t.Fatalf("redeliver answered %+v, for delivery %+v", redelivered, d)
		}
		reqs := r.waitFor(t, "the redelivery", func(reqs []received) bool { return len(successes(reqs)) >= 1 })
		got := successes(reqs)[0]
		if got.Header.Get(notify.HeaderID) != d.Event.ID || !bytes.Equal(got.Body, before[0].Body) {
			t.Fatalf("redelivery: webhook-id %s, body %s; want %s, %s", got.Header.Get(notify.HeaderID), got.Body, d.Event.ID, before[0].Body)
		}
		after := waitDelivered(t, s, "flaky", d.Event.ID)
		if after.Attempts != d.Attempts+1 || after.Log[len(after.Log)-1].Status != 200 {
			t.Fatalf("after the redelivery:\n%s", after.logLines())
		}
	})
}

// TestWebhookPause: --webhooks.pause-after consecutive failures pause the endpoint (the admin
// API shows until when) and no attempt is made meanwhile; POST …/enable lifts the pause and the
// delivery goes through.
func TestWebhookPause(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, db []string) {
		r := newReceiver(t, always(http.StatusBadGateway))
		s := startHookBerth(t, append(db, "--webhooks.pause-after", "3", "--webhooks.pause-for", "1h"),
			hook("paused", r, notify.FormatCloudEvents))
		pushTags(t, s, uniqueRepo(t, "pause"), "1")
		w := waitWebhook(t, s, "paused", "paused", func(w hookState) bool { return w.PausedUntil != nil })
		d := waitDeliveries(t, s, "paused", "three attempts", func(ds []hookDelivery) bool { return len(ds) == 1 && ds[0].Attempts == 3 })[0]
		d = delivery(t, s, "paused", d.ID)
		if d.State != metadata.DeliveryPending || len(d.Log) != 3 {
			t.Fatalf("delivery of a paused endpoint, want pending after 3 attempts:\n%s", d.logLines())
		}
		// Paused for --webhooks.pause-for from the third failure, as the server recorded both.
		if pause := w.PausedUntil.Sub(d.Log[2].At); w.Failures != 3 || w.Disabled != nil || pause < time.Hour || pause > time.Hour+time.Minute {
			t.Fatalf("paused webhook: %+v, paused for %s after the third attempt; want 3 failures, paused for an hour", w, pause)
		}
		// The third failure paused the endpoint in the transaction that recorded it: no
		// fourth attempt can have been claimed.
		if n := len(r.requests()); n != 3 {
			t.Fatalf("the paused endpoint's receiver got %d requests, want 3", n)
		}

		r.setScript(always(http.StatusOK))
		var enabled hookState
		webhookAPI(t, s, http.MethodPost, "/paused/enable", "", http.StatusOK, &enabled)
		if enabled.PausedUntil != nil || enabled.Failures != 0 {
			t.Fatalf("after POST enable: %+v", enabled)
		}
		d = waitDelivered(t, s, "paused", d.Event.ID)
		if len(d.Log) != 4 || d.Log[3].Status != 200 {
			t.Fatalf("delivery log after enabling:\n%s", d.logLines())
		}
	})
}

// TestWebhookAdminAPI: create, read, replace, delete and ping endpoints through
// /admin/v1/webhooks. Secrets are write-only (a count is shown, never a value); a replacement
// without secrets keeps them; the configuration file's endpoints cannot be changed or deleted
// there; a ping reaches the receiver signed.
func TestWebhookAdminAPI(t *testing.T) {
	t.Parallel()
	eachDatabase(t, func(t *testing.T, db []string) {
		r := newReceiver(t, always(http.StatusOK))
		s := startHookBerth(t, db, hook("from-file", r, notify.FormatDistribution))
		const s1, s2, s3 = "whsec_c2VjcmV0IG9uZQ==", "secret two", "secret three"
		noSecrets := func(body []byte) {
			t.Helper()
			for _, secret := range []string{s1, s2, s3, hookSecret} {
				if bytes.Contains(body, []byte(secret)) {
					t.Fatalf("an answer shows a secret: %s", body)
				}
			}
		}

		var created hookState
		noSecrets(webhookAPI(t, s, http.MethodPost, "", fmt.Sprintf(
			`{"name": "api", "url": %q, "format": "cloudevents", "secrets": [%q, %q], "repositories": ["team/*"]}`, r.URL+"/api", s1, s2),
			http.StatusOK, &created))
		if created.Name != "api" || created.URL != r.URL+"/api" || created.Format != "cloudevents" || created.Secrets != 2 ||
			created.Source != "api" || created.Created.IsZero() || !slices.Equal(created.Repositories, []string{"team/*"}) || created.Disabled != nil {
			t.Fatalf("POST answered %+v", created)
		}
		noSecrets(webhookAPI(t, s, http.MethodGet, "/api", "", http.StatusOK, nil))
		listed := webhookList(t, s)
		if len(listed) != 2 || listed[0].Name != "api" || listed[1].Name != "from-file" || listed[1].Source != "config" || listed[1].Secrets != 1 {
			t.Fatalf("GET /admin/v1/webhooks: %+v", listed)
		}
		noSecrets(webhookAPI(t, s, http.MethodGet, "", "", http.StatusOK, nil))

		for _, bad := range []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"NameInUse", http.MethodPost, "", fmt.Sprintf(`{"name": "api", "url": %q, "format": "harbor", "secrets": ["x"]}`, r.URL), 409, "WEBHOOK_CONFLICT"},
			{"NoSecret", http.MethodPost, "", fmt.Sprintf(`{"name": "other", "url": %q, "format": "harbor"}`, r.URL), 400, "WEBHOOK_INVALID"},
			{"BadFormat", http.MethodPost, "", fmt.Sprintf(`{"name": "other", "url": %q, "format": "atom", "secrets": ["x"]}`, r.URL), 400, "WEBHOOK_INVALID"},
			{"BadName", http.MethodPost, "", fmt.Sprintf(`{"name": "a b", "url": %q, "format": "harbor", "secrets": ["x"]}`, r.URL), 400, "WEBHOOK_INVALID"},
			{"ChangeFromFile", http.MethodPut, "/from-file", fmt.Sprintf(`{"url": %q, "format": "harbor", "secrets": ["x"]}`, r.URL), 409, "WEBHOOK_CONFLICT"},
			{"DeleteFromFile", http.MethodDelete, "/from-file", "", 409, "WEBHOOK_CONFLICT"},
			{"Unknown", http.MethodGet, "/nope", "", 404, "WEBHOOK_UNKNOWN"},
			{"UnknownDelivery", http.MethodGet, "/api/deliveries/999", "", 404, "DELIVERY_UNKNOWN"},
		} {
			t.Run(bad.name, func(t *testing.T) {
				resp, body := httpDo(t, bad.method, s.URL+adminWebhooks+bad.path, []byte(bad.body), map[string]string{"Content-Type": "application/json"})
				expectOCIError(t, resp, body, bad.status, bad.code)
			})
		}
		if w := webhookList(t, s); len(w) != 2 || w[1].URL != r.URL+"/from-file" || w[1].Format != notify.FormatDistribution {
			t.Fatalf("refused requests changed the webhooks: %+v", w)
		}

		// A replacement without secrets keeps them: the ping verifies with the first ones.
		var replaced hookState
		noSecrets(webhookAPI(t, s, http.MethodPut, "/api", fmt.Sprintf(`{"url": %q, "format": "harbor"}`, r.URL+"/api"), http.StatusOK, &replaced))
		if replaced.Format != "harbor" || replaced.Secrets != 2 || len(replaced.Repositories) != 0 || !replaced.Created.Equal(created.Created) {
			t.Fatalf("PUT without secrets answered %+v", replaced)
		}
		rq := ping(t, s, r, "api")
		if err := notify.Verify(rq.Header, rq.Body, []string{s2}, time.Now(), signatureTolerance); err != nil {
			t.Fatalf("ping after a PUT without secrets does not verify with a kept secret: %v", err)
		}
		var p harborPayload
		if err := strictJSON(rq.Body, &p); err != nil || p.Type != "PUSH_ARTIFACT" || p.EventData.Repository.RepoFullName != "berth/ping" {
			t.Fatalf("ping in the Harbor format: %v %s", err, rq.Body)
		}

		// New secrets replace the old.
		webhookAPI(t, s, http.MethodPut, "/api", fmt.Sprintf(`{"url": %q, "format": "harbor", "secrets": [%q]}`, r.URL+"/api", s3), http.StatusOK, &replaced)
		rq = ping(t, s, r, "api")
		if replaced.Secrets != 1 || notify.Verify(rq.Header, rq.Body, []string{s3}, time.Now(), signatureTolerance) != nil ||
			notify.Verify(rq.Header, rq.Body, []string{s1, s2}, time.Now(), signatureTolerance) == nil {
			t.Fatalf("after a PUT with one new secret (%d shown), the ping is not signed with it alone", replaced.Secrets)
		}

		// The configuration file's endpoint pings too, in its format.
		rq = ping(t, s, r, "from-file")
		if err := notify.Verify(rq.Header, rq.Body, []string{hookSecret}, time.Now(), signatureTolerance); err != nil {
			t.Fatal(err)
		}
		expectContentType(t, rq, notify.DistributionMediaTypeV2)

		resp, body := httpDo(t, http.MethodDelete, s.URL+adminWebhooks+"/api", nil, nil)
		expectStatus(t, resp, body, http.StatusNoContent)
		resp, body = httpDo(t, http.MethodGet, s.URL+adminWebhooks+"/api", nil, nil)
		expectOCIError(t, resp, body, http.StatusNotFound, "WEBHOOK_UNKNOWN")
		if w := webhookList(t, s); len(w) != 1 || w[0].Name != "from-file" {
			t.Fatalf("after DELETE: %+v", w)
		}
	})
}

// ping POSTs …/<name>/ping and returns the request the receiver got for it.
func ping(t *testing.T, s *server, r *receiver, name string) received {
	t.Helper()
	var answer struct {
		Event    string `json:"event"`
		Status   int    `json:"status"`
		Response string `json:"response"`
		Error    string `json:"error"`
	}
	webhookAPI(t, s, http.MethodPost, "/"+name+"/ping", "", http.StatusOK, &answer)
	if answer.Status != http.StatusOK || answer.Error != "" || !strings.HasPrefix(answer.Event, "ping_") {
		t.Fatalf("ping of %s answered %+v", name, answer)
	}
	for _, rq := range r.requests() {
		if rq.Header.Get(notify.HeaderID) == answer.Event {
			if rq.Path != "/"+name {
				t.Fatalf("ping of %s went to %s", name, rq.Path)
			}
			return rq
		}
	}
	t.Fatalf("the receiver did not get the ping %s", answer.Event)
	return received{}
}

// Receivers.

// received is one request a receiver got, and the status it answered.
type received struct {
	N      int // its place in arrival order, from 0
	Path   string
	Header http.Header
	Body   []byte
	Status int
}

// reply is a receiver's answer to one request.
type reply struct {
	Status     int
	RetryAfter string // the Retry-After header, if any
	Body       string
}

func always(status int) func(int) reply {
	return func(int) reply { return reply{Status: status} }
}

// receiver is a webhook receiver on a loopback port. It records every request as it arrives and
// answers it as its script says for the request's place in arrival order.
type receiver struct {
	URL   string
	addr  string
	delay time.Duration // how long each answer takes; set before the first request

	mu      sync.Mutex
	script  func(n int) reply
	reqs    []received
	changed chan struct{} // closed, and replaced, when a request arrives
	hold    chan struct{} // while not nil, answers wait until it is closed
	srv     *http.Server
}

// newReceiver starts a receiver, stopped at the end of the test.
func newReceiver(t testing.TB, script func(n int) reply) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{addr: ln.Addr().String(), script: script, changed: make(chan struct{})}
	r.URL = "http://" + r.addr
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
}

// down closes the receiver's port; up opens it again.
func (r *receiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (r *receiver) up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("receiver: listening on %s again: %v", r.addr, err)
	}
	r.serve(ln)
}

func (r *receiver) setScript(script func(n int) reply) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = script
}

// holdAnswers makes the answers to the requests that arrive from now on wait until release.
func (r *receiver) holdAnswers(t testing.TB) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hold = make(chan struct{})
	t.Cleanup(r.release)
}

// release lets the answers held go, and the next ones through.
func (r *receiver) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold != nil {
		close(r.hold)
		r.hold = nil
	}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return // the sender gave up; nothing was delivered
	}
	r.mu.Lock()
	n := len(r.reqs)
	rep := r.script(n)
	r.reqs = append(r.reqs, received{N: n, Path: req.URL.Path, Header: req.Header.Clone(), Body: body, Status: rep.Status})
	close(r.changed)
	r.changed = make(chan struct{})
	hold := r.hold
	r.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if r.delay > 0 {
		time.Sleep(r.delay) // a slow receiver, not a wait for anything
	}
	if rep.RetryAfter != "" {
		w.Header().Set("Retry-After", rep.RetryAfter)
	}
	w.WriteHeader(rep.Status)
	io.WriteString(w, rep.Body)
}

// requests returns what the receiver got so far, in arrival order.
func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// waitFor waits until done, called with the requests so far in arrival order, returns true, and
// returns them. It fails the test after deliveryTimeout, showing what arrived. done runs under
// the receiver's lock: it must be quick and keep nothing.
func (r *receiver) waitFor(t testing.TB, what string, done func([]received) bool) []received {
	t.Helper()
	timeout := time.NewTimer(deliveryTimeout)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		ok, changed := done(r.reqs), r.changed
		r.mu.Unlock()
		if ok {
			return r.requests()
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("receiver: %s: not after %s; it received:\n%s", what, deliveryTimeout, describe(r.requests()))
		}
	}
}

// successes are the requests answered 2xx.
func successes(reqs []received) []received {
	var ok []received
	for _, rq := range reqs {
		if rq.Status >= 200 && rq.Status < 300 {
			ok = append(ok, rq)
		}
	}
	return ok
}

func describe(reqs []received) string {
	var b strings.Builder
	for _, rq := range reqs {
		fmt.Fprintf(&b, "  #%d %s webhook-id %s → %d: %s\n", rq.N, rq.Path, rq.Header.Get(notify.HeaderID), rq.Status, truncate(rq.Body))
	}
	return b.String()
}

// Servers with webhooks.

// hook is an endpoint at a path of its name on r, signed with hookSecret.
func hook(name string, r *receiver, format string) notify.Endpoint {
	return notify.Endpoint{Name: name, URL: r.URL + "/" + name, Format: format, Secrets: []string{hookSecret}}
}

// startHookBerth starts Berth with the endpoints in its configuration file (webhooks.endpoints),
// publicURL and the fast retry schedule, then flags (a flag given again wins).
func startHookBerth(t testing.TB, flags []string, endpoints ...notify.Endpoint) *server {
	t.Helper()
	if endpoints == nil {
		endpoints = []notify.Endpoint{}
	}
	b, err := yaml.Marshal(map[string]any{"webhooks": map[string]any{"endpoints": endpoints}})
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "berth.yaml")
	writeFile(t, config, b)
	return startBerth(t, serverOptions{Flags: append([]string{"--config", config, "--public-url", publicURL,
		"--webhooks.retry-schedule", fastRetries}, flags...)})
}

// The admin API of webhooks.

const adminWebhooks = "/admin/v1/webhooks"

// webhookAPI sends a request to /admin/v1/webhooks<path> (body raw JSON, "" for none), fails
// unless it answers status, decodes the answer into out unless out is nil, and returns it.
func webhookAPI(t testing.TB, s *server, method, path, body string, status int, out any) []byte {
	t.Helper()
	var b []byte
	var h map[string]string
	if body != "" {
		b, h = []byte(body), map[string]string{"Content-Type": "application/json"}
	}
	resp, answer := httpDo(t, method, s.URL+adminWebhooks+path, b, h)
	expectStatus(t, resp, answer, status)
	if out != nil {
		if err := json.Unmarshal(answer, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, resp.Request.URL, err, truncate(answer))
		}
	}
	return answer
}

func webhookList(t testing.TB, s *server) []hookState {
	t.Helper()
	var list struct {
		Webhooks []hookState `json:"webhooks"`
	}
	webhookAPI(t, s, http.MethodGet, "", "", http.StatusOK, &list)
	return list.Webhooks
}

// deliveries lists a webhook's deliveries, oldest first.
func deliveries(t testing.TB, s *server, webhook string) []hookDelivery {
	t.Helper()
	var page struct {
		Webhook    string         `json:"webhook"`
		Deliveries []hookDelivery `json:"deliveries"`
		Next       string         `json:"next"`
	}
	webhookAPI(t, s, http.MethodGet, "/"+webhook+"/deliveries?limit=1000", "", http.StatusOK, &page)
	if page.Webhook != webhook || page.Next != "" {
		t.Fatalf("deliveries of %s: a page of webhook %q, next %q", webhook, page.Webhook, page.Next)
	}
	slices.Reverse(page.Deliveries)
	return page.Deliveries
}

// delivery reads a delivery with its log.
func delivery(t testing.TB, s *server, webhook string, id int64) hookDelivery {
	t.Helper()
	var d hookDelivery
	webhookAPI(t, s, http.MethodGet, "/"+webhook+"/deliveries/"+strconv.FormatInt(id, 10), "", http.StatusOK, &d)
	return d
}

// waitDeliveries polls a webhook's deliveries until done says so, and returns them.
func waitDeliveries(t testing.TB, s *server, webhook, what string, done func([]hookDelivery) bool) []hookDelivery {
	t.Helper()
	var ds []hookDelivery
	err := testserver.WaitFor(deliveryTimeout, func() error {
		if ds = deliveries(t, s, webhook); !done(ds) {
			return fmt.Errorf("%d deliveries", len(ds))
		}
		return nil
	})
	if err != nil {
		var b strings.Builder
		for _, d := range ds {
			fmt.Fprintf(&b, "  %d: event %s %s:%s, %s after %d attempts (last %d)\n", d.ID, d.Event.ID, d.Event.Repository, d.Event.Tag, d.State, d.Attempts, d.LastStatus)
		}
		t.Fatalf("webhook %s: %s: %v\n%s", webhook, what, err, b.String())
	}
	return ds
}

// waitDelivered waits until the webhook's delivery of an event is delivered and returns it with
// its log.
func waitDelivered(t testing.TB, s *server, webhook, eventID string) hookDelivery {
	t.Helper()
	ds := waitDeliveries(t, s, webhook, "event "+eventID+" delivered", func(ds []hookDelivery) bool {
		i := slices.IndexFunc(ds, func(d hookDelivery) bool { return d.Event.ID == eventID })
		return i >= 0 && ds[i].State == metadata.DeliveryDelivered
	})
	i := slices.IndexFunc(ds, func(d hookDelivery) bool { return d.Event.ID == eventID })
	return delivery(t, s, webhook, ds[i].ID)
}

// waitWebhook polls a webhook until done says so, and returns it.
func waitWebhook(t testing.TB, s *server, name, what string, done func(hookState) bool) hookState {
	t.Helper()
	var w hookState
	err := testserver.WaitFor(deliveryTimeout, func() error {
		webhookAPI(t, s, http.MethodGet, "/"+name, "", http.StatusOK, &w)
		if !done(w) {
			return fmt.Errorf("%+v", w)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("webhook %s: %s: %v", name, what, err)
	}
	return w
}

// Benchmarks, on the built binary over loopback:
//
//	go test ./test -run '^$' -bench Webhook -benchtime 5x

// BenchmarkWebhookOutbox measures how fast Berth drains its outbox to a local receiver that
// answers at once. Each op commits 200 events (numbered tags pushed by 16 clients) while the
// receiver holds its answers, then lets them go: the timer runs from then until the last event
// arrives. A repository's events are delivered one at a time, in commit order, so the events
// spread over 1 or 16 repositories.
func BenchmarkWebhookOutbox(b *testing.B) {
	const batch, clients = 200, 16
	for _, db := range []string{"SQLite", "PostgreSQL"} {
		for _, repos := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/repositories=%d", db, repos), func(b *testing.B) {
				r := newReceiver(b, always(http.StatusOK))
				s := startHookBerth(b, append(databaseFlags(b, db), "--log.level", "warn"), hook("deploy", r, notify.FormatCloudEvents))
				names := make([]string, repos)
				imgs := make([]*testImage, repos)
				for i := range names {
					names[i] = uniqueRepo(b, "outbox")
					imgs[i] = newImages(b, s, names[i], 1)[0]
				}
				sent := 0
				for b.Loop() {
					b.StopTimer()
					r.holdAnswers(b)
					pushAll(b, clients, batch, func(i int) (*server, string, string, []byte) {
						return s, names[i%repos], strconv.Itoa(sent + i + 1), imgs[i%repos].Manifest
					})
					sent += batch
					b.StartTimer()
					r.release()
					r.waitFor(b, fmt.Sprintf("%d events", sent), func(reqs []received) bool { return len(reqs) >= sent })
				}
				b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkWebhookPushLatency measures a tag push, a manifest PUT under a new numbered tag over
// loopback: with no webhook endpoint; with three (one per format, at receivers that answer at
// once), whose deliveries the dispatcher makes meanwhile; and with three whose receivers hold
// their first requests until the end, so that the push pays for writing the outbox alone.
func BenchmarkWebhookPushLatency(b *testing.B) {
	for _, db := range []string{"SQLite", "PostgreSQL"} {
		for _, c := range []struct {
			name      string
			endpoints int
			held      bool
		}{{"endpoints=0", 0, false}, {"endpoints=3", 3, false}, {"endpoints=3/undelivered", 3, true}} {
			b.Run(db+"/"+c.name, func(b *testing.B) {
				r := newReceiver(b, always(http.StatusOK))
				endpoints := []notify.Endpoint{hook("distribution", r, notify.FormatDistribution),
					hook("harbor", r, notify.FormatHarbor), hook("cloudevents", r, notify.FormatCloudEvents)}[:c.endpoints]
				s := startHookBerth(b, append(databaseFlags(b, db), "--log.level", "warn", "--webhooks.timeout", "10m"), endpoints...)
				repo := uniqueRepo(b, "latency")
				img := newImages(b, s, repo, 1)[0]
				if c.held {
					r.holdAnswers(b)
				}
				var took []time.Duration
				for b.Loop() {
					start := time.Now()
					pushManifest(b, s, repo, strconv.Itoa(len(took)+1), mtOCIManifest, img.Manifest)
					took = append(took, time.Since(start))
				}
				slices.Sort(took)
				ms := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))]) / float64(time.Millisecond) }
				b.ReportMetric(ms(0.5), "p50-ms")
				b.ReportMetric(ms(0.99), "p99-ms")
				r.release()
				r.waitFor(b, "every delivery", func(reqs []received) bool { return len(reqs) == c.endpoints*len(took) })
			})
		}
	}
}
