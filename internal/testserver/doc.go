// Package testserver starts the real servers that tests run against (an
// S3-compatible store, PostgreSQL) on 127.0.0.1, installing them at pinned
// versions on first use, and stops them when the test binary ends. It is
// test support only: nothing in the registry imports it.
package testserver
