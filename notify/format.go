package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/distribution/distribution/v3/notifications"
)

// Registry is the registry as webhook receivers see and reach it.
type Registry struct {
	Host string // the configured public host[:port], e.g. "registry.example.com:5000"
	URL  string // its base URL, e.g. "https://registry.example.com:5000"
	// InstanceID names this process in the distribution format's
	// source.instanceID, as the reference registry does; "" leaves it out.
	InstanceID string
}

// Encode writes an event in the endpoint's format: the Content-Type and the
// body of one delivery.
func Encode(e metadata.Event, ep Endpoint, reg Registry) (contentType string, body []byte, err error) {
	points, err := pointsTag(e.Action)
	if err != nil {
		return "", nil, err
	}
	var v any
	switch ep.Format {
	case FormatDistribution:
		contentType = ep.DistributionMediaType
		if contentType == "" {
			contentType = DistributionMediaTypeV2
		}
		v = distribution(e, points, reg)
	case FormatHarbor:
		if blobAction(e.Action) {
			return "", nil, fmt.Errorf("harbor's format has no event for %s", e.Action)
		}
		contentType, v = "application/json", harbor(e, points, reg)
	case FormatCloudEvents:
		contentType, v = "application/cloudevents+json", cloudEvent(e, reg)
	default:
		return "", nil, fmt.Errorf("unknown webhook format %q", ep.Format)
	}
	body, err = json.Marshal(v)
	return contentType, body, err
}

// pointsTag reports whether after the event a tag points at the manifest
// (push, move, restore, rollback), rather than no longer pointing at it
// (delete, retention, manifest-delete).
func pointsTag(action string) (bool, error) {
	switch action {
	case metadata.ActionPush, metadata.ActionMove, metadata.ActionRestore, metadata.ActionRollback,
		metadata.ActionBlobPush, metadata.ActionBlobPull:
		return true, nil
	case metadata.ActionDelete, metadata.ActionRetention, metadata.ActionManifestDelete:
		return false, nil
	}
	return false, fmt.Errorf("unknown event action %q", action)
}

// distribution writes the reference registry's envelope, one event in it,
// with its own types so that receivers written for it read every field.
func distribution(e metadata.Event, points bool, reg Registry) notifications.Envelope {
	ev := notifications.Event{ID: e.ID, Timestamp: time.Unix(0, e.Time).UTC()}
	ev.Action, ev.Request.Method = notifications.EventActionPush, "PUT"
	if !points {
		ev.Action, ev.Request.Method = notifications.EventActionDelete, "DELETE"
	}
	ev.Target.MediaType = e.MediaType
	ev.Target.Digest = e.Digest
	ev.Target.Size = e.Size
	ev.Target.Length = e.Size
	ev.Target.Repository = e.Repository
	ev.Target.URL = reg.URL + "/v2/" + e.Repository + "/manifests/" + string(e.Digest)
	switch e.Action { // the reference registry's blob events
	case metadata.ActionBlobPush:
		ev.Target.URL = reg.URL + "/v2/" + e.Repository + "/blobs/" + string(e.Digest)
	case metadata.ActionBlobPull:
		ev.Action, ev.Request.Method = notifications.EventActionPull, "GET"
		ev.Target.URL = reg.URL + "/v2/" + e.Repository + "/blobs/" + string(e.Digest)
	}
	ev.Target.Tag = e.Tag
	// Events come from the outbox, not from a request: the event's id stands
	// for the request's, and the client's address is unknown.
	ev.Request.ID, ev.Request.Host, ev.Request.UserAgent = e.ID, reg.Host, "berth"
	ev.Actor.Name = e.Actor
	ev.Source = notifications.SourceRecord{Addr: reg.Host, InstanceID: reg.InstanceID}

	var env notifications.Envelope
	env.Events = append(env.Events, ev)
	return env
}

// harborPayload is Harbor's webhook body, in the fields Flux, Argo CD Image
// Updater and Keel read.
type harborPayload struct {
	Type      string `json:"type"`     // PUSH_ARTIFACT or DELETE_ARTIFACT
	OccurAt   int64  `json:"occur_at"` // Unix seconds
	Operator  string `json:"operator"`
	EventData struct {
		Resources  []harborResource `json:"resources"`
		Repository struct {
			DateCreated  int64  `json:"date_created"` // Unix seconds
			Name         string `json:"name"`
			Namespace    string `json:"namespace"`
			RepoFullName string `json:"repo_full_name"`
			RepoType     string `json:"repo_type"`
		} `json:"repository"`
	} `json:"event_data"`
}

type harborResource struct {
	Digest      string `json:"digest"`
	Tag         string `json:"tag"`
	ResourceURL string `json:"resource_url"` // what to pull: host/repo:tag
}

func harbor(e metadata.Event, points bool, reg Registry) harborPayload {
	var p harborPayload
	p.Type = "PUSH_ARTIFACT"
	if !points {
		p.Type = "DELETE_ARTIFACT"
	}
	p.OccurAt = time.Unix(0, e.Time).Unix()
	p.Operator = e.Actor
	p.EventData.Resources = []harborResource{{Digest: string(e.Digest), Tag: e.Tag, ResourceURL: reg.Host + "/" + reference(e)}}
	r := &p.EventData.Repository
	// The repository's creation is not in the event; receivers read the
	// field as a time, so it carries the event's.
	r.DateCreated = p.OccurAt
	// Harbor names are <project>/<repository>; a single-segment name is in
	// Docker Hub's implicit namespace, as Harbor's own "library" project.
	r.Namespace, r.Name = "library", e.Repository
	if i := strings.LastIndexByte(e.Repository, '/'); i >= 0 {
		r.Namespace, r.Name = e.Repository[:i], e.Repository[i+1:]
	}
	r.RepoFullName = e.Repository
	r.RepoType = "private"
	return p
}

// reference is the repository and the tag, or the digest for an event
// without a tag: "team/app:42", "team/app@sha256:…".
func reference(e metadata.Event) string {
	if e.Tag == "" {
		return e.Repository + "@" + string(e.Digest)
	}
	return e.Repository + ":" + e.Tag
}

// cloudEventTypes are the CloudEvents type of each action pointsTag knows.
var cloudEventTypes = map[string]string{
	metadata.ActionPush:           "dev.berth.image.pushed",
	metadata.ActionMove:           "dev.berth.tag.moved",
	metadata.ActionDelete:         "dev.berth.tag.deleted",
	metadata.ActionRestore:        "dev.berth.tag.restored",
	metadata.ActionRollback:       "dev.berth.tag.rolledback",
	metadata.ActionRetention:      "dev.berth.tag.expired",
	metadata.ActionManifestDelete: "dev.berth.manifest.deleted",
	metadata.ActionBlobPush:       "dev.berth.blob.pushed",
	metadata.ActionBlobPull:       "dev.berth.blob.pulled",
}

// cloudEventPayload is a CloudEvents 1.0 event in structured mode.
type cloudEventPayload struct {
	SpecVersion     string         `json:"specversion"`
	ID              string         `json:"id"`
	Source          string         `json:"source"`
	Type            string         `json:"type"`
	Subject         string         `json:"subject"`
	Time            time.Time      `json:"time"` // RFC 3339, nanoseconds
	DataContentType string         `json:"datacontenttype"`
	Data            cloudEventData `json:"data"`
}

// cloudEventData is the event itself, with what a deployer needs to decide
// whether to roll out: numbered, newest.
type cloudEventData struct {
	Registry       string `json:"registry"`
	Repository     string `json:"repository"`
	Tag            string `json:"tag"`
	Digest         string `json:"digest"`
	PreviousDigest string `json:"previousDigest,omitempty"`
	MediaType      string `json:"mediaType"`
	Size           int64  `json:"size"`
	Action         string `json:"action"`
	Numbered       bool   `json:"numbered"`
	Newest         bool   `json:"newest"`
	Actor          string `json:"actor,omitempty"`
}

// cloudEvent writes the event; its action is one cloudEventTypes knows.
func cloudEvent(e metadata.Event, reg Registry) cloudEventPayload {
	return cloudEventPayload{
		SpecVersion:     "1.0",
		ID:              e.ID,
		Source:          reg.URL,
		Type:            cloudEventTypes[e.Action],
		Subject:         reference(e),
		Time:            time.Unix(0, e.Time).UTC(),
		DataContentType: "application/json",
		Data: cloudEventData{
			Registry:       reg.Host,
			Repository:     e.Repository,
			Tag:            e.Tag,
			Digest:         string(e.Digest),
			PreviousDigest: string(e.Previous),
			MediaType:      e.MediaType,
			Size:           e.Size,
			Action:         e.Action,
			Numbered:       e.Numbered,
			Newest:         e.Newest,
			Actor:          e.Actor,
		},
	}
}
