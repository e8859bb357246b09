package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWebhookRequests checks what each webhook command sends.
func TestWebhookRequests(t *testing.T) {
	t.Setenv("BERTH_USER", "")
	t.Setenv("BERTH_PASSWORD", "")
	t.Setenv(webhookSecretEnv, "")
	checkSent(t, []sentCase{
		{[]string{"webhooks", "list"}, request{Method: "GET", Path: "/admin/v1/webhooks"}},
		{[]string{"webhooks", "show", "deploy"}, request{Method: "GET", Path: "/admin/v1/webhooks/deploy"}},
		{[]string{"webhooks", "add", "deploy", "--target", "https://ci.example.com/hook", "--format", "cloudevents", "--secret", "s1"},
			request{Method: "POST", Path: "/admin/v1/webhooks",
				Body: `{"name":"deploy","url":"https://ci.example.com/hook","format":"cloudevents","secrets":["s1"]}`}},
		{[]string{"webhooks", "add", "d.2", "--target", "http://h/x", "--format", "distribution", "--distribution-v1",
			"--secret", "new", "--secret", "old,older", "--repo", "team/*", "--repo", "infra/db", "--action", "push", "--action", "rollback",
			"--numbered-only", "--tag-pattern", `^v\d+$`, "--media-type", "application/vnd.oci.image.index.v1+json",
			"--header", "Authorization=Bearer t=1", "--header", "X-Team=ops"},
			request{Method: "POST", Path: "/admin/v1/webhooks", Body: `{"name":"d.2","url":"http://h/x","format":"distribution",` +
				`"distributionMediaType":"application/vnd.docker.distribution.events.v1+json","secrets":["new","old","older"],` +
				`"headers":{"Authorization":"Bearer t=1","X-Team":"ops"},"repositories":["team/*","infra/db"],"actions":["push","rollback"],` +
				`"numberedOnly":true,"tagPattern":"^v\\d+$","mediaTypes":["application/vnd.oci.image.index.v1+json"]}`}},
		{[]string{"webhooks", "delete", "deploy"}, request{Method: "DELETE", Path: "/admin/v1/webhooks/deploy"}},
		{[]string{"webhooks", "enable", "deploy"}, request{Method: "POST", Path: "/admin/v1/webhooks/deploy/enable"}},
		{[]string{"webhooks", "deliveries", "deploy"}, request{Method: "GET", Path: "/admin/v1/webhooks/deploy/deliveries", Query: "limit=1000"}},
		{[]string{"webhooks", "deliveries", "deploy", "--limit", "5"}, request{Method: "GET", Path: "/admin/v1/webhooks/deploy/deliveries", Query: "limit=5"}},
		{[]string{"webhooks", "delivery", "deploy", "42"}, request{Method: "GET", Path: "/admin/v1/webhooks/deploy/deliveries/42"}},
		{[]string{"webhooks", "redeliver", "deploy", "42"}, request{Method: "POST", Path: "/admin/v1/webhooks/deploy/deliveries/42/redeliver"}},
	})
}

// TestWebhookSecretFromEnvironment: --secret wins over the variable, which
// may hold a comma list.
func TestWebhookSecretFromEnvironment(t *testing.T) {
	t.Setenv(webhookSecretEnv, "whsec_c2VjcmV0,old")
	srv, got := fakeAPI(t, http.StatusOK, "{}")
	add := []string{"webhooks", "add", "deploy", "--target", "http://h/", "--format", "harbor"}
	if _, err := runCLI(t, srv.URL, add...); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, srv.URL, append(add, "--secret", "flag")...); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{`"secrets":["whsec_c2VjcmV0","old"]`, `"secrets":["flag"]`} {
		if !strings.Contains((*got)[i].Body, want) {
			t.Errorf("request %d sent %s, want %s", i, (*got)[i].Body, want)
		}
	}
}

// storedWebhook is a webhook as GET /admin/v1/webhooks/deploy answers it.
const storedWebhook = `{"name":"deploy","url":"http://h/hook","format":"cloudevents","secrets":2,"headers":{"X-Team":"ops"},
	"repositories":["team/*"],"numberedOnly":true,"source":"api","createdAt":"2024-11-25T09:00:00Z","updatedAt":"2024-11-26T09:00:00Z",
	"consecutiveFailures":0}`

// fakeWebhookAPI answers a GET with storedWebhook and anything else with
// {}, and records the requests.
func fakeWebhookAPI(t *testing.T) (*httptest.Server, *[]request) {
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, request{Method: r.Method, Path: r.URL.EscapedPath(), Body: string(b)})
		if r.Method == http.MethodGet {
			io.WriteString(w, storedWebhook)
			return
		}
		io.WriteString(w, "{}")
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

// TestWebhookSet: the flags given replace their fields, the others stay,
// the secrets too unless given; --file replaces the whole endpoint.
func TestWebhookSet(t *testing.T) {
	t.Setenv(webhookSecretEnv, "")
	for _, tc := range []struct {
		args []string
		put  string
	}{
		{[]string{"--tag-pattern", "^[0-9]+$"}, `{"name":"deploy","url":"http://h/hook","format":"cloudevents","headers":{"X-Team":"ops"},` +
			`"repositories":["team/*"],"numberedOnly":true,"tagPattern":"^[0-9]+$"}`},
		{[]string{"--target", "https://new/", "--repo", "", "--header=", "--numbered-only=false", "--secret", "s2,s1"},
			`{"name":"deploy","url":"https://new/","format":"cloudevents","secrets":["s2","s1"]}`},
		{[]string{"--format", "distribution", "--distribution-v1", "--repo", "a", "--repo", "b/*"},
			`{"name":"deploy","url":"http://h/hook","format":"distribution","distributionMediaType":"application/vnd.docker.distribution.events.v1+json",` +
				`"headers":{"X-Team":"ops"},"repositories":["a","b/*"],"numberedOnly":true}`},
	} {
		srv, got := fakeWebhookAPI(t)
		if _, err := runCLI(t, srv.URL, append([]string{"webhooks", "set", "deploy"}, tc.args...)...); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		want := []request{{Method: "GET", Path: "/admin/v1/webhooks/deploy"}, {Method: "PUT", Path: "/admin/v1/webhooks/deploy", Body: tc.put}}
		if len(*got) != 2 || (*got)[0] != want[0] || (*got)[1] != want[1] {
			t.Errorf("%q sent\n  %+v\nwant\n  %+v", tc.args, *got, want)
		}
	}

	// With the secret from the environment alone.
	t.Setenv(webhookSecretEnv, "rotated")
	srv, got := fakeWebhookAPI(t)
	if _, err := runCLI(t, srv.URL, "webhooks", "set", "deploy"); err != nil {
		t.Fatal(err)
	}
	if len(*got) != 2 || !strings.Contains((*got)[1].Body, `"secrets":["rotated"]`) {
		t.Errorf("sent %+v", *got)
	}
}

func TestWebhookFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "endpoint.json")
	os.WriteFile(file, []byte(`{"url": "http://h/", "format": "harbor", "secrets": ["s"]}`), 0o644)
	named := filepath.Join(dir, "named.json")
	os.WriteFile(named, []byte(`{"name": "deploy", "url": "http://h/", "format": "harbor"}`), 0o644)
	checkSent(t, []sentCase{
		{[]string{"webhooks", "add", "deploy", "--file", file},
			request{Method: "POST", Path: "/admin/v1/webhooks", Body: `{"format":"harbor","name":"deploy","secrets":["s"],"url":"http://h/"}`}},
		{[]string{"webhooks", "set", "deploy", "--file", named},
			request{Method: "PUT", Path: "/admin/v1/webhooks/deploy", Body: `{"format":"harbor","name":"deploy","url":"http://h/"}`}},
	})
}

// TestWebhookUsageErrors: what is wrong on the command line is never sent.
func TestWebhookUsageErrors(t *testing.T) {
	t.Setenv(webhookSecretEnv, "")
	srv, got := fakeAPI(t, http.StatusOK, "{}")
	named := filepath.Join(t.TempDir(), "other.json")
	os.WriteFile(named, []byte(`{"name": "other"}`), 0o644)
	add := func(more ...string) []string {
		return append([]string{"webhooks", "add", "deploy", "--target", "http://h/", "--format", "cloudevents", "--secret", "s"}, more...)
	}
	for _, args := range [][]string{
		{"webhooks", "show"},
		{"webhooks", "show", "a/b"},
		{"webhooks", "show", strings.Repeat("x", 129)},
		{"webhooks", "list", "extra"},
		{"webhooks", "add", "deploy", "--format", "cloudevents", "--secret", "s"},
		{"webhooks", "add", "deploy", "--url", "http://h/", "--format", "cloudevents", "--secret", "s"},
		{"webhooks", "add", "deploy", "--target", "http://h/", "--secret", "s"},
		{"webhooks", "add", "deploy", "--target", "http://h/", "--format", "cloudevents"},
		add("--target", "ftp://h/"),
		add("--format", "xml"),
		add("--secret", "whsec_!"),
		add("--action", "pull"),
		add("--repo", "Team/*"),
		add("--tag-pattern", "("),
		add("--header", "no-equals"),
		add("--header", "=v"),
		add("--header", "Two Words=v"),
		add("--header", "X-A=line\nbreak"),
		add("--distribution-v1"),
		add("--file", named),
		{"webhooks", "add", "deploy", "--file", named},
		{"webhooks", "set", "deploy"},
		{"webhooks", "set", "deploy", "--file", named},
		{"webhooks", "set", "deploy", "--format", "harbor", "--distribution-v1"},
		{"webhooks", "set", "deploy", "--tag-pattern", "("},
		{"webhooks", "delivery", "deploy"},
		{"webhooks", "delivery", "deploy", "x"},
		{"webhooks", "redeliver", "deploy", "0"},
		{"webhooks", "deliveries", "deploy", "--limit", "-1"},
	} {
		if _, err := runCLI(t, srv.URL, args...); !isUsage(err) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if len(*got) > 0 {
		t.Errorf("sent %+v", *got)
	}
	if _, _, err := findAdmin([]string{"webhooks"}); !isUsage(err) || !strings.Contains(err.Error(), "deliveries") {
		t.Errorf("berth webhooks: %v, want a usage error listing the commands", err)
	}
}

func TestWebhookPing(t *testing.T) {
	for _, tc := range []struct {
		answer, want, err string
	}{
		{`{"event":"ping_1","status":204}`, "ping deploy (event ping_1): 204 No Content\n", ""},
		{`{"event":"ping_1","status":500,"response":"oops\nmore"}`, "ping deploy (event ping_1): 500 Internal Server Error\nresponse: oops more\n",
			"ping deploy: the receiver answered 500"},
		{`{"event":"ping_1","response":"dial tcp: refused","error":"http://h/: dial tcp: refused"}`,
			"ping deploy (event ping_1): no answer\nresponse: dial tcp: refused\n", "ping deploy: http://h/: dial tcp: refused"},
	} {
		srv, got := fakeAPI(t, http.StatusOK, tc.answer)
		out, err := runCLI(t, srv.URL, "webhooks", "ping", "deploy")
		if out != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%s: printed %q, %v; want %q, %s", tc.answer, out, err, tc.want, tc.err)
		}
		if len(*got) != 1 || (*got)[0].Method != "POST" || (*got)[0].Path != "/admin/v1/webhooks/deploy/ping" {
			t.Errorf("sent %+v", *got)
		}
	}
}

// TestWebhookTables renders fixed answers of the webhook API.
func TestWebhookTables(t *testing.T) {
	checkRendered(t, []renderCase{
		{"list", `{"webhooks":[` + storedWebhook + `,
			{"name":"gone","url":"http://g/","format":"harbor","secrets":1,"source":"config","createdAt":"2024-11-25T09:00:00Z",
			"updatedAt":"2024-11-25T09:00:00Z","disabledAt":"2024-11-26T09:00:00Z","disabledReason":"the endpoint answered 410 Gone","consecutiveFailures":0},
			{"name":"slow","url":"http://s/","format":"distribution","secrets":1,"source":"api","createdAt":"2024-11-25T09:00:00Z",
			"updatedAt":"2024-11-25T09:00:00Z","consecutiveFailures":10,"pausedUntil":"2024-11-26T09:05:00Z"}]}`,
			decoded(func(w io.Writer, d struct{ Webhooks []webhook }) error { return renderWebhooks(w, d.Webhooks) }), `NAME    TARGET         FORMAT        SOURCE  STATE                              FAILURES
deploy  http://h/hook  cloudevents   api     enabled                            0
gone    http://g/      harbor        config  disabled                           0
slow    http://s/      distribution  api     paused until 2024-11-26T09:05:00Z  10
`},
		{"show", storedWebhook, decoded(renderWebhook), `WEBHOOK        deploy
target         http://h/hook
format         cloudevents
secrets        2
repo           team/*
action         -
numbered-only  true
tag-pattern    -
media-type     -
header         X-Team=ops
source         api
state          enabled
failures       0
created        2024-11-25T09:00:00Z
updated        2024-11-26T09:00:00Z
`},
		{"deliveries", `{"webhook":"deploy","deliveries":[
			{"id":9,"event":{"id":"evt_2","time":1732611600000000000,"action":"manifest-delete","repository":"team/app","digest":"` + digestA + `",
			"mediaType":"application/vnd.oci.image.manifest.v1+json","size":500},"state":"pending","attempts":2,"lastStatus":503,
			"createdAt":"2024-11-26T09:00:00Z","nextAttemptAt":"2024-11-26T09:02:30Z"},
			{"id":7,"event":{"id":"evt_1","time":1732608000000000000,"action":"push","repository":"team/app","tag":"42","digest":"` + digestA + `",
			"mediaType":"application/vnd.oci.image.manifest.v1+json","size":500,"numbered":true,"newest":true},"state":"delivered","attempts":1,
			"lastStatus":200,"createdAt":"2024-11-26T08:00:00Z","doneAt":"2024-11-26T08:00:01Z"}]}`,
			decoded(func(w io.Writer, d struct{ Deliveries []delivery }) error { return renderDeliveries(w, d.Deliveries) }), `ID  CREATED               ACTION           REFERENCE              STATE      ATTEMPTS  STATUS  NEXT ATTEMPT
9   2024-11-26T09:00:00Z  manifest-delete  team/app@aaaaaaaaaaaa  pending    2         503     2024-11-26T09:02:30Z
7   2024-11-26T08:00:00Z  push             team/app:42            delivered  1         200     -
`},
		{"delivery", `{"id":9,"event":{"id":"evt_2","time":1732611600000000000,"action":"push","repository":"team/app","tag":"43",
			"digest":"` + digestB + `","previous":"` + digestA + `","mediaType":"application/vnd.oci.image.manifest.v1+json","size":500,
			"numbered":true,"actor":"10.0.0.1:5555"},"state":"dead","attempts":2,"createdAt":"2024-11-26T09:00:00Z","doneAt":"2024-11-27T09:00:00Z",
			"log":[{"attempt":1,"at":"2024-11-26T09:00:00.5Z","status":0,"latency":"10.000412s","response":"Post \"http://h/\": context deadline exceeded"},
			{"attempt":2,"at":"2024-11-26T09:00:05Z","status":503,"latency":"345.6789µs","response":"<html>\n  <body>busy</body>\n</html>"}]}`,
			decoded(renderDelivery), `DELIVERY      9
event         evt_2
action        push
reference     team/app:43
digest        ` + digestB + `
previous      ` + digestA + `
numbered      yes
actor         10.0.0.1:5555
created       2024-11-26T09:00:00Z
state         dead
attempts      2
next attempt  -
done          2024-11-27T09:00:00Z

ATTEMPT  AT                    STATUS  LATENCY  RESPONSE
1        2024-11-26T09:00:00Z  -       10s      Post "http://h/": context deadline exceeded
2        2024-11-26T09:00:05Z  503     346µs    <html> <body>busy</body> </html>
`},
	})
}

func TestWebhookOneLineResults(t *testing.T) {
	checkPrinted(t, []printedCase{
		{[]string{"webhooks", "delete", "deploy"}, "", "deleted the webhook deploy and its deliveries\n"},
		{[]string{"webhooks", "enable", "deploy"}, storedWebhook, "enabled the webhook deploy\n"},
		{[]string{"webhooks", "redeliver", "deploy", "7"}, `{"id":7,"event":{"action":"push","repository":"team/app","tag":"42"},"state":"pending"}`,
			"delivery 7 (push team/app:42) is pending again, due now\n"},
	})
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{"": "-", " a \n b ": "a b", "abcdefghij": "abcdefghij", "abcdefghijk": "abcdefghi…"} {
		if got := oneLine(in, 10); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
