// Command bench measures OCI registries over the Distribution API, side by side: blob push and
// pull throughput, a many-layer image, manifest GETs under concurrency, tag listing, and the
// server's memory while it receives a large blob. It uses only the standard library, so it can
// measure any registry at a URL; run.sh runs it against Berth and the reference registry.
//
//	go run ./test/bench -target berth=http://127.0.0.1:5000,pid=1234 \
//	    -target reference=http://127.0.0.1:5001,pid=5678 [-quick] [-bench push,pull] [-json out.json]
//
// Flags select benchmarks (-bench, -skip) and sizes; -quick is a smoke run of a few seconds. The
// table goes to stdout (to stderr when -json - takes stdout), progress to stderr.
package main
