#!/usr/bin/env bash
# The project's test command: installs what the suites need that Go cannot
# install itself, then runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suites drive: skopeo (a client), PostgreSQL (the
# replicated metadata backend) and nginx (the load balancer of the replica test).
need=()
command -v skopeo >/dev/null || need+=(skopeo)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]} (Debian packages) for the tests"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

go vet ./...
go test -race -count=1 -timeout 45m "$@" ./...
(cd deploy/kubernetes && go vet ./... && go test -count=1 ./...)
