package registry

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// The tag-history extension in the shape proposed for the OCI distribution
// spec, not merged yet: opencontainers/distribution-spec pull request 606
// (https://github.com/opencontainers/distribution-spec/pull/606), which adds
// a tag-history component to extensions/_oci.md.
//
// The answer is an image index. Its manifests describe, newest first, each
// manifest the tag was pointed at (event "created") and each deletion of the
// tag (event "deleted", describing the manifest it pointed at until then),
// each with the event's RFC 3339 time. Moving a tag is one event: the push
// that points it elsewhere.
const (
	annotationTagTimestamp = "org.opencontainers.distribution.tag.timestamp"
	annotationTagEvent     = "org.opencontainers.distribution.tag.event"
	tagEventCreated        = "created"
	tagEventDeleted        = "deleted"

	// Berth's own, beyond the proposal: on each event who made the change
	// and with what action (push, delete); on the index, the tag.
	annotationTagActor  = "dev.berth.tag.actor"
	annotationTagAction = "dev.berth.tag.action"
	annotationTagName   = "dev.berth.tag.name"
)

// tagHistoryIndex lists a tag's events newest first, a page at a time.
//
// As the proposal asks, an unknown repository or a tag without history is
// a 200 with no manifests (a 404 tells clients that the registry lacks the
// extension), n=0 answers an empty index, before and since bound the
// events' times (exclusive) and digest keeps one manifest's events. The
// Link to the next page carries Berth's own position, last, which is exact
// where events share an instant; before, the proposal's cursor, is not.
//
// Spec (proposed): GET /v2/<name>/_oci/tag-history/<tag>.
func (reg *Registry) tagHistoryIndex(w http.ResponseWriter, r *http.Request, rt route) error {
	tag := rt.arg
	if err := oci.ValidateTag(tag); err != nil {
		return err
	}
	n, last, err := page(r)
	if err != nil {
		return err
	}
	if n < 0 {
		n = maxPage // the proposal lets a registry choose the default page
	}
	below := int64(math.MaxInt64) // positions below this
	if last != "" {
		if below, err = strconv.ParseInt(last, 10, 64); err != nil || below < 1 {
			return newError(http.StatusBadRequest, codePaginationInvalid, "last must be a position from a Link header")
		}
	}
	f, err := historyFilter(r.URL.Query())
	if err != nil {
		return err
	}

	// An event's position is twice its row's id, plus one for the delete
	// that ended the row: descending positions are the events newest first,
	// and the rows holding positions below p have ids below ceil(p/2).
	type event struct {
		key  int64
		desc oci.Descriptor
	}
	var events []event
	add := func(key, at int64, row metadata.TagDescriptor, kind, actor, action string) {
		t := time.Unix(0, at).UTC()
		if key >= below || !f.Before.IsZero() && !t.Before(f.Before) || !f.After.IsZero() && !t.After(f.After) {
			return
		}
		a := map[string]string{annotationTagTimestamp: t.Format(time.RFC3339Nano), annotationTagEvent: kind, annotationTagAction: action}
		if actor != "" {
			a[annotationTagActor] = actor
		}
		events = append(events, event{key, oci.Descriptor{MediaType: row.MediaType, Digest: row.Digest, Size: row.Size, Annotations: a}})
	}
	if n > 0 {
		// Each row returned has an event in the window, but perhaps the
		// oldest (pushed before since, moved after it): so n+1 rows hold
		// more than n events whenever more exist.
		rows, err := reg.db.TagHistoryDescriptors(r.Context(), rt.name, tag, below/2+below%2, n+1, f)
		if err != nil {
			return err
		}
		for _, row := range rows {
			// A row ends with a delete (by hand or by retention) or with a
			// move; a move is the next row's push.
			if row.End != 0 && (row.EndAction == metadata.ActionDelete || row.EndAction == metadata.ActionRetention) {
				add(2*row.ID+1, row.End, row, tagEventDeleted, row.EndedBy, row.EndAction)
			}
			add(2*row.ID, row.Start, row, tagEventCreated, row.Actor, row.Action)
		}
		if len(events) > n {
			events = events[:n]
			q := r.URL.Query()
			q.Set("last", strconv.FormatInt(events[n-1].key, 10))
			setNext(w, r, q)
		}
	}
	descs := make([]oci.Descriptor, len(events))
	for i, e := range events {
		descs[i] = e.desc
	}
	// On a HEAD, net/http sends the headers and drops the body.
	return writeJSON(w, oci.MediaTypeImageIndex, struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []oci.Descriptor  `json:"manifests"`
		Annotations   map[string]string `json:"annotations"`
	}{2, oci.MediaTypeImageIndex, descs, map[string]string{annotationTagName: tag}})
}

// historyFilter reads the proposal's digest, before and since parameters.
func historyFilter(q url.Values) (metadata.HistoryFilter, error) {
	var f metadata.HistoryFilter
	if q.Has("digest") {
		d, err := oci.ParseDigest(q.Get("digest"))
		if err != nil {
			return f, err
		}
		f.Digest = d
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"before", &f.Before}, {"since", &f.After}} {
		if !q.Has(p.name) {
			continue
		}
		t, err := time.Parse(time.RFC3339, q.Get(p.name))
		if err != nil {
			// The proposal's code for "an invalid set of parameters".
			return f, newError(http.StatusBadRequest, codeUnsupported, p.name+" must be an RFC 3339 time")
		}
		*p.t = t
	}
	return f, nil
}
