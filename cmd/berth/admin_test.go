package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	digestA = "sha256:aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111"
	digestB = "sha256:bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222"
)

func TestSplitRef(t *testing.T) {
	for _, tc := range []struct{ ref, repo, tag string }{
		{"app:latest", "app", "latest"},
		{"team/app:41", "team/app", "41"},
		{"a/b/c:v1.2.3", "a/b/c", "v1.2.3"},
	} {
		repo, tag, err := splitRef(tc.ref)
		if err != nil || repo != tc.repo || tag != tc.tag {
			t.Errorf("splitRef(%q) = %q, %q, %v; want %q, %q", tc.ref, repo, tag, err, tc.repo, tc.tag)
		}
	}
	for _, ref := range []string{
		"app",                // no tag
		"localhost:5000/app", // the colon is a port's, before the last slash
		"App:1",              // upper case name
		"app:",               // empty tag
		"app:-x",             // a tag cannot start with '-'
		":1",                 // empty name
		"app:a:b",            // the tag is "b", the name "app:a" is invalid
	} {
		if _, _, err := splitRef(ref); !isUsage(err) {
			t.Errorf("splitRef(%q): %v, want a usage error", ref, err)
		}
	}
}

func TestCheckPolicyName(t *testing.T) {
	for _, name := range []string{"app", "team/*", "*", "team/*/web", "team-*"} {
		if err := checkPolicyName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "Team/*", "team//x", "team/*:1"} {
		if err := checkPolicyName(name); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  string
		to   string
	}{
		{[]string{"app", "--to", "41"}, "app", "41"},
		{[]string{"--to", "41", "app"}, "app", "41"},
		{[]string{"--to=41", "app", "--json"}, "app", "41"},
		{[]string{"--to", "41", "--", "-app"}, "-app", "41"}, // after --, an argument even if it looks like a flag
	} {
		c := newCmd("rollback", "REPO", "", io.Discard, io.Discard)
		to := c.fs.String("to", "", "")
		pos, err := c.parse(tc.args, 1)
		if err != nil || pos[0] != tc.pos || *to != tc.to {
			t.Errorf("%q: %q, --to %q, %v; want %q, --to %q", tc.args, pos, *to, err, tc.pos, tc.to)
		}
	}
	for _, args := range [][]string{{}, {"a", "b"}, {"app", "--nope"}, {"app", "--to"}} {
		c := newCmd("rollback", "REPO", "", io.Discard, io.Discard)
		c.fs.String("to", "", "")
		if _, err := c.parse(args, 1); !isUsage(err) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// request is what the fake admin API received.
type request struct {
	Method, Path, Query, Body, Auth string
}

// fakeAPI answers every request with status and body, and records it.
func fakeAPI(t *testing.T, status int, body string) (*httptest.Server, *[]request) {
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		auth := ""
		if u, p, ok := r.BasicAuth(); ok {
			auth = u + ":" + p
		}
		got = append(got, request{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b), auth})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

// runCLI runs an admin command against url and returns what it printed.
func runCLI(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	ok, err := runAdmin(append(args, "--url", url), &out, io.Discard)
	if !ok {
		t.Fatalf("%q: no such command", args)
	}
	return out.String(), err
}

// sentCase is a command line and the one request it sends.
type sentCase struct {
	args []string
	want request
}

// checkSent runs each command against a fake API answering {} and checks
// the request it sent.
func checkSent(t *testing.T, cases []sentCase) {
	t.Helper()
	for _, tc := range cases {
		srv, got := fakeAPI(t, http.StatusOK, "{}")
		if _, err := runCLI(t, srv.URL, tc.args...); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if len(*got) != 1 || (*got)[0] != tc.want {
			t.Errorf("%q sent\n  %+v\nwant\n  %+v", tc.args, *got, tc.want)
		}
	}
}

// printedCase is a command line, the API's answer, and what the command prints.
type printedCase struct {
	args   []string
	answer string
	want   string
}

func checkPrinted(t *testing.T, cases []printedCase) {
	t.Helper()
	for _, tc := range cases {
		srv, _ := fakeAPI(t, http.StatusOK, tc.answer)
		out, err := runCLI(t, srv.URL, tc.args...)
		if err != nil || out != tc.want {
			t.Errorf("%q: printed %q, %v; want %q", tc.args, out, err, tc.want)
		}
	}
}

// renderCase is a fixed answer of the API, how it is rendered, and the text.
type renderCase struct {
	name, json string
	render     func(w io.Writer, b []byte) error
	want       string
}

func checkRendered(t *testing.T, cases []renderCase) {
	t.Helper()
	for _, tc := range cases {
		var out bytes.Buffer
		if err := tc.render(&out, []byte(tc.json)); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if out.String() != tc.want {
			t.Errorf("%s: printed\n%s\nwant\n%s", tc.name, out.String(), tc.want)
		}
	}
}

// decoded decodes an answer as T, failing on JSON that does not decode,
// and renders it.
func decoded[T any](render func(io.Writer, T) error) func(io.Writer, []byte) error {
	return func(w io.Writer, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		return render(w, v)
	}
}

// TestRequests checks what each command sends: method, path, query and body.
func TestRequests(t *testing.T) {
	t.Setenv("BERTH_USER", "")
	t.Setenv("BERTH_PASSWORD", "")
	checkSent(t, []sentCase{
		{[]string{"repos"}, request{Method: "GET", Path: "/admin/v1/repositories", Query: "limit=1000"}},
		{[]string{"repos", "show", "team/app"}, request{Method: "GET", Path: "/admin/v1/repositories/team/app"}},
		{[]string{"versions", "team/app", "--limit", "5"}, request{Method: "GET", Path: "/admin/v1/repositories/team/app/versions", Query: "limit=5"}},
		{[]string{"tags", "list", "app", "--state", "deleted", "--filter", "v1.*"},
			request{Method: "GET", Path: "/admin/v1/repositories/app/tags", Query: "filter=v1.%2A&limit=1000&state=deleted"}},
		{[]string{"tags", "history", "team/app:latest"}, request{Method: "GET", Path: "/admin/v1/repositories/team/app/tags/latest/history", Query: "limit=1000"}},
		{[]string{"tags", "set", "app:latest", digestA}, request{Method: "PUT", Path: "/admin/v1/repositories/app/tags/latest",
			Body: `{"digest":"` + digestA + `"}`}},
		{[]string{"tags", "set", "app:latest", digestA, "--expect", digestB}, request{Method: "PUT", Path: "/admin/v1/repositories/app/tags/latest",
			Body: `{"digest":"` + digestA + `","expectedDigest":"` + digestB + `"}`}},
		{[]string{"tags", "set", "app:latest", digestA, "--expect="}, request{Method: "PUT", Path: "/admin/v1/repositories/app/tags/latest",
			Body: `{"digest":"` + digestA + `","expectedDigest":""}`}},
		{[]string{"tags", "delete", "app:7"}, request{Method: "DELETE", Path: "/admin/v1/repositories/app/tags/7"}},
		{[]string{"tags", "restore", "app:7"}, request{Method: "POST", Path: "/admin/v1/repositories/app/tags/7/restore"}},
		{[]string{"rollback", "app", "--to", "41"}, request{Method: "POST", Path: "/admin/v1/repositories/app/rollback", Body: `{"to":"41"}`}},
		{[]string{"rollback", "app", "--to", digestA, "--mode", "retarget", "--tag", "stable"},
			request{Method: "POST", Path: "/admin/v1/repositories/app/rollback", Body: `{"to":"` + digestA + `","mode":"retarget","tag":"stable"}`}},
		{[]string{"policy", "get", "app"}, request{Method: "GET", Path: "/admin/v1/repositories/app/policy"}},
		{[]string{"policy", "set", "team/*", "--keep-newest", "0"}, request{Method: "PUT", Path: "/admin/v1/repositories/team/%2A/policy",
			Body: `{"retention":{"keepNewest":0}}`}},
		{[]string{"policy", "set", "app", "--ordering", "integer, semver", "--pattern=", "--immutable-numbered=false", "--refuse-lower",
			"--keep-newest", "10", "--keep-younger-than", "720h", "--keep-pattern", "^v1"},
			request{Method: "PUT", Path: "/admin/v1/repositories/app/policy", Body: `{"ordering":["integer","semver"],"pattern":"",` +
				`"immutableNumbered":false,"refuseLower":true,"retention":{"keepNewest":10,"keepYoungerThan":"720h","keepPattern":"^v1"}}`}},
		{[]string{"policy", "delete", "app"}, request{Method: "DELETE", Path: "/admin/v1/repositories/app/policy"}},
		{[]string{"policy", "list"}, request{Method: "GET", Path: "/admin/v1/policies"}},
		{[]string{"retention", "app", "--dry-run"}, request{Method: "GET", Path: "/admin/v1/repositories/app/retention"}},
		{[]string{"retention", "app"}, request{Method: "POST", Path: "/admin/v1/repositories/app/retention"}},
		{[]string{"stats"}, request{Method: "GET", Path: "/admin/v1/stats"}},
		{[]string{"stats", "team/app", "--json"}, request{Method: "GET", Path: "/admin/v1/repositories/team/app/stats"}},
	})
}

func TestPolicyFile(t *testing.T) {
	srv, got := fakeAPI(t, http.StatusOK, "{}")
	file := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(file, []byte(`{"refuseLower": true}`), 0o644)
	if _, err := runCLI(t, srv.URL, "policy", "set", "app", "--file", file); err != nil {
		t.Fatal(err)
	}
	if b := (*got)[0].Body; b != `{"refuseLower":true}` {
		t.Fatalf("sent %s", b)
	}
}

// TestUsageErrors: what is wrong on the command line is never sent.
func TestUsageErrors(t *testing.T) {
	srv, got := fakeAPI(t, http.StatusOK, "{}")
	file := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(file, []byte(`{not json`), 0o644)
	for _, args := range [][]string{
		{"versions"},
		{"versions", "App"},
		{"tags", "history", "app"},
		{"tags", "set", "app:latest", "sha256:short"},
		{"tags", "set", "app:latest", digestA, "--expect", "nope"},
		{"tags", "list", "app", "--state", "gone"},
		{"rollback", "app"},
		{"rollback", "app", "--to", "41", "--mode", "sideways"},
		{"rollback", "app", "--to", "not a tag"},
		{"policy", "set", "app"},
		{"policy", "set", "app", "--keep-newest", "1", "--file", file},
		{"policy", "set", "app", "--file", file},
		{"policy", "set", "app", "--keep-younger-than", "30 days"},
		{"policy", "set", "app", "--keep-pattern", "("},
		{"policy", "set", "app", "--immutable-numbered", "maybe"},
		{"repos", "app"},
		{"versions", "app", "--limit", "-1"},
		{"stats", "App"},
		{"stats", "a", "b"},
	} {
		if _, err := runCLI(t, srv.URL, args...); !isUsage(err) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if len(*got) > 0 {
		t.Errorf("sent %+v", *got)
	}
	for _, u := range []string{"localhost:5000", "ftp://host", "http://"} {
		if _, err := runAdmin([]string{"versions", "app", "--url", u}, io.Discard, io.Discard); !isUsage(err) {
			t.Errorf("--url %s: %v, want a usage error", u, err)
		}
	}
	if _, _, err := findAdmin([]string{"tags"}); !isUsage(err) {
		t.Errorf("berth tags: %v, want a usage error", err)
	}
	if a, _, err := findAdmin([]string{"frobnicate"}); a != nil || err != nil {
		t.Errorf("berth frobnicate: %v, %v", a, err)
	}
}

func TestAuthFromEnvironment(t *testing.T) {
	t.Setenv("BERTH_USER", "alice")
	t.Setenv("BERTH_PASSWORD", "s3cret")
	srv, got := fakeAPI(t, http.StatusOK, "{}")
	runCLI(t, srv.URL, "policy", "list")
	runCLI(t, srv.URL, "policy", "list", "--user", "bob", "--password", "pw")
	if (*got)[0].Auth != "alice:s3cret" || (*got)[1].Auth != "bob:pw" {
		t.Fatalf("sent %+v", *got)
	}
}

func TestServerError(t *testing.T) {
	srv, _ := fakeAPI(t, http.StatusConflict,
		`{"errors":[{"code":"TAG_CONFLICT","message":"the tag points elsewhere","detail":{"tag":"latest","digest":"`+digestB+`"}}]}`)
	_, err := runCLI(t, srv.URL, "tags", "set", "app:latest", digestA, "--expect", digestA)
	want := `TAG_CONFLICT: the tag points elsewhere {"tag":"latest","digest":"` + digestB + `"}`
	if err == nil || isUsage(err) || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	srv, _ = fakeAPI(t, http.StatusBadGateway, "<html>bad gateway</html>")
	if _, err := runCLI(t, srv.URL, "repos"); err == nil || !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Fatalf("got %v", err)
	}
}

// pagedVersions serves versions 5 to 1 in pages of at most two, as the
// admin API does: the cursor is the last tag of the previous page.
func pagedVersions(t *testing.T) (*httptest.Server, *[]string) {
	var queries []string
	all := []string{"5", "4", "3", "2", "1"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		from := 0
		for i, v := range all {
			if v == r.URL.Query().Get("cursor") {
				from = i + 1
			}
		}
		n := 2
		if l := r.URL.Query().Get("limit"); l == "1" {
			n = 1
		}
		page := map[string]any{"repository": "app"}
		var vs []map[string]any
		for i := from; i < len(all) && len(vs) < n; i++ {
			vs = append(vs, map[string]any{"tag": all[i], "digest": digestA, "pushedAt": "2024-11-26T10:00:00.123456Z", "newest": i == 0})
		}
		page["versions"] = vs
		if end := from + len(vs); end < len(all) {
			page["next"] = all[end-1]
		}
		json.NewEncoder(w).Encode(page)
	}))
	t.Cleanup(srv.Close)
	return srv, &queries
}

func TestPages(t *testing.T) {
	srv, queries := pagedVersions(t)
	out, err := runCLI(t, srv.URL, "versions", "app")
	if err != nil {
		t.Fatal(err)
	}
	want := `TAG  DIGEST        PUSHED
5    aaaaaaaaaaaa  2024-11-26T10:00:00Z  newest
4    aaaaaaaaaaaa  2024-11-26T10:00:00Z
3    aaaaaaaaaaaa  2024-11-26T10:00:00Z
2    aaaaaaaaaaaa  2024-11-26T10:00:00Z
1    aaaaaaaaaaaa  2024-11-26T10:00:00Z
`
	if out != want {
		t.Errorf("printed\n%s\nwant\n%s", out, want)
	}
	if want := []string{"limit=1000", "cursor=4&limit=1000", "cursor=2&limit=1000"}; !equal(*queries, want) {
		t.Errorf("queries %q, want %q", *queries, want)
	}

	// --limit 3: two pages, the second asking for the one row still wanted,
	// and --json keeps its next, where the printed rows stop.
	*queries = nil
	out, err = runCLI(t, srv.URL, "versions", "app", "--limit", "3", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Repository string    `json:"repository"`
		Versions   []version `json:"versions"`
		Next       string    `json:"next"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.Repository != "app" || len(doc.Versions) != 3 || doc.Versions[2].Tag != "3" || doc.Next != "3" {
		t.Errorf("printed %s", out)
	}
	if want := []string{"limit=3", "cursor=4&limit=1"}; !equal(*queries, want) {
		t.Errorf("queries %q, want %q", *queries, want)
	}

	// --limit 1: the first page is the last, and its next stays.
	out, err = runCLI(t, srv.URL, "versions", "app", "--limit", "1", "--json")
	doc.Next = ""
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Versions) != 1 || doc.Next != "5" {
		t.Errorf("printed %s, %v", out, err)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// TestTables renders fixed answers of the admin API.
func TestTables(t *testing.T) {
	checkRendered(t, []renderCase{
		{"history", `{"repository":"app","tag":"latest","events":[
			{"id":7,"tag":"latest","digest":"` + digestB + `","start":"2024-11-26T10:00:05.5+01:00","actor":"ci","action":"move"},
			{"id":3,"tag":"latest","digest":"` + digestA + `","start":"2024-11-25T09:00:00Z","end":"2024-11-26T09:00:05.5Z","action":"push","endedBy":"ci","endAction":"move"}]}`,
			decoded(func(w io.Writer, d struct{ Events []event }) error { return renderHistory(w, d.Events) }), `ID  START                 END                   DIGEST        ACTION  ACTOR  ENDED
7   2024-11-26T09:00:05Z  -                     bbbbbbbbbbbb  move    ci     -
3   2024-11-25T09:00:00Z  2024-11-26T09:00:05Z  aaaaaaaaaaaa  push    -      move by ci
`},
		{"tags", `{"repository":"app","tags":[
			{"tag":"7","digest":"` + digestA + `","start":"2024-11-25T09:00:00Z","numbered":true,"rank":1},
			{"tag":"6","digest":"sha512:0123456789abcdef","start":"2024-11-24T09:00:00Z","end":"2024-11-25T09:00:00Z","numbered":true,"restorableUntil":"2024-12-09T09:00:00Z"},
			{"tag":"latest","digest":"` + digestA + `","start":"2024-11-25T09:00:00Z","numbered":false}]}`,
			decoded(func(w io.Writer, d struct{ Tags []tagInfo }) error { return renderTags(w, d.Tags) }), `TAG     DIGEST               START                 END                   NUMBERED  RANK  RESTORABLE UNTIL
7       aaaaaaaaaaaa         2024-11-25T09:00:00Z  -                     yes       1     -
6       sha512:0123456789ab  2024-11-24T09:00:00Z  2024-11-25T09:00:00Z  yes       -     2024-12-09T09:00:00Z
latest  aaaaaaaaaaaa         2024-11-25T09:00:00Z  -                     no        -     -
`},
		{"repos", `{"repositories":[
			{"name":"team/app","createdAt":"2024-11-01T00:00:00Z","tags":3,"numberedTags":2,"manifests":2,"size":1572864,"newest":{"tag":"7","digest":"` + digestA + `","pushedAt":"2024-11-25T09:00:00Z"}},
			{"name":"empty","createdAt":"2024-11-02T00:00:00Z","tags":[],"numberedTags":[],"manifests":0,"size":0}]}`,
			decoded(func(w io.Writer, d struct{ Repositories []repository }) error { return renderRepos(w, d.Repositories) }), `NAME      TAGS  NUMBERED  MANIFESTS  SIZE     NEWEST  CREATED
team/app  3     2         2          1.5 MiB  7       2024-11-01T00:00:00Z
empty     0     0         0          0 B      -       2024-11-02T00:00:00Z
`},
		{"policy", `{"repository":"team/app","policy":{"ordering":["integer","semver"],"pattern":"","immutableNumbered":true,"refuseLower":false,
			"retention":{"keepNewest":10,"keepYoungerThan":"720h","keepPattern":""}},
			"rules":[{"repositories":"team/*","source":"config","policy":{"retention":{"keepNewest":10}}},
			{"repositories":"team/app","source":"api","policy":{"immutableNumbered":true}}]}`,
			decoded(renderPolicy), `REPOSITORY          team/app
ordering            integer,semver
pattern             -
immutable-numbered  true
refuse-lower        false
keep-newest         10
keep-younger-than   720h
keep-pattern        -

RULE      SOURCE  POLICY
team/*    config  {"retention":{"keepNewest":10}}
team/app  api     {"immutableNumbered":true}
`},
		{"retention", `{"repository":"app","retention":{"keepNewest":1},"delete":[{"tag":"1","digest":"` + digestA + `","start":"2024-11-25T09:00:00Z"}]}`,
			decoded(func(w io.Writer, r retentionAnswer) error { return renderRetention(w, r, true) }), `would delete 1 tags of app (keep-newest=1)
TAG  DIGEST        START
1    aaaaaaaaaaaa  2024-11-25T09:00:00Z
`},
		{"gc", `{"dryRun":true,"seconds":1.25,"manifests":[{"repository":"app","digest":"` + digestA + `","size":512}],
			"links":[{"repository":"app","digest":"` + digestB + `","size":2097152}],"blobs":[{"digest":"` + digestB + `","size":2097152}],
			"bytes":2097152,"orphans":[],"kept":2,"uploads":1,"uploadsBytes":0,"failed":["deleting blob x: busy"]}`,
			decoded(func(w io.Writer, r gcAnswer) error { return renderGC(w, r, true) }), `would delete 1 blobs (2.0 MiB), 1 blob links, 1 manifests, 0 orphans, 1 uploads (1.2s)
kept 2 that pushes needed again during the run
failed: deleting blob x: busy (the next run tries again)
KIND      REPOSITORY  DIGEST                                                                   SIZE
manifest  app         ` + digestA + `  512
link      app         ` + digestB + `  2097152
blob      -           ` + digestB + `  2097152
`},
		{"stats", `{"blobs":4,"physicalBytes":1048576,"logicalBytes":1703936,"dedupRatio":1.625,"repositories":2,"manifests":3}`,
			decoded(renderStats), `REGISTRY
STORED (PHYSICAL)     1.0 MiB (1048576 bytes)
REFERENCED (LOGICAL)  1.6 MiB (1703936 bytes)
SAVED BY DEDUP        640.0 KiB (655360 bytes)
DEDUP RATIO           1.62x
BLOBS                 4
MANIFESTS             3
REPOSITORIES          2
`},
		{"repository stats", `{"repository":"team/app","blobs":3,"logicalBytes":1536,"sharedBytes":1024,"manifests":1}`,
			decoded(renderRepositoryStats), `REPOSITORY            team/app
REFERENCED (LOGICAL)  1.5 KiB (1536 bytes)
SHARED WITH OTHERS    1.0 KiB (1024 bytes)
ONLY HERE             512 B (512 bytes)
BLOBS                 3
MANIFESTS             1
`},
	})
}

func TestOneLineResults(t *testing.T) {
	checkPrinted(t, []printedCase{
		{[]string{"tags", "set", "app:latest", digestA}, `{"repository":"app","tag":"latest","digest":"` + digestA + `","previous":"` + digestB + `"}`,
			"set app:latest -> " + digestA + " (was " + digestB + ")\n"},
		{[]string{"tags", "delete", "app:7"}, `{"repository":"app","tag":"7","digest":"` + digestA + `"}`,
			"deleted app:7 (was " + digestA + ")\n"},
		{[]string{"rollback", "app", "--to", "1"}, `{"repository":"app","mode":"promote","tag":"3","digest":"` + digestA + `"}`,
			"rolled back (promote): app:3 -> " + digestA + "\n"},
		{[]string{"tags", "restore", "app:7", "--json"}, `{"repository":"app","tag":"7","digest":"x"}`,
			"{\n  \"repository\": \"app\",\n  \"tag\": \"7\",\n  \"digest\": \"x\"\n}\n"},
	})
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}
