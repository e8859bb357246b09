// Package auth decides who is asking and what they may do.
//
// Who: a user of an htpasswd file (HTTP basic, bcrypt only), the holder of a
// bearer token signed by Berth's own issuer (/auth/token, the distribution
// token spec) or by an external one, or a verified TLS client certificate.
// What: a policy file maps users and groups to repository globs and actions
// (pull, push, delete, admin); a token carries its grants in its access
// claims. Files are read again when they change, so credentials and rights
// can be edited without a restart.
package auth
