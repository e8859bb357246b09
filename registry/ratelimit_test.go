package registry

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRateLimitOff(t *testing.T) {
	for _, r := range []float64{0, -1} {
		if l := newRateLimiter(r, 10); l != nil {
			t.Errorf("newRateLimiter(%v) = %v, want nil", r, l)
		}
	}
	var l *rateLimiter
	if ok, _ := l.allow("anyone"); !ok {
		t.Error("a nil limiter refused a request")
	}
}

func TestRateLimitRetryAfter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		rate  float64
		burst int
		at    time.Duration // when the refused request comes, after the burst at t0
		want  time.Duration
		// capped: the real wait is longer than Retry-After says
		capped bool
	}{
		{"a tenth of a second is one", 10, 1, 0, time.Second, false},
		{"two seconds", 0.5, 1, 0, 2 * time.Second, false},
		{"3.3s is four", 0.3, 1, 0, 4 * time.Second, false},
		{"part of the wait gone", 0.25, 1, time.Second, 3 * time.Second, false},
		{"a bigger burst", 1, 3, 500 * time.Millisecond, time.Second, false},
		{"no burst is a burst of one", 0.5, 0, 0, 2 * time.Second, false},
		{"a tiny rate waits a day at most", 1e-12, 1, 0, 24 * time.Hour, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newRateLimiter(c.rate, c.burst)
			for i := range max(c.burst, 1) {
				if ok, _ := l.allowAt("a", t0); !ok {
					t.Fatalf("request %d of the burst refused", i+1)
				}
			}
			ok, retry := l.allowAt("a", t0.Add(c.at))
			if ok || retry != c.want {
				t.Fatalf("after the burst: %v, retry after %v; want refused, %v", ok, retry, c.want)
			}
			if ok, _ := l.allowAt("b", t0.Add(c.at)); !ok {
				t.Error("another client refused")
			}
			if ok, _ := l.allowAt("a", t0.Add(c.at+retry)); !ok && !c.capped {
				t.Errorf("refused again once Retry-After (%v) has passed", retry)
			}
		})
	}
}

func TestRateLimitSweep(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(1, 2)
	l.max, l.sweepAt = 8, 4 // small, to see it happen
	for _, c := range []string{"a", "b", "c", "busy"} {
		l.allowAt(c, t0) // one of two tokens left
	}
	// Two seconds on, a, b and c are full again; busy spends both tokens.
	t1 := t0.Add(2 * time.Second)
	for range 2 {
		if ok, _ := l.allowAt("busy", t1); !ok {
			t.Fatal("busy refused after its wait")
		}
	}
	l.allowAt("d", t1) // the fifth client sweeps
	if got := len(l.clients); got != 2 {
		t.Errorf("%d clients remembered after the sweep, want busy and d", got)
	}
	if ok, _ := l.allowAt("busy", t1); ok {
		t.Error("the sweep forgot a client still limited")
	}
}

func TestRateLimitBounded(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(0.001, 1)
	l.max, l.sweepAt = 16, 8
	for i := range 1000 {
		// Each client spends its burst and stays limited for 1000 seconds:
		// no sweep can forget one for being full.
		if ok, _ := l.allowAt(fmt.Sprint(i), t0); !ok {
			t.Fatalf("client %d refused its first request", i)
		}
		if n := len(l.clients); n > l.max {
			t.Fatalf("%d clients remembered, want at most %d", n, l.max)
		}
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	l := newRateLimiter(1e-6, 10) // no token comes back during the test
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				if ok, _ := l.allow("shared"); ok {
					allowed.Add(1)
				}
				l.allow(fmt.Sprintf("%d-%d", g, i)) // 800 others: sweeps under contention
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 10 {
		t.Errorf("%d requests of the shared client allowed, want its burst of 10", n)
	}
}
