package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
)

// versionSource prints the version it was built with, then runs until
// stopped, as the task of a service does.
const versionSource = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

var version = "dev"

func main() {
	fmt.Println("version", version)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
}
`

// rolloutTimeout bounds the wait for Swarm to pull an image from Berth and
// run it, and for a webhook delivery, retries included.
const rolloutTimeout = 2 * time.Minute

// TestRolloutSwarm runs the chain of issue 5 on the local Docker engine as a
// single-node swarm: Berth's dispatcher sends signed cloudevents to `berth
// rollout`, which moves a service following the repository, and Swarm pulls
// the image from Berth. A push of version 2 moves the service to it; a
// rollback through the admin API (`berth rollback`), to version 1's manifest
// as tag 3. An older version, a redelivered event and deliveries signed with
// a secret the receiver does not know move nothing.
func TestRolloutSwarm(t *testing.T) {
	t.Parallel()
	if k := serverKind(); k != "berth" {
		t.Skipf("webhooks and the admin API are Berth's own; BERTH_E2E_SERVER=%s", k)
	}
	docker := tool{path: systemBin(t, "docker")}
	expectInsecureLoopback(t, docker)
	swarmManager(t, docker)

	repo := uniqueRepo(t, "rollout")
	secret := webhookSecret(t)
	statePath := filepath.Join(t.TempDir(), "rollout-state.json")
	rcv := startRollout(t, secret, statePath)
	// A Berth of its own, whose configuration file makes the receiver a
	// webhook endpoint with the same secret, for this repository's versions.
	const hook, wrongHook = "rollout", "rollout-wrong-secret"
	config := filepath.Join(t.TempDir(), "berth.yaml")
	writeFile(t, config, []byte(fmt.Sprintf(`webhooks:
  endpoints:
    - name: %s
      url: %q
      format: cloudevents
      secrets: [%q]
      repositories: [%q]
      numberedOnly: true
`, hook, rcv.url+"/", secret, repo)))
	s := startBerth(t, serverOptions{Flags: []string{"--config", config}, PublicURL: true})
	cli := berthCLI(t, s)
	// Another endpoint, made through the admin API, sends the same events to
	// the receiver signed with a secret it does not know.
	resp, body := httpDo(t, http.MethodPost, s.URL+"/admin/v1/webhooks", mustJSON(t, map[string]any{
		"name": wrongHook, "url": rcv.url + "/", "format": "cloudevents",
		"secrets": []string{webhookSecret(t)}, "repositories": []string{repo}, "numberedOnly": true,
	}), map[string]string{"Content-Type": "application/json"})
	expectStatus(t, resp, body, http.StatusOK)

	// Versions 1 and 2 of a program, as images in the engine. Each is removed
	// from the engine once pushed, so that Swarm has to pull it from Berth.
	t.Cleanup(func() { removeImages(docker, s.ref(repo, "")) })
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "go.mod"), []byte("module version\n\ngo 1.22\n"))
	writeFile(t, filepath.Join(src, "main.go"), []byte(versionSource))
	for _, v := range []string{"1", "2"} {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		err := goTool(ctx, src, nil, "build", "-trimpath", "-ldflags", "-X main.version="+v, "-o", "app", ".")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
		writeFile(t, rootfs, tarFiles(t, map[string][]byte{"app": readFile(t, filepath.Join(src, "app"))}))
		docker.run(t, "import", "--change", `ENTRYPOINT ["/app"]`, rootfs, s.ref(repo, ":"+v))
	}
	digests := map[string]string{}
	push := func(v string) {
		t.Helper()
		ref := s.ref(repo, ":"+v)
		out := docker.run(t, "push", ref)
		m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("docker push printed no digest:\n%s", out)
		}
		digests[v] = string(m[1])
		docker.run(t, "rmi", ref)
		if _, _, err := docker.exec("image", "inspect", s.ref(repo, "@"+digests[v])); err == nil {
			t.Fatalf("the engine still has %s after docker rmi %s", s.ref(repo, "@"+digests[v]), ref)
		}
	}
	delivered := func(action, tag string) func(hookDelivery) bool {
		return func(d hookDelivery) bool {
			return d.Event.Action == action && d.Event.Tag == tag && d.State == "delivered"
		}
	}

	// Version 1 is pushed before anything follows the repository: the
	// receiver acts on it, updating nothing, and records it as applied.
	start := time.Now()
	push("1")
	d := waitDelivery(t, s, hook, "push of 1 delivered", delivered("push", "1"))
	image1 := s.ref(repo, ":1@"+digests["1"])
	if ans := receiverAnswer(t, s, hook, d.ID); ans.Duplicate || len(ans.Events) != 1 ||
		ans.Events[0].Ignored != "" || ans.Events[0].Image != image1 || len(ans.Events[0].Updated) != 0 {
		t.Fatalf("push of 1: the receiver answered %+v, want %s acted on, with no service to update", ans, image1)
	}
	t.Logf("push of 1 delivered after %s", time.Since(start).Round(time.Millisecond))

	svc := "berth-e2e-" + strings.TrimPrefix(sanitize(repo), "e2e-")
	t.Cleanup(func() {
		_, _, _ = docker.exec("service", "rm", svc)
		// The service's containers go asynchronously; remove them now, so
		// that their images can go too.
		out, _, _ := docker.exec("ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+svc)
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			_, _, _ = docker.exec(append([]string{"rm", "-f"}, ids...)...)
		}
		removeImages(docker, s.ref(repo, ""))
	})
	start = time.Now()
	docker.run(t, "service", "create", "--detach", "--name", svc, "--label", "berth.follow="+repo,
		"--stop-grace-period", "2s", s.ref(repo, ":1"))
	waitTask(t, docker, svc, image1, "version 1")
	t.Logf("service %s running %s after %s", svc, image1, time.Since(start).Round(time.Millisecond))

	// Version 2 is pushed while the receiver is down, so that the engine's
	// copy is gone before the service moves to it (Swarm runs an image it has
	// by digest without pulling). The dispatcher retries; the receiver,
	// restarted with its state, moves the service.
	rcv.stop(t)
	start = time.Now()
	push("2")
	d = waitDelivery(t, s, hook, "push of 2 attempted", func(d hookDelivery) bool {
		return d.Event.Action == "push" && d.Event.Tag == "2" && d.Attempts > 0
	})
	if d.State != "pending" || d.LastStatus != 0 {
		t.Fatalf("push of 2 with the receiver down: %+v, want pending after a failed attempt", d)
	}
	rcv.start(t)
	image2 := s.ref(repo, ":2@"+digests["2"])
	waitTask(t, docker, svc, image2, "version 2")
	t.Logf("push of 2 running after %s (the receiver down at first)", time.Since(start).Round(time.Millisecond))
	push2 := waitDelivery(t, s, hook, "push of 2 delivered", delivered("push", "2"))
	expectMoved(t, "push of 2", receiverAnswer(t, s, hook, push2.ID), svc, image2)

	// Version 1 promoted as 3 by the admin API: the service goes back to
	// version 1's manifest.
	start = time.Now()
	var rb struct{ Tag, Digest string }
	runJSON(t, cli, &rb, "rollback", repo, "--to", "1")
	if rb.Tag != "3" || rb.Digest != digests["1"] {
		t.Fatalf("berth rollback --to 1: %+v, want tag 3 at %s", rb, digests["1"])
	}
	image3 := s.ref(repo, ":3@"+digests["1"])
	waitTask(t, docker, svc, image3, "version 1")
	t.Logf("rollback as 3 running after %s", time.Since(start).Round(time.Millisecond))
	d = waitDelivery(t, s, hook, "rollback as 3 delivered", delivered("rollback", "3"))
	expectMoved(t, "rollback as 3", receiverAnswer(t, s, hook, d.ID), svc, image3)
	before := serviceState(t, docker, svc)

	// An older version pushed now (version 2's manifest as tag 0) is not the
	// newest: Berth says so, and the receiver leaves the service alone.
	manifest, _, mediaType := getManifest(t, s, repo, digests["2"])
	pushManifest(t, s, repo, "0", mediaType, manifest)
	d = waitDelivery(t, s, hook, "push of 0 delivered", delivered("push", "0"))
	if !d.Event.Numbered || d.Event.Newest {
		t.Fatalf("push of 0: event %+v, want numbered and not newest", d.Event)
	}
	if ans := receiverAnswer(t, s, hook, d.ID); len(ans.Events) != 1 ||
		!strings.Contains(ans.Events[0].Ignored, "not the repository's newest version") {
		t.Fatalf("push of 0: the receiver answered %+v, want it ignored as not the newest", ans)
	}
	expectServiceState(t, docker, svc, before, "after an older version")

	// The push of 2 delivered again, by the admin API: the receiver, which
	// has restarted since it acted on it, knows the event and does nothing.
	resp, body = httpDo(t, http.MethodPost, fmt.Sprintf("%s/admin/v1/webhooks/%s/deliveries/%d/redeliver", s.URL, hook, push2.ID), nil, nil)
	expectStatus(t, resp, body, http.StatusOK)
	d = waitDelivery(t, s, hook, "push of 2 delivered again", func(d hookDelivery) bool {
		return d.ID == push2.ID && d.State == "delivered" && d.Attempts == push2.Attempts+1
	})
	if ans := receiverAnswer(t, s, hook, d.ID); !ans.Duplicate || len(ans.Events) != 0 {
		t.Fatalf("redelivered push of 2: the receiver answered %+v, want a duplicate", ans)
	}
	expectServiceState(t, docker, svc, before, "after a redelivery")

	// Every event went to the receiver once, was delivered, and is in the
	// receiver's state; what it applied last is the rollback: nothing it
	// should have acted on was ignored.
	events := map[string]string{} // action and tag → event id
	for _, d := range deliveries(t, s, hook) {
		if d.State != "delivered" {
			t.Errorf("delivery %d (%s %s) is %s, want delivered", d.ID, d.Event.Action, d.Event.Tag, d.State)
		}
		events[d.Event.Action+" "+d.Event.Tag] = d.Event.ID
	}
	if want := []string{"push 0", "push 1", "push 2", "rollback 3"}; !slices.Equal(slices.Sorted(maps.Keys(events)), want) {
		t.Fatalf("deliveries of %s: %v, want one of each of %v", hook, events, want)
	}
	var state struct {
		Seen    map[string]time.Time
		Applied map[string]struct{ Tag, Digest string }
	}
	if err := json.Unmarshal(readFile(t, statePath), &state); err != nil {
		t.Fatalf("the receiver's state: %v", err)
	}
	for what, id := range events {
		if _, ok := state.Seen[id]; !ok {
			t.Errorf("the receiver's state has not seen %s (%s)", what, id)
		}
	}
	if a := state.Applied[repo]; a.Tag != "3" || a.Digest != digests["1"] {
		t.Errorf("the receiver's state applied %+v to %s, want tag 3 at %s", a, repo, digests["1"])
	}

	// The same events signed with the other secret: the receiver refused
	// them, so none is delivered, and the dispatcher keeps retrying the
	// first (the others wait behind it, in order).
	var refused hookDelivery
	err := testserver.WaitFor(rolloutTimeout, func() error {
		wrong := deliveries(t, s, wrongHook)
		if len(wrong) != len(events) {
			t.Fatalf("webhook %s has %d deliveries, want one for each of the %d events", wrongHook, len(wrong), len(events))
		}
		for _, d := range wrong {
			if d.State == "delivered" || d.Event.ID != events[d.Event.Action+" "+d.Event.Tag] {
				t.Fatalf("webhook %s: delivery %+v, want the events of %s, none delivered", wrongHook, d, hook)
			}
			if d.Attempts > 0 {
				if full := delivery(t, s, wrongHook, d.ID); slices.ContainsFunc(full.Log, func(a hookAttempt) bool {
					return a.Status == http.StatusUnauthorized && strings.Contains(a.Response, "no v1 signature")
				}) {
					refused = full
				}
			}
		}
		if refused.ID == 0 {
			return errors.New("no delivery refused with 401")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("webhook %s: %v", wrongHook, err)
	}
	t.Logf("webhook %s: delivery %d (%s %s) refused: %d attempts, %s", wrongHook, refused.ID, refused.Event.Action,
		refused.Event.Tag, len(refused.Log), strings.TrimSpace(refused.Log[0].Response))
	expectServiceState(t, docker, svc, before, "after refused deliveries")
	rcv.stop(t)
}

// webhookSecret is a new Standard Webhooks signing secret.
func webhookSecret(t *testing.T) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(randBytes(t, 32))
}

// waitDelivery waits until a delivery of the webhook is as ok wants it.
func waitDelivery(t *testing.T, s *server, hook, what string, ok func(hookDelivery) bool) hookDelivery {
	t.Helper()
	var ds []hookDelivery
	err := testserver.WaitFor(rolloutTimeout, func() error {
		if ds = deliveries(t, s, hook); !slices.ContainsFunc(ds, ok) {
			return fmt.Errorf("no %s", what)
		}
		return nil
	})
	if err != nil {
		var lines []string
		for _, d := range ds {
			lines = append(lines, fmt.Sprintf("%d %s %s: %s after %d attempts (last status %d)",
				d.ID, d.Event.Action, d.Event.Tag, d.State, d.Attempts, d.LastStatus))
		}
		t.Fatalf("webhook %s: %v; deliveries:\n%s", hook, err, strings.Join(lines, "\n"))
	}
	return ds[slices.IndexFunc(ds, ok)]
}

// receiverAnswer is the receiver's answer to a delivery's last attempt, as
// Berth recorded it; the attempt must have been answered 200.
func receiverAnswer(t *testing.T, s *server, hook string, id int64) rolloutAnswer {
	t.Helper()
	d := delivery(t, s, hook, id)
	if len(d.Log) == 0 {
		t.Fatalf("delivery %d of %s has no attempt", id, hook)
	}
	last := d.Log[len(d.Log)-1]
	if last.Status != http.StatusOK {
		t.Fatalf("delivery %d of %s (%s %s): attempt %d answered %d: %s", id, hook, d.Event.Action, d.Event.Tag, last.Attempt, last.Status, last.Response)
	}
	var ans rolloutAnswer
	if err := json.Unmarshal([]byte(last.Response), &ans); err != nil {
		t.Fatalf("delivery %d of %s: the receiver's answer: %v\n%s", id, hook, err, last.Response)
	}
	t.Logf("delivery %d (%s %s), attempt %d of %d: %+v", id, d.Event.Action, d.Event.Tag, last.Attempt, len(d.Log), ans)
	return ans
}

// expectMoved checks that the receiver moved the service, and only it, to image.
func expectMoved(t *testing.T, what string, ans rolloutAnswer, svc, image string) {
	t.Helper()
	if ans.Duplicate || len(ans.Events) != 1 || ans.Events[0].Ignored != "" || len(ans.Events[0].Updated) != 1 {
		t.Fatalf("%s: the receiver answered %+v, want one service updated", what, ans)
	}
	if u := ans.Events[0].Updated[0]; u.Kind != "swarm-service" || u.Name != svc || u.Image != image {
		t.Fatalf("%s updated %+v, want service %s to %s", what, u, svc, image)
	}
}

// swarmManager makes the engine a swarm manager for the test: it reuses a
// swarm the engine manages already, or creates a single-node one on the
// loopback address and leaves it at the end.
func swarmManager(t *testing.T, docker tool) {
	t.Helper()
	out := strings.TrimSpace(string(docker.run(t, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")))
	switch out {
	case "active true":
		t.Log("reusing the engine's swarm")
	case "inactive false":
		start := time.Now()
		docker.run(t, "swarm", "init", "--advertise-addr", "127.0.0.1")
		t.Logf("docker swarm init in %s", time.Since(start).Round(time.Millisecond))
		t.Cleanup(func() {
			if _, errOut, err := docker.exec("swarm", "leave", "--force"); err != nil {
				t.Errorf("docker swarm leave --force: %v\n%s", err, errOut)
			}
		})
	default:
		t.Fatalf("the engine's swarm state is %q: this test needs a manager, or no swarm to create one", out)
	}
}

// waitTask waits until a task of svc with image runs and has printed want.
func waitTask(t *testing.T, docker tool, svc, image, want string) {
	t.Helper()
	deadline := time.Now().Add(rolloutTimeout)
	var last string
	for time.Now().Before(deadline) {
		out, _, err := docker.exec("service", "ps", "-q", "--filter", "desired-state=running", svc)
		if err == nil {
			for _, task := range strings.Fields(string(out)) {
				info, _, err := docker.exec("inspect", "--format", "{{.Spec.ContainerSpec.Image}} {{.Status.State}} {{.Status.ContainerStatus.ContainerID}}", task)
				if err != nil {
					continue
				}
				last = strings.TrimSpace(string(info))
				f := strings.Fields(last)
				if len(f) != 3 || f[0] != image || f[1] != "running" {
					continue
				}
				logs, errLogs, err := docker.exec("logs", f[2])
				if err == nil && strings.Contains(string(logs)+string(errLogs), want) {
					return
				}
			}
		}
		time.Sleep(500 * time.Millisecond) // poll interval, not a wait for a condition
	}
	ps, _, _ := docker.exec("service", "ps", "--no-trunc", svc)
	t.Fatalf("no task of %s running %s printed %q within %s; last task: %s\n%s", svc, image, want, rolloutTimeout, last, ps)
}

// serviceState is a service's spec version and image: an update changes the version.
func serviceState(t *testing.T, docker tool, svc string) string {
	t.Helper()
	return strings.TrimSpace(string(docker.run(t, "service", "inspect", "--format", "{{.Version.Index}} {{.Spec.TaskTemplate.ContainerSpec.Image}}", svc)))
}

func expectServiceState(t *testing.T, docker tool, svc, want, when string) {
	t.Helper()
	if got := serviceState(t, docker, svc); got != want {
		t.Fatalf("service %s %s: version and image %q, want %q unchanged", svc, when, got, want)
	}
}

// removeImages removes every image of a repository from the engine, tagged
// or only known by digest (as Swarm pulls them).
func removeImages(docker tool, repo string) {
	out, _, _ := docker.exec("image", "ls", "-q", "--no-trunc", repo)
	seen := map[string]bool{}
	for _, id := range strings.Fields(string(out)) {
		if !seen[id] {
			seen[id] = true
			_, _, _ = docker.exec("rmi", "-f", id)
		}
	}
}

// rolloutAnswer is the receiver's JSON answer, as far as the test reads it.
type rolloutAnswer struct {
	Duplicate bool   `json:"duplicate"`
	Error     string `json:"error"`
	Events    []struct {
		Image   string `json:"image"`
		Ignored string `json:"ignored"`
		Updated []struct {
			Kind, Name, From, Image string
		} `json:"updated"`
	} `json:"events"`
}

// rolloutProc is a running `berth rollout`.
type rolloutProc struct {
	url  string
	args []string
	env  []string
	logs *logBuffer
	cmd  *exec.Cmd
	done chan error
}

// startRollout runs the built berth binary's receiver on a free port, with
// the secret in the environment, as a deployment would pass it.
func startRollout(t *testing.T, secret, state string) *rolloutProc {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dockerHost := os.Getenv("DOCKER_HOST")
	if !strings.HasPrefix(dockerHost, "unix://") {
		dockerHost = "unix:///var/run/docker.sock"
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := &rolloutProc{
		url:  "http://" + addr,
		args: []string{"rollout", "--addr", addr, "--docker-host", dockerHost, "--kubernetes=false", "--state", state},
		env:  []string{"BERTH_ROLLOUT_SECRET=" + secret},
		logs: &logBuffer{},
	}
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("berth rollout logs:\n%s", p.logs.tail(100))
		}
	})
	p.start(t)
	return p
}

func (p *rolloutProc) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(berthBin(t), p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(p.cmd, p.done)
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case err := <-p.done:
			p.cmd = nil
			t.Fatalf("berth rollout exited before it was ready: %v\n%s", err, p.logs.tail(50))
		default:
		}
		if resp, err := http.Get(p.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth rollout not ready after %s\n%s", readyTimeout, p.logs.tail(50))
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not a wait for a condition
	}
}

// stop ends the receiver with SIGTERM, which must exit cleanly.
func (p *rolloutProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.cmd = nil
		if err != nil {
			t.Fatalf("berth rollout exited uncleanly after SIGTERM: %v\n%s", err, p.logs.tail(50))
		}
	case <-time.After(stopTimeout):
		t.Fatalf("berth rollout did not exit within %s of SIGTERM", stopTimeout)
	}
}
