package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
)

// apiError is an error with its place in the spec: an HTTP status and an OCI
// error code. Handlers return one where the code depends on the endpoint
// (BLOB_UNKNOWN on a blob GET, MANIFEST_BLOB_UNKNOWN on a manifest PUT).
type apiError struct {
	Status  int
	Code    string
	Message string
	Detail  any
	header  http.Header // extra headers, such as Range on a 416
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func newError(status int, code, message string) *apiError {
	return &apiError{Status: status, Code: code, Message: message}
}

// The spec's error codes ("Error Codes" in the distribution spec).
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeDenied              = "DENIED"
	codeUnauthorized        = "UNAUTHORIZED"
	codeUnsupported         = "UNSUPPORTED"
	codeTooManyRequests     = "TOOMANYREQUESTS"
	codeUnavailable         = "UNAVAILABLE" // the reference registry's code for a 503
	// Not in the spec, but the reference registry's codes for a bad n and
	// an unsatisfiable range on a blob GET.
	codePaginationInvalid = "PAGINATION_NUMBER_INVALID"
	codeRangeInvalid      = "RANGE_INVALID"
	// Berth's own, for the admin API.
	codeTagUnknown    = "TAG_UNKNOWN"
	codeTagConflict   = "TAG_CONFLICT"
	codePolicyInvalid = "POLICY_INVALID"
	codePolicyUnknown = "POLICY_UNKNOWN"
	// The webhook endpoints'.
	codeWebhookInvalid  = "WEBHOOK_INVALID"
	codeWebhookConflict = "WEBHOOK_CONFLICT"
	codeGCRunning       = "GC_RUNNING"
	codeDeliveryUnknown = "DELIVERY_UNKNOWN"
	codeRequestInvalid  = "REQUEST_INVALID"
)

// errCollected answers a push of a blob that garbage collection was
// deleting at that moment: the rare loser of that race pushes it again.
var errCollected = func() *apiError {
	e := newError(http.StatusServiceUnavailable, codeUnavailable,
		"the blob was being garbage-collected as it was pushed; push it again")
	e.header = http.Header{"Retry-After": {"1"}}
	return e
}()

// tooManyRequests answers a client over a limit, or asks one to come back
// when storage is less busy.
func tooManyRequests(message string, wait time.Duration) *apiError {
	e := newError(http.StatusTooManyRequests, codeTooManyRequests, message)
	e.header = http.Header{"Retry-After": {strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second)))}}
	return e
}

// toAPIError maps any error to the spec's terms. Sentinels that mean the same
// thing on every endpoint are mapped here, once; anything unknown is a 500
// whose details stay in the log.
func toAPIError(err error) *apiError {
	var ae *apiError
	var missing *metadata.MissingReferenceError
	var immutable *metadata.TagImmutableError
	var tooLow *metadata.TagTooLowError
	var conflict *metadata.TagConflictError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &immutable):
		e := newError(http.StatusForbidden, codeDenied, fmt.Sprintf(
			"tag %s is a numbered tag, and numbered tags are immutable here (policy immutableNumbered): it points at %s; push this manifest under a new number",
			immutable.Tag, immutable.Current))
		e.Detail = map[string]string{"tag": immutable.Tag, "digest": string(immutable.Current)}
		return e
	case errors.As(err, &tooLow):
		e := newError(http.StatusForbidden, codeDenied, fmt.Sprintf(
			"tag %s is older than the newest version, %s, and this repository refuses older numbers (policy refuseLower)",
			tooLow.Tag, tooLow.Newest))
		e.Detail = map[string]string{"tag": tooLow.Tag, "newest": tooLow.Newest}
		return e
	case errors.As(err, &conflict):
		e := newError(http.StatusConflict, codeTagConflict, conflict.Error())
		e.Detail = map[string]string{"tag": conflict.Tag, "digest": string(conflict.Current)}
		return e
	case errors.As(err, &missing):
		e := newError(http.StatusBadRequest, codeManifestBlobUnknown, missing.Error())
		e.Detail = map[string]string{"digest": string(missing.Digest)}
		return e
	case errors.Is(err, oci.ErrNameInvalid):
		return newError(http.StatusBadRequest, codeNameInvalid, "invalid repository name")
	case errors.Is(err, oci.ErrDigestInvalid):
		return newError(http.StatusBadRequest, codeDigestInvalid, err.Error())
	case errors.Is(err, storage.ErrDigestMismatch):
		return newError(http.StatusBadRequest, codeDigestInvalid, "the uploaded content does not match the digest")
	case errors.Is(err, oci.ErrTagInvalid):
		return newError(http.StatusBadRequest, codeManifestInvalid, "invalid tag")
	case errors.Is(err, oci.ErrManifestInvalid):
		return newError(http.StatusBadRequest, codeManifestInvalid, err.Error())
	case errors.Is(err, storage.ErrInvalidOffset):
		// The stored bytes of an upload cannot continue where its record says.
		return newError(http.StatusBadRequest, codeBlobUploadInvalid, "the upload cannot continue; start it again")
	case errors.Is(err, metadata.ErrTooManyUploads):
		return tooManyRequests("too many open upload sessions: finish or cancel some first", 10*time.Second)
	case errors.Is(err, metadata.ErrBlobDeleting):
		return errCollected
	case errors.Is(err, storage.ErrUnavailable):
		return tooManyRequests("storage is busy; retry shortly", time.Second)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		return newError(499, codeBlobUploadInvalid, "request canceled")
	}
	return newError(http.StatusInternalServerError, "UNKNOWN", "internal server error")
}

// writeError writes the spec's error envelope.
func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	for k, v := range e.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	status := e.Status
	if status == 499 {
		status = http.StatusBadRequest
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	type item struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	json.NewEncoder(w).Encode(struct {
		Errors []item `json:"errors"`
	}{[]item{{e.Code, e.Message, e.Detail}}})
}
