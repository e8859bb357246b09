package registry

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
)

func blobUnknown(d oci.Digest) *apiError {
	e := newError(http.StatusNotFound, codeBlobUnknown, "blob unknown to repository")
	e.Detail = map[string]string{"digest": string(d)}
	return e
}

// getBlob serves a blob the repository links, with ranges.
//
// Spec: "Pulling blobs", GET and HEAD /v2/<name>/blobs/<digest>.
func (reg *Registry) getBlob(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := oci.ParseDigest(rt.arg)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if _, err := reg.db.BlobInRepo(ctx, rt.name, d); err != nil {
		if !errors.Is(err, metadata.ErrNotFound) {
			return err
		}
		// Some clients fetch manifests through the blob endpoint.
		m, merr := reg.db.Resolve(ctx, rt.name, oci.Reference{Digest: d})
		if merr != nil {
			return blobUnknown(d)
		}
		setBlobHeaders(w, d)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(m.Payload))
		return nil
	}
	f, err := reg.store.Open(ctx, d)
	if errors.Is(err, storage.ErrNotFound) {
		// Metadata links a blob whose bytes are gone: answer as the spec
		// says, and leave the inconsistency to `berth check`.
		reg.log.ErrorContext(ctx, "linked blob missing from storage", "repository", rt.name, "digest", d)
		return blobUnknown(d)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	setBlobHeaders(w, d)
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

func setBlobHeaders(w http.ResponseWriter, d oci.Digest) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Etag", `"`+string(d)+`"`)
	h.Set("Cache-Control", "max-age=31536000")
}

// deleteBlob removes a blob from the repository; its bytes go when garbage
// collection finds no one else needs them.
//
// Spec: "Deleting Blobs", DELETE /v2/<name>/blobs/<digest>.
func (reg *Registry) deleteBlob(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := oci.ParseDigest(rt.arg)
	if err != nil {
		return err
	}
	err = reg.db.InTx(r.Context(), func(tx *metadata.Tx) error {
		return tx.UnlinkBlob(r.Context(), rt.name, d)
	})
	if errors.Is(err, metadata.ErrNotFound) {
		return blobUnknown(d)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// blobCreated answers a completed upload or mount.
func blobCreated(w http.ResponseWriter, name string, d oci.Digest) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/"+string(d))
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}
