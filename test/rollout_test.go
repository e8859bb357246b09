package test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/notify"
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
// run it.
const rolloutTimeout = 2 * time.Minute

// TestRolloutSwarm runs `berth rollout` against the local Docker engine as a
// single-node swarm: a service following a repository moves to a newer
// version and to a promoted rollback, pulling from Berth, and is left alone
// by an older version, a replayed delivery and a bad signature.
func TestRolloutSwarm(t *testing.T) {
	t.Parallel()
	docker := tool{path: systemBin(t, "docker")}
	expectInsecureLoopback(t, docker)
	s := sharedServer(t)
	cli := berthCLI(t, s)
	swarmManager(t, docker)

	// Versions 1 and 2 of a program, pushed to Berth and removed from the
	// engine, so that Swarm has to pull them.
	repo := uniqueRepo(t, "rollout")
	t.Cleanup(func() { removeImages(docker, s.ref(repo, "")) })
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "go.mod"), []byte("module version\n\ngo 1.22\n"))
	writeFile(t, filepath.Join(src, "main.go"), []byte(versionSource))
	digests := map[string]string{}
	for _, v := range []string{"1", "2"} {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		err := goTool(ctx, src, nil, "build", "-trimpath", "-ldflags", "-X main.version="+v, "-o", "app", ".")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
		writeFile(t, rootfs, tarFiles(t, map[string][]byte{"app": readFile(t, filepath.Join(src, "app"))}))
		ref := s.ref(repo, ":"+v)
		docker.run(t, "import", "--change", `ENTRYPOINT ["/app"]`, rootfs, ref)
		out := docker.run(t, "push", ref)
		m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("docker push printed no digest:\n%s", out)
		}
		digests[v] = string(m[1])
		docker.run(t, "rmi", ref)
	}
	// The registry's own promote rollback: tag 3 is version 1's manifest.
	var rb struct{ Tag, Digest string }
	runJSON(t, cli, &rb, "rollback", repo, "--to", "1")
	if rb.Tag != "3" || rb.Digest != digests["1"] {
		t.Fatalf("berth rollback --to 1: %+v, want tag 3 at %s", rb, digests["1"])
	}

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
	start := time.Now()
	docker.run(t, "service", "create", "--detach", "--name", svc, "--label", "berth.follow="+repo,
		"--stop-grace-period", "2s", s.ref(repo, ":1"))
	image1 := s.ref(repo, ":1@"+digests["1"])
	waitTask(t, docker, svc, image1, "version 1")
	t.Logf("service %s running %s after %s", svc, image1, time.Since(start).Round(time.Millisecond))

	secret := "whsec_" + base64.StdEncoding.EncodeToString(randBytes(t, 32))
	state := filepath.Join(t.TempDir(), "rollout-state.json")
	rcv := startRollout(t, secret, state)
	post := func(id, action, tag, digest, signWith string, ts time.Time) (int, rolloutAnswer) {
		t.Helper()
		body := berthCloudEvent(s, id, action, repo, tag, digest)
		status, ans := rcv.post(t, id, body, signWith, ts)
		t.Logf("delivery %s (%s %s:%s): %d %+v", id, action, repo, tag, status, ans)
		return status, ans
	}
	expectUpdated := func(what string, status int, ans rolloutAnswer, image string) {
		t.Helper()
		if status != http.StatusOK || len(ans.Events) != 1 || len(ans.Events[0].Updated) != 1 {
			t.Fatalf("%s: %d %+v, want 200 updating one service", what, status, ans)
		}
		if u := ans.Events[0].Updated[0]; u.Kind != "swarm-service" || u.Name != svc || u.Image != image {
			t.Fatalf("%s updated %+v, want service %s to %s", what, u, svc, image)
		}
	}
	id := func(n string) string { return "evt-" + strings.TrimPrefix(sanitize(repo), "e2e-") + "-" + n }

	// Version 2 is pushed: the service moves to it.
	start = time.Now()
	image2 := s.ref(repo, ":2@"+digests["2"])
	status, ans := post(id("2"), "push", "2", digests["2"], secret, time.Now())
	expectUpdated("push of 2", status, ans, image2)
	waitTask(t, docker, svc, image2, "version 2")
	t.Logf("push of 2 running after %s", time.Since(start).Round(time.Millisecond))

	// Version 1 promoted as 3: the service goes back to version 1's image.
	start = time.Now()
	image3 := s.ref(repo, ":3@"+digests["1"])
	status, ans = post(id("3"), "rollback", "3", digests["1"], secret, time.Now())
	expectUpdated("rollback as 3", status, ans, image3)
	waitTask(t, docker, svc, image3, "version 1")
	t.Logf("rollback as 3 running after %s", time.Since(start).Round(time.Millisecond))
	before := serviceState(t, docker, svc)

	// An older version, even one claiming to be the newest, is not a downgrade the receiver makes.
	status, ans = post(id("1"), "push", "1", digests["1"], secret, time.Now())
	if status != http.StatusOK || len(ans.Events) != 1 || !strings.Contains(ans.Events[0].Ignored, "not newer than 3") {
		t.Fatalf("older version: %d %+v, want 200 ignored as not newer than 3", status, ans)
	}
	expectServiceState(t, docker, svc, before, "after an older version")

	// A replay of a delivery handled before, after a restart of the receiver:
	// the state file remembers it.
	rcv.restart(t)
	status, ans = post(id("2"), "push", "2", digests["2"], secret, time.Now())
	if status != http.StatusOK || !ans.Duplicate || len(ans.Events) != 0 {
		t.Fatalf("replay: %d %+v, want 200 as a duplicate", status, ans)
	}
	expectServiceState(t, docker, svc, before, "after a replay")

	// A newer version, but signed with another secret, or too long ago.
	status, ans = post(id("4"), "push", "4", digests["2"], "whsec_"+base64.StdEncoding.EncodeToString(randBytes(t, 32)), time.Now())
	if status != http.StatusUnauthorized || !strings.Contains(ans.Error, "no v1 signature") {
		t.Fatalf("bad signature: %d %+v, want 401", status, ans)
	}
	status, ans = post(id("4"), "push", "4", digests["2"], secret, time.Now().Add(-10*time.Minute))
	if status != http.StatusUnauthorized || !strings.Contains(ans.Error, "old") {
		t.Fatalf("stale delivery: %d %+v, want 401", status, ans)
	}
	expectServiceState(t, docker, svc, before, "after refused deliveries")
	rcv.stop(t)
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

// berthCloudEvent is a delivery in the cloudevents format of the webhooks
// spec, as Berth's dispatcher will send it.
func berthCloudEvent(s *server, id, action, repo, tag, digest string) []byte {
	types := map[string]string{"push": "dev.berth.image.pushed", "rollback": "dev.berth.tag.rolledback"}
	b, err := json.Marshal(map[string]any{
		"specversion": "1.0", "id": id, "source": s.URL, "type": types[action], "subject": repo + ":" + tag,
		"time": time.Now().UTC().Format(time.RFC3339Nano), "datacontenttype": "application/json",
		"data": map[string]any{
			"registry": s.Host, "repository": repo, "tag": tag, "digest": digest,
			"mediaType": mtDockerManifest, "size": 0, "action": action, "numbered": true, "newest": true, "actor": "e2e",
		},
	})
	if err != nil {
		panic(err)
	}
	return b
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

func (p *rolloutProc) restart(t *testing.T) {
	t.Helper()
	p.stop(t)
	p.start(t)
}

// post sends a delivery signed as Berth's dispatcher signs it.
func (p *rolloutProc) post(t *testing.T, id string, body []byte, secret string, ts time.Time) (int, rolloutAnswer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	notify.Sign(req.Header, id, ts, body, []string{secret})
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans rolloutAnswer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatalf("answer to %s: %v", id, err)
	}
	return resp.StatusCode, ans
}
