package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

// The admin API, /admin/v1: what Berth knows beyond the OCI API, as JSON
// (documented by openapi.yaml). Errors use the same envelope as the OCI
// API, with codes of their own where the spec has none.
const adminPrefix = "/admin/v1/"

// The admin endpoints.
const (
	adRepositories = "repositories"
	adRepository   = "repository"
	adTags         = "tags"
	adTag          = "tag"
	adTagHistory   = "tag-history"
	adRestore      = "restore"
	adHistory      = "history"
	adVersions     = "versions"
	adRollback     = "rollback"
	adPolicy       = "policy"
	adPolicies     = "policies"
	adRetention    = "retention"
	adOpenAPI      = "openapi"
	adGC           = "gc"
	adStats        = "stats"
	adRepoStats    = "repository-stats"
)

// adminRoute is a parsed /admin/v1/ path.
type adminRoute struct {
	endpoint string
	name     string // repository name (a glob for policy), unvalidated
	tag      string // unvalidated
}

// parseAdminRoute splits an /admin/v1/ path. As on /v2/, repository names
// contain slashes, so the endpoint is read from the end of the path: a
// repository whose name ends in an endpoint's word (…/tags, …/policy)
// is reached only through that endpoint.
func parseAdminRoute(path string) (adminRoute, bool) {
	rest, ok := strings.CutPrefix(path, adminPrefix)
	if !ok {
		return adminRoute{}, false
	}
	switch rest {
	case "repositories":
		return adminRoute{endpoint: adRepositories}, true
	case "policies":
		return adminRoute{endpoint: adPolicies}, true
	case "openapi.yaml":
		return adminRoute{endpoint: adOpenAPI}, true
	case "gc":
		return adminRoute{endpoint: adGC}, true
	case "stats":
		return adminRoute{endpoint: adStats}, true
	case "webhooks":
		return parseWebhookRoute("")
	}
	if hook, ok := strings.CutPrefix(rest, "webhooks/"); ok {
		return parseWebhookRoute(hook)
	}
	if rest, ok = strings.CutPrefix(rest, "repositories/"); !ok || rest == "" {
		return adminRoute{}, false
	}
	seg := strings.Split(rest, "/")
	n := len(seg)
	name := func(k int) string { return strings.Join(seg[:n-k], "/") }
	switch {
	case n >= 4 && seg[n-3] == "tags" && seg[n-1] == "history":
		return adminRoute{adTagHistory, name(3), seg[n-2]}, true
	case n >= 4 && seg[n-3] == "tags" && seg[n-1] == "restore":
		return adminRoute{adRestore, name(3), seg[n-2]}, true
	case n >= 3 && seg[n-2] == "tags":
		return adminRoute{adTag, name(2), seg[n-1]}, true
	case n >= 2 && slices.Contains([]string{adTags, adHistory, adVersions, adRollback, adPolicy, adRetention}, seg[n-1]):
		return adminRoute{seg[n-1], name(1), ""}, true
	case n >= 2 && seg[n-1] == "stats":
		return adminRoute{adRepoStats, name(1), ""}, true
	}
	return adminRoute{adRepository, rest, ""}, true
}

type adminHandler func(w http.ResponseWriter, r *http.Request, rt adminRoute) error

func (reg *Registry) newAdminRoutes() map[routeKey]adminHandler {
	routes := map[routeKey]adminHandler{
		{adRepositories, http.MethodGet}: reg.listRepositories,
		{adRepository, http.MethodGet}:   reg.getRepository,
		{adTags, http.MethodGet}:         reg.listAdminTags,
		{adTag, http.MethodPut}:          reg.putTag,
		{adTag, http.MethodDelete}:       reg.deleteAdminTag,
		{adTagHistory, http.MethodGet}:   reg.tagHistory,
		{adRestore, http.MethodPost}:     reg.restoreTag,
		{adHistory, http.MethodGet}:      reg.repositoryHistory,
		{adVersions, http.MethodGet}:     reg.versions,
		{adRollback, http.MethodPost}:    reg.rollback,
		{adPolicy, http.MethodGet}:       reg.getPolicy,
		{adPolicy, http.MethodPut}:       reg.putPolicy,
		{adPolicy, http.MethodDelete}:    reg.deletePolicy,
		{adPolicies, http.MethodGet}:     reg.listPolicies,
		{adRetention, http.MethodGet}:    reg.retention,
		{adRetention, http.MethodPost}:   reg.retention,
		{adOpenAPI, http.MethodGet}:      serveOpenAPI,
		{adGC, http.MethodGet}:           reg.collect,
		{adGC, http.MethodPost}:          reg.collect,
		{adStats, http.MethodGet}:        reg.stats,
		{adRepoStats, http.MethodGet}:    reg.repositoryStats,
		{adWebhooks, http.MethodGet}:     reg.listWebhooks,
		{adWebhooks, http.MethodPost}:    reg.putWebhook,
		{adWebhook, http.MethodGet}:      reg.getWebhook,
		{adWebhook, http.MethodPut}:      reg.putWebhook,
		{adWebhook, http.MethodDelete}:   reg.deleteWebhook,
		{adEnable, http.MethodPost}:      reg.enableWebhook,
		{adDeliveries, http.MethodGet}:   reg.listDeliveries,
		{adDelivery, http.MethodGet}:     reg.getDelivery,
		{adRedeliver, http.MethodPost}:   reg.redeliver,
		{adPing, http.MethodPost}:        reg.ping,
	}
	for k, h := range routes {
		if k.method == http.MethodGet {
			routes[routeKey{k.endpoint, http.MethodHead}] = h
		}
	}
	return routes
}

// admin routes an /admin/v1/ request and validates the names and tags in
// its path.
func (reg *Registry) admin(w http.ResponseWriter, r *http.Request) error {
	rt, ok := parseAdminRoute(r.URL.Path)
	if !ok {
		return newError(http.StatusNotFound, codeUnsupported, "no such endpoint")
	}
	h, ok := reg.adminRoutes[routeKey{rt.endpoint, r.Method}]
	if !ok {
		return newError(http.StatusMethodNotAllowed, codeUnsupported, r.Method+" is not supported here")
	}
	if err := reg.authorizeAdmin(r, rt); err != nil {
		return err
	}
	switch rt.endpoint {
	case adRepositories, adPolicies, adOpenAPI, adGC, adStats:
	case adWebhooks, adWebhook, adEnable, adDeliveries, adDelivery, adRedeliver, adPing:
		return h(w, r, rt) // webhook names and delivery ids are checked by their handlers
	case adPolicy:
		if oci.ValidateGlob(rt.name) != nil {
			return newError(http.StatusBadRequest, codeNameInvalid, "invalid repository name or glob")
		}
	default:
		if err := oci.ValidateName(rt.name); err != nil {
			return err
		}
	}
	if rt.tag != "" || rt.endpoint == adTag || rt.endpoint == adTagHistory || rt.endpoint == adRestore {
		if err := oci.ValidateTag(rt.tag); err != nil {
			return err
		}
	}
	return h(w, r, rt)
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

// idPage reads ?limit= and a ?cursor= that is a row id (0 when absent), for
// lists by id, newest first.
func idPage(r *http.Request) (n int, before int64, err error) {
	if n, err = limit(r); err != nil {
		return 0, 0, err
	}
	c := r.URL.Query().Get("cursor")
	if c == "" {
		return n, 0, nil
	}
	before, err = strconv.ParseInt(c, 10, 64)
	if err != nil || before < 1 {
		return 0, 0, errInvalidCursor
	}
	return n, before, nil
}

var errInvalidCursor = newError(http.StatusBadRequest, codePaginationInvalid, "invalid cursor")

// setCursor points the Link header at the page after cursor.
func setCursor(w http.ResponseWriter, r *http.Request, cursor string) {
	q := r.URL.Query()
	q.Set("cursor", cursor)
	setNext(w, r, q)
}

// trimPage trims a list fetched with one row more than n, and returns the
// cursor of the next page ("" when it is the last) from the page's last row.
func trimPage[T any](w http.ResponseWriter, r *http.Request, rows []T, n int, cursor func(T) string) ([]T, string) {
	if len(rows) <= n {
		return rows, ""
	}
	rows = rows[:n]
	next := cursor(rows[n-1])
	setCursor(w, r, next)
	return rows, next
}

func nameUnknown(name string) *apiError {
	e := newError(http.StatusNotFound, codeNameUnknown, "repository name not known to registry")
	e.Detail = map[string]string{"name": name}
	return e
}

func tagUnknown(tag, message string) *apiError {
	e := newError(http.StatusNotFound, codeTagUnknown, message)
	e.Detail = map[string]string{"tag": tag}
	return e
}

// orNameUnknown turns ErrNotFound into NAME_UNKNOWN.
func orNameUnknown(err error, name string) error {
	if errors.Is(err, metadata.ErrNotFound) {
		return nameUnknown(name)
	}
	return err
}

// checkRepository answers NAME_UNKNOWN for a repository nothing was pushed to.
func (reg *Registry) checkRepository(r *http.Request, name string) error {
	ok, err := reg.db.RepositoryExists(r.Context(), name)
	if err == nil && !ok {
		return nameUnknown(name)
	}
	return err
}

// readBody decodes the JSON object of a request body, refusing unknown
// fields, and a missing, empty or null body.
func readBody(r *http.Request, v any) error {
	invalid := func(why string) error {
		return newError(http.StatusBadRequest, codeRequestInvalid, "invalid JSON body: "+why)
	}
	var raw json.RawMessage
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	switch err := dec.Decode(&raw); {
	case err == io.EOF:
		return invalid("the request needs one")
	case err != nil:
		return invalid(err.Error())
	case dec.More():
		return invalid("more than one value")
	case string(raw) == "null":
		return invalid("null")
	}
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.Join(invalid(err.Error()), err) // the cause, for handlers that tell causes apart
	}
	return nil
}

func jsonTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func jsonTimePtr(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := jsonTime(ns)
	return &t
}

// repositoryJSON is a repository on the wire.
type repositoryJSON struct {
	Name         string       `json:"name"`
	Created      time.Time    `json:"createdAt"`
	Tags         int64        `json:"tags"`
	NumberedTags int64        `json:"numberedTags"`
	Manifests    int64        `json:"manifests"`
	Size         int64        `json:"size"`
	Newest       *versionJSON `json:"newest,omitempty"`
}

type versionJSON struct {
	Tag      string     `json:"tag"`
	Digest   oci.Digest `json:"digest"`
	PushedAt time.Time  `json:"pushedAt"`
	Newest   bool       `json:"newest,omitempty"`
}

// versionKeys brings the repository's version keys in line with its
// policy, which it returns.
func (reg *Registry) versionKeys(r *http.Request, name string) (*tagPolicy, error) {
	rules, err := reg.policies.rules(r.Context())
	if err != nil {
		return nil, err
	}
	return reg.versionKeysUnder(r, rules, name)
}

// versionKeysUnder is versionKeys under rules already read.
func (reg *Registry) versionKeysUnder(r *http.Request, rules []compiledRule, name string) (*tagPolicy, error) {
	p, err := reg.policies.resolve(rules, name)
	if err != nil {
		return nil, err
	}
	return p, orNameUnknown(reg.db.EnsureVersionKeys(r.Context(), name, p.versioning), name)
}

// repositoryJSON describes a repository, its newest version included.
func (reg *Registry) repositoryJSON(r *http.Request, s metadata.RepositorySummary) (repositoryJSON, error) {
	out := repositoryJSON{s.Name, jsonTime(s.Created), s.Tags, s.NumberedTags, s.Manifests, s.Size, nil}
	newest, err := reg.db.Versions(r.Context(), s.Name, nil, 1)
	if len(newest) == 1 {
		out.Newest = &versionJSON{newest[0].Tag, newest[0].Digest, jsonTime(newest[0].Start), true}
	}
	return out, err
}

// listRepositories lists repositories by name, a page at a time.
//
// GET /admin/v1/repositories?limit=&cursor=
func (reg *Registry) listRepositories(w http.ResponseWriter, r *http.Request, _ adminRoute) error {
	n, err := limit(r)
	if err != nil {
		return err
	}
	after := r.URL.Query().Get("cursor")
	names, err := reg.db.Repositories(r.Context(), after, n+1)
	if err != nil {
		return err
	}
	rules, err := reg.policies.rules(r.Context()) // once for the page, not per repository
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, err := reg.versionKeysUnder(r, rules, name); err != nil {
			return err
		}
	}
	summaries, err := reg.db.RepositorySummaries(r.Context(), after, n+1)
	if err != nil {
		return err
	}
	summaries, next := trimPage(w, r, summaries, n, func(s metadata.RepositorySummary) string { return s.Name })
	out := make([]repositoryJSON, len(summaries))
	for i, s := range summaries {
		if out[i], err = reg.repositoryJSON(r, s); err != nil {
			return err
		}
	}
	return writeJSON(w, "application/json", struct {
		Repositories []repositoryJSON `json:"repositories"`
		Next         string           `json:"next,omitempty"`
	}{out, next})
}

// getRepository describes one repository.
//
// GET /admin/v1/repositories/<name>
func (reg *Registry) getRepository(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	if _, err := reg.versionKeys(r, rt.name); err != nil {
		return err
	}
	s, err := reg.db.RepositorySummary(r.Context(), rt.name)
	if err != nil {
		return orNameUnknown(err, rt.name)
	}
	out, err := reg.repositoryJSON(r, s)
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", out)
}

// tagJSON is a tag's latest history row on the wire.
type tagJSON struct {
	Tag             string     `json:"tag"`
	Digest          oci.Digest `json:"digest"`
	Start           time.Time  `json:"start"`
	End             *time.Time `json:"end,omitempty"`
	Numbered        bool       `json:"numbered"`
	Rank            int        `json:"rank,omitempty"`
	RestorableUntil *time.Time `json:"restorableUntil,omitempty"`
}

// listAdminTags lists a repository's tags by name: live ones, deleted
// ones, or all, optionally those a glob matches.
//
// GET /admin/v1/repositories/<name>/tags?state=live|deleted|all&filter=&limit=&cursor=
func (reg *Registry) listAdminTags(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	q := r.URL.Query()
	state := q.Get("state")
	switch a := q.Get("active"); {
	case a != "" && state != "":
		return newError(http.StatusBadRequest, codeRequestInvalid, "give state or active, not both")
	case a == "true":
		state = metadata.TagsLive
	case a == "false":
		state = metadata.TagsDeleted
	case a != "":
		return newError(http.StatusBadRequest, codeRequestInvalid, "active must be true or false")
	case state == "":
		state = metadata.TagsLive
	case state != metadata.TagsLive && state != metadata.TagsDeleted && state != metadata.TagsAll:
		return newError(http.StatusBadRequest, codeRequestInvalid, "state must be live, deleted or all")
	}
	var filter *regexp.Regexp
	if f := q.Get("filter"); f != "" {
		filter, _ = globRegexp(f)
	}
	n, err := limit(r)
	if err != nil {
		return err
	}
	p, err := reg.versionKeys(r, rt.name)
	if err != nil {
		return err
	}
	// Filtered in Go, so read on until the page is full.
	cursor := q.Get("cursor")
	if cursor != "" && oci.ValidateTag(cursor) != nil {
		return errInvalidCursor
	}
	var rows []metadata.TagEvent
	for after := cursor; len(rows) <= n; {
		batch, err := reg.db.TagStates(r.Context(), rt.name, state, after, 500)
		if err != nil {
			return err
		}
		for _, e := range batch {
			if filter == nil || filter.MatchString(e.Tag) {
				rows = append(rows, e)
			}
		}
		if len(batch) < 500 {
			break
		}
		after = batch[len(batch)-1].Tag
	}
	rows, next := trimPage(w, r, rows, n, func(e metadata.TagEvent) string { return e.Tag })
	var keys [][]byte // newest first, for ranks
	if slices.ContainsFunc(rows, func(e metadata.TagEvent) bool { return e.End == 0 && e.VersionKey != "" }) {
		if keys, err = reg.db.VersionKeys(r.Context(), rt.name); err != nil {
			return err
		}
	}
	now := time.Now().UnixNano()
	out := make([]tagJSON, len(rows))
	for i, e := range rows {
		_, numbered := p.versioning.Parse(e.Tag)
		out[i] = tagJSON{Tag: e.Tag, Digest: e.Digest, Start: jsonTime(e.Start), End: jsonTimePtr(e.End), Numbered: numbered}
		if e.End == 0 && e.VersionKey != "" {
			k, _ := slices.BinarySearchFunc(keys, e.VersionKey, func(k []byte, t string) int { return strings.Compare(t, string(k)) })
			out[i].Rank = k + 1
		}
		if until := e.End + int64(reg.restoreWindow); e.End != 0 && until > now {
			// Restorable only while the repository has the manifest still
			// (a manifest deleted by digest ends its tags for good).
			has, err := reg.db.HasManifest(r.Context(), rt.name, e.Digest)
			if err != nil {
				return err
			}
			if has {
				out[i].RestorableUntil = jsonTimePtr(until)
			}
		}
	}
	return writeJSON(w, "application/json", struct {
		Repository string    `json:"repository"`
		Tags       []tagJSON `json:"tags"`
		Next       string    `json:"next,omitempty"`
	}{rt.name, out, next})
}

// eventJSON is one row of a tag's history on the wire.
type eventJSON struct {
	ID        int64      `json:"id"`
	Tag       string     `json:"tag"`
	Digest    oci.Digest `json:"digest"`
	Start     time.Time  `json:"start"`
	End       *time.Time `json:"end,omitempty"`
	Actor     string     `json:"actor,omitempty"`
	Action    string     `json:"action"`
	EndedBy   string     `json:"endedBy,omitempty"`
	EndAction string     `json:"endAction,omitempty"`
}

func eventsJSON(rows []metadata.TagEvent) []eventJSON {
	out := make([]eventJSON, len(rows))
	for i, e := range rows {
		out[i] = eventJSON{e.ID, e.Tag, e.Digest, jsonTime(e.Start), jsonTimePtr(e.End), e.Actor, e.Action, e.EndedBy, e.EndAction}
	}
	return out
}

func eventCursor(e metadata.TagEvent) string { return strconv.FormatInt(e.ID, 10) }

// tagHistory lists where a tag pointed, newest first, a page at a time.
//
// GET /admin/v1/repositories/<name>/tags/<tag>/history?limit=&cursor=
func (reg *Registry) tagHistory(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	n, before, err := idPage(r)
	if err != nil {
		return err
	}
	rows, err := reg.db.TagHistoryPage(r.Context(), rt.name, rt.tag, before, n+1)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		if err := reg.checkRepository(r, rt.name); err != nil {
			return err
		}
		if before == 0 {
			return tagUnknown(rt.tag, "the tag has no history in this repository")
		}
	}
	rows, next := trimPage(w, r, rows, n, eventCursor)
	return writeJSON(w, "application/json", struct {
		Repository string      `json:"repository"`
		Tag        string      `json:"tag"`
		Events     []eventJSON `json:"events"`
		Next       string      `json:"next,omitempty"`
	}{rt.name, rt.tag, eventsJSON(rows), next})
}

// repositoryHistory lists the history rows of every tag of a repository
// that started or ended in [since, before), newest first.
//
// GET /admin/v1/repositories/<name>/history?since=&before=&limit=&cursor=
func (reg *Registry) repositoryHistory(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	n, cursor, err := idPage(r)
	if err != nil {
		return err
	}
	since, until := int64(0), int64(math.MaxInt64)
	for param, v := range map[string]*int64{"since": &since, "before": &until} {
		if s := r.URL.Query().Get(param); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return newError(http.StatusBadRequest, codeRequestInvalid, param+" must be an RFC 3339 time, such as 2026-11-26T10:00:00Z")
			}
			*v = metadata.UnixNanos(t)
		}
	}
	rows, err := reg.db.RepositoryHistoryPage(r.Context(), rt.name, since, until, cursor, n+1)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		if err := reg.checkRepository(r, rt.name); err != nil {
			return err
		}
	}
	rows, next := trimPage(w, r, rows, n, eventCursor)
	return writeJSON(w, "application/json", struct {
		Repository string      `json:"repository"`
		Events     []eventJSON `json:"events"`
		Next       string      `json:"next,omitempty"`
	}{rt.name, eventsJSON(rows), next})
}

// versions lists a repository's numbered tags in version order, newest
// first, a page at a time.
//
// GET /admin/v1/repositories/<name>/versions?limit=&cursor=
func (reg *Registry) versions(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	n, err := limit(r)
	if err != nil {
		return err
	}
	p, err := reg.versionKeys(r, rt.name)
	if err != nil {
		return err
	}
	// The cursor is the last tag of the previous page: its key is the
	// same whether or not the tag still exists.
	var after []byte
	c := r.URL.Query().Get("cursor")
	if c != "" {
		v, ok := p.versioning.Parse(c)
		if !ok || oci.ValidateTag(c) != nil {
			return errInvalidCursor
		}
		after = v.Key
	}
	rows, err := reg.db.Versions(r.Context(), rt.name, after, n+1)
	if err != nil {
		return err
	}
	rows, next := trimPage(w, r, rows, n, func(e metadata.TagEvent) string { return e.Tag })
	out := make([]versionJSON, len(rows))
	for i, e := range rows {
		out[i] = versionJSON{e.Tag, e.Digest, jsonTime(e.Start), i == 0 && c == ""}
	}
	return writeJSON(w, "application/json", struct {
		Repository string        `json:"repository"`
		Versions   []versionJSON `json:"versions"`
		Next       string        `json:"next,omitempty"`
	}{rt.name, out, next})
}

// tagChangeJSON is the answer to a change of a tag.
type tagChangeJSON struct {
	Repository string     `json:"repository"`
	Mode       string     `json:"mode,omitempty"`
	Tag        string     `json:"tag"`
	Digest     oci.Digest `json:"digest"`
	Previous   oci.Digest `json:"previous,omitempty"`
}

// setTag points a tag at a manifest of the repository, under the
// repository's policy p.
func (reg *Registry) setTag(r *http.Request, p *tagPolicy, name, tag string, d oci.Digest, c metadata.Change) (oci.Digest, error) {
	c.Rules = p.tagRules()
	var prev oci.Digest
	err := reg.db.InTx(r.Context(), func(tx *metadata.Tx) (err error) {
		prev, err = tx.SetTag(r.Context(), name, tag, d, c)
		return err
	})
	var missing *metadata.MissingReferenceError
	if errors.As(err, &missing) {
		e := newError(http.StatusNotFound, codeManifestUnknown, "the repository has no manifest "+string(d))
		e.Detail = map[string]string{"digest": string(d)}
		return "", e
	}
	return prev, orNameUnknown(err, name)
}

// putTag moves a tag, as a compare-and-swap when the body has
// expectedDigest ("" meaning the tag must not be live).
//
// PUT /admin/v1/repositories/<name>/tags/<tag> {"digest", "expectedDigest"}
func (reg *Registry) putTag(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	var body struct {
		Digest         string  `json:"digest"`
		ExpectedDigest *string `json:"expectedDigest"`
	}
	if err := readBody(r, &body); err != nil {
		return err
	}
	d, err := oci.ParseDigest(body.Digest)
	if err != nil {
		return err
	}
	c := metadata.Change{Actor: actor(r), Action: metadata.ActionMove}
	if body.ExpectedDigest != nil {
		var expect oci.Digest
		if *body.ExpectedDigest != "" {
			if expect, err = oci.ParseDigest(*body.ExpectedDigest); err != nil {
				return err
			}
		}
		c.Expect = &expect
	}
	p, err := reg.policies.forRepository(r.Context(), rt.name)
	if err != nil {
		return err
	}
	prev, err := reg.setTag(r, p, rt.name, rt.tag, d, c)
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", tagChangeJSON{Repository: rt.name, Tag: rt.tag, Digest: d, Previous: prev})
}

// deleteAdminTag deletes a tag; its history stays, and it can be restored
// within the restore window.
//
// DELETE /admin/v1/repositories/<name>/tags/<tag>
func (reg *Registry) deleteAdminTag(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	var d oci.Digest
	err := reg.db.InTx(r.Context(), func(tx *metadata.Tx) (err error) {
		d, err = tx.DeleteTag(r.Context(), rt.name, rt.tag, metadata.Change{Actor: actor(r), Action: metadata.ActionDelete})
		return err
	})
	if errors.Is(err, metadata.ErrNotFound) {
		if err := reg.checkRepository(r, rt.name); err != nil {
			return err
		}
		return tagUnknown(rt.tag, "the repository has no such tag")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", tagChangeJSON{Repository: rt.name, Tag: rt.tag, Digest: d})
}

// restoreTag points a deleted tag back where it pointed, if it was deleted
// within the restore window.
//
// POST /admin/v1/repositories/<name>/tags/<tag>/restore
func (reg *Registry) restoreTag(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	p, err := reg.policies.forRepository(r.Context(), rt.name)
	if err != nil {
		return err
	}
	since := time.Now().Add(-reg.restoreWindow).UnixNano()
	var d oci.Digest
	err = reg.db.InTx(r.Context(), func(tx *metadata.Tx) (err error) {
		d, err = tx.RestoreTag(r.Context(), rt.name, rt.tag, since, metadata.Change{Actor: actor(r), Rules: p.tagRules()})
		return err
	})
	if errors.Is(err, metadata.ErrNotFound) {
		if err := reg.checkRepository(r, rt.name); err != nil {
			return err
		}
		return tagUnknown(rt.tag, fmt.Sprintf("nothing to restore: the tag was not deleted within the restore window (%s)", reg.restoreWindow))
	}
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", tagChangeJSON{Repository: rt.name, Tag: rt.tag, Digest: d})
}

// The modes of a rollback.
const (
	rollbackPromote  = "promote"
	rollbackRetarget = "retarget"
)

// rollback points a tag at an older manifest: promote (the default)
// publishes the next number, so that "newest version" followers roll
// forward to it; retarget moves a tag (latest by default) back.
//
// POST /admin/v1/repositories/<name>/rollback {"to", "mode", "tag"}
func (reg *Registry) rollback(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	var body struct {
		To   string `json:"to"`
		Mode string `json:"mode"`
		Tag  string `json:"tag"`
	}
	if err := readBody(r, &body); err != nil {
		return err
	}
	switch body.Mode {
	case "":
		body.Mode = rollbackPromote
	case rollbackPromote, rollbackRetarget:
	default:
		return newError(http.StatusBadRequest, codeRequestInvalid, "mode must be promote or retarget")
	}
	if body.Tag != "" {
		if err := oci.ValidateTag(body.Tag); err != nil {
			return err
		}
	}
	p, err := reg.versionKeys(r, rt.name)
	if err != nil {
		return err
	}
	d, err := reg.rollbackTarget(r, rt.name, body.To)
	if err != nil {
		return err
	}
	c := metadata.Change{Actor: actor(r), Action: metadata.ActionRollback}
	tag := body.Tag
	switch {
	case body.Mode == rollbackRetarget && tag == "":
		tag = "latest"
	case body.Mode == rollbackPromote:
		if tag == "" {
			if tag, err = reg.nextVersion(r, rt.name, p); err != nil {
				return err
			}
		}
		none := oci.Digest("")
		c.Expect = &none // a new number, not a move
	}
	prev, err := reg.setTag(r, p, rt.name, tag, d, c)
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", tagChangeJSON{rt.name, body.Mode, tag, d, prev})
}

// rollbackTarget resolves the "to" of a rollback: a digest the repository
// has, or a tag, live or deleted (then where it last pointed).
func (reg *Registry) rollbackTarget(r *http.Request, name, to string) (oci.Digest, error) {
	if to == "" {
		return "", newError(http.StatusBadRequest, codeRequestInvalid, `"to" must name a tag or a digest`)
	}
	if strings.Contains(to, ":") {
		return oci.ParseDigest(to)
	}
	if err := oci.ValidateTag(to); err != nil {
		return "", err
	}
	last, err := reg.db.TagHistoryPage(r.Context(), name, to, 0, 1)
	if err != nil {
		return "", err
	}
	if len(last) == 0 {
		return "", tagUnknown(to, "the tag to roll back to has no history in this repository")
	}
	return last[0].Digest, nil
}

// nextVersion is the number after the highest version the repository
// has ever had, live or deleted: a number once pulled (say a bad 3, since
// deleted) is never published again for other content, since nodes that
// pulled it would not pull it again. It has no history at all.
func (reg *Registry) nextVersion(r *http.Request, name string, p *tagPolicy) (string, error) {
	ctx := r.Context()
	newest, err := reg.db.Versions(ctx, name, nil, 1)
	if err != nil {
		return "", err
	}
	highest, err := reg.db.HighestVersion(ctx, name)
	if errors.Is(err, metadata.ErrNotFound) || len(newest) == 0 {
		return "", newError(http.StatusConflict, codeTagConflict, "the repository has no numbered tag to count from; name the tag to publish")
	}
	if err != nil {
		return "", err
	}
	from := highest.Tag
	if v, ok := p.versioning.Parse(from); !ok || string(v.Key) < newest[0].VersionKey {
		from = newest[0].Tag // keys of deleted tags from another ordering
	}
	for range 100 {
		next, ok := oci.Next(from)
		v, numbered := p.versioning.Parse(next)
		if !ok || oci.ValidateTag(next) != nil || !numbered || string(v.Key) <= newest[0].VersionKey {
			return "", newError(http.StatusConflict, codeTagConflict,
				fmt.Sprintf("no number after %s reads as a newer version; name the tag to publish", from))
		}
		past, err := reg.db.TagHistoryPage(ctx, name, next, 0, 1)
		if err != nil {
			return "", err
		}
		if len(past) == 0 {
			return next, nil
		}
		from = next
	}
	return "", newError(http.StatusConflict, codeTagConflict, "no unused number found after "+from+"; name the tag to publish")
}

// policyJSON is a repository's effective policy and the rules it comes from.
type policyJSON struct {
	Repository string       `json:"repository"`
	Policy     Policy       `json:"policy"`
	Rules      []PolicyRule `json:"rules"`
}

// getPolicy answers the effective policy of a repository (or of a glob:
// the rules that match it).
//
// GET /admin/v1/repositories/<name or glob>/policy
func (reg *Registry) getPolicy(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	p, err := reg.policies.forRepository(r.Context(), rt.name)
	if err != nil {
		return err
	}
	rules := p.rules
	if rules == nil {
		rules = []PolicyRule{}
	}
	return writeJSON(w, "application/json", policyJSON{rt.name, p.Policy, rules})
}

// putPolicy stores the policy of a repository, or of the repositories a
// glob matches. Fields left out inherit from less specific rules.
//
// PUT /admin/v1/repositories/<name or glob>/policy
func (reg *Registry) putPolicy(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	var p Policy
	if err := readBody(r, &p); err != nil {
		var bad *badDuration
		if errors.As(err, &bad) {
			return newError(http.StatusBadRequest, codePolicyInvalid, bad.Error())
		}
		return err
	}
	if err := p.check(); err != nil {
		return err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := reg.db.InTx(r.Context(), func(tx *metadata.Tx) error {
		return tx.SetPolicy(r.Context(), rt.name, string(body), actor(r))
	}); err != nil {
		return err
	}
	reg.log.Info("policy set", "repositories", rt.name, "policy", string(body), "actor", actor(r))
	return reg.getPolicy(w, r, rt)
}

// deletePolicy removes the policy stored for a repository or glob.
//
// DELETE /admin/v1/repositories/<name or glob>/policy
func (reg *Registry) deletePolicy(w http.ResponseWriter, r *http.Request, rt adminRoute) error {
	err := reg.db.InTx(r.Context(), func(tx *metadata.Tx) error { return tx.DeletePolicy(r.Context(), rt.name) })
	if errors.Is(err, metadata.ErrNotFound) {
		e := newError(http.StatusNotFound, codePolicyUnknown, "no policy is stored for "+rt.name)
		e.Detail = map[string]string{"repositories": rt.name}
		return e
	}
	if err != nil {
		return err
	}
	reg.log.Info("policy deleted", "repositories", rt.name, "actor", actor(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listPolicies lists every rule, from the configuration and the API.
//
// GET /admin/v1/policies
func (reg *Registry) listPolicies(w http.ResponseWriter, r *http.Request, _ adminRoute) error {
	rules, err := reg.policies.rules(r.Context())
	if err != nil {
		return err
	}
	out := make([]PolicyRule, len(rules))
	for i, cr := range rules {
		out[i] = cr.PolicyRule
	}
	return writeJSON(w, "application/json", struct {
		Rules []PolicyRule `json:"rules"`
	}{out})
}
