package test

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pathRows: names that climb out of a repository someone may read, or dress one up. Anonymous
// callers may pull public/* and robot may push apps/*, so the glob lets each request through and
// only the name's validation stops it; trailing slashes name no endpoint at all.
func (a *adversary) pathRows(t *testing.T) []adversarialRow {
	robot, anon := fixed(a.basic(t, "robot")), fixed("")
	return []adversarialRow{
		a.refused("dot-dot out of public/", "GET", "/v2/public/../secret/y/manifests/v1", anon, 400, "NAME_INVALID", ""),
		a.refused("encoded dot-dot out of public/", "GET", "/v2/public/%2e%2e/secret/y/manifests/v1", anon, 400, "NAME_INVALID", ""),
		a.refused("encoded slashes and dot-dots", "GET", "/v2/public/z/..%2f..%2fsecret/y/manifests/v1", anon, 400, "NAME_INVALID", ""),
		a.refused("dot-dot behind an endpoint's word", "GET", "/v2/public/z/manifests/../../secret/y/manifests/v1", anon, 400, "NAME_INVALID", ""),
		a.refused("dot-dot out of apps/ with robot's password", "GET", "/v2/apps/x/../../secret/y/tags/list", robot, 400, "NAME_INVALID", ""),
		a.refused("dot-dot in an upload's name", "POST", "/v2/apps/../secret/y/blobs/uploads/", robot, 400, "NAME_INVALID", ""),
		a.refused("empty path component", "GET", "/v2/public//z/manifests/v1", anon, 400, "NAME_INVALID", ""),
		a.refused("upper-case name", "GET", "/v2/apps/X/manifests/v1", robot, 400, "NAME_INVALID", ""),
		a.refused("upper-case variant of a public name", "GET", "/v2/public/Z/manifests/v1", anon, 400, "NAME_INVALID", ""),
		a.refused("trailing slash after tags/list", "GET", "/v2/secret/y/tags/list/", robot, 404, "UNSUPPORTED", ""),
		a.refused("trailing slash after a reference", "GET", "/v2/secret/y/manifests/v1/", robot, 404, "UNSUPPORTED", ""),
		a.refused("trailing slash after a name", "GET", "/v2/secret/y/", robot, 404, "UNSUPPORTED", ""),
	}
}

// wireRows: requests whose framing two HTTP parsers could read differently, and headers that
// dribble in. Each framing attack carries robot's credentials and a second request in its body:
// the server answers once and hangs up, never reading the second. Where the framing is invalid the
// answer is an error; a body framed by both Transfer-Encoding and Content-Length may instead be
// read by its Transfer-Encoding (RFC 9112, section 6.3), and answered, before hanging up.
func (a *adversary) wireRows(t *testing.T) []adversarialRow {
	robot := a.basic(t, "robot")
	head := "GET /v2/apps/x/tags/list HTTP/1.1\r\nHost: " + a.Host + "\r\nAuthorization: " + robot + "\r\n"
	smuggled := "0\r\n\r\n" + head + "\r\n"
	return []adversarialRow{
		{"Content-Length and Transfer-Encoding", a.framing(head+fmt.Sprintf(
			"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n", len(smuggled))+smuggled, http.StatusBadRequest, http.StatusOK)},
		{"Transfer-Encoding and a short Content-Length", a.framing(head+
			"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"+smuggled, http.StatusBadRequest, http.StatusOK)},
		{"two Content-Lengths", a.framing(head+fmt.Sprintf(
			"Content-Length: 5\r\nContent-Length: %d\r\n\r\n", len(smuggled))+smuggled, http.StatusBadRequest)},
		{"Transfer-Encoding the server does not implement", a.framing(head+
			"Transfer-Encoding: identity\r\n\r\n"+smuggled, http.StatusNotImplemented)},
		{"space before a header's colon", a.framing(head+fmt.Sprintf(
			"Content-Length : %d\r\n\r\n", len(smuggled))+smuggled, http.StatusBadRequest)},
		{"headers a byte at a time", a.slowHeaders},
	}
}

// framing is a row writing req on a connection of its own: the server answers once, with one of
// the statuses, and closes the connection.
func (a *adversary) framing(req string, status ...int) func(t *testing.T) {
	return func(t *testing.T) {
		conn, err := net.Dial("tcp", a.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		statuses, closed := readResponses(t, conn, 10*time.Second)
		if len(statuses) != 1 || !slices.Contains(status, statuses[0]) || !closed {
			t.Fatalf("answers %v, connection closed by the server: %v; want one of %v, then the connection closed", statuses, closed, status)
		}
	}
}

// readResponses reads HTTP responses from conn until the server closes it or wait passes.
func readResponses(t testing.TB, conn net.Conn, wait time.Duration) (statuses []int, closed bool) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return statuses, !(errors.As(err, &ne) && ne.Timeout())
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		if err != nil {
			var ne net.Error
			return statuses, !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// slowHeaders sends a request's headers a byte every 100ms: with --limits.read-header-timeout 1s
// the server hangs up within seconds (with 400 or 408, or without a word), and answers other
// clients meanwhile.
func (a *adversary) slowHeaders(t *testing.T) {
	conn, err := net.Dial("tcp", a.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	stop := make(chan struct{})
	dribbled := make(chan struct{})
	go func() {
		defer close(dribbled)
		req := "GET /v2/ HTTP/1.1\r\nHost: " + a.Host + "\r\nX-Slow: " + strings.Repeat("a", 300) + "\r\n\r\n"
		tick := time.NewTicker(100 * time.Millisecond) // the pace of the attack
		defer tick.Stop()
		for i := range len(req) {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{req[i]}); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-dribbled }()

	for range 5 {
		begun := time.Now()
		resp, body, err := doRequest(&http.Client{Timeout: 5 * time.Second}, http.MethodGet, a.URL+"/v2/", nil, nil)
		if err != nil {
			t.Fatalf("another client, while headers dribble in: %v", err)
		}
		expectStatus(t, resp, body, http.StatusUnauthorized)
		if d := time.Since(begun); d > 2*time.Second {
			t.Errorf("another client waited %s for GET /v2/ while headers dribble in", d)
		}
	}
	statuses, closed := readResponses(t, conn, 15*time.Second)
	if !closed {
		t.Fatalf("after %s the server still holds a connection whose headers come a byte every 100ms", time.Since(start).Round(time.Millisecond))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the server hung up on headers a byte every 100ms only after %s (read-header-timeout 1s)", d.Round(time.Millisecond))
	}
	for _, s := range statuses {
		if s != http.StatusRequestTimeout && s != http.StatusBadRequest {
			t.Errorf("the server answered %d to headers that never ended", s)
		}
	}
}

// lyingUploads are rows declaring a 10 GB body, sending a few bytes and hanging up, on each way
// of sending a blob. The bytes' digests are watched by every snapshot: a blob must never appear.
func lyingUploads(t *testing.T, a *adversary) []adversarialRow {
	robot := a.basic(t, "robot")
	lie := func(what string) (data []byte, digest string) {
		data = []byte(what + " claiming 10 GB " + hex.EncodeToString(randBytes(t, 8)))
		digest = digestOf(data)
		a.watched["apps/x"] = append(a.watched["apps/x"], digest)
		return data, digest
	}
	patch, _ := lie("PATCH")
	put, putDigest := lie("PUT")
	post, postDigest := lie("POST")
	return []adversarialRow{
		{"PATCH claiming 10 GB, a few bytes sent", func(t *testing.T) {
			upload := a.openUpload(t, robot)
			if s := a.hangUp(t, "PATCH", upload, robot, patch); s == http.StatusAccepted {
				t.Errorf("PATCH of %d bytes claiming 10 GB answered %d", len(patch), s)
			}
			a.expectIncomplete(t, upload, robot, len(patch))
		}},
		{"PUT claiming 10 GB, a few bytes whose digest it names", func(t *testing.T) {
			upload := a.openUpload(t, robot)
			if s := a.hangUp(t, "PUT", upload+"?digest="+putDigest, robot, put); s == http.StatusCreated {
				t.Errorf("PUT of %d bytes claiming 10 GB answered %d", len(put), s)
			}
			a.expectIncomplete(t, upload, robot, len(put))
		}},
		{"monolithic POST claiming 10 GB", func(t *testing.T) {
			if s := a.hangUp(t, "POST", "/v2/apps/x/blobs/uploads/?digest="+postDigest, robot, post); s == http.StatusCreated {
				t.Errorf("POST of %d bytes claiming 10 GB answered %d", len(post), s)
			}
		}},
	}
}

// openUpload starts an upload session in apps/x and returns its path.
func (a *adversary) openUpload(t testing.TB, auth string) string {
	t.Helper()
	resp, body := httpDo(t, http.MethodPost, a.URL+"/v2/apps/x/blobs/uploads/", nil, header(auth))
	expectStatus(t, resp, body, http.StatusAccepted)
	return strings.TrimPrefix(location(t, a.server, resp), a.URL)
}

// hangUp sends method path with a Content-Length of 10 GB and only body, then closes its side of
// the connection and waits for the server to be done with it. It returns the status the server
// answered, if it did (0 otherwise).
func (a *adversary) hangUp(t testing.TB, method, path, auth string, body []byte) int {
	t.Helper()
	conn, err := net.Dial("tcp", a.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		method, path, a.Host, auth, int64(10)<<30)
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	statuses, closed := readResponses(t, conn, 30*time.Second)
	if !closed {
		t.Fatalf("%s %s: the server still waits for 10 GB 30s after the client hung up", method, path)
	}
	if len(statuses) > 1 {
		t.Fatalf("%s %s: %d answers to one request: %v", method, path, len(statuses), statuses)
	}
	if len(statuses) == 1 {
		return statuses[0]
	}
	return 0
}

// expectIncomplete checks an upload holds at most sent bytes and is still open (it is then
// cancelled), or is gone.
func (a *adversary) expectIncomplete(t testing.TB, upload, auth string, sent int) {
	t.Helper()
	resp, body := httpDo(t, http.MethodGet, a.URL+upload, nil, header(auth))
	if resp.StatusCode == http.StatusNotFound {
		expectOCIError(t, resp, body, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		return
	}
	expectStatus(t, resp, body, http.StatusNoContent)
	var first, last int
	if _, err := fmt.Sscanf(resp.Header.Get("Range"), "%d-%d", &first, &last); err != nil || last >= sent {
		t.Errorf("upload after the broken request: Range %q, want at most the %d bytes sent", resp.Header.Get("Range"), sent)
	}
	a.cancelUpload(t, a.URL+upload, auth)
}

// uploadFlood opens 10,000 upload sessions from one client, 200 at a time, under
// --limits.uploads 50: at most 50 open, the others are refused with 429 TOOMANYREQUESTS and a
// Retry-After. Once they are cancelled, a new one opens.
func (a *adversary) uploadFlood(t *testing.T) {
	const total, workers, limit = 10000, 200, 50
	push := a.token(t, "robot", "repository:apps/x:pull,push")
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var (
		mu       sync.Mutex
		opened   []string
		refused  int
		retried  int
		problems []string
	)
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				resp, body, err := doRequest(client, http.MethodPost, a.URL+"/v2/apps/x/blobs/uploads/", nil, header(push))
				// A client this busy may take longer than the 1s read-header-timeout to send its
				// first request on a new connection, which the server then closes; the client
				// tries again, as clients do when no answer came.
				for try := 1; err != nil && try < 3; try++ {
					mu.Lock()
					retried++
					mu.Unlock()
					resp, body, err = doRequest(client, http.MethodPost, a.URL+"/v2/apps/x/blobs/uploads/", nil, header(push))
				}
				mu.Lock()
				switch {
				case err != nil:
					problems = append(problems, err.Error())
				case resp.StatusCode == http.StatusAccepted:
					opened = append(opened, resp.Header.Get("Location"))
				case resp.StatusCode == http.StatusTooManyRequests:
					refused++
					if _, err := findOCIError(body, "TOOMANYREQUESTS"); err != nil {
						problems = append(problems, "429: "+err.Error())
					} else if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s <= 0 {
						problems = append(problems, fmt.Sprintf("429 with Retry-After %q, want seconds", resp.Header.Get("Retry-After")))
					}
				default:
					problems = append(problems, fmt.Sprintf("%s: %s", resp.Status, truncate(body)))
				}
				mu.Unlock()
			}
		}()
	}
	for range total {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()

	t.Logf("%d upload sessions opened, %d refused, %d other answers; %d requests sent again after a connection error", len(opened), refused, len(problems), retried)
	if len(problems) > 0 {
		t.Errorf("%d answers neither 202 nor a proper 429, the first: %s", len(problems), problems[0])
	}
	if len(opened) == 0 || len(opened) > limit || len(opened)+refused != total {
		t.Errorf("%d sessions opened and %d refused of %d, want 1 to %d opened and the rest refused", len(opened), refused, total, limit)
	}
	for _, loc := range opened {
		a.cancelUpload(t, a.URL+strings.TrimPrefix(loc, a.URL), push)
	}
	a.cancelUpload(t, a.URL+a.openUpload(t, push), push)
}
