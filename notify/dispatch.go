package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Dispatcher.
type Options struct {
	DB       *metadata.DB
	Registry Registry // how deliveries name the registry
	Logger   *slog.Logger
	// Client sends the deliveries; nil means one with a 10 s timeout.
	Client *http.Client
	// Schedule is the wait before each retry, the last repeated; each wait
	// is jittered by up to a fifth either way. Nil means DefaultSchedule.
	Schedule []time.Duration
	// MaxAge is how long a delivery is retried before it is dead-lettered
	// (default 24 h). A dead delivery stays visible and can be redelivered.
	MaxAge time.Duration
	// PauseAfter consecutive failures pause an endpoint for PauseFor
	// (defaults 10 and 5 m); its deliveries wait meanwhile.
	PauseAfter int
	PauseFor   time.Duration
	// Concurrency is how many deliveries are in flight at once (default 16).
	Concurrency int
	// Poll is how often the outbox is read when nothing wakes the
	// dispatcher (default 1 s): for retries that another replica scheduled,
	// and for the end of a pause. A retry this dispatcher scheduled wakes it
	// when it falls due.
	Poll time.Duration
	// Metrics, if set, registers the dispatcher's metrics.
	Metrics prometheus.Registerer
}

// DefaultSchedule is the retry schedule of a dispatcher without one: 5 s,
// 30 s, 2 m, 10 m, 30 m, then hourly.
func DefaultSchedule() []time.Duration {
	return []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}
}

// Dispatcher drains the outbox: it claims due deliveries, sends them, and
// records every attempt. Any number of dispatchers (one per replica) can
// run at once: claims keep them apart, and per webhook and repository only
// the oldest pending delivery is ever claimed, so deliveries stay in order.
type Dispatcher struct {
	o         Options
	endpoints *endpointCache
	metrics   *metrics
}

// New returns a Dispatcher; Run starts it.
func New(o Options) *Dispatcher {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	// A redirect is not a delivery: a client following one would re-send
	// the POST as a bodiless GET and count its 200. The 3xx is a failure,
	// logged with the rest of the answer.
	client := *o.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.Client = &client
	if len(o.Schedule) == 0 {
		o.Schedule = DefaultSchedule()
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.PauseAfter <= 0 {
		o.PauseAfter = 10
	}
	if o.PauseFor <= 0 {
		o.PauseFor = 5 * time.Minute
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	return &Dispatcher{o: o, endpoints: &endpointCache{}, metrics: newMetrics(o.Metrics, o.DB)}
}

// lease is how long a claim lasts: longer than any attempt takes. A
// replica that dies holding a claim delays that line by as much.
func (d *Dispatcher) lease() time.Duration { return d.o.Client.Timeout + 5*time.Second }

// Run delivers until ctx ends, which cuts the attempts in flight short:
// they are recorded, and their deliveries are due again at once.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, d.o.Concurrency)
	done := make(chan struct{}, 1) // a delivery finished, or its retry fell due: the next of its line may be due
	wake := func() {
		select {
		case done <- struct{}{}:
		default:
		}
	}
	poll := time.NewTicker(d.o.Poll)
	defer poll.Stop()
	for ctx.Err() == nil {
		if free := cap(slots) - len(slots); free > 0 {
			claimed, err := d.o.DB.ClaimDeliveries(ctx, d.lease(), free)
			if err != nil && ctx.Err() == nil {
				d.o.Logger.Error("webhooks: claiming deliveries", "error", err)
			}
			for _, del := range claimed {
				slots <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					retry := d.deliver(ctx, del)
					<-slots
					wake() // a slot is free
					if retry > 0 {
						time.AfterFunc(time.Until(time.Unix(0, retry)), wake)
					}
				}()
			}
			if len(claimed) == free {
				continue // there may be more
			}
		}
		select {
		case <-ctx.Done():
		case <-d.o.DB.OutboxWritten():
		case <-done:
		case <-poll.C:
		}
	}
}

// maxResponse is how much of a receiver's answer the attempt log keeps.
const maxResponse = 1 << 10

// deliver makes one attempt at a delivery and records it. It returns when
// the delivery is to be retried (Unix nanoseconds), 0 if it is not.
func (d *Dispatcher) deliver(ctx context.Context, del metadata.Delivery) (retry int64) {
	log := d.o.Logger.With("webhook", del.Webhook, "event", del.Event.ID, "delivery", del.ID, "attempt", del.Attempts+1)
	start := time.Now()
	status, response, retryAfter := d.send(ctx, del)
	a := metadata.Attempt{At: start.UnixNano(), Status: int64(status), Latency: time.Since(start), Response: response}
	out := d.outcome(del, status, retryAfter, time.Now())
	cut := status == 0 && ctx.Err() != nil
	if cut {
		// Shutting down cut the attempt short. It is logged, and the delivery
		// is due again at once (for another replica, or this one restarted)
		// rather than when its claim would lapse; it counts as a failure but
		// pauses nothing.
		out = metadata.Outcome{State: metadata.DeliveryPending, NextAt: time.Now().UnixNano()}
	}
	paused, err := d.o.DB.RecordAttempt(context.WithoutCancel(ctx), del, a, out)
	if err == nil {
		d.metrics.observe(del.Webhook, status, a.Latency, out)
		if paused {
			d.metrics.pauses.WithLabelValues(del.Webhook).Inc()
		}
	}
	switch {
	case errors.Is(err, metadata.ErrNotClaimed):
		log.Warn("webhooks: delivery settled elsewhere meanwhile (its claim had lapsed)")
		return 0
	case err != nil:
		log.Error("webhooks: recording an attempt", "error", err)
		return 0
	}
	attrs := []any{"status", status, "latency", a.Latency.Round(time.Millisecond)}
	switch {
	case cut:
		log.Warn("webhooks: attempt cut short by the shutdown; the delivery is due again", append(attrs, "response", response)...)
		return 0
	case out.State == metadata.DeliveryDelivered:
		log.Info("webhooks: delivered", attrs...)
	case out.Disable != "":
		log.Warn("webhooks: endpoint disabled", append(attrs, "reason", out.Disable)...)
	case out.State == metadata.DeliveryDead:
		log.Error("webhooks: delivery dead-lettered after its maximum age", append(attrs, "response", response)...)
	default:
		log.Warn("webhooks: delivery failed; will retry", append(attrs, "response", response, "retry", time.Unix(0, out.NextAt).UTC())...)
	}
	if paused {
		log.Warn("webhooks: endpoint paused after consecutive failures", "failures", d.o.PauseAfter, "until", time.Unix(0, out.PauseUntil).UTC())
	}
	if out.State == metadata.DeliveryPending {
		return out.NextAt
	}
	return 0
}

// send posts a delivery. It returns the HTTP status (0 if there was no
// answer), the start of the answer or the error, and any Retry-After.
func (d *Dispatcher) send(ctx context.Context, del metadata.Delivery) (int, string, time.Duration) {
	ep, err := d.endpoints.get(ctx, d.o.DB, del.Webhook)
	if err != nil {
		return 0, "endpoint: " + err.Error(), 0
	}
	contentType, body, err := Encode(del.Event, ep, d.o.Registry)
	if err != nil {
		return 0, "encoding the event: " + err.Error(), 0
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error(), 0
	}
	for k, v := range ep.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "Berth-Webhooks/1")
	Sign(req.Header, del.Event.ID, time.Now(), body, ep.Secrets)
	resp, err := d.o.Client.Do(req)
	if err != nil {
		return 0, err.Error(), 0
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // so the connection can be reused
	return resp.StatusCode, string(answer), retryAfter(resp.Header.Get("Retry-After"), time.Now())
}

// outcome decides what becomes of a delivery after an attempt: only a 2xx
// delivers; 410 Gone disables the endpoint; anything else retries on the
// schedule (or later, if the receiver asked with Retry-After) until the
// delivery is MaxAge old.
func (d *Dispatcher) outcome(del metadata.Delivery, status int, retryAfter time.Duration, now time.Time) metadata.Outcome {
	switch {
	case status >= 200 && status < 300:
		return metadata.Outcome{State: metadata.DeliveryDelivered}
	case status == http.StatusGone:
		// The endpoint is disabled; the delivery waits, first of its line,
		// so that enabling the endpoint again resumes in order.
		return metadata.Outcome{State: metadata.DeliveryPending, NextAt: now.UnixNano(), Disable: "the endpoint answered 410 Gone"}
	}
	wait := d.o.Schedule[min(int(del.Attempts), len(d.o.Schedule)-1)]
	wait += time.Duration((rand.Float64()*0.4 - 0.2) * float64(wait))
	wait = max(wait, retryAfter)
	next := now.Add(wait)
	out := metadata.Outcome{State: metadata.DeliveryPending, NextAt: next.UnixNano(),
		PauseAfter: int64(d.o.PauseAfter), PauseUntil: now.Add(d.o.PauseFor).UnixNano()}
	if next.Sub(time.Unix(0, del.DueSince)) > d.o.MaxAge {
		out.State, out.NextAt = metadata.DeliveryDead, 0
	}
	return out
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// endpointCache keeps endpoints parsed, with their filters compiled, per
// webhook, while its stored body is unchanged.
type endpointCache struct {
	mu sync.Mutex
	m  map[string]cachedEndpoint // by the stored body
}

type cachedEndpoint struct {
	m   matcher // m.ep is the endpoint
	err error
}

// parse returns the endpoint a stored body describes, as a matcher.
func (c *endpointCache) parse(body string) (matcher, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[body]; ok {
		return e.m, e.err
	}
	var ep Endpoint
	err := json.Unmarshal([]byte(body), &ep)
	if err == nil {
		err = ep.Validate()
	}
	m := ep.compile()
	if c.m == nil || len(c.m) > 1000 {
		c.m = map[string]cachedEndpoint{}
	}
	c.m[body] = cachedEndpoint{m, err}
	return m, err
}

func (c *endpointCache) get(ctx context.Context, db *metadata.DB, name string) (Endpoint, error) {
	w, err := db.GetWebhook(ctx, name)
	if err != nil {
		return Endpoint{}, err
	}
	m, err := c.parse(w.Body)
	return m.ep, err
}

// Router returns the metadata.Router that picks, for an event, the
// endpoints whose filters it passes.
func Router() metadata.Router {
	c := &endpointCache{}
	return func(e metadata.Event, hooks []metadata.Webhook) []string {
		var names []string
		for _, h := range hooks {
			m, err := c.parse(h.Body)
			if err == nil && m.matches(e) {
				names = append(names, h.Name)
			}
		}
		return names
	}
}

// Ping sends an endpoint a signed test delivery of e, outside the outbox,
// and returns the status and the start of the answer.
func (d *Dispatcher) Ping(ctx context.Context, name string, e metadata.Event) (int, string, error) {
	ep, err := d.endpoints.get(ctx, d.o.DB, name)
	if err != nil {
		return 0, "", err
	}
	status, answer, _ := d.send(ctx, metadata.Delivery{Webhook: name, Event: e})
	if status == 0 {
		return 0, answer, fmt.Errorf("%s: %s", ep.URL, answer)
	}
	return status, answer, nil
}
