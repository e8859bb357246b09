#!/usr/bin/env bash
# The project's test command: installs what the suites need that Go cannot
# install itself, then runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v skopeo >/dev/null; then
	echo "installing skopeo (Debian package) for the client tests"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq skopeo >/dev/null
fi

go vet ./...
go test -race -count=1 -timeout 45m "$@" ./...
