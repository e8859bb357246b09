package notify_test

import (
	"strings"
	"testing"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
)

func valid() notify.Endpoint {
	return notify.Endpoint{Name: "ci", URL: "https://hooks.example.com/berth", Format: notify.FormatDistribution,
		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "plain text"}}
}

func TestValidate(t *testing.T) {
	ok := map[string]func(*notify.Endpoint){
		"minimal":     func(*notify.Endpoint) {},
		"http":        func(ep *notify.Endpoint) { ep.URL = "http://127.0.0.1:8080/hook?x=1" },
		"harbor":      func(ep *notify.Endpoint) { ep.Format = notify.FormatHarbor },
		"cloudevents": func(ep *notify.Endpoint) { ep.Format = notify.FormatCloudEvents },
		"v1":          func(ep *notify.Endpoint) { ep.DistributionMediaType = notify.DistributionMediaTypeV1 },
		"v2":          func(ep *notify.Endpoint) { ep.DistributionMediaType = notify.DistributionMediaTypeV2 },
		"filters": func(ep *notify.Endpoint) {
			ep.Repositories = []string{"team/*", "app", "svc-?"}
			ep.Actions = []string{"push", "move", "delete", "restore", "rollback", "retention", "manifest-delete"}
			ep.NumberedOnly = true
			ep.TagPattern = `^v?\d+(\.\d+)*$`
			ep.MediaTypes = []string{"application/vnd.oci.image.manifest.v1+json"}
		},
	}
	for name, change := range ok {
		t.Run("valid/"+name, func(t *testing.T) {
			ep := valid()
			change(&ep)
			if err := ep.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
	bad := map[string]struct {
		change func(*notify.Endpoint)
		want   string // in the error
	}{
		"no name":          {func(ep *notify.Endpoint) { ep.Name = "" }, "name"},
		"no url":           {func(ep *notify.Endpoint) { ep.URL = "" }, "url"},
		"relative url":     {func(ep *notify.Endpoint) { ep.URL = "/hook" }, "url"},
		"url without host": {func(ep *notify.Endpoint) { ep.URL = "https:///hook" }, "url"},
		"ftp url":          {func(ep *notify.Endpoint) { ep.URL = "ftp://example.com/" }, "url"},
		"unparsable url":   {func(ep *notify.Endpoint) { ep.URL = "http://a b/%zz" }, "url"},
		"no format":        {func(ep *notify.Endpoint) { ep.Format = "" }, "format"},
		"unknown format":   {func(ep *notify.Endpoint) { ep.Format = "slack" }, "format"},
		"bad media type":   {func(ep *notify.Endpoint) { ep.DistributionMediaType = "application/json" }, "distributionMediaType"},
		"v3 media type": {func(ep *notify.Endpoint) {
			ep.DistributionMediaType = "application/vnd.docker.distribution.events.v3+json"
		}, "distributionMediaType"},
		"media type harbor": {func(ep *notify.Endpoint) {
			ep.Format, ep.DistributionMediaType = "harbor", notify.DistributionMediaTypeV1
		}, "distributionMediaType"},
		"bad tag regexp":    {func(ep *notify.Endpoint) { ep.TagPattern = "v(1" }, "tagPattern"},
		"empty glob":        {func(ep *notify.Endpoint) { ep.Repositories = []string{"team/*", ""} }, "repositories"},
		"uppercase glob":    {func(ep *notify.Endpoint) { ep.Repositories = []string{"Team/*"} }, "repositories"},
		"double slash glob": {func(ep *notify.Endpoint) { ep.Repositories = []string{"team//*"} }, "repositories"},
		"class glob":        {func(ep *notify.Endpoint) { ep.Repositories = []string{"team/[ab]"} }, "repositories"},
		"unknown action":    {func(ep *notify.Endpoint) { ep.Actions = []string{"push", "pull"} }, "actions"},
		"action case":       {func(ep *notify.Endpoint) { ep.Actions = []string{"Push"} }, "actions"},
		"no secret":         {func(ep *notify.Endpoint) { ep.Secrets = nil }, "secrets"},
		"header name":       {func(ep *notify.Endpoint) { ep.Headers = map[string]string{"Two Words": "x"} }, "headers"},
		"header value":      {func(ep *notify.Endpoint) { ep.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }, "headers"},
		"header control":    {func(ep *notify.Endpoint) { ep.Headers = map[string]string{"X-A": "a\x01b"} }, "headers"},
		"signed header":     {func(ep *notify.Endpoint) { ep.Headers = map[string]string{"webhook-id": "x"} }, "headers"},
		"harbor blob pulls": {func(ep *notify.Endpoint) { ep.Format, ep.Actions = "harbor", []string{"push", "blob-pull"} }, "actions"},
		"empty secret":      {func(ep *notify.Endpoint) { ep.Secrets = []string{"s", ""} }, "secrets[1]"},
		"bad whsec secret":  {func(ep *notify.Endpoint) { ep.Secrets = []string{"whsec_!!"} }, "secrets[0]"},
	}
	for name, c := range bad {
		t.Run("invalid/"+name, func(t *testing.T) {
			ep := valid()
			c.change(&ep)
			err := ep.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %v, want an error about %s", err, c.want)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	const ociType, dockerType = "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"
	push := metadata.Event{Action: "push", Repository: "team/app", Tag: "42", MediaType: ociType, Numbered: true, Newest: true}
	with := func(change func(*metadata.Event)) metadata.Event {
		e := push
		change(&e)
		return e
	}
	cases := []struct {
		name   string
		filter func(*notify.Endpoint)
		event  metadata.Event
		want   bool
	}{
		{"no filter", func(*notify.Endpoint) {}, push, true},
		{"no filter, manifest delete", func(*notify.Endpoint) {}, with(func(e *metadata.Event) { e.Action, e.Tag, e.Numbered = "manifest-delete", "", false }), true},

		{"repository exact", func(ep *notify.Endpoint) { ep.Repositories = []string{"team/app"} }, push, true},
		{"repository other", func(ep *notify.Endpoint) { ep.Repositories = []string{"team/api"} }, push, false},
		{"repository no prefix match", func(ep *notify.Endpoint) { ep.Repositories = []string{"team"} }, push, false},
		{"repository star", func(ep *notify.Endpoint) { ep.Repositories = []string{"team/*"} }, push, true},
		{"repository star crosses /", func(ep *notify.Endpoint) { ep.Repositories = []string{"team/*"} }, with(func(e *metadata.Event) { e.Repository = "team/a/b/c" }), true},
		{"repository star in middle", func(ep *notify.Endpoint) { ep.Repositories = []string{"*/app"} }, with(func(e *metadata.Event) { e.Repository = "x/y/app" }), true},
		{"repository question mark", func(ep *notify.Endpoint) { ep.Repositories = []string{"team/ap?"} }, push, true},
		{"repository question mark one only", func(ep *notify.Endpoint) { ep.Repositories = []string{"team/a?"} }, push, false},
		{"repository any of several", func(ep *notify.Endpoint) { ep.Repositories = []string{"other/*", "team/*"} }, push, true},
		{"repository none of several", func(ep *notify.Endpoint) { ep.Repositories = []string{"other/*", "x"} }, push, false},

		{"action listed", func(ep *notify.Endpoint) { ep.Actions = []string{"move", "push"} }, push, true},
		{"action not listed", func(ep *notify.Endpoint) { ep.Actions = []string{"delete"} }, push, false},
		{"action manifest-delete", func(ep *notify.Endpoint) { ep.Actions = []string{"manifest-delete"} }, with(func(e *metadata.Event) { e.Action, e.Tag = "manifest-delete", "" }), true},
		{"blob pull, no filter", func(*notify.Endpoint) {}, with(func(e *metadata.Event) { e.Action, e.Tag, e.Numbered = "blob-pull", "", false }), false},
		{"blob pull, other actions", func(ep *notify.Endpoint) { ep.Actions = []string{"push", "blob-push"} }, with(func(e *metadata.Event) { e.Action, e.Tag, e.Numbered = "blob-pull", "", false }), false},
		{"blob pull listed", func(ep *notify.Endpoint) { ep.Actions = []string{"blob-pull"} }, with(func(e *metadata.Event) { e.Action, e.Tag, e.Numbered = "blob-pull", "", false }), true},

		{"numbered only, numbered", func(ep *notify.Endpoint) { ep.NumberedOnly = true }, push, true},
		{"numbered only, moving tag", func(ep *notify.Endpoint) { ep.NumberedOnly = true }, with(func(e *metadata.Event) { e.Tag, e.Numbered, e.Newest = "latest", false, false }), false},
		{"numbered only, not newest", func(ep *notify.Endpoint) { ep.NumberedOnly = true }, with(func(e *metadata.Event) { e.Newest = false }), true},

		{"tag pattern matches", func(ep *notify.Endpoint) { ep.TagPattern = `^\d+$` }, push, true},
		{"tag pattern does not match", func(ep *notify.Endpoint) { ep.TagPattern = `^v\d+$` }, push, false},
		{"tag pattern unanchored", func(ep *notify.Endpoint) { ep.TagPattern = `rc` }, with(func(e *metadata.Event) { e.Tag = "1.0-rc1" }), true},
		{"tag pattern, no tag", func(ep *notify.Endpoint) { ep.TagPattern = `.*` }, with(func(e *metadata.Event) { e.Action, e.Tag = "manifest-delete", "" }), false},
		{"tag pattern invalid", func(ep *notify.Endpoint) { ep.TagPattern = `(` }, push, false},

		{"media type listed", func(ep *notify.Endpoint) { ep.MediaTypes = []string{dockerType, ociType} }, push, true},
		{"media type not listed", func(ep *notify.Endpoint) { ep.MediaTypes = []string{dockerType} }, push, false},

		{"all pass", func(ep *notify.Endpoint) {
			ep.Repositories, ep.Actions, ep.NumberedOnly, ep.TagPattern, ep.MediaTypes = []string{"team/*"}, []string{"push"}, true, `^\d+$`, []string{ociType}
		}, push, true},
	}
	// Combined: each filter failing alone fails the whole.
	all := func(ep *notify.Endpoint) {
		ep.Repositories, ep.Actions, ep.NumberedOnly, ep.TagPattern, ep.MediaTypes = []string{"team/*"}, []string{"push", "move"}, true, `^\d+$`, []string{ociType}
	}
	for name, change := range map[string]func(*metadata.Event){
		"repository": func(e *metadata.Event) { e.Repository = "other/app" },
		"action":     func(e *metadata.Event) { e.Action = "delete" },
		"numbered":   func(e *metadata.Event) { e.Numbered = false },
		"tag":        func(e *metadata.Event) { e.Tag = "v42" },
		"media type": func(e *metadata.Event) { e.MediaType = dockerType },
	} {
		cases = append(cases, struct {
			name   string
			filter func(*notify.Endpoint)
			event  metadata.Event
			want   bool
		}{"all but " + name, all, with(change), false})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ep := valid()
			c.filter(&ep)
			if got := ep.Matches(c.event); got != c.want {
				t.Errorf("Matches(%+v) = %v, want %v", c.event, got, c.want)
			}
		})
	}
}
