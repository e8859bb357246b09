package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Media types used by the benchmark images.
const (
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// manifestAccept is what containerd sends when it resolves a tag.
const manifestAccept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// uploadMode is how a blob upload sends its bytes.
type uploadMode string

const (
	// modeStream is what docker does: POST, one PATCH streaming the whole blob (chunked
	// transfer encoding, no Content-Range), then PUT ?digest= with no body.
	modeStream uploadMode = "stream"
	// modeMonolithic is POST, then one PUT ?digest= carrying the whole blob.
	modeMonolithic uploadMode = "monolithic"
	// modeChunked is POST, PATCH chunks with Content-Range, then PUT ?digest=.
	modeChunked uploadMode = "chunked"
)

// client speaks the OCI Distribution API to one registry.
type client struct {
	base string // scheme://host[:port], no trailing slash
	user *url.Userinfo
	hc   *http.Client
}

// newClient returns a client with a keep-alive transport sized for conns parallel connections.
func newClient(rawURL string, conns int) (*client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("registry URL %q: want http(s)://host[:port]", rawURL)
	}
	user := u.User
	u.User, u.Path, u.RawQuery = nil, "", ""
	tr := &http.Transport{
		Proxy:               nil, // a benchmark talks to the registry directly
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
		WriteBufferSize:     64 << 10,
		ForceAttemptHTTP2:   false,
	}
	return &client{base: u.String(), user: user, hc: &http.Client{Transport: tr}}, nil
}

// httpError is a registry answer with an unexpected status.
type httpError struct {
	method, path string
	status       string
	body         string
}

func (e *httpError) Error() string {
	body := strings.TrimSpace(e.body)
	if body == "" {
		body = "(empty body)"
	}
	return fmt.Sprintf("%s %s: %s: %s", e.method, e.path, e.status, body)
}

// do sends req and returns the response if its status is one of want; otherwise it reads the
// body into an *httpError.
func (c *client) do(req *http.Request, want ...int) (*http.Response, error) {
	if c.user != nil {
		pass, _ := c.user.Password()
		req.SetBasicAuth(c.user.Username(), pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, nil
		}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil, &httpError{method: req.Method, path: req.URL.Path, status: resp.Status, body: string(body)}
}

// done drains and closes a response body so that its connection is reused.
func done(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// request builds a request; u is absolute or a path below the registry's base URL.
func (c *client) request(ctx context.Context, method, u string, body io.Reader, size int64) (*http.Request, error) {
	if strings.HasPrefix(u, "/") {
		u = c.base + u
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size // -1: unknown, sent with chunked transfer encoding
	}
	return req, nil
}

// location resolves the Location header of resp against its request URL.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s %s: %s without Location", resp.Request.Method, resp.Request.URL.Path, resp.Status)
	}
	return resp.Request.URL.Parse(loc)
}

// blobExists reports whether repo already has the blob (HEAD, as docker does before a push).
func (c *client) blobExists(ctx context.Context, repo, digest string) (bool, error) {
	req, err := c.request(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+digest, nil, 0)
	if err != nil {
		return false, err
	}
	resp, err := c.do(req, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	done(resp)
	return resp.StatusCode == http.StatusOK, nil
}

// pushBlob uploads size bytes from r under digest using mode; chunk is the PATCH size of modeChunked.
func (c *client) pushBlob(ctx context.Context, repo, digest string, r io.Reader, size int64, mode uploadMode, chunk int64) error {
	req, err := c.request(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, 0)
	if err != nil {
		return err
	}
	resp, err := c.do(req, http.StatusAccepted)
	if err != nil {
		return err
	}
	done(resp)
	loc, err := location(resp)
	if err != nil {
		return err
	}
	switch mode {
	case modeStream:
		if loc, err = c.patch(ctx, loc, r, -1, ""); err != nil {
			return err
		}
	case modeChunked:
		for off := int64(0); off < size; off += chunk {
			n := min(chunk, size-off)
			rng := fmt.Sprintf("%d-%d", off, off+n-1)
			if loc, err = c.patch(ctx, loc, io.LimitReader(r, n), n, rng); err != nil {
				return err
			}
		}
	case modeMonolithic:
	default:
		return fmt.Errorf("unknown upload mode %q", mode)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	var body io.Reader
	if mode == modeMonolithic {
		body = r
	}
	if req, err = c.request(ctx, http.MethodPut, loc.String(), body, size); err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if resp, err = c.do(req, http.StatusCreated); err != nil {
		return err
	}
	done(resp)
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != digest {
		return fmt.Errorf("PUT %s: Docker-Content-Digest %s, want %s", loc.Path, got, digest)
	}
	return nil
}

// patch sends one PATCH of an upload and returns the next upload location.
func (c *client) patch(ctx context.Context, loc *url.URL, body io.Reader, size int64, contentRange string) (*url.URL, error) {
	req, err := c.request(ctx, http.MethodPatch, loc.String(), body, size)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if contentRange != "" {
		req.Header.Set("Content-Range", contentRange)
	}
	resp, err := c.do(req, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	done(resp)
	return location(resp)
}

// pushBytes uploads a small blob the way docker does, unless repo already has it.
func (c *client) pushBytes(ctx context.Context, repo, digest string, b []byte) error {
	ok, err := c.blobExists(ctx, repo, digest)
	if err != nil || ok {
		return err
	}
	return c.pushBlob(ctx, repo, digest, bytes.NewReader(b), int64(len(b)), modeStream, 0)
}

// mountBlob makes a blob of repo from exists in repo too, with a cross-repository mount. A
// registry that answers the mount with an upload instead (202) gets the bytes b in one PUT.
func (c *client) mountBlob(ctx context.Context, repo, from, digest string, b []byte) error {
	q := url.Values{"mount": {digest}, "from": {from}}
	req, err := c.request(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?"+q.Encode(), nil, 0)
	if err != nil {
		return err
	}
	resp, err := c.do(req, http.StatusCreated, http.StatusAccepted)
	if err != nil {
		return err
	}
	done(resp)
	if resp.StatusCode == http.StatusCreated {
		return nil
	}
	loc, err := location(resp)
	if err != nil {
		return err
	}
	lq := loc.Query()
	lq.Set("digest", digest)
	loc.RawQuery = lq.Encode()
	if req, err = c.request(ctx, http.MethodPut, loc.String(), bytes.NewReader(b), int64(len(b))); err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if resp, err = c.do(req, http.StatusCreated); err != nil {
		return err
	}
	done(resp)
	return nil
}

// getBlob downloads a blob into buf-sized reads, discarding it, and returns its length.
func (c *client) getBlob(ctx context.Context, repo, digest string, buf []byte) (int64, error) {
	req, err := c.request(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+digest, nil, 0)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// io.Copy to io.Discard would use io.Discard's small buffer; read with ours.
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// putManifest stores an OCI image manifest under ref.
func (c *client) putManifest(ctx context.Context, repo, ref string, m []byte) error {
	req, err := c.request(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, bytes.NewReader(m), int64(len(m)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mediaManifest)
	resp, err := c.do(req, http.StatusCreated)
	if err != nil {
		return err
	}
	done(resp)
	return nil
}

// getManifest reads a manifest into buf (reset first).
func (c *client) getManifest(ctx context.Context, repo, ref string, buf *bytes.Buffer) error {
	req, err := c.request(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, nil, 0)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	return err
}

// namesPage fetches one page of a tag list or catalog from u and returns the strings under key
// ("tags" or "repositories") and the next page's URL ("" when the Link header names none).
func (c *client) namesPage(ctx context.Context, u, key string) ([]string, string, error) {
	req, err := c.request(ctx, http.MethodGet, u, nil, 0)
	if err != nil {
		return nil, "", err
	}
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var page map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, "", fmt.Errorf("GET %s: decoding the list: %w", req.URL.Path, err)
	}
	var names []string
	if raw, ok := page[key]; ok {
		if err := json.Unmarshal(raw, &names); err != nil {
			return nil, "", fmt.Errorf("GET %s: decoding %q: %w", req.URL.Path, key, err)
		}
	}
	next, ok := linkNext(strings.Join(resp.Header.Values("Link"), ", "))
	if !ok {
		return names, "", nil
	}
	nu, err := req.URL.Parse(next)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: Link %q: %w", req.URL.Path, next, err)
	}
	return names, nu.String(), nil
}

// listNames follows the Link headers from the first page u until the last page and returns
// the strings under key of every page.
func (c *client) listNames(ctx context.Context, u, key string) (names []string, pages int, err error) {
	for u != "" {
		var page []string
		if page, u, err = c.namesPage(ctx, u, key); err != nil {
			return nil, pages, err
		}
		names = append(names, page...)
		if pages++; pages > 1_000_000 {
			return nil, pages, errors.New("list: Link headers never end")
		}
	}
	return names, pages, nil
}

// linkNext returns the target of the rel="next" link in an RFC 8288 Link header value.
func linkNext(header string) (string, bool) {
	s := header
	for {
		s = strings.TrimLeft(s, " \t,")
		if !strings.HasPrefix(s, "<") {
			return "", false
		}
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return "", false
		}
		target := s[1:end]
		s = s[end+1:]
		// Parameters run to the next comma outside a quoted string.
		inQuote, stop := false, len(s)
		for i := 0; i < len(s); i++ {
			if s[i] == '"' {
				inQuote = !inQuote
			} else if s[i] == ',' && !inQuote {
				stop = i
				break
			}
		}
		params := s[:stop]
		s = s[stop:]
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
				continue
			}
			for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
				if strings.EqualFold(rel, "next") {
					return target, true
				}
			}
		}
	}
}
