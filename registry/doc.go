// Package registry is Berth's HTTP face: the OCI Distribution Spec v1.1 API
// under /v2/. It is the only package that knows HTTP status codes and OCI
// error codes. Handlers validate every input, return an error rather than
// write one, and a single wrapper turns errors into the spec's JSON envelope
// and logs one line per request.
//
// Spec: https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md
package registry
