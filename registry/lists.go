package registry

import (
	"encoding/json"
	"github.com/berthhq/berth/auth"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berthhq/berth/oci"
)

// maxPage bounds one page of a list, whatever n asks for.
const maxPage = 10000

// page reads the n and last query parameters of a paginated list. n < 0
// means no limit was asked for.
func page(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if q.Has("n") {
		n, err = strconv.Atoi(q.Get("n"))
		if err != nil || n < 0 {
			return 0, "", newError(http.StatusBadRequest, codePaginationInvalid, "n must be a non-negative integer")
		}
		n = min(n, maxPage) // a larger page is served as the largest, with a Link to the rest
	}
	return n, q.Get("last"), nil
}

// setNext points the Link header at the next page: this path with query.
func setNext(w http.ResponseWriter, r *http.Request, query url.Values) {
	w.Header().Set("Link", "<"+r.URL.Path+"?"+query.Encode()+`>; rel="next"`)
}

// paginate fetches one page through list, asking for one item more than n
// to learn whether a next page exists, and sets the Link header to it.
func paginate(w http.ResponseWriter, r *http.Request, n int, last string, list func(last string, limit int) ([]string, error)) ([]string, error) {
	if n == 0 {
		return []string{}, nil
	}
	limit := n + 1
	if n < 0 {
		limit = math.MaxInt32 // everything: a portable LIMIT
	}
	items, err := list(last, limit)
	if err != nil {
		return nil, err
	}
	if n > 0 && len(items) > n {
		items = items[:n]
		setNext(w, r, url.Values{"n": {strconv.Itoa(n)}, "last": {items[n-1]}})
	}
	return items, nil
}

func writeJSON(w http.ResponseWriter, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(b)
	return err
}

// listTags lists a repository's tags in lexical order, a page at a time.
//
// Spec: "Listing Tags", GET /v2/<name>/tags/list.
func (reg *Registry) listTags(w http.ResponseWriter, r *http.Request, rt route) error {
	n, last, err := page(r)
	if err != nil {
		return err
	}
	if err := reg.checkRepository(r, rt.name); err != nil {
		return err
	}
	ctx := r.Context()
	tags, err := paginate(w, r, n, last, func(last string, limit int) ([]string, error) {
		return reg.db.Tags(ctx, rt.name, last, limit)
	})
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.name, tags})
}

// catalog lists repository names in lexical order, a page at a time.
//
// Spec: the catalog is not in the OCI spec; this is the reference
// registry's GET /v2/_catalog, which clients use.
func (reg *Registry) catalog(w http.ResponseWriter, r *http.Request, _ route) error {
	n, last, err := page(r)
	if err != nil {
		return err
	}
	names, err := paginate(w, r, n, last, func(last string, limit int) ([]string, error) {
		return reg.visibleRepositories(r, last, limit)
	})
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{names})
}

// visibleRepositories lists up to limit repositories after last that the
// caller may pull, reading the database a page at a time.
func (reg *Registry) visibleRepositories(r *http.Request, last string, limit int) ([]string, error) {
	if !reg.auth.Enabled() {
		return reg.db.Repositories(r.Context(), last, limit)
	}
	id := identity(r)
	const page = 1000
	var names []string
	for len(names) < limit {
		batch, err := reg.db.Repositories(r.Context(), last, page)
		if err != nil {
			return nil, err
		}
		for _, name := range batch {
			if reg.auth.UserMay(id, name, auth.Pull) {
				names = append(names, name)
			}
		}
		if len(batch) < page {
			break
		}
		last = batch[len(batch)-1]
	}
	return names[:min(limit, len(names))], nil
}

// referrers lists the manifests whose subject is a digest, as an image index.
//
// Spec: "Listing Referrers", GET /v2/<name>/referrers/<digest>.
func (reg *Registry) referrers(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := oci.ParseDigest(rt.arg)
	if err != nil {
		return err
	}
	ms, err := reg.db.Referrers(r.Context(), rt.name, d)
	if err != nil {
		return err
	}
	filter := r.URL.Query().Get("artifactType")
	descs := []oci.Descriptor{}
	for _, m := range ms {
		if filter != "" && m.ArtifactType != filter {
			continue
		}
		var body struct {
			Annotations map[string]string `json:"annotations"`
		}
		json.Unmarshal(m.Payload, &body) // stored manifests parsed on the way in
		descs = append(descs, oci.Descriptor{
			MediaType:    m.MediaType,
			Digest:       m.Digest,
			Size:         m.Size(),
			ArtifactType: m.ArtifactType,
			Annotations:  body.Annotations,
		})
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, oci.MediaTypeImageIndex, struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []oci.Descriptor `json:"manifests"`
	}{2, oci.MediaTypeImageIndex, descs})
}
