package notify_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/notify"
	"github.com/distribution/distribution/v3/notifications"
)

var (
	reg = notify.Registry{Host: "registry.example.com:5000", URL: "https://registry.example.com:5000", InstanceID: "3f1c0b9e-instance"}
	at  = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)
)

const (
	atText   = "2026-03-01T12:30:45.123456789Z"
	manifest = "application/vnd.oci.image.manifest.v1+json"
	dgst     = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	prev     = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// event returns an event of an action on team/app:42 (on team/app with no
// tag for a manifest delete).
func event(action string) metadata.Event {
	e := metadata.Event{
		ID: "evt-7", Seq: 7, Time: at.UnixNano(), Action: action, Repository: "team/app", Tag: "42",
		Digest: dgst, Previous: prev, MediaType: manifest, Size: 1234, Numbered: true, Newest: true, Actor: "alice",
	}
	if action == metadata.ActionManifestDelete {
		e.Tag, e.Previous, e.Numbered, e.Newest = "", "", false, false
	}
	return e
}

var allActions = []string{"push", "move", "delete", "restore", "rollback", "retention", "manifest-delete"}

// decodeStrict decodes a body into v, refusing any field v does not have
// and anything after the value.
func decodeStrict(t *testing.T, body []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, body)
	}
	if d.More() {
		t.Fatalf("data after the JSON value:\n%s", body)
	}
}

// keys returns the member names of the object at path in body, sorted, so
// that a field left out (which strict decoding cannot see) is caught.
func keys(t *testing.T, body []byte, path ...string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	for _, p := range path {
		if p == "" {
			continue
		}
		if p == "0" {
			v = v.([]any)[0]
		} else {
			v = v.(map[string]any)[p]
		}
	}
	return slices.Sorted(maps.Keys(v.(map[string]any)))
}

func encode(t *testing.T, e metadata.Event, ep notify.Endpoint) (string, []byte) {
	t.Helper()
	contentType, body, err := notify.Encode(e, ep, reg)
	if err != nil {
		t.Fatalf("Encode(%s, %s): %v", e.Action, ep.Format, err)
	}
	return contentType, body
}

func TestDistribution(t *testing.T) {
	for _, action := range allActions {
		t.Run(action, func(t *testing.T) {
			e := event(action)
			contentType, body := encode(t, e, notify.Endpoint{Format: notify.FormatDistribution})
			if contentType != notifications.EventsMediaType {
				t.Errorf("Content-Type %q, want %q", contentType, notifications.EventsMediaType)
			}
			// The reference Envelope holds events as interface values, so a
			// strict decode of it checks only the top level; the events are
			// decoded strictly into the reference Event.
			var env notifications.Envelope
			decodeStrict(t, body, &env)
			var got struct {
				Events []notifications.Event `json:"events"`
			}
			decodeStrict(t, body, &got)
			if len(got.Events) != 1 {
				t.Fatalf("%d events, want one per delivery:\n%s", len(got.Events), body)
			}

			var want notifications.Event
			want.ID = "evt-7"
			want.Timestamp = at
			want.Action, want.Request.Method = "push", "PUT"
			if action == "delete" || action == "retention" || action == "manifest-delete" {
				want.Action, want.Request.Method = "delete", "DELETE"
			}
			want.Target.MediaType = manifest
			want.Target.Size = 1234
			want.Target.Digest = dgst
			want.Target.Length = 1234
			want.Target.Repository = "team/app"
			want.Target.URL = "https://registry.example.com:5000/v2/team/app/manifests/" + dgst
			want.Target.Tag = e.Tag
			want.Request.ID = "evt-7"
			want.Request.Addr = ""
			want.Request.Host = "registry.example.com:5000"
			want.Request.UserAgent = "berth"
			want.Actor.Name = "alice"
			want.Source.Addr = "registry.example.com:5000"
			want.Source.InstanceID = "3f1c0b9e-instance"
			ev := got.Events[0]
			if !ev.Timestamp.Equal(want.Timestamp) {
				t.Errorf("timestamp %v, want %v", ev.Timestamp, want.Timestamp)
			}
			ev.Timestamp = want.Timestamp // compared above; a location pointer may differ
			if !reflect.DeepEqual(ev, want) {
				t.Errorf("event\n got %+v\nwant %+v", ev, want)
			}

			if !bytes.Contains(body, []byte(`"timestamp":"`+atText+`"`)) {
				t.Errorf("timestamp not written as %s:\n%s", atText, body)
			}
			wantTarget := []string{"digest", "length", "mediaType", "repository", "size", "tag", "url"}
			if e.Tag == "" {
				wantTarget = slices.DeleteFunc(wantTarget, func(k string) bool { return k == "tag" })
			}
			if k := keys(t, body, "events", "0", "target"); !slices.Equal(k, wantTarget) {
				t.Errorf("target has %v, want %v", k, wantTarget)
			}
		})
	}
}

func TestDistributionMediaType(t *testing.T) {
	e := event("push")
	_, v2 := encode(t, e, notify.Endpoint{Format: notify.FormatDistribution})
	for _, mt := range []string{notify.DistributionMediaTypeV2, notify.DistributionMediaTypeV1} {
		contentType, body := encode(t, e, notify.Endpoint{Format: notify.FormatDistribution, DistributionMediaType: mt})
		if contentType != mt {
			t.Errorf("Content-Type %q, want %q", contentType, mt)
		}
		if !bytes.Equal(body, v2) {
			t.Errorf("%s body differs from v2's:\n%s\n%s", mt, body, v2)
		}
	}
}

// harborBody is Harbor's webhook payload as receivers parse it, written
// here independently of the package's.
type harborBody struct {
	Type      string `json:"type"`
	OccurAt   int64  `json:"occur_at"`
	Operator  string `json:"operator"`
	EventData struct {
		Resources  []harborResourceBody `json:"resources"`
		Repository struct {
			DateCreated  int64  `json:"date_created"`
			Name         string `json:"name"`
			Namespace    string `json:"namespace"`
			RepoFullName string `json:"repo_full_name"`
			RepoType     string `json:"repo_type"`
		} `json:"repository"`
	} `json:"event_data"`
}

type harborResourceBody struct {
	Digest      string `json:"digest"`
	Tag         string `json:"tag"`
	ResourceURL string `json:"resource_url"`
}

func TestHarbor(t *testing.T) {
	for _, action := range allActions {
		t.Run(action, func(t *testing.T) {
			e := event(action)
			contentType, body := encode(t, e, notify.Endpoint{Format: notify.FormatHarbor})
			if contentType != "application/json" {
				t.Errorf("Content-Type %q, want application/json", contentType)
			}
			var got harborBody
			decodeStrict(t, body, &got)

			var want harborBody
			want.Type = "PUSH_ARTIFACT"
			if action == "delete" || action == "retention" || action == "manifest-delete" {
				want.Type = "DELETE_ARTIFACT"
			}
			want.OccurAt = at.Unix()
			want.Operator = "alice"
			r := harborResourceBody{Digest: dgst, Tag: "42", ResourceURL: "registry.example.com:5000/team/app:42"}
			if e.Tag == "" {
				r.Tag, r.ResourceURL = "", "registry.example.com:5000/team/app@"+dgst
			}
			want.EventData.Resources = []harborResourceBody{r}
			repo := &want.EventData.Repository
			repo.DateCreated = at.Unix()
			repo.Name, repo.Namespace, repo.RepoFullName, repo.RepoType = "app", "team", "team/app", "private"
			if !reflect.DeepEqual(got, want) {
				t.Errorf("harbor\n got %+v\nwant %+v", got, want)
			}

			for path, want := range map[string][]string{
				"":                       {"event_data", "occur_at", "operator", "type"},
				"event_data":             {"repository", "resources"},
				"event_data/resources/0": {"digest", "resource_url", "tag"},
				"event_data/repository":  {"date_created", "name", "namespace", "repo_full_name", "repo_type"},
			} {
				if k := keys(t, body, strings.Split(path, "/")...); !slices.Equal(k, want) {
					t.Errorf("%s has %v, want %v", path, k, want)
				}
			}
		})
	}
}

func TestHarborNamespace(t *testing.T) {
	for _, c := range []struct{ repo, namespace, name string }{
		{"app", "library", "app"},
		{"team/app", "team", "app"},
		{"org/team/app", "org/team", "app"},
	} {
		e := event("push")
		e.Repository = c.repo
		_, body := encode(t, e, notify.Endpoint{Format: notify.FormatHarbor})
		var got harborBody
		decodeStrict(t, body, &got)
		r := got.EventData.Repository
		if r.Namespace != c.namespace || r.Name != c.name || r.RepoFullName != c.repo {
			t.Errorf("%s: namespace %q name %q full %q, want %q %q %q", c.repo, r.Namespace, r.Name, r.RepoFullName, c.namespace, c.name, c.repo)
		}
		if u := got.EventData.Resources[0].ResourceURL; u != "registry.example.com:5000/"+c.repo+":42" {
			t.Errorf("%s: resource_url %q", c.repo, u)
		}
	}
}

// cloudEventBody is a structured-mode CloudEvent with Berth's data, written
// here independently of the package's; time stays text to check its format.
type cloudEventBody struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            struct {
		Registry       string `json:"registry"`
		Repository     string `json:"repository"`
		Tag            string `json:"tag"`
		Digest         string `json:"digest"`
		PreviousDigest string `json:"previousDigest"`
		MediaType      string `json:"mediaType"`
		Size           int64  `json:"size"`
		Action         string `json:"action"`
		Numbered       bool   `json:"numbered"`
		Newest         bool   `json:"newest"`
		Actor          string `json:"actor"`
	} `json:"data"`
}

func TestCloudEvents(t *testing.T) {
	types := map[string]string{
		"push":            "dev.berth.image.pushed",
		"move":            "dev.berth.tag.moved",
		"delete":          "dev.berth.tag.deleted",
		"restore":         "dev.berth.tag.restored",
		"rollback":        "dev.berth.tag.rolledback",
		"retention":       "dev.berth.tag.expired",
		"manifest-delete": "dev.berth.manifest.deleted",
	}
	for _, action := range allActions {
		t.Run(action, func(t *testing.T) {
			e := event(action)
			contentType, body := encode(t, e, notify.Endpoint{Format: notify.FormatCloudEvents})
			if contentType != "application/cloudevents+json" {
				t.Errorf("Content-Type %q, want application/cloudevents+json", contentType)
			}
			var got cloudEventBody
			decodeStrict(t, body, &got)

			var want cloudEventBody
			want.SpecVersion = "1.0"
			want.ID = "evt-7"
			want.Source = "https://registry.example.com:5000"
			want.Type = types[action]
			want.Subject = "team/app:42"
			want.Time = atText
			want.DataContentType = "application/json"
			d := &want.Data
			d.Registry, d.Repository, d.Tag, d.Digest, d.PreviousDigest = "registry.example.com:5000", "team/app", "42", dgst, prev
			d.MediaType, d.Size, d.Action, d.Numbered, d.Newest, d.Actor = manifest, 1234, action, true, true, "alice"
			dataKeys := []string{"action", "actor", "digest", "mediaType", "newest", "numbered", "previousDigest", "registry", "repository", "size", "tag"}
			if e.Tag == "" {
				want.Subject = "team/app@" + dgst
				d.Tag, d.PreviousDigest, d.Numbered, d.Newest = "", "", false, false
				dataKeys = slices.DeleteFunc(dataKeys, func(k string) bool { return k == "previousDigest" })
			}
			if got != want {
				t.Errorf("cloudevent\n got %+v\nwant %+v", got, want)
			}
			if k := keys(t, body); !slices.Equal(k, []string{"data", "datacontenttype", "id", "source", "specversion", "subject", "time", "type"}) {
				t.Errorf("event has %v", k)
			}
			if k := keys(t, body, "data"); !slices.Equal(k, dataKeys) {
				t.Errorf("data has %v, want %v", k, dataKeys)
			}
		})
	}
}

func TestCloudEventsOptional(t *testing.T) {
	e := event("push")
	e.Previous, e.Actor, e.Numbered, e.Newest = "", "", false, false
	e.Time = time.Date(2026, 3, 1, 12, 30, 45, 0, time.FixedZone("CET", 3600)).UnixNano()
	_, body := encode(t, e, notify.Endpoint{Format: notify.FormatCloudEvents})
	var got cloudEventBody
	decodeStrict(t, body, &got)
	if got.Time != "2026-03-01T11:30:45Z" {
		t.Errorf("time %q, want 2026-03-01T11:30:45Z (UTC, RFC 3339)", got.Time)
	}
	if k := keys(t, body, "data"); slices.Contains(k, "previousDigest") || slices.Contains(k, "actor") {
		t.Errorf("data has %v, want no previousDigest or actor when unknown", k)
	}
	if !bytes.Contains(body, []byte(`"numbered":false,"newest":false`)) {
		t.Errorf("numbered and newest are always written:\n%s", body)
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, format := range []string{notify.FormatDistribution, notify.FormatHarbor, notify.FormatCloudEvents} {
		if _, _, err := notify.Encode(event("pull"), notify.Endpoint{Format: format}, reg); err == nil {
			t.Errorf("%s: an unknown action encoded", format)
		}
	}
	if _, _, err := notify.Encode(event("push"), notify.Endpoint{Format: "slack"}, reg); err == nil {
		t.Error("an unknown format encoded")
	}
}

// TestBlobEvents: blob pushes and pulls are the reference registry's push
// and pull of a blob in the distribution format, and CloudEvents of their
// own; Harbor's format has none.
func TestBlobEvents(t *testing.T) {
	for action, want := range map[string]string{metadata.ActionBlobPush: "push", metadata.ActionBlobPull: "pull"} {
		e := event(action)
		e.Tag, e.Previous, e.Numbered, e.Newest, e.MediaType = "", "", false, false, "application/octet-stream"
		_, body := encode(t, e, notify.Endpoint{Format: notify.FormatDistribution})
		var env struct{ Events []notifications.Event }
		decodeStrict(t, body, &env)
		got := env.Events[0]
		if got.Action != want || got.Target.URL != "https://registry.example.com:5000/v2/team/app/blobs/"+string(dgst) ||
			got.Target.Digest != dgst || got.Target.Size != 1234 {
			t.Errorf("%s: distribution event %+v", action, got)
		}
		_, body = encode(t, e, notify.Endpoint{Format: notify.FormatCloudEvents})
		var ce struct{ Type, Subject string }
		json.Unmarshal(body, &ce)
		if ce.Type != map[string]string{"push": "dev.berth.blob.pushed", "pull": "dev.berth.blob.pulled"}[want] ||
			ce.Subject != "team/app@"+string(dgst) {
			t.Errorf("%s: cloudevent type %q subject %q", action, ce.Type, ce.Subject)
		}
		if _, _, err := notify.Encode(e, notify.Endpoint{Format: notify.FormatHarbor}, notify.Registry{}); err == nil {
			t.Errorf("%s: encoded in Harbor's format", action)
		}
	}
}
