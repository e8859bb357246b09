package registry

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// The admin API, /admin/v1: what Berth knows beyond the OCI API, as JSON.
// Errors use the same envelope as the OCI API, with codes of their own
// where the spec has none (TAG_UNKNOWN, PAGINATION_NUMBER_INVALID).
const adminRepositories = "/admin/v1/repositories/"

const codeTagUnknown = "TAG_UNKNOWN"

// admin routes /admin/v1/repositories/<name>/… from the end of the path,
// as the OCI routes do, since names contain slashes.
func (reg *Registry) admin(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, adminRepositories)
	if !ok {
		return newError(http.StatusNotFound, codeUnsupported, "no such endpoint")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return newError(http.StatusMethodNotAllowed, codeUnsupported, r.Method+" is not supported here")
	}
	if name, ok := strings.CutSuffix(rest, "/versions"); ok {
		return reg.versions(w, r, name)
	}
	if i := strings.LastIndex(rest, "/tags/"); i > 0 {
		if tag, ok := strings.CutSuffix(rest[i+len("/tags/"):], "/history"); ok {
			return reg.tagHistory(w, r, rest[:i], tag)
		}
	}
	return newError(http.StatusNotFound, codeUnsupported, "no such endpoint")
}

// limit reads ?limit=, 100 by default and at most 1,000.
func limit(r *http.Request) (int, error) {
	n := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			return 0, newError(http.StatusBadRequest, codePaginationInvalid, "limit must be a positive integer")
		}
	}
	return min(n, 1000), nil
}

// setCursor points the Link header at the page after cursor.
func setCursor(w http.ResponseWriter, r *http.Request, cursor string) {
	q := r.URL.Query()
	q.Set("cursor", cursor)
	setNext(w, r, q)
}

func nameUnknown(name string) *apiError {
	e := newError(http.StatusNotFound, codeNameUnknown, "repository name not known to registry")
	e.Detail = map[string]string{"name": name}
	return e
}

// tagEvent is one row of a tag's history on the wire.
type tagEvent struct {
	ID        int64      `json:"id"`
	Digest    oci.Digest `json:"digest"`
	Start     time.Time  `json:"start"`
	End       *time.Time `json:"end,omitempty"`
	Actor     string     `json:"actor,omitempty"`
	Action    string     `json:"action"`
	EndedBy   string     `json:"endedBy,omitempty"`
	EndAction string     `json:"endAction,omitempty"`
}

// tagHistory lists where a tag pointed, newest first, a page at a time.
//
// GET /admin/v1/repositories/<name>/tags/<tag>/history?limit=&cursor=
func (reg *Registry) tagHistory(w http.ResponseWriter, r *http.Request, name, tag string) error {
	if err := oci.ValidateName(name); err != nil {
		return err
	}
	if err := oci.ValidateTag(tag); err != nil {
		return err
	}
	n, err := limit(r)
	if err != nil {
		return err
	}
	var before int64
	if c := r.URL.Query().Get("cursor"); c != "" {
		if before, err = strconv.ParseInt(c, 10, 64); err != nil || before < 1 {
			return newError(http.StatusBadRequest, codePaginationInvalid, "invalid cursor")
		}
	}
	rows, err := reg.db.TagHistoryPage(r.Context(), name, tag, before, n+1)
	if err != nil {
		return err
	}
	if len(rows) == 0 && before == 0 {
		if ok, err := reg.db.RepositoryExists(r.Context(), name); err != nil || !ok {
			return orErr(err, nameUnknown(name))
		}
		e := newError(http.StatusNotFound, codeTagUnknown, "the tag has no history in this repository")
		e.Detail = map[string]string{"tag": tag}
		return e
	}
	next := ""
	if len(rows) > n {
		rows = rows[:n]
		next = strconv.FormatInt(rows[n-1].ID, 10)
		setCursor(w, r, next)
	}
	events := make([]tagEvent, len(rows))
	for i, e := range rows {
		events[i] = tagEvent{ID: e.ID, Digest: e.Digest, Start: time.Unix(0, e.Start).UTC(), Actor: e.Actor,
			Action: e.Action, EndedBy: e.EndedBy, EndAction: e.EndAction}
		if e.End != 0 {
			end := time.Unix(0, e.End).UTC()
			events[i].End = &end
		}
	}
	return writeJSON(w, "application/json", struct {
		Repository string     `json:"repository"`
		Tag        string     `json:"tag"`
		Events     []tagEvent `json:"events"`
		Next       string     `json:"next,omitempty"`
	}{name, tag, events, next})
}

// versions lists a repository's numbered tags in version order, newest
// first, a page at a time; the cursor is the last tag of the previous page.
//
// GET /admin/v1/repositories/<name>/versions?limit=&cursor=
func (reg *Registry) versions(w http.ResponseWriter, r *http.Request, name string) error {
	if err := oci.ValidateName(name); err != nil {
		return err
	}
	n, err := limit(r)
	if err != nil {
		return err
	}
	live, err := reg.db.LiveTags(r.Context(), name)
	if err != nil {
		return err
	}
	if len(live) == 0 {
		if ok, err := reg.db.RepositoryExists(r.Context(), name); err != nil || !ok {
			return orErr(err, nameUnknown(name))
		}
	}
	type version struct {
		oci.Version
		row metadata.TagEvent
	}
	var vs []version
	for _, e := range live {
		if v, ok := reg.versioning.Parse(e.Tag); ok {
			vs = append(vs, version{v, e})
		}
	}
	slices.SortFunc(vs, func(a, b version) int { return oci.Compare(b.Version, a.Version) })
	from := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		after, ok := reg.versioning.Parse(c)
		if !ok {
			return newError(http.StatusBadRequest, codePaginationInvalid, "invalid cursor")
		}
		// The first version older than the cursor, even if the cursor's tag is gone.
		from, _ = slices.BinarySearchFunc(vs, after, func(v version, t oci.Version) int { return oci.Compare(t, v.Version) })
		if from < len(vs) && vs[from].Tag == after.Tag {
			from++
		}
	}
	type item struct {
		Tag      string     `json:"tag"`
		Digest   oci.Digest `json:"digest"`
		PushedAt time.Time  `json:"pushedAt"`
		Newest   bool       `json:"newest,omitempty"`
	}
	items := []item{}
	for i := from; i < len(vs) && len(items) < n; i++ {
		items = append(items, item{vs[i].Tag, vs[i].row.Digest, time.Unix(0, vs[i].row.Start).UTC(), i == 0})
	}
	next := ""
	if end := from + len(items); end < len(vs) {
		next = vs[end-1].Tag
		setCursor(w, r, next)
	}
	return writeJSON(w, "application/json", struct {
		Repository string `json:"repository"`
		Versions   []item `json:"versions"`
		Next       string `json:"next,omitempty"`
	}{name, items, next})
}

// orErr returns err if there is one, else the fallback.
func orErr(err error, fallback *apiError) error {
	if err != nil {
		return err
	}
	return fallback
}
