package test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testserver"
)

// The tag-versioning index end to end: numbered tags read as versions, their immutability and the
// lower-number rule, every tag's history, rollback, retention, and the admin API (/admin/v1) that
// shows and changes them. Images are pushed over /v2 as clients push them. Every scenario runs
// once on SQLite and once on PostgreSQL, each on a server of its own.

// onEachDatabase runs fn as one subtest per metadata database, each on a Berth server of its own
// started with flags: SQLite in the server's data directory, and a new PostgreSQL database.
func onEachDatabase(t *testing.T, flags []string, fn func(t *testing.T, s *server)) {
	t.Helper()
	eachDatabase(t, func(t *testing.T, db []string) {
		fn(t, startBerth(t, serverOptions{Flags: append(slices.Clone(flags), db...)}))
	})
}

// eachDatabase runs fn as one parallel subtest per metadata database, with the flags that select
// it: none (SQLite in the data directory of the server fn starts), or --database with a new
// PostgreSQL database.
func eachDatabase(t *testing.T, fn func(t *testing.T, db []string)) {
	t.Helper()
	if k := serverKind(); k != "berth" {
		t.Skipf("a Berth feature; BERTH_E2E_SERVER=%s", k)
	}
	for _, name := range []string{"SQLite", "PostgreSQL"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, databaseFlags(t, name))
		})
	}
}

// databaseFlags selects a metadata database: "SQLite" or "PostgreSQL" (a new database).
func databaseFlags(t testing.TB, name string) []string {
	if name == "PostgreSQL" {
		return []string{"--database", testserver.Postgres(t)}
	}
	return nil
}

// TestTagOrdering: /versions lists the numbered tags newest first in version order, whatever the
// push order, and never a moving tag.
func TestTagOrdering(t *testing.T) {
	t.Parallel()
	orderings := []struct {
		name  string
		flags []string
		push  []string // in push order, with tags that are not versions
		want  []string // newest first
	}{
		{
			name: "IntegersPast9",
			push: []string{"3", "12", "latest", "1", "10", "2", "11", "9", "4", "8", "5", "7", "6"},
			want: numbers(12, 1),
		},
		{
			name: "SemverWithPreRelease",
			push: []string{"v1.2.0", "latest", "v1.0.0", "v1.10.0", "v1.0.0-rc.1"},
			want: []string{"v1.10.0", "v1.2.0", "v1.0.0", "v1.0.0-rc.1"},
		},
		{
			name:  "Pattern",
			flags: []string{"--tags.ordering=pattern", "--tags.pattern=(?P<date>[0-9]{8})-(?P<build>[0-9]+)"},
			push:  []string{"20240101-10", "nightly", "20231231-99", "latest", "20240102-1", "20240101-9", "12"},
			want:  []string{"20240102-1", "20240101-10", "20240101-9", "20231231-99"},
		},
	}
	for _, o := range orderings {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			onEachDatabase(t, o.flags, func(t *testing.T, s *server) {
				repo := uniqueRepo(t, "ordering")
				expectVersions(t, s, repo, pushTags(t, s, repo, o.push...), o.want...)
			})
		})
	}
}

// TestNumberedTagImmutability: a numbered tag keeps its manifest against a manifest PUT and a
// crane copy, unless the repository's policy makes numbered tags mutable; refuseLower refuses a
// number below the newest.
func TestNumberedTagImmutability(t *testing.T) {
	t.Parallel()
	onEachDatabase(t, nil, func(t *testing.T, s *server) {
		crane := tool{path: craneBin(t), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
		repo := uniqueRepo(t, "immutable")
		imgs := newImages(t, s, repo, 2)
		a, b := imgs[0], imgs[1]
		pushManifest(t, s, repo, "1", mtOCIManifest, a.Manifest)
		pushManifest(t, s, repo, "1", mtOCIManifest, a.Manifest) // the same manifest again is fine

		resp, body := httpDo(t, http.MethodPut, s.URL+"/v2/"+repo+"/manifests/1", b.Manifest,
			map[string]string{"Content-Type": mtOCIManifest})
		if e := expectOCIError(t, resp, body, http.StatusForbidden, "DENIED"); !strings.Contains(e.Message, "immutable") {
			t.Errorf("refused move of :1: message %q does not name the immutability rule", e.Message)
		}
		pushManifest(t, s, repo, "candidate", mtOCIManifest, b.Manifest)
		_, errOut, err := crane.exec("copy", "--insecure", s.ref(repo, ":candidate"), s.ref(repo, ":1"))
		if err == nil || !strings.Contains(string(errOut), "DENIED") {
			t.Fatalf("crane copy of another image to :1: err %v, want a DENIED failure; stderr:\n%s", err, errOut)
		}
		expectTag(t, s, repo, "1", a.Digest)
		expectSteps(t, tagHistory(t, s, repo, "1"), step{"push", a.Digest, ""})

		if p := setPolicy(t, s, repo, `{"immutableNumbered": false}`); p.ImmutableNumbered == nil || *p.ImmutableNumbered {
			t.Fatalf("effective policy after PUT {immutableNumbered: false}: %+v", p)
		}
		crane.run(t, "copy", "--insecure", s.ref(repo, ":candidate"), s.ref(repo, ":1"))
		expectTag(t, s, repo, "1", b.Digest)
		expectSteps(t, tagHistory(t, s, repo, "1"), step{"push", b.Digest, ""}, step{"push", a.Digest, "push"})

		ten := pushTags(t, s, repo, "10")["10"]
		if p := setPolicy(t, s, repo, `{"refuseLower": true}`); p.RefuseLower == nil || !*p.RefuseLower {
			t.Fatalf("effective policy after PUT {refuseLower: true}: %+v", p)
		}
		resp, body = httpDo(t, http.MethodPut, s.URL+"/v2/"+repo+"/manifests/3", a.Manifest,
			map[string]string{"Content-Type": mtOCIManifest})
		if e := expectOCIError(t, resp, body, http.StatusForbidden, "DENIED"); e.Message == "" {
			t.Error("push of :3 below :10 refused without a message")
		}
		expectAbsent(t, s, repo+"/manifests/3")
		pushManifest(t, s, repo, "11", mtOCIManifest, a.Manifest) // above the newest is fine
		expectVersions(t, s, repo, map[string]string{"11": a.Digest, "10": ten, "1": b.Digest}, "11", "10", "1")
	})
}

// TestTagHistory: a tag's history records push, move, delete, restore, rollback and
// compare-and-swap in order, newest first, and the repository's history since a time has them.
func TestTagHistory(t *testing.T) {
	t.Parallel()
	onEachDatabase(t, nil, func(t *testing.T, s *server) {
		repo := uniqueRepo(t, "history")
		imgs := newImages(t, s, repo, 2)
		a, b := imgs[0].Digest, imgs[1].Digest
		pushManifest(t, s, repo, "1", mtOCIManifest, imgs[0].Manifest)
		pushManifest(t, s, repo, "latest", mtOCIManifest, imgs[0].Manifest)
		pushManifest(t, s, repo, "latest", mtOCIManifest, imgs[1].Manifest)
		resp, body := httpDo(t, http.MethodDelete, s.URL+"/v2/"+repo+"/manifests/latest", nil, nil)
		expectStatus(t, resp, body, http.StatusAccepted)
		expectAbsent(t, s, repo+"/manifests/latest")

		expectChange(t, tagChangeOf(t, s, http.MethodPost, repo, "/tags/latest/restore", ""),
			tagChange{Repository: repo, Tag: "latest", Digest: b})
		expectTag(t, s, repo, "latest", b)
		expectChange(t, tagChangeOf(t, s, http.MethodPost, repo, "/rollback", `{"to": "1", "mode": "retarget", "tag": "latest"}`),
			tagChange{Repository: repo, Mode: "retarget", Tag: "latest", Digest: a, Previous: b})
		expectTag(t, s, repo, "latest", a)
		expectChange(t, tagChangeOf(t, s, http.MethodPut, repo, "/tags/latest", fmt.Sprintf(`{"digest": %q, "expectedDigest": %q}`, b, a)),
			tagChange{Repository: repo, Tag: "latest", Digest: b, Previous: a})
		expectTag(t, s, repo, "latest", b)

		events := tagHistory(t, s, repo, "latest")
		expectSteps(t, events,
			step{"move", b, ""},
			step{"rollback", a, "move"},
			step{"restore", b, "rollback"},
			step{"push", b, "delete"},
			step{"push", a, "push"})
		expectChained(t, events)

		since := func(at time.Time) []event {
			return collect[event](t, s, repo, "/history?since="+url.QueryEscape(at.Format(time.RFC3339Nano)), "events")
		}
		all := since(events[len(events)-1].Start)
		for _, e := range events {
			if i := slices.IndexFunc(all, func(r event) bool { return r.ID == e.ID }); i < 0 || all[i].String() != e.String() {
				t.Errorf("repository history since the first push of latest lacks %s; it has:\n%s", e, eventLines(all))
			}
		}
		for _, r := range since(events[0].Start.Add(time.Nanosecond)) {
			if r.Tag == "latest" {
				t.Errorf("repository history since after the last change of latest has %s", r)
			}
		}
	})
}

// TestRollbackPromote: a rollback publishes the next number after the newest, pointing at the
// version rolled back to.
func TestRollbackPromote(t *testing.T) {
	t.Parallel()
	cases := []struct {
		tags         []string // pushed in order
		to, promoted string
		versions     []string // afterwards, newest first
	}{
		{numbers(1, 3), "2", "4", numbers(4, 1)},
		{[]string{"v1.4.1", "v1.4.2"}, "v1.4.1", "v1.4.3", []string{"v1.4.3", "v1.4.2", "v1.4.1"}},
	}
	onEachDatabase(t, nil, func(t *testing.T, s *server) {
		for _, c := range cases {
			repo := uniqueRepo(t, "promote")
			digests := pushTags(t, s, repo, c.tags...)
			target := digests[c.to]
			expectChange(t, tagChangeOf(t, s, http.MethodPost, repo, "/rollback", fmt.Sprintf(`{"to": %q}`, c.to)),
				tagChange{Repository: repo, Mode: "promote", Tag: c.promoted, Digest: target})
			expectTag(t, s, repo, c.promoted, target)
			digests[c.promoted] = target
			expectVersions(t, s, repo, digests, c.versions...)
			expectSteps(t, tagHistory(t, s, repo, c.promoted), step{"rollback", target, ""})
		}
	})
}

// TestConcurrentTagMoves: parallel clients move one tag, by manifest PUT and by compare-and-swap;
// no request fails with a server error, of two compare-and-swaps expecting the same digest at most
// one wins, and the history has one row per move, chained without gap or overlap.
func TestConcurrentTagMoves(t *testing.T) {
	t.Parallel()
	const pushers, pushesEach = 8, 25
	const swappers, swapRounds = 2, 10
	onEachDatabase(t, nil, func(t *testing.T, s *server) {
		repo := uniqueRepo(t, "concurrent")
		// Every move goes to a manifest of its own, so each successful one changes the digest.
		imgs := newImages(t, s, repo, 1+pushers*pushesEach+swappers*swapRounds*2)
		for _, img := range imgs {
			pushManifest(t, s, repo, img.Digest, mtOCIManifest, img.Manifest)
		}
		pushManifest(t, s, repo, "latest", mtOCIManifest, imgs[0].Manifest)
		pushed, swaps := imgs[1:1+pushers*pushesEach], imgs[1+pushers*pushesEach:]

		var mu sync.Mutex
		moved := []string{imgs[0].Digest} // where each successful move pointed the tag
		lost := 0
		record := func(d string) {
			mu.Lock()
			defer mu.Unlock()
			if d == "" {
				lost++
			} else {
				moved = append(moved, d)
			}
		}
		var wg sync.WaitGroup
		for g := range pushers {
			wg.Go(func() {
				for _, img := range pushed[g*pushesEach : (g+1)*pushesEach] {
					resp, body, err := tryDo(http.MethodPut, s.URL+"/v2/"+repo+"/manifests/latest", img.Manifest,
						map[string]string{"Content-Type": mtOCIManifest})
					if err != nil || resp.StatusCode != http.StatusCreated {
						t.Errorf("PUT manifest %s as latest: %v %s", img.Digest, statusOrErr(resp, err), truncate(body))
						return
					}
					record(img.Digest)
				}
			})
		}
		for c := range swappers {
			wg.Go(func() {
				mine := swaps[c*swapRounds*2 : (c+1)*swapRounds*2]
				for r := range swapRounds {
					if t.Failed() {
						return // one report of what went wrong is enough
					}
					current, err := headDigest(s, repo, "latest")
					if err != nil {
						t.Error(err)
						return
					}
					// Two swaps expecting the same digest: once one moves the tag, the other must lose.
					var won [2]bool
					var pair sync.WaitGroup
					for i, img := range mine[2*r : 2*r+2] {
						pair.Go(func() { won[i] = compareAndSwap(t, s, repo, "latest", img.Digest, current, record) })
					}
					pair.Wait()
					if won[0] && won[1] {
						t.Errorf("two compare-and-swaps of latest expecting %s both won", current)
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if lost < swappers*swapRounds {
			t.Errorf("%d compare-and-swaps lost with 409, want at least one per round (%d)", lost, swappers*swapRounds)
		}
		t.Logf("%d moves (%d by compare-and-swap), %d compare-and-swaps lost", len(moved)-1, len(moved)-1-len(pushed), lost)

		events := tagHistory(t, s, repo, "latest")
		expectChained(t, events)
		var got []string
		for _, e := range events {
			got = append(got, e.Digest)
		}
		slices.Sort(got)
		slices.Sort(moved)
		if !slices.Equal(got, moved) {
			t.Fatalf("history of latest has %d rows, for %d moves, or their digests differ:\n%s", len(events), len(moved), eventLines(events))
		}
		expectTag(t, s, repo, "latest", events[0].Digest)
	})
}

// compareAndSwap moves tag from expected to digest through the admin API and reports whether it
// won; it records the digest if it did, "" if it lost with 409 TAG_CONFLICT. Safe in a goroutine.
func compareAndSwap(t *testing.T, s *server, repo, tag, digest, expected string, record func(string)) bool {
	u := s.URL + adminRepositories + repo + "/tags/" + tag
	resp, body, err := tryDo(http.MethodPut, u, fmt.Appendf(nil, `{"digest": %q, "expectedDigest": %q}`, digest, expected),
		map[string]string{"Content-Type": "application/json"})
	switch {
	case err != nil:
		t.Error(err)
	case resp.StatusCode == http.StatusOK:
		var c tagChange
		if err := json.Unmarshal(body, &c); err != nil || c.Digest != digest || c.Previous != expected {
			t.Errorf("PUT %s {digest %s, expectedDigest %s}: %v %s", u, digest, expected, err, body)
		}
		record(digest)
		return true
	case resp.StatusCode == http.StatusConflict:
		e, err := findOCIError(body, "TAG_CONFLICT")
		var current struct{ Tag, Digest string }
		if err == nil {
			err = json.Unmarshal(e.Detail, &current)
		}
		if err != nil || current.Tag != tag || current.Digest == expected || !strings.HasPrefix(current.Digest, "sha256:") {
			t.Errorf("PUT %s expecting %s: 409 without the tag's current digest in detail (%v): %s", u, expected, err, body)
		}
		record("")
	default:
		t.Errorf("PUT %s {digest %s, expectedDigest %s}: %s %s", u, digest, expected, resp.Status, truncate(body))
	}
	return false
}

// headDigest is the digest a tag points at, by HEAD on its manifest. Safe in a goroutine.
func headDigest(s *server, repo, tag string) (string, error) {
	resp, _, err := tryDo(http.MethodHead, s.URL+"/v2/"+repo+"/manifests/"+tag, nil, map[string]string{"Accept": manifestAccept})
	if err != nil {
		return "", err
	}
	if d := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode == http.StatusOK && d != "" {
		return d, nil
	}
	return "", fmt.Errorf("HEAD %s:%s: %s, Docker-Content-Digest %q", repo, tag, resp.Status, resp.Header.Get("Docker-Content-Digest"))
}

// TestRetention: keepNewest 3 of ten numbered tags; the dry run deletes nothing, enforcing it
// deletes the seven oldest, which stay restorable for the restore window.
func TestRetention(t *testing.T) {
	t.Parallel()
	onEachDatabase(t, nil, func(t *testing.T, s *server) {
		repo := uniqueRepo(t, "retention")
		digests := pushTags(t, s, repo, numbers(1, 10)...)
		if p := setPolicy(t, s, repo, `{"retention": {"keepNewest": 3}}`); p.Retention == nil || p.Retention.KeepNewest == nil || *p.Retention.KeepNewest != 3 {
			t.Fatalf("effective policy after PUT {retention: {keepNewest: 3}}: %+v", p)
		}
		old := numbers(1, 7)
		expectRetention(t, s, http.MethodGet, repo, digests, old)
		expectVersions(t, s, repo, digests, numbers(10, 1)...) // the dry run deleted nothing
		expectRetention(t, s, http.MethodPost, repo, digests, old)
		expectVersions(t, s, repo, digests, "10", "9", "8")
		expectSteps(t, tagHistory(t, s, repo, "1"), step{"push", digests["1"], "retention"})

		deleted := collect[tagState](t, s, repo, "/tags?state=deleted", "tags")
		var names []string
		for _, d := range deleted {
			names = append(names, d.Tag)
			if d.Digest != digests[d.Tag] || d.End.IsZero() || !d.Numbered {
				t.Errorf("deleted tag %+v, want numbered, ended, at %s", d, digests[d.Tag])
			}
			if window := d.RestorableUntil.Sub(d.End); window < restoreWindow-time.Second || window > restoreWindow {
				t.Errorf("deleted tag %s ended %s, restorable until %s: want the %s restore window", d.Tag, d.End, d.RestorableUntil, restoreWindow)
			}
		}
		if !slices.Equal(names, old) {
			t.Fatalf("tags?state=deleted: %q, want %q", names, old)
		}

		expectChange(t, tagChangeOf(t, s, http.MethodPost, repo, "/tags/5/restore", ""),
			tagChange{Repository: repo, Tag: "5", Digest: digests["5"]})
		expectTag(t, s, repo, "5", digests["5"])
		expectVersions(t, s, repo, digests, "10", "9", "8", "5")
		h := tagHistory(t, s, repo, "5")
		expectSteps(t, h, step{"restore", digests["5"], ""}, step{"push", digests["5"], "retention"})
		expectChained(t, h)
	})
}

// restoreWindow is how long a deleted tag stays restorable by default.
const restoreWindow = 14 * 24 * time.Hour

// expectRetention runs retention (GET: dry run, POST: enforce) and checks it names exactly the
// tags want, each with its digest.
func expectRetention(t *testing.T, s *server, method, repo string, digests map[string]string, want []string) {
	t.Helper()
	var r struct {
		Repository string `json:"repository"`
		Delete     []struct {
			Tag    string    `json:"tag"`
			Digest string    `json:"digest"`
			Start  time.Time `json:"start"`
		} `json:"delete"`
	}
	admin(t, s, method, repo, "/retention", "", &r)
	var got []string
	for _, d := range r.Delete {
		got = append(got, d.Tag)
		if d.Digest != digests[d.Tag] || d.Start.IsZero() {
			t.Errorf("%s retention: %s at %s since %s, want at %s", method, d.Tag, d.Digest, d.Start, digests[d.Tag])
		}
	}
	slices.SortFunc(got, func(a, b string) int { n, _ := strconv.Atoi(a); m, _ := strconv.Atoi(b); return n - m })
	if r.Repository != repo || !slices.Equal(got, want) {
		t.Fatalf("%s retention of %s: repository %q, deletes %q; want %q", method, repo, r.Repository, got, want)
	}
}

// TestAdminBadInput: every malformed or refused admin request answers its documented error and
// leaves tags, versions, history and policy as they were.
func TestAdminBadInput(t *testing.T) {
	t.Parallel()
	onEachDatabase(t, nil, func(t *testing.T, s *server) {
		repo := uniqueRepo(t, "bad-input")
		imgs := newImages(t, s, repo, 2)
		one, two := imgs[0].Digest, imgs[1].Digest
		pushManifest(t, s, repo, "1", mtOCIManifest, imgs[0].Manifest)
		pushManifest(t, s, repo, "latest", mtOCIManifest, imgs[0].Manifest)
		pushManifest(t, s, repo, "2", mtOCIManifest, imgs[1].Manifest)
		stranger := digestOf(randBytes(t, 64)) // well formed, in no repository
		bad := []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"MalformedJSON", http.MethodPut, "/tags/latest", `{"digest": `, 400, "REQUEST_INVALID"},
			{"UnknownField", http.MethodPut, "/tags/latest", fmt.Sprintf(`{"digest": %q, "force": true}`, two), 400, "REQUEST_INVALID"},
			{"BadDigest", http.MethodPut, "/tags/latest", `{"digest": "sha256:not-hex"}`, 400, "DIGEST_INVALID"},
			{"DigestNotInRepository", http.MethodPut, "/tags/latest", fmt.Sprintf(`{"digest": %q}`, stranger), 404, "MANIFEST_UNKNOWN"},
			{"BadTag", http.MethodPut, "/tags/-1", fmt.Sprintf(`{"digest": %q}`, two), 400, "MANIFEST_INVALID"},
			{"StaleExpectedDigest", http.MethodPut, "/tags/latest", fmt.Sprintf(`{"digest": %q, "expectedDigest": %q}`, two, two), 409, "TAG_CONFLICT"},
			{"ExpectedAbsentButLive", http.MethodPut, "/tags/latest", fmt.Sprintf(`{"digest": %q, "expectedDigest": ""}`, two), 409, "TAG_CONFLICT"},
			{"DeleteUnknownTag", http.MethodDelete, "/tags/99", "", 404, "TAG_UNKNOWN"},
			{"RestoreLiveTag", http.MethodPost, "/tags/latest/restore", "", 409, "TAG_CONFLICT"},
			{"RestoreUnknownTag", http.MethodPost, "/tags/99/restore", "", 404, "TAG_UNKNOWN"},
			{"RollbackMalformedJSON", http.MethodPost, "/rollback", `to=1`, 400, "REQUEST_INVALID"},
			{"RollbackUnknownField", http.MethodPost, "/rollback", `{"to": "1", "tags": ["latest"]}`, 400, "REQUEST_INVALID"},
			{"RollbackToDigestNotInRepository", http.MethodPost, "/rollback", fmt.Sprintf(`{"to": %q}`, stranger), 404, "MANIFEST_UNKNOWN"},
			{"RollbackToUnknownTag", http.MethodPost, "/rollback", `{"to": "99"}`, 404, "TAG_UNKNOWN"},
			{"PolicyBadRegexp", http.MethodPut, "/policy", `{"ordering": ["pattern"], "pattern": "(?P<build>[0-9]+"}`, 400, "POLICY_INVALID"},
			{"PolicyPatternWithoutGroups", http.MethodPut, "/policy", `{"ordering": ["pattern"], "pattern": "[0-9]+"}`, 400, "POLICY_INVALID"},
			{"PolicyBadKeepPattern", http.MethodPut, "/policy", `{"retention": {"keepPattern": "["}}`, 400, "POLICY_INVALID"},
			{"PolicyBadDuration", http.MethodPut, "/policy", `{"retention": {"keepYoungerThan": "a fortnight"}}`, 400, "POLICY_INVALID"},
			{"PolicyUnknownField", http.MethodPut, "/policy", `{"immutable": false}`, 400, "REQUEST_INVALID"},
			{"PolicyMalformedJSON", http.MethodPut, "/policy", `{"refuseLower": tru`, 400, "REQUEST_INVALID"},
			{"BadSince", http.MethodGet, "/history?since=yesterday", "", 400, "REQUEST_INVALID"},
			{"BadState", http.MethodGet, "/tags?state=gone", "", 400, "REQUEST_INVALID"},
			{"BadHistoryCursor", http.MethodGet, "/tags/latest/history?cursor=not-a-cursor", "", 400, "PAGINATION_NUMBER_INVALID"},
			{"BadRepositoryHistoryCursor", http.MethodGet, "/history?cursor=not-a-cursor", "", 400, "PAGINATION_NUMBER_INVALID"},
			{"BadVersionsCursor", http.MethodGet, "/versions?cursor=not-a-cursor", "", 400, "PAGINATION_NUMBER_INVALID"},
			{"BadTagsCursor", http.MethodGet, "/tags?cursor=-not-a-tag", "", 400, "PAGINATION_NUMBER_INVALID"},
			{"BadLimit", http.MethodGet, "/versions?limit=0", "", 400, "PAGINATION_NUMBER_INVALID"},
		}
		before := adminState(t, s, repo)
		for _, c := range bad {
			t.Run(c.name, func(t *testing.T) {
				resp, body := adminDo(t, s, c.method, repo, c.path, c.body)
				expectOCIError(t, resp, body, c.status, c.code)
				if after := adminState(t, s, repo); after != before {
					t.Fatalf("%s %s changed the repository's state:\nbefore: %s\nafter:  %s", c.method, c.path, before, after)
				}
			})
		}
		expectTag(t, s, repo, "latest", one)
	})
}

// adminState is what the admin API shows of a repository's tags, versions, history and policy.
func adminState(t testing.TB, s *server, repo string) string {
	t.Helper()
	var policy json.RawMessage
	admin(t, s, http.MethodGet, repo, "/policy", "", &policy)
	return string(mustJSON(t, map[string]any{
		"versions": collect[version](t, s, repo, "/versions", "versions"),
		"tags":     collect[tagState](t, s, repo, "/tags?state=all", "tags"),
		"latest":   tagHistory(t, s, repo, "latest"),
		"1":        tagHistory(t, s, repo, "1"),
		"policy":   policy,
	}))
}

// Pushing over /v2.

// newImages uploads a random layer and config to repo and returns n images made of them, whose
// manifests (not pushed) differ by an annotation.
func newImages(t testing.TB, s *server, repo string, n int) []*testImage {
	t.Helper()
	base := newTestImage(t)
	pushBlob(t, s, repo, base.Layer)
	pushBlob(t, s, repo, base.Config)
	m := parseManifest(t, base.Manifest)
	nonce := hex.EncodeToString(randBytes(t, 8))
	imgs := make([]*testImage, n)
	for i := range imgs {
		m.Annotations = map[string]string{"org.berthhq.e2e.image": fmt.Sprintf("%s-%d", nonce, i)}
		img := *base
		img.Manifest = mustJSON(t, m)
		img.Digest = digestOf(img.Manifest)
		imgs[i] = &img
	}
	return imgs
}

// pushTags pushes an image of its own under each tag, in order, and returns each tag's digest.
func pushTags(t testing.TB, s *server, repo string, tags ...string) map[string]string {
	t.Helper()
	digests := map[string]string{}
	for i, img := range newImages(t, s, repo, len(tags)) {
		pushManifest(t, s, repo, tags[i], mtOCIManifest, img.Manifest)
		digests[tags[i]] = img.Digest
	}
	return digests
}

// expectTag fails unless GET /v2/<repo>/manifests/<tag> serves the manifest digest.
func expectTag(t testing.TB, s *server, repo, tag, digest string) {
	t.Helper()
	if _, got, _ := getManifest(t, s, repo, tag); got != digest {
		t.Fatalf("%s:%s serves %s, want %s", repo, tag, got, digest)
	}
}

// numbers returns the integer tags from from to to, counting up or down.
func numbers(from, to int) []string {
	step := 1
	if to < from {
		step = -1
	}
	var tags []string
	for n := from; ; n += step {
		tags = append(tags, strconv.Itoa(n))
		if n == to {
			return tags
		}
	}
}

// The admin API client.

const adminRepositories = "/admin/v1/repositories/"

// pageSize is the ?limit= of every listing the tests read, small so that they read several pages.
const pageSize = 4

// adminDo sends a request about repo to the admin API; path follows the repository name and body
// is raw JSON ("" for none).
func adminDo(t testing.TB, s *server, method, repo, path, body string) (*http.Response, []byte) {
	t.Helper()
	var b []byte
	var h map[string]string
	if body != "" {
		b, h = []byte(body), map[string]string{"Content-Type": "application/json"}
	}
	return httpDo(t, method, s.URL+adminRepositories+repo+path, b, h)
}

// admin sends a request that must answer 200 with JSON, decoded into out.
func admin(t testing.TB, s *server, method, repo, path, body string, out any) *http.Response {
	t.Helper()
	resp, b := adminDo(t, s, method, repo, path, body)
	expectStatus(t, resp, b, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q, want application/json", method, resp.Request.URL, ct)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %v\n%s", method, resp.Request.URL, err, truncate(b))
	}
	return resp
}

// collect reads an admin listing page by page, following "next" (which the Link header must
// announce too), and returns the items under key of every page.
func collect[T any](t testing.TB, s *server, repo, path, key string) []T {
	t.Helper()
	var all []T
	seen := map[string]bool{}
	for p := withQuery(t, path, "limit", strconv.Itoa(pageSize)); ; {
		var page map[string]json.RawMessage
		resp := admin(t, s, http.MethodGet, repo, p, "", &page)
		var items []T
		if err := json.Unmarshal(page[key], &items); err != nil {
			t.Fatalf("GET %s: %q: %v", resp.Request.URL, key, err)
		}
		if len(items) > pageSize {
			t.Fatalf("GET %s: %d items, more than the limit", resp.Request.URL, len(items))
		}
		all = append(all, items...)
		var next string
		if raw, ok := page["next"]; ok {
			if err := json.Unmarshal(raw, &next); err != nil {
				t.Fatalf("GET %s: next: %v", resp.Request.URL, err)
			}
		}
		if link := resp.Header.Get("Link"); (next != "") != strings.Contains(link, `rel="next"`) {
			t.Fatalf("GET %s: next %q but Link %q", resp.Request.URL, next, link)
		}
		if next == "" {
			return all
		}
		if seen[next] {
			t.Fatalf("GET %s: cursor %q again", resp.Request.URL, next)
		}
		seen[next] = true
		p = withQuery(t, p, "cursor", next)
	}
}

// expectVersions fails unless /versions lists exactly the tags want, newest first, each at its
// digest, the first alone marked newest.
func expectVersions(t testing.TB, s *server, repo string, digests map[string]string, want ...string) {
	t.Helper()
	vs := collect[version](t, s, repo, "/versions", "versions")
	var tags []string
	for _, v := range vs {
		tags = append(tags, v.Tag)
	}
	if !slices.Equal(tags, want) {
		t.Fatalf("versions of %s, newest first: %q, want %q", repo, tags, want)
	}
	for i, v := range vs {
		if v.Digest != digests[v.Tag] || v.Newest != (i == 0) || v.PushedAt.IsZero() {
			t.Errorf("version %d of %s: %+v, want digest %s, newest %v", i, repo, v, digests[v.Tag], i == 0)
		}
	}
}

func tagChangeOf(t testing.TB, s *server, method, repo, path, body string) tagChange {
	t.Helper()
	var c tagChange
	admin(t, s, method, repo, path, body, &c)
	return c
}

func expectChange(t testing.TB, got, want tagChange) {
	t.Helper()
	if got != want {
		t.Fatalf("tag change: %+v, want %+v", got, want)
	}
}

// setPolicy PUTs a repository's policy and returns the effective policy in the answer.
func setPolicy(t testing.TB, s *server, repo, policy string) effectivePolicy {
	t.Helper()
	var p struct {
		Repository string          `json:"repository"`
		Policy     effectivePolicy `json:"policy"`
	}
	admin(t, s, http.MethodPut, repo, "/policy", policy, &p)
	if p.Repository != repo {
		t.Fatalf("PUT policy of %s answered for repository %q", repo, p.Repository)
	}
	return p.Policy
}

// Tag history.

// tagHistory reads a tag's whole history, checking it is the tag's and newest first.
func tagHistory(t testing.TB, s *server, repo, tag string) []event {
	t.Helper()
	events := collect[event](t, s, repo, "/tags/"+tag+"/history", "events")
	for i, e := range events {
		if e.Tag != tag || i > 0 && e.ID >= events[i-1].ID {
			t.Fatalf("history of %s:%s is not that tag's, newest first:\n%s", repo, tag, eventLines(events))
		}
	}
	return events
}

// step is a history row without its times.
type step struct{ action, digest, endAction string }

// expectSteps fails unless the history (newest first) is exactly these steps.
func expectSteps(t testing.TB, events []event, want ...step) {
	t.Helper()
	var got []step
	for _, e := range events {
		got = append(got, step{e.Action, e.Digest, e.EndAction})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history, newest first:\n%swant (action, digest, endAction):\n%v", eventLines(events), want)
	}
}

// expectChained fails unless a tag's history (newest first) has no gap and no overlap: only the
// newest row may be live; no row ends before it starts; a row that a change replaced ends the
// instant the next starts, by that change's action; after a delete the next row starts no earlier.
func expectChained(t testing.TB, events []event) {
	t.Helper()
	fail := func(i int, why string) {
		t.Helper()
		t.Fatalf("history row %s: %s\nhistory, newest first:\n%s", events[i], why, eventLines(events))
	}
	for i, e := range events {
		if e.End.IsZero() {
			if i > 0 {
				fail(i, "live, but a newer row follows")
			}
			continue
		}
		if e.End.Before(e.Start) {
			fail(i, "ends before it starts")
		}
		if i == 0 {
			if e.EndAction != "delete" && e.EndAction != "retention" {
				fail(i, "the newest row was ended by a change that started no row")
			}
			continue
		}
		next := events[i-1]
		switch e.EndAction {
		case "delete", "retention":
			if next.Start.Before(e.End) {
				fail(i, "the next row starts before the tag was deleted")
			}
		default:
			if !next.Start.Equal(e.End) || next.Action != e.EndAction {
				fail(i, fmt.Sprintf("the next row (%s) does not start when and as it ends", next))
			}
		}
	}
}
