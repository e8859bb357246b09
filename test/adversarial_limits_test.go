package test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestAdversarialRateLimit: with --limits.rate, a client that sends too fast gets 429
// TOOMANYREQUESTS with a Retry-After, whatever X-Forwarded-For it claims; another client address
// is served meanwhile, and the first is served again once it waited as long as it was told.
func TestAdversarialRateLimit(t *testing.T) {
	t.Parallel()
	a := startAuthBerth(t, authOptions{Method: "basic", Users: []string{"robot"}, Flags: []string{"--limits.rate", "2", "--limits.burst", "5"}})
	fast, other := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
	get := func(c *http.Client, kv ...string) (*http.Response, []byte) {
		t.Helper()
		resp, body, err := doRequest(c, http.MethodGet, a.URL+"/v2/", nil, header("", kv...))
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	var limited *http.Response
	for i := 0; i < 50 && limited == nil; i++ {
		if resp, body := get(fast); resp.StatusCode == http.StatusTooManyRequests {
			expectOCIError(t, resp, body, http.StatusTooManyRequests, "TOOMANYREQUESTS")
			limited = resp
		} else {
			expectStatus(t, resp, body, http.StatusUnauthorized)
		}
	}
	if limited == nil {
		t.Fatal("50 requests at once from one client, at --limits.rate 2 --limits.burst 5: none refused")
	}
	wait, err := strconv.Atoi(limited.Header.Get("Retry-After"))
	if err != nil || wait < 1 || wait > 60 {
		t.Fatalf("429 with Retry-After %q, want a number of seconds", limited.Header.Get("Retry-After"))
	}
	resp, body := get(fast, "X-Forwarded-For", "203.0.113.7", "X-Real-IP", "203.0.113.7")
	expectOCIError(t, resp, body, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	resp, body = get(other)
	expectStatus(t, resp, body, http.StatusUnauthorized)

	// Told to wait, the client waits that long, and is then served.
	time.Sleep(time.Duration(wait) * time.Second)
	resp, body = get(fast)
	expectStatus(t, resp, body, http.StatusUnauthorized)
}

// clientFrom is an HTTP client whose connections come from the loopback address ip, which the
// server sees as another client than 127.0.0.1.
func clientFrom(t testing.TB, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// TestAdversarialFailedLogins: an address that keeps sending wrong passwords is refused with
// 429 once it has used up --limits.failed-logins, even with the right password then, so that
// guessing runs at one try a second; another address is served meanwhile.
func TestAdversarialFailedLogins(t *testing.T) {
	t.Parallel()
	a := startAuthBerth(t, authOptions{Method: "basic", Users: []string{"robot"}, Flags: []string{"--limits.failed-logins", "5"}})
	guesser, other := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")
	get := func(c *http.Client, password string) (*http.Response, []byte) {
		t.Helper()
		resp, body, err := doRequest(c, http.MethodGet, a.URL+"/v2/", nil, header(basicAuth("robot", password)))
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	for range 5 {
		resp, body := get(guesser, "guess")
		expectOCIError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED")
	}
	resp, body := get(guesser, "guess")
	expectOCIError(t, resp, body, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	resp, body = get(guesser, a.passwords["robot"])
	expectOCIError(t, resp, body, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	resp, body = get(other, a.passwords["robot"])
	expectStatus(t, resp, body, http.StatusOK)
}
