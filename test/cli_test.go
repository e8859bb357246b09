package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
	"github.com/berthhq/berth/notify"
)

// berthCLI is the built berth binary as an admin client of s, with no
// credentials from the environment of the test.
func berthCLI(t *testing.T, s *server) tool {
	t.Helper()
	if s.kind != "berth" {
		t.Skip("the admin API is Berth's own")
	}
	return tool{path: berthBin(t), env: []string{"BERTH_URL=" + s.URL, "BERTH_USER=", "BERTH_PASSWORD="}}
}

// runJSON runs a berth command with --json and decodes what it printed into
// v, zeroed first so that nothing is left from an earlier answer.
func runJSON(t *testing.T, cli tool, v any, args ...string) {
	t.Helper()
	out := cli.run(t, append(args, "--json")...)
	reflect.ValueOf(v).Elem().SetZero()
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("berth %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// expectExit runs a berth command that must fail with the exit status and
// print want on standard error.
func expectExit(t *testing.T, cli tool, status int, want string, args ...string) {
	t.Helper()
	out, errOut, err := cli.exec(args...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != status || !strings.Contains(string(errOut), want) {
		t.Fatalf("berth %s: %v, want exit status %d printing %q\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), err, status, want, out, errOut)
	}
}

// expectDigest fails unless repo:tag is served with the digest.
func expectDigest(t *testing.T, s *server, repo, tag, want string) {
	t.Helper()
	if _, got, _ := getManifest(t, s, repo, tag); got != want {
		t.Fatalf("%s:%s is %s, want %s", repo, tag, got, want)
	}
}

// The CLI's --json answers to versions and tags history: the admin API's pages.
type (
	cliHistory struct {
		Repository string  `json:"repository"`
		Tag        string  `json:"tag"`
		Events     []event `json:"events"`
		Next       string  `json:"next"`
	}
	cliVersions struct {
		Repository string    `json:"repository"`
		Versions   []version `json:"versions"`
		Next       string    `json:"next"`
	}
)

func names(rs []struct{ Name string }) []string {
	var ns []string
	for _, r := range rs {
		ns = append(ns, r.Name)
	}
	return ns
}

// hasAction reports whether a tag's history shows the action, as a row's
// beginning or its end.
func hasAction(es []event, action string) bool {
	return slices.ContainsFunc(es, func(e event) bool { return e.Action == action || e.EndAction == action })
}

// TestCLIHistoryAndVersions drives `berth versions` and `berth tags history`
// against a live server.
func TestCLIHistoryAndVersions(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	cli := berthCLI(t, s)
	repo := uniqueRepo(t, "cli-read")
	a, b := newTestImage(t), newTestImage(t)
	a.push(t, s, repo, "1")
	b.push(t, s, repo, "2")
	pushManifest(t, s, repo, "latest", mtOCIManifest, b.Manifest)
	pushManifest(t, s, repo, "latest", mtOCIManifest, a.Manifest)

	var vs cliVersions
	runJSON(t, cli, &vs, "versions", repo)
	if vs.Repository != repo || len(vs.Versions) != 2 || vs.Next != "" ||
		vs.Versions[0].Tag != "2" || vs.Versions[0].Digest != b.Digest || !vs.Versions[0].Newest ||
		vs.Versions[1].Tag != "1" || vs.Versions[1].Digest != a.Digest || vs.Versions[1].Newest {
		t.Fatalf("berth versions: %+v", vs)
	}
	runJSON(t, cli, &vs, "versions", repo, "--limit", "1")
	if len(vs.Versions) != 1 || vs.Versions[0].Tag != "2" || vs.Next != "2" {
		t.Fatalf("berth versions --limit 1: %+v", vs)
	}
	out := string(cli.run(t, "versions", repo))
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 ||
		!strings.HasPrefix(lines[0], "TAG") || !strings.HasPrefix(lines[1], "2 ") ||
		!strings.Contains(lines[1], b.Digest[len("sha256:"):][:12]) || !strings.HasSuffix(lines[1], "newest") {
		t.Fatalf("berth versions printed:\n%s", out)
	}

	// latest: pushed at b, then pushed over with a; newest first.
	var h cliHistory
	runJSON(t, cli, &h, "tags", "history", repo+":latest")
	if h.Repository != repo || h.Tag != "latest" || len(h.Events) != 2 ||
		h.Events[0].Digest != a.Digest || !h.Events[0].End.IsZero() || h.Events[0].Action != "push" ||
		h.Events[1].Digest != b.Digest || h.Events[1].End.IsZero() || h.Events[1].EndAction != "push" {
		t.Fatalf("berth tags history: %+v", h)
	}
	runJSON(t, cli, &h, "tags", "history", repo+":latest", "--limit", "1")
	if len(h.Events) != 1 || h.Events[0].Digest != a.Digest || h.Next == "" {
		t.Fatalf("berth tags history --limit 1: %+v", h)
	}
	out = string(cli.run(t, "tags", "history", repo+":latest"))
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 ||
		!strings.Contains(lines[1], a.Digest[len("sha256:"):][:12]) || !strings.Contains(lines[2], "push") {
		t.Fatalf("berth tags history printed:\n%s", out)
	}

	expectExit(t, cli, 1, "berth: TAG_UNKNOWN: ", "tags", "history", repo+":nope")
	expectExit(t, cli, 1, "berth: NAME_UNKNOWN: ", "versions", repo+"-nope")
	expectExit(t, cli, 2, "want REPO:TAG", "tags", "history", repo)
	expectExit(t, cli, 2, "invalid repository name", "versions", "Not/Valid")
}

// TestCLIAdmin drives every changing admin command against a live server:
// compare-and-swap, delete and restore, rollback, policy and retention.
func TestCLIAdmin(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	cli := berthCLI(t, s)
	repo := uniqueRepo(t, "cli")
	a, b := newTestImage(t), newTestImage(t)
	a.push(t, s, repo, "1")
	b.push(t, s, repo, "2")
	pushManifest(t, s, repo, "latest", mtOCIManifest, b.Manifest)

	var r struct {
		Name      string `json:"name"`
		Manifests int    `json:"manifests"`
		Size      int64  `json:"size"`
	}
	runJSON(t, cli, &r, "repos", "show", repo)
	if r.Name != repo || r.Manifests != 2 || r.Size <= 0 {
		t.Fatalf("berth repos show: %+v", r)
	}
	var rs struct {
		Repositories []struct{ Name string } `json:"repositories"`
	}
	runJSON(t, cli, &rs, "repos")
	if !slices.Contains(names(rs.Repositories), repo) {
		t.Fatalf("berth repos does not list %s: %+v", repo, rs)
	}
	if out := string(cli.run(t, "repos", "show", repo)); !strings.Contains(out, repo) {
		t.Fatalf("berth repos show printed:\n%s", out)
	}

	type tagRow struct {
		Tag             string `json:"tag"`
		Digest          string `json:"digest"`
		Numbered        bool   `json:"numbered"`
		Rank            int    `json:"rank"`
		RestorableUntil string `json:"restorableUntil"`
	}
	var tl struct {
		Repository string   `json:"repository"`
		Tags       []tagRow `json:"tags"`
	}
	runJSON(t, cli, &tl, "tags", "list", repo)
	want := []tagRow{{"1", a.Digest, true, 2, ""}, {"2", b.Digest, true, 1, ""}, {"latest", b.Digest, false, 0, ""}}
	if tl.Repository != repo || !slices.Equal(tl.Tags, want) {
		t.Fatalf("berth tags list: %+v, want %+v", tl, want)
	}
	runJSON(t, cli, &tl, "tags", "list", repo, "--filter", "l*")
	if len(tl.Tags) != 1 || tl.Tags[0].Tag != "latest" {
		t.Fatalf("berth tags list --filter 'l*': %+v", tl)
	}

	// Compare-and-swap: a wrong --expect changes nothing; the right one moves the tag.
	expectExit(t, cli, 1, "berth: TAG_CONFLICT: ", "tags", "set", repo+":latest", a.Digest, "--expect", a.Digest)
	expectDigest(t, s, repo, "latest", b.Digest)
	out := string(cli.run(t, "tags", "set", repo+":latest", a.Digest, "--expect", b.Digest))
	if !strings.Contains(out, a.Digest) {
		t.Fatalf("berth tags set printed:\n%s", out)
	}
	expectDigest(t, s, repo, "latest", a.Digest)
	var h cliHistory
	runJSON(t, cli, &h, "tags", "history", repo+":latest")
	if len(h.Events) != 2 || h.Events[0].Digest != a.Digest || h.Events[0].Action != "move" || h.Events[1].Digest != b.Digest {
		t.Fatalf("history after berth tags set: %+v", h)
	}

	// Delete, then restore: the tag comes back where it pointed.
	cli.run(t, "tags", "delete", repo+":latest")
	expectAbsent(t, s, repo+"/manifests/latest")
	runJSON(t, cli, &tl, "tags", "list", repo, "--state", "deleted")
	if len(tl.Tags) != 1 || tl.Tags[0].Tag != "latest" || tl.Tags[0].RestorableUntil == "" {
		t.Fatalf("berth tags list --state deleted: %+v", tl)
	}
	var res struct{ Tag, Digest string }
	runJSON(t, cli, &res, "tags", "restore", repo+":latest")
	if res.Tag != "latest" || res.Digest != a.Digest {
		t.Fatalf("berth tags restore: %+v", res)
	}
	expectDigest(t, s, repo, "latest", a.Digest)
	expectExit(t, cli, 1, "berth: TAG_CONFLICT: ", "tags", "restore", repo+":latest")
	runJSON(t, cli, &h, "tags", "history", repo+":latest")
	if !hasAction(h.Events, "delete") || !hasAction(h.Events, "restore") {
		t.Fatalf("history after delete and restore: %+v", h)
	}

	// Rollback to 1 publishes its image as the next number, 3; retarget moves latest.
	var rb struct{ Mode, Tag, Digest string }
	runJSON(t, cli, &rb, "rollback", repo, "--to", "1")
	if rb.Mode != "promote" || rb.Tag != "3" || rb.Digest != a.Digest {
		t.Fatalf("berth rollback --to 1: %+v", rb)
	}
	expectDigest(t, s, repo, "3", a.Digest)
	var vs cliVersions
	runJSON(t, cli, &vs, "versions", repo)
	if len(vs.Versions) != 3 || vs.Versions[0].Tag != "3" || !vs.Versions[0].Newest {
		t.Fatalf("berth versions after the rollback: %+v", vs)
	}
	runJSON(t, cli, &rb, "rollback", repo, "--to", "2", "--mode", "retarget")
	if rb.Mode != "retarget" || rb.Tag != "latest" || rb.Digest != b.Digest {
		t.Fatalf("berth rollback --to 2 --mode retarget: %+v", rb)
	}
	expectDigest(t, s, repo, "latest", b.Digest)
	runJSON(t, cli, &h, "tags", "history", repo+":latest")
	if !hasAction(h.Events, "rollback") {
		t.Fatalf("history after the rollback: %+v", h)
	}

	// Keep the newest numbered tag only. Keeping tags younger than 1ns keeps
	// none by age, whatever the server's default age rule.
	type policyDoc struct {
		Policy struct {
			Retention struct {
				KeepNewest int `json:"keepNewest"`
			} `json:"retention"`
		} `json:"policy"`
		Rules []struct{ Repositories, Source string } `json:"rules"`
	}
	var pol policyDoc
	runJSON(t, cli, &pol, "policy", "set", repo, "--keep-newest", "1", "--keep-younger-than", "1ns")
	ours := func(p policyDoc) bool {
		return slices.ContainsFunc(p.Rules, func(r struct{ Repositories, Source string }) bool {
			return r.Repositories == repo && r.Source == "api"
		})
	}
	if pol.Policy.Retention.KeepNewest != 1 || !ours(pol) {
		t.Fatalf("berth policy set: %+v", pol)
	}
	runJSON(t, cli, &pol, "policy", "get", repo)
	if pol.Policy.Retention.KeepNewest != 1 || !ours(pol) {
		t.Fatalf("berth policy get: %+v", pol)
	}
	if out := string(cli.run(t, "policy", "get", repo)); !strings.Contains(out, "keep-newest") {
		t.Fatalf("berth policy get printed:\n%s", out)
	}

	type retentionDoc struct {
		Delete []struct{ Tag, Digest string } `json:"delete"`
	}
	deleted := func(d retentionDoc) []string {
		var tags []string
		for _, x := range d.Delete {
			tags = append(tags, x.Tag)
		}
		slices.Sort(tags)
		return tags
	}
	var ret retentionDoc
	runJSON(t, cli, &ret, "retention", repo, "--dry-run")
	if got := deleted(ret); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("berth retention --dry-run would delete %q, want [1 2]", got)
	}
	expectDigest(t, s, repo, "1", a.Digest) // a dry run deletes nothing
	expectDigest(t, s, repo, "2", b.Digest)
	runJSON(t, cli, &ret, "retention", repo)
	if got := deleted(ret); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("berth retention deleted %q, want [1 2]", got)
	}
	expectAbsent(t, s, repo+"/manifests/1")
	expectAbsent(t, s, repo+"/manifests/2")
	expectDigest(t, s, repo, "3", a.Digest)
	expectDigest(t, s, repo, "latest", b.Digest)
	runJSON(t, cli, &h, "tags", "history", repo+":1")
	if !hasAction(h.Events, "retention") {
		t.Fatalf("history of :1 after retention: %+v", h)
	}
	if out := string(cli.run(t, "retention", repo, "--dry-run")); !strings.Contains(out, "would delete 0 tags") {
		t.Fatalf("berth retention --dry-run after retention printed:\n%s", out)
	}

	cli.run(t, "policy", "delete", repo)
	runJSON(t, cli, &pol, "policy", "get", repo)
	if ours(pol) {
		t.Fatalf("berth policy get after berth policy delete: %+v", pol)
	}
}

// cliDeliveries is what `berth webhooks deliveries --json` prints.
type cliDeliveries struct {
	Webhook    string         `json:"webhook"`
	Deliveries []hookDelivery `json:"deliveries"`
}

// signedDelivery returns the request of the event id that r got, if it came, and fails unless
// every request r got so far verifies with secret.
func signedDelivery(t *testing.T, r *receiver, secret, id string) (received, bool) {
	t.Helper()
	reqs := r.requests()
	for _, rq := range reqs {
		if err := notify.Verify(rq.Header, rq.Body, []string{secret}, time.Now(), time.Minute); err != nil {
			t.Errorf("receiver: request #%d: %v", rq.N, err)
		}
	}
	i := slices.IndexFunc(reqs, func(rq received) bool { return rq.Header.Get(notify.HeaderID) == id })
	if i < 0 {
		return received{}, false
	}
	return reqs[i], true
}

// TestCLIWebhooks adds a webhook with the CLI, pushes, and follows the
// delivery to a receiver of the test's own; then pings and deletes it.
func TestCLIWebhooks(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	cli := berthCLI(t, s)
	const secret = "whsec_YmVydGgtZTJlLXdlYmhvb2stc2VjcmV0"
	cli.env = append(slices.Clone(cli.env), "BERTH_WEBHOOK_SECRET="+secret)
	rcv := newReceiver(t, func(int) reply { return reply{Status: http.StatusOK, Body: "thanks"} })
	target := rcv.URL + "/hook"
	repo := uniqueRepo(t, "cli-webhooks")
	name := strings.ReplaceAll(repo, "/", "-")

	var h struct {
		Name         string   `json:"name"`
		URL          string   `json:"url"`
		Secrets      int      `json:"secrets"`
		Repositories []string `json:"repositories"`
		NumberedOnly bool     `json:"numberedOnly"`
		Source       string   `json:"source"`
	}
	// Only this test's repository: the shared server has other tests' pushes.
	runJSON(t, cli, &h, "webhooks", "add", name, "--target", target, "--format", "cloudevents", "--repo", repo, "--numbered-only")
	if h.Name != name || h.URL != target || h.Secrets != 1 || !slices.Equal(h.Repositories, []string{repo}) || !h.NumberedOnly || h.Source != "api" {
		t.Fatalf("berth webhooks add: %+v", h)
	}
	expectExit(t, cli, 1, "berth: WEBHOOK_CONFLICT: ", "webhooks", "add", name, "--target", target, "--format", "cloudevents")
	if out := string(cli.run(t, "webhooks", "list")); !strings.Contains(out, name+"  "+target) {
		t.Fatalf("berth webhooks list printed:\n%s", out)
	}

	// A numbered tag is announced; latest is not, being no version.
	img := newTestImage(t)
	img.push(t, s, repo, "1")
	pushManifest(t, s, repo, "latest", mtOCIManifest, img.Manifest)
	var ds cliDeliveries
	err := testserver.WaitFor(20*time.Second, func() error {
		runJSON(t, cli, &ds, "webhooks", "deliveries", name)
		if len(ds.Deliveries) == 0 || ds.Deliveries[0].State == "pending" {
			return errors.New("no delivery settled")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v: %+v", err, ds)
	}
	d := ds.Deliveries[0]
	if ds.Webhook != name || len(ds.Deliveries) != 1 || d.State != "delivered" || d.Attempts != 1 || d.LastStatus != 200 ||
		d.Event.Action != "push" || d.Event.Repository != repo || d.Event.Tag != "1" || string(d.Event.Digest) != img.Digest || !d.Event.Numbered {
		t.Fatalf("berth webhooks deliveries: %+v", ds)
	}
	got, ok := signedDelivery(t, rcv, secret, d.Event.ID)
	if !ok {
		t.Fatalf("the receiver has no delivery of event %s", d.Event.ID)
	}
	var ce struct {
		Type string `json:"type"`
		Data struct {
			Repository, Tag, Digest string
			Numbered, Newest        bool
		} `json:"data"`
	}
	if err := json.Unmarshal(got.Body, &ce); err != nil || ce.Type != "dev.berth.image.pushed" || ce.Data.Repository != repo ||
		ce.Data.Tag != "1" || ce.Data.Digest != img.Digest || !ce.Data.Numbered || !ce.Data.Newest {
		t.Fatalf("the receiver got %s (%v)", got.Body, err)
	}
	out := string(cli.run(t, "webhooks", "deliveries", name))
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[1], repo+":1") ||
		!strings.Contains(lines[1], "delivered") {
		t.Fatalf("berth webhooks deliveries printed:\n%s", out)
	}
	id := strconv.FormatInt(d.ID, 10)
	if out := string(cli.run(t, "webhooks", "delivery", name, id)); !strings.Contains(out, d.Event.ID) || !strings.Contains(out, "thanks") {
		t.Fatalf("berth webhooks delivery printed:\n%s", out)
	}

	var ping struct {
		Event  string `json:"event"`
		Status int    `json:"status"`
	}
	runJSON(t, cli, &ping, "webhooks", "ping", name)
	if _, ok := signedDelivery(t, rcv, secret, ping.Event); ping.Status != 200 || !ok {
		t.Fatalf("berth webhooks ping: %+v; received: %v", ping, ok)
	}
	if out := string(cli.run(t, "webhooks", "ping", name)); !strings.Contains(out, "200 OK") {
		t.Fatalf("berth webhooks ping printed:\n%s", out)
	}

	cli.run(t, "webhooks", "delete", name)
	expectExit(t, cli, 1, "berth: WEBHOOK_UNKNOWN: ", "webhooks", "show", name)
	if out := string(cli.run(t, "webhooks", "list")); strings.Contains(out, name) {
		t.Fatalf("berth webhooks list after the delete printed:\n%s", out)
	}
	expectExit(t, cli, 2, "needs --target", "webhooks", "add", name, "--url", target, "--format", "cloudevents")
}

// TestCLIGC: berth gc --dry-run lists what an image deleted by digest
// leaves behind, berth gc deletes exactly that, and the tagged image pulls.
func TestCLIGC(t *testing.T) {
	t.Parallel()
	// A grace of 1ns: whatever was pushed before the command runs is old enough.
	s := startBerth(t, serverOptions{Flags: []string{"--gc.interval", "0", "--gc.grace", "1ns", "--gc.link-deadline", "3s"}})
	cli := berthCLI(t, s)
	kept, gone := newTestImage(t), newTestImage(t)
	kept.push(t, s, "app", "1")
	gone.push(t, s, "app", "2")
	resp, body := httpDo(t, http.MethodDelete, s.URL+"/v2/app/manifests/"+gone.Digest, nil, nil)
	expectStatus(t, resp, body, http.StatusAccepted)

	type report struct {
		DryRun bool `json:"dryRun"`
		Blobs  []struct {
			Digest string `json:"digest"`
		} `json:"blobs"`
		Bytes int64 `json:"bytes"`
	}
	collected := func(r report) []string {
		var ds []string
		for _, b := range r.Blobs {
			ds = append(ds, b.Digest)
		}
		slices.Sort(ds)
		return ds
	}
	want := []string{gone.ConfigDigest, gone.LayerDigest}
	slices.Sort(want)
	var dry, run report
	runJSON(t, cli, &dry, "gc", "--dry-run")
	if !dry.DryRun || !slices.Equal(collected(dry), want) {
		t.Fatalf("berth gc --dry-run: %+v, want blobs %v", dry, want)
	}
	runJSON(t, cli, &run, "gc")
	if run.DryRun || !slices.Equal(collected(run), want) || run.Bytes != int64(len(gone.Config)+len(gone.Layer)) {
		t.Fatalf("berth gc: %+v, want blobs %v", run, want)
	}
	if out := string(cli.run(t, "gc", "--dry-run")); !strings.Contains(out, "would delete 0 blobs (0 B)") {
		t.Fatalf("berth gc --dry-run after the run printed:\n%s", out)
	}
	expectDigest(t, s, "app", "1", kept.Digest)
	for d, want := range map[string][]byte{kept.ConfigDigest: kept.Config, kept.LayerDigest: kept.Layer} {
		if got := getBlob(t, s, "app", d); !bytes.Equal(got, want) {
			t.Errorf("blob %s of the kept image: %d bytes, want %d", d, len(got), len(want))
		}
	}
}
