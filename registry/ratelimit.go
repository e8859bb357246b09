package registry

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateLimiter limits each client (an address, a user) to a rate of
// requests with bursts. It is safe for concurrent use.
type rateLimiter struct {
	rate  rate.Limit
	burst int
	max   int // clients remembered at most

	mu      sync.Mutex
	clients map[string]*rate.Limiter
	sweepAt int // a new client sweeps when there are this many
}

const (
	// maxClients bounds a rateLimiter's memory (some 200 bytes a client)
	// under a flood of addresses.
	maxClients = 100_000
	// sweepMin is the fewest clients worth a sweep.
	sweepMin = 64
	// maxRetryAfter keeps a tiny rate's wait a sensible duration.
	maxRetryAfter = 24 * time.Hour
)

// newRateLimiter allows each client rate requests a second, in bursts of
// up to burst (at least 1). A rate of zero or less is no limit: nil.
func newRateLimiter(r float64, burst int) *rateLimiter {
	if r <= 0 {
		return nil
	}
	return &rateLimiter{rate: rate.Limit(r), burst: max(burst, 1), max: maxClients,
		clients: map[string]*rate.Limiter{}, sweepAt: sweepMin}
}

// allow reports whether client may make a request now; if not, retryAfter
// is how long until it may, in whole seconds and at least one, for a
// Retry-After header. A nil rateLimiter allows everything.
func (l *rateLimiter) allow(client string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	return l.allowAt(client, time.Now())
}

func (l *rateLimiter) allowAt(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.limiter(client, now)
	if lim.AllowN(now, 1) {
		return true, 0
	}
	return false, l.retryAfter(lim, now)
}

// exhausted reports whether client has no request left now, without using
// one; retryAfter is as allow's. A nil rateLimiter is never exhausted.
func (l *rateLimiter) exhausted(client string) (bool, time.Duration) {
	if l == nil {
		return false, 0
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[client]
	if !ok || lim.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, l.retryAfter(lim, now)
}

// limiter is client's bucket, made on first use.
func (l *rateLimiter) limiter(client string, now time.Time) *rate.Limiter {
	lim, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= l.sweepAt {
			l.sweep(now)
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.clients[client] = lim
	}
	return lim
}

func (l *rateLimiter) retryAfter(lim *rate.Limiter, now time.Time) time.Duration {
	wait := (1 - lim.TokensAt(now)) / float64(l.rate) // seconds until a token
	return time.Duration(min(max(math.Ceil(wait), 1), maxRetryAfter.Seconds())) * time.Second
}

// sweep forgets the clients whose bucket is full again: a new limiter
// would answer them the same. If too many remain (a flood of clients, all
// busy), it forgets arbitrary ones down to half the cap, which gives them
// a fresh burst but keeps memory bounded. The next sweep waits until the
// clients have about doubled, so sweeping costs O(1) per new client.
func (l *rateLimiter) sweep(now time.Time) {
	for c, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, c)
		}
	}
	for c := range l.clients {
		if len(l.clients) < l.max/2 {
			break
		}
		delete(l.clients, c)
	}
	l.sweepAt = min(2*len(l.clients)+sweepMin, l.max)
}
