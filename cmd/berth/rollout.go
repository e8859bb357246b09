package main

// berth rollout receives Berth's webhook deliveries and moves what follows a
// repository to its newest numbered image: Docker Swarm services labelled
// berth.follow=<repo>, through the Engine API on its unix socket, and
// Kubernetes Deployments annotated berth.dev/follow: <repo>, through the API
// server with the pod's service account. Both are plain HTTP clients, so the
// command needs neither the Docker SDK nor client-go.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
)

const (
	swarmFollowLabel     = "berth.follow"
	kubeFollowAnnot      = "berth.dev/follow"
	kubeContainerAnnot   = "berth.dev/container"
	kubeServiceAccount   = "/var/run/secrets/kubernetes.io/serviceaccount"
	maxDeliveryBytes     = 1 << 20
	seenRetention        = 30 * 24 * time.Hour
	rolloutUpdateTimeout = 2 * time.Minute
)

// rolloutConfig is every setting of `berth rollout`; each flag can also be
// set as BERTH_ROLLOUT_<NAME> in the environment.
type rolloutConfig struct {
	Addr         string
	Secrets      []string
	Tolerance    time.Duration
	RegistryHost string
	DockerHost   string
	Kubernetes   string
	Namespace    string
	State        string
}

// secretList is a repeatable flag whose values may also be comma lists.
type secretList []string

func (s *secretList) String() string { return "" } // never print a secret
func (s *secretList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

func loadRolloutConfig(args []string, errOut io.Writer) (*rolloutConfig, error) {
	c := &rolloutConfig{}
	fs := flag.NewFlagSet("berth rollout", flag.ContinueOnError)
	fs.SetOutput(errOut)
	// Inside Kubernetes there is no Docker socket to talk to.
	dockerHost := "unix:///var/run/docker.sock"
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		dockerHost = ""
	}
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:5080", "address to receive webhook deliveries on (POST /)")
	fs.Var((*secretList)(&c.Secrets), "secret", "signing secret, whsec_<base64> or any string; repeat it or give a comma list to accept several while rotating (required)")
	fs.DurationVar(&c.Tolerance, "tolerance", 5*time.Minute, "how far a delivery's webhook-timestamp may be from now")
	fs.StringVar(&c.RegistryHost, "registry-host", "", "host[:port] to pull images from (default: the registry a delivery names)")
	fs.StringVar(&c.DockerHost, "docker-host", dockerHost, "Docker Engine of a Swarm manager, unix:///path/to/socket; empty: no Swarm services")
	fs.StringVar(&c.Kubernetes, "kubernetes", "auto", "update Kubernetes Deployments: true, false, or auto (when KUBERNETES_SERVICE_HOST is set)")
	fs.StringVar(&c.Namespace, "namespace", "", "the Kubernetes namespace to look in (default: every namespace the service account may list)")
	fs.StringVar(&c.State, "state", "./rollout-state.json", "file of the delivery ids seen and the versions applied")
	fs.Usage = func() {
		fmt.Fprint(errOut, `Usage: berth rollout [flags]

Receive Berth's signed webhook deliveries (cloudevents, or distribution and Harbor
events) and move Docker Swarm services labelled berth.follow=<repo> and Kubernetes
Deployments annotated berth.dev/follow: <repo> to the newest numbered image.
Every flag can also be set as BERTH_ROLLOUT_<NAME>, for example BERTH_ROLLOUT_SECRET
(which keeps the secret out of the process list); flags override the environment.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{msg: err.Error(), shown: true}
	}
	if fs.NArg() > 0 {
		return nil, usagef("rollout takes no arguments: %v", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := "BERTH_ROLLOUT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, usagef("%v", err)
	}
	if len(c.Secrets) == 0 {
		return nil, usagef("rollout needs --secret (or BERTH_ROLLOUT_SECRET): deliveries are only acted on when signed")
	}
	for i, s := range c.Secrets {
		if err := notify.CheckSecret(s); err != nil {
			return nil, usagef("secret %d: %v", i+1, err)
		}
	}
	if c.Tolerance <= 0 {
		return nil, usagef("--tolerance must be positive")
	}
	if c.DockerHost != "" && !strings.HasPrefix(c.DockerHost, "unix://") {
		return nil, usagef("--docker-host %q: want unix:///path/to/docker.sock", c.DockerHost)
	}
	if _, err := c.kubernetes(); err != nil {
		return nil, err
	}
	return c, nil
}

// kubernetes reports whether to update Deployments.
func (c *rolloutConfig) kubernetes() (bool, error) {
	if c.Kubernetes == "auto" {
		return os.Getenv("KUBERNETES_SERVICE_HOST") != "", nil
	}
	on, err := strconv.ParseBool(c.Kubernetes)
	if err != nil {
		return false, usagef("--kubernetes %q: want auto, true or false", c.Kubernetes)
	}
	return on, nil
}

// rollout runs the receiver until SIGINT or SIGTERM.
func rollout(args []string) error {
	c, err := loadRolloutConfig(args, os.Stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var targets []target
	if c.DockerHost != "" {
		targets = append(targets, newSwarm(strings.TrimPrefix(c.DockerHost, "unix://")))
	}
	kubeOn, _ := c.kubernetes()
	if kubeOn {
		k, err := kubeFromEnv(c.Namespace)
		if err != nil {
			return err
		}
		targets = append(targets, k)
	}
	if len(targets) == 0 {
		return usagef("nothing to update: give --docker-host or --kubernetes=true")
	}
	rc, err := newReceiver(c, targets, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 30 * time.Second}
	log.Info("berth rollout receiving", "addr", ln.Addr().String(), "swarm", c.DockerHost, "kubernetes", kubeOn, "state", c.State)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), rolloutUpdateTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// imageEvent is what a delivery says about one tag, whatever its format.
type imageEvent struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	Action     string `json:"action"`
	Numbered   bool   `json:"numbered"`
	Newest     bool   `json:"newest"`
}

// cloudEventActions maps Berth's cloudevents types back to actions, for a
// data object without one.
var cloudEventActions = map[string]string{
	"dev.berth.image.pushed":     "push",
	"dev.berth.tag.moved":        "move",
	"dev.berth.tag.deleted":      "delete",
	"dev.berth.tag.restored":     "restore",
	"dev.berth.tag.rolledback":   "rollback",
	"dev.berth.tag.expired":      "retention",
	"dev.berth.manifest.deleted": "manifest-delete",
}

// parseDelivery reads a cloudevents delivery, a distribution envelope or a
// Harbor event. Only cloudevents say whether a tag is a version and the
// newest; for the others a tag that reads as a version counts as numbered
// and as newest, and the comparison with what was applied decides.
func parseDelivery(body []byte) ([]imageEvent, error) {
	var doc struct {
		SpecVersion string          `json:"specversion"`
		Type        string          `json:"type"`
		Data        json.RawMessage `json:"data"`
		Events      *[]struct {
			Action string `json:"action"`
			Target struct {
				Repository string `json:"repository"`
				Digest     string `json:"digest"`
				Tag        string `json:"tag"`
			} `json:"target"`
			Request struct {
				Host string `json:"host"`
			} `json:"request"`
		} `json:"events"`
		EventData *struct {
			Resources []struct {
				Digest      string `json:"digest"`
				Tag         string `json:"tag"`
				ResourceURL string `json:"resource_url"`
			} `json:"resources"`
			Repository struct {
				RepoFullName string `json:"repo_full_name"`
			} `json:"repository"`
		} `json:"event_data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	versions := oci.DefaultVersioning()
	numbered := func(tag string) bool { _, ok := versions.Parse(tag); return ok }
	switch {
	case doc.SpecVersion != "":
		var e imageEvent
		if err := json.Unmarshal(doc.Data, &e); err != nil {
			return nil, fmt.Errorf("cloudevent data: %w", err)
		}
		if e.Action == "" {
			e.Action = cloudEventActions[doc.Type]
		}
		return []imageEvent{e}, nil
	case doc.Events != nil:
		var es []imageEvent
		for _, d := range *doc.Events {
			es = append(es, imageEvent{
				Registry: d.Request.Host, Repository: d.Target.Repository, Tag: d.Target.Tag,
				Digest: d.Target.Digest, Action: d.Action, Numbered: numbered(d.Target.Tag), Newest: true,
			})
		}
		return es, nil
	case doc.EventData != nil:
		action := strings.ToLower(doc.Type)
		switch doc.Type {
		case "PUSH_ARTIFACT":
			action = "push"
		case "DELETE_ARTIFACT":
			action = "delete"
		}
		repo := doc.EventData.Repository.RepoFullName
		var es []imageEvent
		for _, r := range doc.EventData.Resources {
			// resource_url is <registry host>/<repo>:<tag>.
			host, ok := strings.CutSuffix(r.ResourceURL, "/"+repo+":"+r.Tag)
			if !ok {
				host, _, _ = strings.Cut(r.ResourceURL, "/")
			}
			es = append(es, imageEvent{
				Registry: host, Repository: repo, Tag: r.Tag, Digest: r.Digest,
				Action: action, Numbered: numbered(r.Tag), Newest: true,
			})
		}
		return es, nil
	}
	return nil, errors.New("neither a cloudevent, a distribution envelope nor a Harbor event")
}

// applied is the newest version acted on in a repository.
type applied struct {
	Tag    string    `json:"tag"`
	Digest string    `json:"digest"`
	Time   time.Time `json:"time"`
}

// rolloutState is what the receiver remembers across restarts.
type rolloutState struct {
	Seen    map[string]time.Time `json:"seen"`    // delivery ids handled, and when
	Applied map[string]applied   `json:"applied"` // per repository
}

func loadState(path string) (rolloutState, error) {
	s := rolloutState{Seen: map[string]time.Time{}, Applied: map[string]applied{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if s.Seen == nil {
		s.Seen = map[string]time.Time{}
	}
	if s.Applied == nil {
		s.Applied = map[string]applied{}
	}
	return s, nil
}

// saveState replaces the file atomically: a crash leaves the old state or
// the new one, never half of either.
func saveState(path string, s rolloutState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// decide says why an event moves nothing, or "" if it should.
func decide(e imageEvent, last applied, had bool) string {
	switch e.Action {
	case "push", "rollback", "restore":
	default:
		return "action " + strconv.Quote(e.Action) + " puts no new image in place"
	}
	switch {
	case e.Tag == "":
		return "no tag"
	case !e.Numbered:
		return "tag " + e.Tag + " is not a version"
	case !e.Newest:
		return "tag " + e.Tag + " is not the repository's newest version"
	case !had:
		return ""
	}
	versions := oci.DefaultVersioning()
	v, ok := versions.Parse(e.Tag)
	lv, lok := versions.Parse(last.Tag)
	// A tag numbered under another ordering than integer/semver cannot be
	// compared here; the registry's newest flag is then all there is.
	if ok && lok && oci.Compare(v, lv) <= 0 {
		return "version " + e.Tag + " is not newer than " + last.Tag + ", applied already"
	}
	return ""
}

// updated is one workload moved to an image.
type updated struct {
	Kind      string `json:"kind"` // swarm-service or deployment
	Name      string `json:"name"` // a service's name, or namespace/name
	Container string `json:"container,omitempty"`
	From      string `json:"from"`
	Image     string `json:"image"`
}

// A target runs images: it moves what follows repo to image.
type target interface {
	update(ctx context.Context, repo, image string) ([]updated, error)
}

// receiver is the HTTP handler of `berth rollout`.
type receiver struct {
	secrets      []string
	tolerance    time.Duration
	registryHost string
	targets      []target
	statePath    string
	log          *slog.Logger
	now          func() time.Time

	mu    sync.Mutex // one delivery at a time, so versions compare in order
	state rolloutState
}

func newReceiver(c *rolloutConfig, targets []target, log *slog.Logger) (*receiver, error) {
	st, err := loadState(c.State)
	if err != nil {
		return nil, err
	}
	return &receiver{
		secrets: c.Secrets, tolerance: c.Tolerance, registryHost: c.RegistryHost,
		targets: targets, statePath: c.State, log: log, now: time.Now, state: st,
	}, nil
}

// rolloutResult is the answer to a delivery.
type rolloutResult struct {
	ID        string        `json:"id,omitempty"`
	Duplicate bool          `json:"duplicate,omitempty"` // seen before: nothing done
	Events    []eventResult `json:"events,omitempty"`
	Error     string        `json:"error,omitempty"`
}

type eventResult struct {
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Digest     string    `json:"digest"`
	Action     string    `json:"action"`
	Image      string    `json:"image,omitempty"`
	Ignored    string    `json:"ignored,omitempty"` // why nothing was done
	Updated    []updated `json:"updated"`
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		io.WriteString(w, "ok\n")
		return
	}
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, rolloutResult{Error: "POST a webhook delivery"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDeliveryBytes))
	if err != nil {
		answer(w, http.StatusRequestEntityTooLarge, rolloutResult{Error: err.Error()})
		return
	}
	if err := notify.Verify(r.Header, body, rc.secrets, rc.now(), rc.tolerance); err != nil {
		rc.log.Warn("refused a delivery", "from", r.RemoteAddr, "error", err)
		answer(w, http.StatusUnauthorized, rolloutResult{Error: err.Error()})
		return
	}
	id := r.Header.Get(notify.HeaderID)
	res := rolloutResult{ID: id}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if _, ok := rc.state.Seen[id]; ok {
		res.Duplicate = true
		rc.log.Info("delivery seen before", "id", id)
		answer(w, http.StatusOK, res)
		return
	}
	events, err := parseDelivery(body)
	if err != nil {
		answer(w, http.StatusBadRequest, rolloutResult{ID: id, Error: err.Error()})
		return
	}
	// An update, once started, is finished even if the sender hangs up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), rolloutUpdateTimeout)
	defer cancel()
	var errs []error
	next := map[string]applied{}
	for _, e := range events {
		er, err := rc.handle(ctx, e, next)
		res.Events = append(res.Events, er)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		// Not recorded as seen: the sender retries, and what was updated
		// already is skipped then, its image being in place.
		res.Error = err.Error()
		rc.log.Error("rollout failed", "id", id, "error", err)
		answer(w, http.StatusInternalServerError, res)
		return
	}
	now := rc.now()
	st := rolloutState{Seen: map[string]time.Time{id: now}, Applied: map[string]applied{}}
	for k, t := range rc.state.Seen {
		// Deliveries older than this are refused as stale anyway; the margin
		// covers a sender retrying for days with fresh timestamps.
		if now.Sub(t) < seenRetention {
			st.Seen[k] = t
		}
	}
	for k, a := range rc.state.Applied {
		st.Applied[k] = a
	}
	for k, a := range next {
		a.Time = now
		st.Applied[k] = a
	}
	if err := saveState(rc.statePath, st); err != nil {
		res.Error = "saving state: " + err.Error()
		rc.log.Error("saving state", "error", err)
		answer(w, http.StatusInternalServerError, res)
		return
	}
	rc.state = st
	answer(w, http.StatusOK, res)
}

// handle acts on one event; next collects the versions applied, so that a
// later event of the same delivery compares with them.
func (rc *receiver) handle(ctx context.Context, e imageEvent, next map[string]applied) (eventResult, error) {
	er := eventResult{Repository: e.Repository, Tag: e.Tag, Digest: e.Digest, Action: e.Action, Updated: []updated{}}
	last, had := next[e.Repository]
	if !had {
		last, had = rc.state.Applied[e.Repository]
	}
	if er.Ignored = decide(e, last, had); er.Ignored != "" {
		rc.log.Info("ignored", "repository", e.Repository, "tag", e.Tag, "action", e.Action, "why", er.Ignored)
		return er, nil
	}
	host := rc.registryHost
	if host == "" {
		host = e.Registry
	}
	if err := checkImage(host, e); err != nil {
		er.Ignored = err.Error()
		return er, nil
	}
	er.Image = host + "/" + e.Repository + ":" + e.Tag + "@" + e.Digest
	var errs []error
	for _, t := range rc.targets {
		ups, err := t.update(ctx, e.Repository, er.Image)
		er.Updated = append(er.Updated, ups...)
		errs = append(errs, err)
	}
	for _, u := range er.Updated {
		rc.log.Info("updated", "kind", u.Kind, "name", u.Name, "from", u.From, "image", u.Image)
	}
	if err := errors.Join(errs...); err != nil {
		return er, err
	}
	next[e.Repository] = applied{Tag: e.Tag, Digest: e.Digest}
	return er, nil
}

// checkImage refuses an event that would make an unusable image reference.
func checkImage(host string, e imageEvent) error {
	if host == "" || strings.ContainsAny(host, "/@ ") {
		return fmt.Errorf("no registry host to pull from (%q); give --registry-host", host)
	}
	if oci.ValidateName(e.Repository) != nil {
		return fmt.Errorf("invalid repository %q", e.Repository)
	}
	if oci.ValidateTag(e.Tag) != nil {
		return fmt.Errorf("invalid tag %q", e.Tag)
	}
	if _, err := oci.ParseDigest(e.Digest); err != nil {
		return fmt.Errorf("invalid digest %q", e.Digest)
	}
	return nil
}

func answer(w http.ResponseWriter, status int, res rolloutResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(res)
}

// swarm updates Docker Swarm services through the Engine API.
type swarm struct {
	http *http.Client
}

func newSwarm(socket string) *swarm {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &swarm{http: &http.Client{Transport: tr}}
}

// do calls the Engine API. Paths carry no API version: the engine then
// speaks its own, so a service spec read and written back loses no field
// that an older version would not know.
func (s *swarm) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return readAnswer("docker", req, s.http, out)
}

// readAnswer sends req for the API named and decodes a 2xx answer into out
// (if not nil); any other status is an error with the answer's message,
// which the Engine API and the Kubernetes API server both put in "message".
func readAnswer(api string, req *http.Request, client *http.Client, out any) error {
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Message string }
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return fmt.Errorf("%s %s %s: %s: %s", api, req.Method, req.URL.EscapedPath(), resp.Status, e.Message)
	}
	if out == nil {
		return nil
	}
	d := json.NewDecoder(resp.Body)
	d.UseNumber() // a swarm spec goes back as it came: no int64 through float64
	return d.Decode(out)
}

// swarmService is a service as far as an update touches it: the spec stays
// a tree of JSON values, so fields this code does not know go back intact.
type swarmService struct {
	ID      string
	Version struct{ Index uint64 }
	Spec    map[string]any
}

func (s *swarm) update(ctx context.Context, repo, image string) ([]updated, error) {
	filters, _ := json.Marshal(map[string]map[string]bool{"label": {swarmFollowLabel + "=" + repo: true}})
	var list []swarmService
	if err := s.do(ctx, http.MethodGet, "/services?filters="+url.QueryEscape(string(filters)), nil, &list); err != nil {
		return nil, err
	}
	var ups []updated
	var errs []error
	for _, svc := range list {
		u, err := s.updateService(ctx, svc.ID, image)
		if err != nil {
			errs = append(errs, err)
		} else if u != nil {
			ups = append(ups, *u)
		}
	}
	return ups, errors.Join(errs...)
}

// updateService sets a service's image; nil if it has it already. The
// version makes the update a compare-and-swap; if another update came
// between the read and the write, it reads again.
func (s *swarm) updateService(ctx context.Context, id, image string) (*updated, error) {
	for attempt := 1; ; attempt++ {
		var svc swarmService
		if err := s.do(ctx, http.MethodGet, "/services/"+url.PathEscape(id), nil, &svc); err != nil {
			return nil, err
		}
		name, _ := svc.Spec["Name"].(string)
		tt, _ := svc.Spec["TaskTemplate"].(map[string]any)
		cs, _ := tt["ContainerSpec"].(map[string]any)
		if cs == nil {
			return nil, fmt.Errorf("swarm service %s runs no container", name)
		}
		from, _ := cs["Image"].(string)
		if !upgrade(from, image) {
			return nil, nil
		}
		cs["Image"] = image
		path := "/services/" + url.PathEscape(id) + "/update?version=" + strconv.FormatUint(svc.Version.Index, 10)
		err := s.do(ctx, http.MethodPost, path, svc.Spec, nil)
		if err == nil {
			return &updated{Kind: "swarm-service", Name: name, From: from, Image: image}, nil
		}
		if !strings.Contains(err.Error(), "out of sequence") || attempt == 3 {
			return nil, fmt.Errorf("swarm service %s: %w", name, err)
		}
	}
}

// upgrade reports whether a workload running the image from should move
// to image: not if it runs it already, nor if it runs a newer version of
// the repository than image's, whatever the state file remembers (it may
// be new, or the event old: a redelivery, a format without "newest").
func upgrade(from, image string) bool {
	if from == image {
		return false
	}
	v := oci.DefaultVersioning()
	cur, okCur := v.Parse(imageTag(from))
	next, okNext := v.Parse(imageTag(image))
	return !okCur || !okNext || oci.Compare(next, cur) > 0
}

// imageTag is the tag of an image reference (host/repo:tag@digest), or "".
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		return ref[i+1:]
	}
	return ""
}

// kube updates Kubernetes Deployments through the API server.
type kube struct {
	base      string // https://host:port
	tokenFile string
	namespace string // "" for all
	http      *http.Client
}

// kubeFromEnv is the client of a pod: the API server from the environment
// Kubernetes sets, the token and CA of the mounted service account.
func kubeFromEnv(namespace string) (*kube, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("--kubernetes: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a pod?)")
	}
	return newKube("https://"+net.JoinHostPort(host, port), kubeServiceAccount, namespace)
}

func newKube(base, saDir, namespace string) (*kube, error) {
	ca, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("kubernetes CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("kubernetes CA: no certificate in %s", filepath.Join(saDir, "ca.crt"))
	}
	k := &kube{base: base, tokenFile: filepath.Join(saDir, "token"), namespace: namespace}
	if _, err := k.token(); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	k.http = &http.Client{Transport: tr}
	return k, nil
}

// token is read for every request: the kubelet rotates a projected
// service-account token in place before it expires.
func (k *kube) token() (string, error) {
	b, err := os.ReadFile(k.tokenFile)
	if err != nil {
		return "", fmt.Errorf("kubernetes token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (k *kube) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	tok, err := k.token()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, k.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return readAnswer("kubernetes", req, k.http, out)
}

type deployment struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Name  string `json:"name"`
					Image string `json:"image"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

func (k *kube) update(ctx context.Context, repo, image string) ([]updated, error) {
	// Annotations cannot be selected on by the API server: list and filter.
	list := "/apis/apps/v1/deployments"
	if k.namespace != "" {
		list = "/apis/apps/v1/namespaces/" + url.PathEscape(k.namespace) + "/deployments"
	}
	var ups []updated
	var errs []error
	for cont := ""; ; {
		q := url.Values{"limit": {"500"}}
		if cont != "" {
			q.Set("continue", cont)
		}
		var page struct {
			Metadata struct {
				Continue string `json:"continue"`
			} `json:"metadata"`
			Items []deployment `json:"items"`
		}
		if err := k.do(ctx, http.MethodGet, list+"?"+q.Encode(), "", nil, &page); err != nil {
			return ups, errors.Join(append(errs, err)...)
		}
		for _, d := range page.Items {
			if d.Metadata.Annotations[kubeFollowAnnot] != repo {
				continue
			}
			u, err := k.updateDeployment(ctx, d, image)
			if err != nil {
				errs = append(errs, err)
			} else if u != nil {
				ups = append(ups, *u)
			}
		}
		if cont = page.Metadata.Continue; cont == "" {
			return ups, errors.Join(errs...)
		}
	}
}

// updateDeployment patches one container's image; nil if it has it already.
func (k *kube) updateDeployment(ctx context.Context, d deployment, image string) (*updated, error) {
	name := d.Metadata.Namespace + "/" + d.Metadata.Name
	cs := d.Spec.Template.Spec.Containers
	want := d.Metadata.Annotations[kubeContainerAnnot]
	i := 0
	if want != "" {
		for i = 0; i < len(cs) && cs[i].Name != want; i++ {
		}
	}
	if i >= len(cs) {
		return nil, fmt.Errorf("deployment %s has no container %q", name, want)
	}
	if !upgrade(cs[i].Image, image) {
		return nil, nil
	}
	// A strategic merge patch merges containers by name: only this one's
	// image changes, and a rollout of the Deployment follows.
	type container struct {
		Name  string `json:"name"`
		Image string `json:"image"`
	}
	var patch struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []container `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	patch.Spec.Template.Spec.Containers = []container{{cs[i].Name, image}}
	body, _ := json.Marshal(patch)
	path := "/apis/apps/v1/namespaces/" + url.PathEscape(d.Metadata.Namespace) + "/deployments/" + url.PathEscape(d.Metadata.Name)
	if err := k.do(ctx, http.MethodPatch, path, "application/strategic-merge-patch+json", body, nil); err != nil {
		return nil, fmt.Errorf("deployment %s: %w", name, err)
	}
	return &updated{Kind: "deployment", Name: name, Container: cs[i].Name, From: cs[i].Image, Image: image}, nil
}
