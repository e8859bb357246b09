package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/notify"
)

const (
	testDigest1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testDigest2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func TestParseDelivery(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []imageEvent
	}{
		{"cloudevents", `{"specversion":"1.0","id":"evt-7","source":"https://reg.example.com:5000",
			"type":"dev.berth.tag.rolledback","subject":"team/app:3","time":"2026-11-26T03:00:00.123456789Z",
			"datacontenttype":"application/json","data":{"registry":"reg.example.com:5000","repository":"team/app",
			"tag":"3","digest":"` + testDigest1 + `","previousDigest":"` + testDigest2 + `",
			"mediaType":"application/vnd.oci.image.manifest.v1+json","size":525,"action":"rollback",
			"numbered":true,"newest":true,"actor":"admin"}}`,
			[]imageEvent{{Registry: "reg.example.com:5000", Repository: "team/app", Tag: "3", Digest: testDigest1, Action: "rollback", Numbered: true, Newest: true}}},
		{"cloudevents without data.action", `{"specversion":"1.0","id":"evt-8","type":"dev.berth.tag.deleted",
			"data":{"registry":"r","repository":"app","tag":"latest","digest":"` + testDigest1 + `","numbered":false,"newest":false}}`,
			[]imageEvent{{Registry: "r", Repository: "app", Tag: "latest", Digest: testDigest1, Action: "delete"}}},
		{"distribution", `{"events":[{"id":"evt-9","timestamp":"2026-11-26T03:00:00Z","action":"push",
			"target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":525,"digest":"` + testDigest2 + `",
			"length":525,"repository":"team/app","url":"https://reg.example.com:5000/v2/team/app/manifests/` + testDigest2 + `","tag":"v1.2.3"},
			"request":{"id":"evt-9","addr":"","host":"reg.example.com:5000","method":"PUT","useragent":"berth"},
			"actor":{"name":"ci"},"source":{"addr":"reg.example.com:5000","instanceID":"x"}},
			{"action":"push","target":{"repository":"team/app","digest":"` + testDigest1 + `","tag":"latest"},"request":{"host":"reg.example.com:5000"}},
			{"action":"delete","target":{"repository":"team/app","digest":"` + testDigest1 + `","tag":"7"},"request":{"host":"reg.example.com:5000"}}]}`,
			[]imageEvent{
				{Registry: "reg.example.com:5000", Repository: "team/app", Tag: "v1.2.3", Digest: testDigest2, Action: "push", Numbered: true, Newest: true},
				{Registry: "reg.example.com:5000", Repository: "team/app", Tag: "latest", Digest: testDigest1, Action: "push", Newest: true},
				{Registry: "reg.example.com:5000", Repository: "team/app", Tag: "7", Digest: testDigest1, Action: "delete", Numbered: true, Newest: true},
			}},
		{"harbor", `{"type":"PUSH_ARTIFACT","occur_at":1764126000,"operator":"ci",
			"event_data":{"resources":[{"digest":"` + testDigest2 + `","tag":"42","resource_url":"reg.example.com:5000/team/sub/app:42"}],
			"repository":{"date_created":1764126000,"name":"app","namespace":"team/sub","repo_full_name":"team/sub/app","repo_type":"private"}}}`,
			[]imageEvent{{Registry: "reg.example.com:5000", Repository: "team/sub/app", Tag: "42", Digest: testDigest2, Action: "push", Numbered: true, Newest: true}}},
		{"harbor delete", `{"type":"DELETE_ARTIFACT","event_data":{"resources":[{"digest":"` + testDigest2 + `","tag":"42",
			"resource_url":"reg.example.com/library/app:42"}],"repository":{"repo_full_name":"library/app"}}}`,
			[]imageEvent{{Registry: "reg.example.com", Repository: "library/app", Tag: "42", Digest: testDigest2, Action: "delete", Numbered: true, Newest: true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseDelivery([]byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
	for _, bad := range []string{`not json`, `{"hello":"world"}`, `[]`} {
		if _, err := parseDelivery([]byte(bad)); err == nil {
			t.Errorf("parseDelivery(%s): no error", bad)
		}
	}
}

func TestDecide(t *testing.T) {
	ev := func(action, tag string) imageEvent {
		return imageEvent{Repository: "app", Tag: tag, Digest: testDigest1, Action: action, Numbered: true, Newest: true}
	}
	notNewest := ev("push", "5")
	notNewest.Newest = false
	moving := ev("push", "latest")
	moving.Numbered = false
	cases := []struct {
		name string
		e    imageEvent
		last string // the tag applied before, "" for none
		want string // part of the reason to ignore, "" to act
	}{
		{"first version", ev("push", "1"), "", ""},
		{"newer", ev("push", "2"), "1", ""},
		{"rollback promoted as a newer tag", ev("rollback", "3"), "2", ""},
		{"restore of the newest", ev("restore", "4"), "3", ""},
		{"numbers, not text", ev("push", "10"), "9", ""},
		{"semver", ev("push", "v1.10.0"), "v1.9.3", ""},
		{"release above its pre-release", ev("push", "1.0.0"), "1.0.0-rc.1", ""},
		{"older", ev("push", "1"), "3", "not newer than 3"},
		{"same", ev("push", "3"), "3", "not newer than 3"},
		{"pre-release below its release", ev("push", "1.0.0-rc.2"), "1.0.0", "not newer"},
		{"semver older", ev("push", "v1.9.9"), "v1.10.0", "not newer"},
		{"not numbered", moving, "", "not a version"},
		{"not newest", notNewest, "", "not the repository's newest"},
		{"move", ev("move", "5"), "", "puts no new image"},
		{"delete", ev("delete", "5"), "", "puts no new image"},
		{"retention", ev("retention", "5"), "", "puts no new image"},
		{"no tag", ev("push", ""), "", "no tag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decide(c.e, applied{Tag: c.last}, c.last != "")
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Fatalf("decide = %q, want %q", got, c.want)
			}
		})
	}
}

// recorder is a target that remembers what it was asked to update.
type recorder struct {
	mu    sync.Mutex
	calls []string
	fail  error
}

func (r *recorder) update(_ context.Context, repo, image string) ([]updated, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, repo+" "+image)
	if r.fail != nil {
		return nil, r.fail
	}
	return []updated{{Kind: "test", Name: repo, From: "before", Image: image}}, nil
}

func (r *recorder) took() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func cloudEvent(id, action, repo, tag, digest string) []byte {
	data := map[string]any{"registry": "reg.example.com:5000", "repository": repo, "tag": tag, "digest": digest,
		"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 525, "action": action, "numbered": true, "newest": true}
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "https://reg.example.com:5000",
		"type": "dev.berth.image.pushed", "subject": repo + ":" + tag, "time": "2026-11-26T03:00:00Z",
		"datacontenttype": "application/json", "data": data})
	return b
}

// deliver POSTs a signed delivery and decodes the answer.
func deliver(t *testing.T, url, id string, body []byte, ts time.Time, secrets ...string) (int, rolloutResult) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	notify.Sign(req.Header, id, ts, body, secrets)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res rolloutResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("answer of %s: %v", id, err)
	}
	return resp.StatusCode, res
}

func TestReceiver(t *testing.T) {
	secret := "whsec_" + "dGhlIHJvbGxvdXQgcmVjZWl2ZXIgdGVzdCBrZXk="
	state := filepath.Join(t.TempDir(), "state.json")
	rec := &recorder{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &rolloutConfig{Secrets: []string{"a newer secret", secret}, Tolerance: time.Minute, State: state}
	rc, err := newReceiver(cfg, []target{rec}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	now := time.Now()
	image2 := "reg.example.com:5000/team/app:2@" + testDigest2
	expect := func(what string, status, wantStatus int, res rolloutResult, wantCalls ...string) {
		t.Helper()
		if status != wantStatus {
			t.Fatalf("%s: status %d, want %d: %+v", what, status, wantStatus, res)
		}
		if got := rec.took(); !reflect.DeepEqual(got, wantCalls) {
			t.Fatalf("%s: updates %q, want %q", what, got, wantCalls)
		}
	}

	ev2 := cloudEvent("evt-2", "push", "team/app", "2", testDigest2)
	status, res := deliver(t, srv.URL, "evt-2", ev2, now, "not the secret")
	expect("wrong secret", status, 401, res)
	status, res = deliver(t, srv.URL, "evt-2", ev2, now.Add(-2*time.Minute), secret)
	expect("stale", status, 401, res)
	resp, err := http.Post(srv.URL, "application/cloudevents+json", bytes.NewReader(ev2))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect("unsigned", resp.StatusCode, 401, rolloutResult{})

	status, res = deliver(t, srv.URL, "evt-2", ev2, now, secret)
	expect("push of 2", status, 200, res, "team/app "+image2)
	if len(res.Events) != 1 || res.Events[0].Image != image2 || len(res.Events[0].Updated) != 1 {
		t.Fatalf("push of 2 answered %+v", res)
	}

	status, res = deliver(t, srv.URL, "evt-2", ev2, now, secret)
	expect("replay", status, 200, res)
	if !res.Duplicate {
		t.Fatalf("replay answered %+v, want duplicate", res)
	}

	status, res = deliver(t, srv.URL, "evt-1", cloudEvent("evt-1", "push", "team/app", "1", testDigest1), now, secret)
	expect("older", status, 200, res)
	if len(res.Events) != 1 || !strings.Contains(res.Events[0].Ignored, "not newer than 2") {
		t.Fatalf("older version answered %+v", res)
	}

	// A failed update answers 500 and is not remembered, so the retry acts.
	rec.fail = errors.New("engine down")
	ev3 := cloudEvent("evt-3", "rollback", "team/app", "3", testDigest1)
	image3 := "reg.example.com:5000/team/app:3@" + testDigest1
	status, res = deliver(t, srv.URL, "evt-3", ev3, now, secret)
	expect("failing update", status, 500, res, "team/app "+image3)
	if !strings.Contains(res.Error, "engine down") {
		t.Fatalf("failing update answered %+v", res)
	}
	rec.fail = nil
	status, res = deliver(t, srv.URL, "evt-3", ev3, now, secret)
	expect("retry", status, 200, res, "team/app "+image3)

	// The state survives a restart, and was replaced whole.
	rc2, err := newReceiver(cfg, []target{rec}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(rc2)
	defer srv2.Close()
	status, res = deliver(t, srv2.URL, "evt-2", ev2, now, secret)
	expect("replay after a restart", status, 200, res)
	if !res.Duplicate {
		t.Fatalf("replay after a restart answered %+v", res)
	}
	status, res = deliver(t, srv2.URL, "evt-2b", cloudEvent("evt-2b", "push", "team/app", "2", testDigest2), now, secret)
	expect("older after a restart", status, 200, res)
	if len(res.Events) != 1 || !strings.Contains(res.Events[0].Ignored, "not newer than 3") {
		t.Fatalf("older after a restart answered %+v", res)
	}
	entries, _ := os.ReadDir(filepath.Dir(state))
	if len(entries) != 1 {
		t.Fatalf("state directory holds %v, want only the state file", entries)
	}
	st, err := loadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if a := st.Applied["team/app"]; a.Tag != "3" || a.Digest != testDigest1 {
		t.Fatalf("state applied %+v", st.Applied)
	}

	if resp, err = http.Get(srv.URL); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /: %v %v, want 405", resp, err)
	}
	resp.Body.Close()
}

// apiServer plays the Kubernetes API server over TLS for the request
// shaping of kube: it serves pages of Deployments and records PATCHes.
type apiServer struct {
	t       *testing.T
	srv     *httptest.Server
	pages   map[string]string // continue token → page JSON
	mu      sync.Mutex
	patches []string // method path content-type authorization body
	lists   []string
}

func newAPIServer(t *testing.T, pages map[string]string) *apiServer {
	a := &apiServer{t: t, pages: pages}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			a.lists = append(a.lists, r.Header.Get("Authorization")+" "+r.URL.Path+"?"+r.URL.RawQuery)
			page, ok := a.pages[r.URL.Query().Get("continue")]
			if !ok {
				http.Error(w, `{"kind":"Status","message":"no such page"}`, http.StatusGone)
				return
			}
			io.WriteString(w, page)
		case http.MethodPatch:
			b, _ := io.ReadAll(r.Body)
			a.patches = append(a.patches, strings.Join([]string{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), string(b)}, " "))
			if strings.Contains(r.URL.Path, "forbidden") {
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"kind":"Status","message":"deployments.apps \"forbidden\" is forbidden: User cannot patch"}`)
				return
			}
			io.WriteString(w, `{}`)
		default:
			http.Error(w, "unexpected", http.StatusMethodNotAllowed)
		}
	}))
	a.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below is expected
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	return a
}

// serviceAccount writes what a pod has mounted: the token and the CA of the server.
func (a *apiServer) serviceAccount(token string) string {
	dir := a.t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o644); err != nil {
		a.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		a.t.Fatal(err)
	}
	return dir
}

func deploymentJSON(ns, name string, annotations map[string]string, containers ...string) string {
	var cs []map[string]string
	for _, c := range containers {
		n, img, _ := strings.Cut(c, "=")
		cs = append(cs, map[string]string{"name": n, "image": img})
	}
	b, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"name": name, "namespace": ns, "annotations": annotations},
		"spec":     map[string]any{"template": map[string]any{"spec": map[string]any{"containers": cs}}},
	})
	return string(b)
}

func TestKubernetesPatch(t *testing.T) {
	image := "reg.example.com:5000/team/app:2@" + testDigest2
	follow := map[string]string{"berth.dev/follow": "team/app"}
	pages := map[string]string{
		"": `{"kind":"DeploymentList","metadata":{"continue":"page2"},"items":[` +
			deploymentJSON("web", "front", follow, "app=reg.example.com:5000/team/app:1@"+testDigest1, "sidecar=envoy:1") + `,` +
			deploymentJSON("web", "other", map[string]string{"berth.dev/follow": "team/other"}, "app=x:1") + `,` +
			deploymentJSON("web", "plain", nil, "app=x:1") + `]}`,
		"page2": `{"kind":"DeploymentList","metadata":{},"items":[` +
			deploymentJSON("jobs", "worker", map[string]string{"berth.dev/follow": "team/app", "berth.dev/container": "work"}, "init=busybox", "work=old") + `,` +
			deploymentJSON("jobs", "current", follow, "app="+image) + `]}`,
	}
	a := newAPIServer(t, pages)
	sa := a.serviceAccount("token-1")
	k, err := newKube(a.srv.URL, sa, "")
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet rotates the token file; the next request uses the new one.
	if err := os.WriteFile(filepath.Join(sa, "token"), []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	ups, err := k.update(context.Background(), "team/app", image)
	if err != nil {
		t.Fatal(err)
	}
	wantLists := []string{
		"Bearer token-2 /apis/apps/v1/deployments?limit=500",
		"Bearer token-2 /apis/apps/v1/deployments?continue=page2&limit=500",
	}
	if !reflect.DeepEqual(a.lists, wantLists) {
		t.Errorf("lists:\n%q\nwant\n%q", a.lists, wantLists)
	}
	patch := func(ns, name, container string) string {
		return "PATCH /apis/apps/v1/namespaces/" + ns + "/deployments/" + name + " application/strategic-merge-patch+json Bearer token-2 " +
			`{"spec":{"template":{"spec":{"containers":[{"name":"` + container + `","image":"` + image + `"}]}}}}`
	}
	if want := []string{patch("web", "front", "app"), patch("jobs", "worker", "work")}; !reflect.DeepEqual(a.patches, want) {
		t.Errorf("patches:\n%s\nwant\n%s", strings.Join(a.patches, "\n"), strings.Join(want, "\n"))
	}
	wantUps := []updated{
		{Kind: "deployment", Name: "web/front", Container: "app", From: "reg.example.com:5000/team/app:1@" + testDigest1, Image: image},
		{Kind: "deployment", Name: "jobs/worker", Container: "work", From: "old", Image: image},
	}
	if !reflect.DeepEqual(ups, wantUps) {
		t.Errorf("updated %+v\nwant %+v", ups, wantUps)
	}
}

func TestKubernetesNamespaceAndErrors(t *testing.T) {
	image := "reg.example.com/app:2@" + testDigest2
	follow := map[string]string{"berth.dev/follow": "app"}
	a := newAPIServer(t, map[string]string{"": `{"items":[` +
		deploymentJSON("prod", "forbidden", follow, "app=old") + `,` +
		deploymentJSON("prod", "nocontainer", map[string]string{"berth.dev/follow": "app", "berth.dev/container": "missing"}, "app=old") + `,` +
		deploymentJSON("prod", "ok", follow, "app=old") + `]}`})
	k, err := newKube(a.srv.URL, a.serviceAccount("tok"), "prod")
	if err != nil {
		t.Fatal(err)
	}
	ups, err := k.update(context.Background(), "app", image)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden: deployments.apps \"forbidden\" is forbidden") ||
		!strings.Contains(err.Error(), `deployment prod/nocontainer has no container "missing"`) {
		t.Fatalf("error %v, want the 403 and the missing container", err)
	}
	if len(ups) != 1 || ups[0].Name != "prod/ok" {
		t.Fatalf("updated %+v, want prod/ok despite the others failing", ups)
	}
	if want := []string{"Bearer tok /apis/apps/v1/namespaces/prod/deployments?limit=500"}; !reflect.DeepEqual(a.lists, want) {
		t.Fatalf("lists %q, want %q", a.lists, want)
	}

	// A server whose certificate the mounted CA did not sign is refused.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sa := a.serviceAccount("tok")
	if err := os.WriteFile(filepath.Join(sa, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	k2, err := newKube(a.srv.URL, sa, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.update(context.Background(), "app", image); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("update through a certificate of another CA: %v", err)
	}
}

func TestRolloutConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("BERTH_ROLLOUT_SECRET", "whsec_dGhlIHJvbGxvdXQgcmVjZWl2ZXIgdGVzdCBrZXk=, old secret")
	t.Setenv("BERTH_ROLLOUT_REGISTRY_HOST", "reg.example.com")
	t.Setenv("BERTH_ROLLOUT_TOLERANCE", "1m")
	c, err := loadRolloutConfig([]string{"--tolerance", "30s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := &rolloutConfig{
		Addr: "127.0.0.1:5080", Secrets: []string{"whsec_dGhlIHJvbGxvdXQgcmVjZWl2ZXIgdGVzdCBrZXk=", "old secret"},
		Tolerance: 30 * time.Second, RegistryHost: "reg.example.com", DockerHost: "unix:///var/run/docker.sock",
		Kubernetes: "auto", State: "./rollout-state.json",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("config %+v\nwant %+v", c, want)
	}
	c, err = loadRolloutConfig([]string{"--secret", "a", "--secret", "b,c"}, io.Discard)
	if err != nil || !reflect.DeepEqual(c.Secrets, []string{"a", "b", "c"}) {
		t.Fatalf("--secret a --secret b,c: %v %v", c, err)
	}

	t.Setenv("BERTH_ROLLOUT_SECRET", "")
	for _, args := range [][]string{
		nil,                                      // no secret
		{"--secret", "whsec_%%%"},                // not base64
		{"--secret", "s", "--kubernetes", "yes"}, // not a boolean
		{"--secret", "s", "--docker-host", "tcp://127.0.0.1:2375"},
		{"--secret", "s", "extra"},
	} {
		var ue *usageError
		if _, err := loadRolloutConfig(args, io.Discard); !errors.As(err, &ue) {
			t.Errorf("loadRolloutConfig(%q): %v, want a usage error", args, err)
		}
	}
}

// The Swarm client is tested end to end against the real engine in
// test/rollout_test.go; here only its reading of the engine's errors.
func TestSwarmError(t *testing.T) {
	dir, err := os.MkdirTemp("", "sock") // short: unix socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "d.sock")
	if _, err := newSwarm(sock).update(context.Background(), "app", "x"); err == nil || !strings.Contains(err.Error(), "docker:") {
		t.Fatalf("update through a missing socket: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"message":"This node is not a swarm manager."}`)
	}))
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	_, err = newSwarm(sock).update(context.Background(), "app", "x")
	if err == nil || err.Error() != "docker GET /services: 503 Service Unavailable: This node is not a swarm manager." {
		t.Fatalf("update on a node outside a swarm: %v", err)
	}
}

// TestUpgrade: a workload moves only to a newer version than the one it
// runs, whatever the receiver's state file says.
func TestUpgrade(t *testing.T) {
	const d1, d2 = "@sha256:1111", "@sha256:2222"
	for _, tc := range []struct {
		from, image string
		want        bool
	}{
		{"reg/app:1" + d1, "reg/app:2" + d2, true},
		{"reg/app:2" + d2, "reg/app:1" + d1, false}, // a downgrade
		{"reg/app:2" + d2, "reg/app:2" + d2, false}, // already there
		{"reg/app:10", "reg/app:9" + d1, false},     // numbers, not text
		{"reg/app:v1.9.0", "reg/app:v1.10.0" + d2, true},
		{"reg:5000/app:latest", "reg:5000/app:3" + d1, true},  // not a version: moves
		{"reg:5000/app" + d1, "reg:5000/app:3" + d2, true},    // no tag
		{"reg:5000/app:3" + d1, "reg:5000/app:3" + d2, false}, // same version, other digest: not newer
	} {
		if got := upgrade(tc.from, tc.image); got != tc.want {
			t.Errorf("upgrade(%q, %q) = %v, want %v", tc.from, tc.image, got, tc.want)
		}
	}
}
