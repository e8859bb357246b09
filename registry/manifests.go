package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
)

func manifestUnknown(ref oci.Reference) *apiError {
	e := newError(http.StatusNotFound, codeManifestUnknown, "manifest unknown to repository")
	e.Detail = map[string]string{"reference": ref.String()}
	return e
}

// getManifest returns a manifest's exact stored bytes.
//
// Spec: "Pulling manifests", GET and HEAD /v2/<name>/manifests/<reference>.
func (reg *Registry) getManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	ref, err := oci.ParseReference(rt.arg)
	if err != nil {
		return err
	}
	m, err := reg.db.Resolve(r.Context(), rt.name, ref)
	if errors.Is(err, metadata.ErrNotFound) {
		return manifestUnknown(ref)
	}
	if err != nil {
		return err
	}
	if !accepts(r.Header.Values("Accept"), m.MediaType) {
		e := manifestUnknown(ref)
		e.Message = "the manifest is " + m.MediaType + ", which the Accept header does not list"
		return e
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Docker-Content-Digest", string(m.Digest))
	h.Set("Etag", `"`+string(m.Digest)+`"`)
	h.Set("Content-Length", strconv.Itoa(len(m.Payload)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(m.Payload)
	}
	return nil
}

// accepts reports whether a client that sent these Accept headers can take
// a manifest of mediaType. Registries never convert manifests, so a client
// that lists only types other than the stored one (an old client that cannot
// read an OCI index, say) gets MANIFEST_UNKNOWN, as from the reference
// registry; no Accept header, or */*, takes anything.
func accepts(accept []string, mediaType string) bool {
	listed := false
	for _, value := range accept {
		for _, part := range strings.Split(value, ",") {
			mt, _, _ := strings.Cut(part, ";")
			switch mt = strings.TrimSpace(mt); mt {
			case "":
			case mediaType, "*/*":
				return true
			default:
				listed = true
			}
		}
	}
	return !listed
}

// putManifest stores a manifest after checking that it parses, that its
// digest matches a digest reference, and that the repository has everything
// it references; a tag reference also moves the tag.
//
// Spec: "Pushing Manifests", PUT /v2/<name>/manifests/<reference>, with
// the ?tag= parameters of the spec's next version.
func (reg *Registry) putManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	ref, err := oci.ParseReference(rt.arg)
	if err != nil {
		return err
	}
	tooBig := &apiError{Status: http.StatusRequestEntityTooLarge, Code: codeManifestInvalid,
		Message: fmt.Sprintf("manifest larger than %d bytes", oci.MaxManifestSize)}
	if r.ContentLength > oci.MaxManifestSize {
		return tooBig
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, oci.MaxManifestSize+1))
	if err != nil {
		return newError(http.StatusBadRequest, codeManifestInvalid, "reading the request body: "+err.Error())
	}
	if len(payload) > oci.MaxManifestSize {
		return tooBig
	}
	// Hashed once, under the URL's algorithm when the URL names a digest.
	alg := oci.SHA256
	if ref.IsDigest() {
		alg = ref.Digest.Algorithm()
	}
	sum := oci.NewHash(alg)
	sum.Write(payload)
	d := oci.DigestOf(alg, sum)
	if ref.IsDigest() && d != ref.Digest {
		return fmt.Errorf("%w: the manifest's digest is %s", oci.ErrDigestInvalid, d)
	}
	m, err := oci.ParseManifest(r.Header.Get("Content-Type"), payload)
	if err != nil {
		return err
	}
	// Tags: the one in the URL, or those a push by digest names with ?tag=.
	tags := r.URL.Query()["tag"]
	if !ref.IsDigest() {
		tags = []string{ref.Tag}
	}
	for _, t := range tags {
		if err := oci.ValidateTag(t); err != nil {
			return err
		}
	}
	ctx := r.Context()
	p, err := reg.policies.forRepository(ctx, rt.name)
	if err != nil {
		return err
	}
	rules := p.tagRules()
	// A caller without the right to move numbered tags pushes as if they
	// were immutable: the check is the database's, in the transaction.
	moveAction := reg.auth.MoveNumberedTag()
	mayMove := reg.auth.UserMay(identity(r), rt.name, moveAction)
	if !mayMove {
		rules.ImmutableNumbered = true
	}
	err = reg.db.InTx(ctx, func(tx *metadata.Tx) error {
		return tx.PutManifest(ctx, rt.name, d, m, payload, tags, metadata.Change{Actor: actor(r), Action: metadata.ActionPush, Rules: rules})
	})
	var immutable *metadata.TagImmutableError
	if !mayMove && !p.tagRules().ImmutableNumbered && errors.As(err, &immutable) {
		e := newError(http.StatusForbidden, codeDenied, fmt.Sprintf(
			"tag %s is a numbered tag pointing at %s; moving it needs the %s right here", immutable.Tag, immutable.Current, moveAction))
		e.Detail = map[string]string{"tag": immutable.Tag, "digest": string(immutable.Current)}
		return e
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Location", "/v2/"+rt.name+"/manifests/"+string(d))
	h.Set("Docker-Content-Digest", string(d))
	if m.Subject != nil {
		h.Set("OCI-Subject", string(m.Subject.Digest))
	}
	if ref.IsDigest() && len(tags) > 0 {
		h.Set("OCI-Tag", strings.Join(tags, ", "))
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// deleteManifest removes a manifest (by digest) or a tag (by tag).
//
// Spec: "Deleting tags" and "Deleting Manifests", DELETE /v2/<name>/manifests/<reference>.
func (reg *Registry) deleteManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	ref, err := oci.ParseReference(rt.arg)
	if err != nil {
		return err
	}
	ctx := r.Context()
	c := metadata.Change{Actor: actor(r), Action: metadata.ActionDelete}
	err = reg.db.InTx(ctx, func(tx *metadata.Tx) error {
		if ref.IsDigest() {
			return tx.DeleteManifest(ctx, rt.name, ref.Digest, c)
		}
		_, err := tx.DeleteTag(ctx, rt.name, ref.Tag, c)
		return err
	})
	if errors.Is(err, metadata.ErrNotFound) {
		return manifestUnknown(ref)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
