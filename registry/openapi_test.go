package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/notify"
	"github.com/berthhq/berth/oci"
	"go.yaml.in/yaml/v3"
)

// contractRoutes are the routes of the admin API contract, which the OpenAPI
// document must describe.
var contractRoutes = []string{
	"GET /repositories",
	"GET /repositories/{name}",
	"GET /repositories/{name}/tags",
	"PUT /repositories/{name}/tags/{tag}",
	"DELETE /repositories/{name}/tags/{tag}",
	"GET /repositories/{name}/tags/{tag}/history",
	"POST /repositories/{name}/tags/{tag}/restore",
	"GET /repositories/{name}/history",
	"GET /repositories/{name}/versions",
	"POST /repositories/{name}/rollback",
	"GET /repositories/{name}/policy",
	"PUT /repositories/{name}/policy",
	"DELETE /repositories/{name}/policy",
	"GET /policies",
	"GET /repositories/{name}/retention",
	"POST /repositories/{name}/retention",
	"GET /openapi.yaml",
	"HEAD /openapi.yaml",
	"GET /webhooks",
	"POST /webhooks",
	"GET /webhooks/{webhook}",
	"PUT /webhooks/{webhook}",
	"DELETE /webhooks/{webhook}",
	"POST /webhooks/{webhook}/enable",
	"GET /webhooks/{webhook}/deliveries",
	"GET /webhooks/{webhook}/deliveries/{id}",
	"POST /webhooks/{webhook}/deliveries/{id}/redeliver",
	"POST /webhooks/{webhook}/ping",
	"GET /stats",
	"GET /repositories/{name}/stats",
}

// contractStatus is each error code's status in the contract.
var contractStatus = map[string]int{
	"NAME_INVALID":              400,
	"DIGEST_INVALID":            400,
	"MANIFEST_INVALID":          400,
	"POLICY_INVALID":            400,
	"REQUEST_INVALID":           400,
	"PAGINATION_NUMBER_INVALID": 400,
	"WEBHOOK_INVALID":           400,
	"DENIED":                    403,
	"NAME_UNKNOWN":              404,
	"TAG_UNKNOWN":               404,
	"MANIFEST_UNKNOWN":          404,
	"POLICY_UNKNOWN":            404,
	"WEBHOOK_UNKNOWN":           404,
	"DELIVERY_UNKNOWN":          404,
	"TAG_CONFLICT":              409,
	"WEBHOOK_CONFLICT":          409,
	"GC_RUNNING":                409,
}

var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openAPIOperation is one path and method of the document.
type openAPIOperation struct {
	method, path string // "GET", "/repositories/{name}"
	op           map[string]any
	params       []any // the path item's parameters, then the operation's
}

func (o openAPIOperation) String() string { return o.method + " " + o.path }

// openAPIDoc parses the embedded document; every mapping must have string
// keys, as JSON's do (a bare 200 as a key is an integer in YAML).
func openAPIDoc(t *testing.T) (map[string]any, []openAPIOperation) {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	yamlWalk(doc, "#", func(v any, at string) {
		if _, ok := v.(map[any]any); ok {
			t.Errorf("%s: a mapping with a key that is not a string", at)
		}
	})
	paths, _ := doc["paths"].(map[string]any)
	if len(paths) == 0 {
		t.Fatal("no paths")
	}
	var ops []openAPIOperation
	for path, item := range paths {
		item, _ := item.(map[string]any)
		common, _ := item["parameters"].([]any)
		for _, m := range openAPIMethods {
			op, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			own, _ := op["parameters"].([]any)
			ops = append(ops, openAPIOperation{strings.ToUpper(m), path, op, slices.Concat(common, own)})
		}
	}
	slices.SortFunc(ops, func(a, b openAPIOperation) int { return strings.Compare(a.String(), b.String()) })
	return doc, ops
}

// yamlWalk calls f on every node of a parsed YAML tree with its JSON pointer.
func yamlWalk(v any, at string, f func(v any, at string)) {
	f(v, at)
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			yamlWalk(c, at+"/"+strings.NewReplacer("~", "~0", "/", "~1").Replace(k), f)
		}
	case []any:
		for i, c := range v {
			yamlWalk(c, at+"/"+strconv.Itoa(i), f)
		}
	}
}

// yamlResolve follows a local $ref such as "#/components/schemas/Repo".
func yamlResolve(doc map[string]any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var v any = doc
	for _, k := range strings.Split(p, "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[strings.NewReplacer("~1", "/", "~0", "~").Replace(k)]; !ok {
			return nil, false
		}
	}
	return v, true
}

// yamlDig returns the value under keys, or nil.
func yamlDig(v any, keys ...string) any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

// yamlDeref returns the object v refers to, or v.
func yamlDeref(doc map[string]any, v any) map[string]any {
	m, _ := v.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		r, _ := yamlResolve(doc, ref)
		m, _ = r.(map[string]any)
	}
	return m
}

func TestOpenAPIDocument(t *testing.T) {
	doc, ops := openAPIDoc(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi: %q, want 3.1.x", v)
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] != "Berth admin API" || info["version"] != "v1" {
		t.Errorf("info: %v", info)
	}
	if servers, _ := doc["servers"].([]any); len(servers) != 1 || yamlDeref(doc, servers[0])["url"] != "/admin/v1" {
		t.Errorf("servers: %v", doc["servers"])
	}

	yamlWalk(doc, "#", func(v any, at string) {
		m, _ := v.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			if _, ok := yamlResolve(doc, ref); !ok {
				t.Errorf("%s: $ref %q does not resolve", at, ref)
			}
		}
	})

	for _, s := range []string{"Repo", "Tag", "Event", "Version", "Policy", "Retention", "Rule", "Error",
		"Endpoint", "Webhook", "WebhookEvent", "Delivery", "Attempt", "PingResult"} {
		if yamlDig(doc, "components", "schemas", s) == nil {
			t.Errorf("no schema %s", s)
		}
	}
	for _, p := range []string{"limit", "repositoryCursor", "tagCursor", "historyCursor", "versionCursor", "webhook", "deliveryId", "deliveryCursor"} {
		if yamlDig(doc, "components", "parameters", p) == nil {
			t.Errorf("no parameter %s", p)
		}
	}

	ids := map[string]string{}
	template := regexp.MustCompile(`\{([^}]+)\}`)
	for _, o := range ops {
		id, _ := o.op["operationId"].(string)
		if id == "" {
			t.Errorf("%s: no operationId", o)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s: operationId %s is also %s's", o, id, other)
		}
		ids[id] = o.String()

		// Path parameters: exactly the template's.
		var want, got []string
		for _, m := range template.FindAllStringSubmatch(o.path, -1) {
			want = append(want, m[1])
		}
		for _, p := range o.params {
			if p := yamlDeref(doc, p); p["in"] == "path" {
				got = append(got, p["name"].(string))
				if p["required"] != true {
					t.Errorf("%s: path parameter %v is not required", o, p["name"])
				}
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: path parameters %v, want %v", o, got, want)
		}

		responses, _ := o.op["responses"].(map[string]any)
		success := false
		for status, r := range responses {
			r := yamlDeref(doc, r)
			if d, _ := r["description"].(string); d == "" {
				t.Errorf("%s %s: no description", o, status)
			}
			if status == "default" {
				continue
			}
			n, err := strconv.Atoi(status)
			if err != nil || n < 100 || n > 599 {
				t.Errorf("%s: response %q is not a status", o, status)
				continue
			}
			if n < 400 {
				success = success || n < 300
				continue
			}
			// An error response names its codes, and each has this status.
			codes, _ := r["x-berth-codes"].([]any)
			if len(codes) == 0 {
				t.Errorf("%s %s: no x-berth-codes", o, status)
			}
			for _, c := range codes {
				if s, ok := contractStatus[c.(string)]; !ok || s != n {
					t.Errorf("%s %s: code %v is %d in the contract", o, status, c, s)
				}
			}
			if ref := yamlDig(r, "content", "application/json", "schema", "$ref"); ref != "#/components/schemas/Error" {
				t.Errorf("%s %s: schema %v, want the Error envelope", o, status, ref)
			}
		}
		if !success {
			t.Errorf("%s: no success response", o)
		}
	}

	var documented []string
	for _, o := range ops {
		documented = append(documented, o.String())
	}
	for _, r := range contractRoutes {
		if !slices.Contains(documented, r) {
			t.Errorf("%s is not in openapi.yaml", r)
		}
	}
}

// TestOpenAPIRoutes checks that the server serves every operation of the
// document: none may answer UNSUPPORTED, the code of an unknown route, nor
// NAME_UNKNOWN for a repository that exists.
func TestOpenAPIRoutes(t *testing.T) {
	doc, ops := openAPIDoc(t)
	base := yamlDeref(doc, doc["servers"].([]any)[0])["url"].(string)
	s := newServer(t)
	s.pushImage("team/app", "latest", []byte("layer"))
	fill := strings.NewReplacer("{name}", "team/app", "{tag}", "latest", "{webhook}", "hook", "{id}", "1")
	for _, o := range ops {
		t.Run(o.String(), func(t *testing.T) {
			var body []byte
			if o.op["requestBody"] != nil {
				body = []byte("{}")
			}
			r := s.do(o.method, base+fill.Replace(o.path), body, "Content-Type", "application/json")
			switch {
			case (r.StatusCode == http.StatusNotFound || r.StatusCode == http.StatusMethodNotAllowed) && r.code() == codeUnsupported:
				t.Errorf("not served: %d %s", r.StatusCode, r.body)
			case r.code() == codeNameUnknown:
				// team/app exists: the path went to a route for a longer name.
				t.Errorf("routed as another repository: %d %s", r.StatusCode, r.body)
			}
		})
	}
}

func TestOpenAPIServed(t *testing.T) {
	s := newServer(t)
	r := s.do("GET", "/admin/v1/openapi.yaml", nil)
	r.expect(t, http.StatusOK, "")
	if ct := r.Header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q", ct)
	}
	if !bytes.Equal(r.body, openAPI) {
		t.Errorf("the body is not the document")
	}
	r = s.do("HEAD", "/admin/v1/openapi.yaml", nil)
	r.expect(t, http.StatusOK, "")
	if r.Header.Get("Content-Length") != strconv.Itoa(len(openAPI)) || len(r.body) != 0 {
		t.Errorf("HEAD: Content-Length %q, %d bytes of body", r.Header.Get("Content-Length"), len(r.body))
	}
	s.do("POST", "/admin/v1/openapi.yaml", nil).expect(t, http.StatusMethodNotAllowed, codeUnsupported)
}

// TestOpenAPIResponses checks what GET operations answer against their 200
// schema: every property it requires is there and every property there is
// declared, in the objects it holds and in the objects of its arrays too.
func TestOpenAPIResponses(t *testing.T) {
	doc, ops := openAPIDoc(t)
	base := yamlDeref(doc, doc["servers"].([]any)[0])["url"].(string)
	// One pause after the first failure, and no retry while the test runs.
	s := newServer(t, withWebhooks(notify.Options{PauseAfter: 1, Schedule: []time.Duration{time.Hour}}))
	// Three webhooks, created before the pushes they are told of: one that
	// sets every field of an endpoint and is answered, one disabled by a
	// 410, one paused by a 500.
	receiver := func(status int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	hook := fmt.Sprintf(`{"name":"hook","url":%q,"format":"distribution","distributionMediaType":%q,"secrets":["whsec_c2VjcmV0"],
		"headers":{"X-Team":"ops"},"repositories":["team/*"],"actions":["push"],"numberedOnly":true,"tagPattern":"^[0-9]+$",
		"mediaTypes":[%q]}`, receiver(http.StatusNoContent), notify.DistributionMediaTypeV1, oci.MediaTypeImageManifest)
	gone := fmt.Sprintf(`{"name":"gone","url":%q,"format":"cloudevents","secrets":["s"]}`, receiver(http.StatusGone))
	flaky := fmt.Sprintf(`{"name":"flaky","url":%q,"format":"harbor","secrets":["s"]}`, receiver(http.StatusInternalServerError))
	for _, body := range []string{hook, gone, flaky} {
		s.do("POST", base+"/webhooks", []byte(body)).expect(t, http.StatusOK, "")
	}
	s.pushImage("team/app", "1", []byte("a"))
	s.pushImage("team/app", "2", []byte("b"))
	s.pushImage("team/app", "latest", []byte("b"))
	// Every list below has an item: a rule, a tag retention would delete,
	// a history row that ended, a delivery.
	s.do("PUT", base+"/repositories/team/app/policy", []byte(`{"retention":{"keepNewest":1}}`)).expect(t, http.StatusOK, "")
	s.do("DELETE", base+"/repositories/team/app/tags/latest", nil).expect(t, http.StatusOK, "")
	delivery := waitWebhooks(t, s, base)
	fill := strings.NewReplacer("{name}", "team/app", "{tag}", "latest", "{webhook}", "hook", "{id}", delivery)
	for _, o := range ops {
		schema := yamlDeref(doc, yamlDig(o.op, "responses", "200", "content", "application/json", "schema"))
		if o.method != "GET" || schema == nil {
			continue
		}
		t.Run(o.String(), func(t *testing.T) {
			r := s.do("GET", base+fill.Replace(o.path), nil)
			r.expect(t, http.StatusOK, "")
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("%v: %s", err, r.body)
			}
			checkProperties(t, doc, schema, body, "$")
		})
	}
}

// waitWebhooks waits until the webhooks of TestOpenAPIResponses have done
// what they are for: hook's two deliveries delivered, gone disabled, flaky
// paused. It returns the id of hook's first delivery.
func waitWebhooks(t *testing.T, s *testServer, base string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		var hooks struct {
			Webhooks []struct {
				Name        string
				DisabledAt  *time.Time
				PausedUntil *time.Time
			}
		}
		var ds struct {
			Deliveries []struct {
				ID    int64
				State string
			}
		}
		json.Unmarshal(s.do("GET", base+"/webhooks", nil).body, &hooks)
		json.Unmarshal(s.do("GET", base+"/webhooks/hook/deliveries", nil).body, &ds)
		done := map[string]bool{}
		for _, h := range hooks.Webhooks {
			done[h.Name] = (h.Name == "gone" && h.DisabledAt != nil) || (h.Name == "flaky" && h.PausedUntil != nil)
		}
		if len(ds.Deliveries) == 2 && ds.Deliveries[0].State == "delivered" && ds.Deliveries[1].State == "delivered" &&
			done["gone"] && done["flaky"] {
			return strconv.FormatInt(ds.Deliveries[1].ID, 10)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhooks did not settle in 20 s: %+v, hook's deliveries %+v", hooks, ds)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a wait for a condition
	}
}

// checkProperties compares the properties of v with those schema declares
// and requires, and those of the objects v holds, directly or in arrays,
// with their schemas.
func checkProperties(t *testing.T, doc, schema, v map[string]any, at string) {
	t.Helper()
	required, _ := schema["required"].([]any)
	for _, k := range required {
		if _, ok := v[k.(string)]; !ok {
			t.Errorf("%s: required property %s is missing", at, k)
		}
	}
	props, _ := schema["properties"].(map[string]any)
	for k, pv := range v {
		prop, ok := props[k]
		if !ok {
			t.Errorf("%s: property %s is not in the schema", at, k)
			continue
		}
		ps := yamlDeref(doc, prop)
		switch pv := pv.(type) {
		case map[string]any:
			if ps["properties"] != nil {
				checkProperties(t, doc, ps, pv, at+"."+k)
			}
		case []any:
			items := yamlDeref(doc, ps["items"])
			if items["type"] != "object" {
				continue
			}
			for i, e := range pv {
				m, _ := e.(map[string]any)
				checkProperties(t, doc, items, m, fmt.Sprintf("%s.%s[%d]", at, k, i))
			}
		}
	}
}
