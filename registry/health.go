package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
)

// The health endpoints, for orchestrators and load balancers. They need
// no credentials and pass no rate limit.
const (
	// healthzPath answers 200 while the process serves.
	healthzPath = "/healthz"
	// readyzPath answers 200 while the process can serve requests, 503
	// otherwise.
	readyzPath = "/readyz"
)

// readyTimeout bounds each check of /readyz: a dependency slower than that
// is as good as down to a client.
const readyTimeout = 2 * time.Second

// readyFor is how long a /readyz answer is reused.
const readyFor = time.Second

// readyCache is the last /readyz answer and when it was found.
type readyCache struct {
	mu   sync.Mutex
	last readyStatus
	at   time.Time
}

// readyProbe is the blob whose Stat checks storage: the empty blob, which
// is there or not; either answer shows storage answering.
const readyProbe = oci.Digest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

// readyStatus is the body of /readyz.
type readyStatus struct {
	Ready bool `json:"ready"`
	// Draining: the process is shutting down and finishing what it serves.
	Draining bool `json:"draining,omitempty"`
	// Failed names the dependencies that did not answer: metadata, storage.
	Failed []string `json:"failed,omitempty"`
}

// Drain makes /readyz answer 503 from now on, so that load balancers stop
// sending requests while those in flight finish. Call it when shutdown
// begins; requests are still served.
func (reg *Registry) Drain() { reg.draining.Store(true) }

// Health returns a handler of /healthz and /readyz alone, for a listener
// of its own (the debug listener).
func (reg *Registry) Health() http.Handler { return http.HandlerFunc(reg.health) }

// health answers /healthz and /readyz.
func (reg *Registry) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == healthzPath {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("ok\n"))
		return
	}
	rd := reg.readiness(r.Context())
	body, _ := json.Marshal(rd)
	w.Header().Set("Content-Type", "application/json")
	if rd.Ready {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Write(body)
}

// readiness checks, at once, that the metadata database answers a query and
// storage a Stat, unless the registry is draining. An answer is reused for
// readyFor: /readyz needs no credentials, and a flood of it must not become
// a flood of queries and storage requests (billed ones, on S3).
func (reg *Registry) readiness(ctx context.Context) readyStatus {
	if reg.draining.Load() {
		return readyStatus{Draining: true}
	}
	reg.ready.mu.Lock()
	defer reg.ready.mu.Unlock()
	if time.Since(reg.ready.at) < readyFor {
		return reg.ready.last
	}
	// Detached from the request: the answer serves other callers too.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readyTimeout)
	defer cancel()
	checks := []struct {
		name  string
		check func(context.Context) error
	}{
		{"metadata", reg.db.Ping},
		{"storage", func(ctx context.Context) error {
			_, err := reg.store.Stat(ctx, readyProbe)
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		}},
	}
	// Each check answers on its channel; one that ignores its context (a
	// hung disk under os.Stat) fails at the timeout instead of holding the
	// probe.
	answers := make([]chan error, len(checks))
	for i, c := range checks {
		answers[i] = make(chan error, 1)
		go func() { answers[i] <- c.check(ctx) }()
	}
	rd := readyStatus{Ready: true}
	for i, answer := range answers {
		var err error
		select {
		case err = <-answer:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			rd.Ready = false
			rd.Failed = append(rd.Failed, checks[i].name)
			reg.log.WarnContext(ctx, "not ready", "check", checks[i].name, "error", err)
		}
	}
	reg.ready.last, reg.ready.at = rd, time.Now()
	return rd
}
