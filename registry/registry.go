package registry

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/berthhq/berth/auth"
	"github.com/berthhq/berth/gc"
	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Registry.
type Options struct {
	Store  *storage.Store
	DB     *metadata.DB
	Logger *slog.Logger
	// RedirectExpiry, when positive and the storage can presign URLs, makes
	// blob GETs answer 307 to a URL valid that long instead of streaming.
	RedirectExpiry time.Duration
	// Policy is the default tag policy of every repository. Fields left
	// out default to: ordering integer then semver, numbered tags
	// immutable, lower numbers accepted, no retention.
	Policy Policy
	// PolicyRules override the default for the repositories they match;
	// rules stored through the admin API override these at equal
	// specificity. ValidatePolicyRules checks them.
	PolicyRules []PolicyRule
	// RestoreWindow is how long a deleted tag can be restored (default 14 days).
	RestoreWindow time.Duration
	// Dispatcher delivers webhooks; the admin API's ping uses it.
	Dispatcher *notify.Dispatcher
	// GC runs garbage collection for the admin API; nil answers 501.
	GC *gc.Collector
	// LinkDeadline bounds the time between an upload finding its blob's
	// bytes in place and recording the blob; a later record is refused
	// and the client pushes again. It must equal gc.Options.LinkDeadline.
	// Default 1m.
	LinkDeadline time.Duration
	// Auth decides who may do what; nil lets everyone do everything.
	Auth *auth.Authenticator
	// Limits bound what one client may ask for.
	Limits Limits
	// Metrics registers the registry's Prometheus metrics (requests by
	// route, bytes, uploads, dedup, mounts); nil registers none.
	Metrics prometheus.Registerer
}

// Limits bound what one client (one address) may ask of the registry.
type Limits struct {
	// Rate is the requests per second a client may make, with bursts of
	// Burst; 0 is no limit. Over it, requests get 429 TOOMANYREQUESTS.
	Rate  float64
	Burst int
	// Uploads is how many upload sessions a client (a user, or an address
	// for anonymous clients) may have open at once; 0 is no limit.
	Uploads int
	// FailedLogins is how many refused credentials an address may send at
	// once; past them it may fail once a second, and its requests get 429
	// until it may. 0 is no limit.
	FailedLogins int
	// BodyIdleTimeout cuts off a request whose body sends nothing for this
	// long, so a trickling upload cannot hold its session's lock forever;
	// 0 is no limit.
	BodyIdleTimeout time.Duration
}

// ValidatePolicyRules reports the first invalid rule.
func ValidatePolicyRules(rules []PolicyRule) error {
	for _, r := range rules {
		if oci.ValidateGlob(r.Repositories) != nil {
			return fmt.Errorf("policy rule: %q is neither a repository name nor a glob", r.Repositories)
		}
		if err := r.Policy.check(); err != nil {
			return fmt.Errorf("policy rule for %s: %w", r.Repositories, err)
		}
	}
	return nil
}

// Registry serves the OCI distribution API.
type Registry struct {
	store    *storage.Store
	db       *metadata.DB
	log      *slog.Logger
	redirect time.Duration
	policies *policies
	// restoreWindow is how long a deleted tag can be restored.
	restoreWindow time.Duration
	routes        map[routeKey]handlerFunc
	adminRoutes   map[routeKey]adminHandler
	dispatcher    *notify.Dispatcher
	gc            *gc.Collector
	linkDeadline  time.Duration
	auth          *auth.Authenticator
	tokens        http.Handler // the built-in token issuer, or nil
	limiter       *rateLimiter // nil: no rate limit
	// failures counts refused credentials per address: past a burst the
	// address is refused before bcrypt or the issuer spend time on it.
	failures   *rateLimiter
	bodyIdle   time.Duration
	maxUploads int
	metrics    *metrics
	draining   atomic.Bool // see Drain
	ready      readyCache  // the last /readyz answer, reused for readyFor
}

type routeKey struct{ endpoint, method string }

// New returns a Registry; mount it at the server's root.
func New(o Options) *Registry {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	reg := &Registry{store: o.Store, db: o.DB, log: log, redirect: o.RedirectExpiry, restoreWindow: o.RestoreWindow,
		dispatcher: o.Dispatcher, gc: o.GC, linkDeadline: o.LinkDeadline,
		auth: o.Auth, limiter: newRateLimiter(o.Limits.Rate, o.Limits.Burst), maxUploads: o.Limits.Uploads,
		bodyIdle: o.Limits.BodyIdleTimeout, metrics: newMetrics(o.Metrics)}
	if reg.auth.Enabled() && o.Limits.FailedLogins > 0 {
		reg.failures = newRateLimiter(failedLoginRate, o.Limits.FailedLogins)
	}
	if reg.auth.Enabled() {
		reg.tokens = reg.auth.TokenHandler()
	}
	if reg.linkDeadline <= 0 {
		reg.linkDeadline = time.Minute
	}
	if reg.restoreWindow <= 0 {
		reg.restoreWindow = 14 * 24 * time.Hour
	}
	defaults := Policy{Ordering: []oci.Ordering{oci.OrderInteger, oci.OrderSemver}, ImmutableNumbered: ptr(true), RefuseLower: ptr(false)}
	reg.policies = &policies{defaults: defaults.overlay(o.Policy), config: o.PolicyRules, db: o.DB}
	reg.routes = map[routeKey]handlerFunc{
		{epBase, http.MethodGet}:        reg.base,
		{epBase, http.MethodHead}:       reg.base,
		{epCatalog, http.MethodGet}:     reg.catalog,
		{epBlob, http.MethodGet}:        reg.getBlob,
		{epBlob, http.MethodHead}:       reg.getBlob,
		{epBlob, http.MethodDelete}:     reg.deleteBlob,
		{epUploads, http.MethodPost}:    reg.startUpload,
		{epUpload, http.MethodGet}:      reg.uploadStatus,
		{epUpload, http.MethodPatch}:    reg.patchUpload,
		{epUpload, http.MethodPut}:      reg.finishUpload,
		{epUpload, http.MethodDelete}:   reg.cancelUpload,
		{epManifest, http.MethodGet}:    reg.getManifest,
		{epManifest, http.MethodHead}:   reg.getManifest,
		{epManifest, http.MethodPut}:    reg.putManifest,
		{epManifest, http.MethodDelete}: reg.deleteManifest,
		{epTags, http.MethodGet}:        reg.listTags,
		{epReferrers, http.MethodGet}:   reg.referrers,
		{epTagHistory, http.MethodGet}:  reg.tagHistoryIndex,
		{epTagHistory, http.MethodHead}: reg.tagHistoryIndex,
	}
	reg.adminRoutes = reg.newAdminRoutes()
	return reg
}

func ptr[T any](v T) *T { return &v }

// route is a parsed /v2/ path: which endpoint, and its parameters.
type route struct {
	endpoint string // one of the endpoint constants
	name     string // repository name, unvalidated
	arg      string // reference, digest, upload id or tag, unvalidated
}

const (
	epBase      = "base"
	epCatalog   = "catalog"
	epManifest  = "manifest"
	epBlob      = "blob"
	epUploads   = "uploads" // the collection: POST starts an upload
	epUpload    = "upload"  // one upload session
	epTags      = "tags"
	epReferrers = "referrers"
	// The proposed _oci/tag-history extension (taghistory.go). A name's
	// components never start with "_", so "_oci" cannot be part of one.
	epTagHistory = "tag-history"
)

// parseRoute splits a /v2/ path. Repository names contain slashes, so the
// endpoint is recognised from the end of the path and everything before it
// is the name; the name is validated by the handler, which lets an invalid
// name get NAME_INVALID rather than a bare 404.
func parseRoute(path string) (route, bool) {
	if path == "/v2" {
		return route{endpoint: epBase}, true
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{}, false
	}
	switch rest {
	case "":
		return route{endpoint: epBase}, true
	case "_catalog":
		return route{endpoint: epCatalog}, true
	}
	seg := strings.Split(rest, "/")
	n := len(seg)
	name := func(k int) string { return strings.Join(seg[:n-k], "/") }
	switch {
	case n >= 4 && seg[n-3] == "blobs" && seg[n-2] == "uploads" && seg[n-1] == "":
		return route{epUploads, name(3), ""}, true
	case n >= 4 && seg[n-3] == "blobs" && seg[n-2] == "uploads":
		return route{epUpload, name(3), seg[n-1]}, true
	case n >= 3 && seg[n-2] == "blobs" && seg[n-1] == "uploads":
		return route{epUploads, name(2), ""}, true
	case n >= 3 && seg[n-2] == "blobs":
		return route{epBlob, name(2), seg[n-1]}, true
	case n >= 3 && seg[n-2] == "manifests":
		return route{epManifest, name(2), seg[n-1]}, true
	case n >= 3 && seg[n-2] == "tags" && seg[n-1] == "list":
		return route{epTags, name(2), ""}, true
	case n >= 3 && seg[n-2] == "referrers":
		return route{epReferrers, name(2), seg[n-1]}, true
	case n >= 4 && seg[n-3] == "_oci" && seg[n-2] == "tag-history":
		return route{epTagHistory, name(3), seg[n-1]}, true
	}
	return route{}, false
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, rt route) error

// ServeHTTP routes a request, runs its handler, writes any error in the
// spec's envelope, logs one line and counts it in the metrics.
func (reg *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	// Parsed once: the metrics' route label, the challenge's scope, the
	// handler and the audit line all read it.
	rt, v2 := parseRoute(r.URL.Path)
	route := reg.routeName(r, rt, v2)
	body := &countingBody{ReadCloser: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	defer func() {
		reg.metrics.observe(route, r.Method, rec.statusCode(), body.n, rec.written, time.Since(start))
	}()
	if route == routeHealth {
		// Probes: no credentials, no rate limit, no audit, and a log line
		// only when debugging.
		reg.health(rec, r)
		reg.log.LogAttrs(r.Context(), slog.LevelDebug, "request", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", rec.statusCode()), slog.String("remote", r.RemoteAddr))
		return
	}
	if isUpload(route, r.Method) {
		reg.metrics.uploading.Inc()
		defer reg.metrics.uploading.Dec()
	}
	rec.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	// A request with Transfer-Encoding may also have had a Content-Length,
	// which net/http drops unseen; RFC 9112 (6.1) then asks for the
	// connection to close, so that a proxy framing by that length cannot
	// smuggle a second request after it.
	if len(r.TransferEncoding) > 0 {
		rec.Header().Set("Connection", "close")
	}
	if reg.bodyIdle > 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: reg.bodyIdle}
	}

	r, err := reg.admit(r, rt, v2)
	if err == nil {
		err = reg.dispatch(rec, r, rt, v2)
	}
	var ae *apiError
	if err != nil {
		ae = toAPIError(err)
		if rec.status == 0 {
			writeError(rec, r, ae)
		}
	}

	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rec.statusCode()),
		slog.Int64("bytes_in", max(r.ContentLength, 0)),
		slog.Int64("bytes_out", rec.written),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", r.RemoteAddr),
	}
	level := slog.LevelInfo
	if ae != nil {
		attrs = append(attrs, slog.String("code", ae.Code))
		if ae.Status >= 500 {
			level = slog.LevelError
			attrs = append(attrs, slog.String("error", err.Error()))
		}
	}
	reg.log.LogAttrs(r.Context(), level, "request", attrs...)
	if ae == nil {
		reg.audit(r, rec.statusCode(), rt, v2)
	}
	// Credentials given and refused, here or at the token issuer.
	if rec.statusCode() == http.StatusUnauthorized && (r.Header.Get("Authorization") != "" || reg.isTokenRequest(r)) {
		reg.failures.allow(auth.ClientAddress(r))
	}
}

// failedLoginRate is how often an address that used up Limits.FailedLogins
// may fail again: enough for a mistyped password, too few to guess one.
const failedLoginRate = 1

// admit applies the rate limit and reads the caller's credentials into the
// request's context; the token issuer reads its own.
func (reg *Registry) admit(r *http.Request, rt route, v2 bool) (*http.Request, error) {
	if reg.limiter != nil {
		if ok, wait := reg.limiter.allow(auth.ClientAddress(r)); !ok {
			return r, tooManyRequests("too many requests from this client: slow down", wait)
		}
	}
	if over, wait := reg.failures.exhausted(auth.ClientAddress(r)); over {
		return r, tooManyRequests("too many failed logins from this address", wait)
	}
	if reg.isTokenRequest(r) {
		return r, nil
	}
	return reg.authenticate(r, rt, v2)
}

func (reg *Registry) isTokenRequest(r *http.Request) bool {
	return reg.tokens != nil && r.URL.Path == auth.TokenPath
}

func (reg *Registry) dispatch(w http.ResponseWriter, r *http.Request, rt route, v2 bool) error {
	if reg.isTokenRequest(r) {
		reg.tokens.ServeHTTP(w, r)
		return nil
	}
	if strings.HasPrefix(r.URL.Path, "/admin/") {
		return reg.admin(w, r)
	}
	if !v2 {
		return newError(http.StatusNotFound, codeUnsupported, "no such endpoint")
	}
	if rt.endpoint != epBase && rt.endpoint != epCatalog {
		if err := oci.ValidateName(rt.name); err != nil {
			return err
		}
	}
	h, ok := reg.routes[routeKey{rt.endpoint, r.Method}]
	if !ok {
		return newError(http.StatusMethodNotAllowed, codeUnsupported, r.Method+" is not supported here")
	}
	if err := reg.authorizeV2(r, rt); err != nil {
		return err
	}
	return h(w, r, rt)
}

// base answers GET /v2/: the API is here, and the caller's credentials
// (if authentication is on) are good.
//
// Spec: "Determining support".
func (reg *Registry) base(w http.ResponseWriter, r *http.Request, _ route) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write([]byte("{}"))
	}
	return nil
}

// recorder remembers the status and size of a response for the log line.
type recorder struct {
	http.ResponseWriter
	status  int
	written int64
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(p)
	rec.written += int64(n)
	return n, err
}

func (rec *recorder) statusCode() int {
	if rec.status == 0 {
		return http.StatusOK
	}
	return rec.status
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }
