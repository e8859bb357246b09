package registry

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/berthhq/berth/metadata"
	"github.com/berthhq/berth/oci"
	"github.com/berthhq/berth/storage"
)

// TestToAPIError: the one mapping from errors to the spec's status and code.
func TestToAPIError(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{oci.ErrNameInvalid, 400, codeNameInvalid},
		{fmt.Errorf("parse: %w", oci.ErrDigestInvalid), 400, codeDigestInvalid},
		{storage.ErrDigestMismatch, 400, codeDigestInvalid},
		{fmt.Errorf("%w: no config", oci.ErrManifestInvalid), 400, codeManifestInvalid},
		{&metadata.MissingReferenceError{Kind: oci.KindLayer, Digest: "sha256:ab"}, 400, codeManifestBlobUnknown},
		{fmt.Errorf("s3: put: %w", storage.ErrUnavailable), 429, codeTooManyRequests},
		{errors.New("disk on fire"), 500, "UNKNOWN"},
	}
	for _, tt := range tests {
		e := toAPIError(tt.err)
		if e.Status != tt.status || e.Code != tt.code {
			t.Errorf("toAPIError(%v) = %d %s, want %d %s", tt.err, e.Status, e.Code, tt.status, tt.code)
		}
	}
	if got := toAPIError(storage.ErrUnavailable).header.Get("Retry-After"); got == "" {
		t.Error("a busy storage answer has no Retry-After")
	}
	if e := toAPIError(errors.New("secret internals")); e.Message != "internal server error" || e.Status != http.StatusInternalServerError {
		t.Errorf("an unknown error leaks %q", e.Message)
	}
}
