#!/usr/bin/env bash
# Starts Berth and the reference registry (distribution v3) on free local ports with fresh data
# directories, runs the load tool against both in one run, prints its Markdown table, and stops them.
#
#   test/bench/run.sh [tool flags…]        e.g. test/bench/run.sh -quick -json /tmp/bench.json
#
# BENCH_SERVERS  kinds to start, in column order (default "berth reference"); repeat a kind to start
#                two instances, e.g. BENCH_SERVERS="reference reference". berth-nosync is Berth with
#                --storage.disk.fsync=false, which acknowledges blobs before they are on disk, as the
#                reference registry does.
# BENCH_BERTH_FLAGS  extra flags for Berth instead of the default "--log.level warn" (request logs off).
# BERTH_TEST_TOOLS  tool cache shared with the e2e suite (default <user cache>/berth-test-tools).
# BENCH_KEEP=1   keep the scratch directory (server data and logs) after the run.
set -euo pipefail

registry_version=v3.1.2
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
pids=()
started=$(date +%s)

cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [[ ${BENCH_KEEP:-} == 1 ]]; then
		echo "run.sh: kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
	echo "run.sh: total $(($(date +%s) - started))s" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "run.sh: $*" >&2; }

# free_port prints a port on 127.0.0.1 that nothing listens on.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	log "no free port found"
	return 1
}

# reference_bin prints the reference registry's binary, installing it into the shared cache once.
reference_bin() {
	local cache=${BERTH_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-test-tools}
	local dir=$cache/registry-$registry_version
	if [[ ! -x $dir/registry ]]; then
		log "installing github.com/distribution/distribution/v3/cmd/registry@$registry_version into $dir"
		mkdir -p "$cache"
		local scratch
		scratch=$(mktemp -d "$cache/.install-registry-$registry_version-XXXXXX")
		(cd "$tmp" && GOWORK=off CGO_ENABLED=0 GOBIN=$scratch \
			go install "github.com/distribution/distribution/v3/cmd/registry@$registry_version") >&2
		mv "$scratch" "$dir" 2>/dev/null || rm -rf "$scratch" # another installer may have won
	fi
	echo "$dir/registry"
}

# start KIND NAME: starts a registry, waits until GET /v2/ answers 200, appends its -target flag.
targets=()
start() {
	local kind=$1 name=$2 port dir pid
	port=$(free_port)
	dir=$tmp/$name
	mkdir -p "$dir/data"
	case $kind in
	berth | berth-nosync)
		# Request logs off, as the reference's access log is below; BENCH_BERTH_FLAGS replaces that.
		read -r -a flags <<<"${BENCH_BERTH_FLAGS:---log.level warn}"
		[[ $kind == berth-nosync ]] && flags+=(--storage.disk.fsync=false)
		"$tmp/bin/berth" serve --addr "127.0.0.1:$port" --data "$dir/data" "${flags[@]}" >"$dir/log" 2>&1 &
		;;
	reference)
		cat >"$dir/config.yml" <<-EOF
			version: 0.1
			log:
			  level: warn
			  accesslog:
			    disabled: true
			storage:
			  filesystem:
			    rootdirectory: $dir/data
			  delete:
			    enabled: true
			  cache:
			    blobdescriptor: inmemory
			http:
			  addr: 127.0.0.1:$port
			  secret: berth-bench-secret
		EOF
		# Its default is to export OpenTelemetry traces to localhost:4318; nobody listens there.
		OTEL_TRACES_EXPORTER=none "$reference" serve "$dir/config.yml" >"$dir/log" 2>&1 &
		;;
	*)
		log "unknown server kind $kind (want berth, berth-nosync or reference)"
		return 1
		;;
	esac
	pid=$!
	pids+=("$pid")
	for _ in $(seq 300); do
		if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true) == 200 ]]; then
			log "$name ($kind) ready on 127.0.0.1:$port, pid $pid"
			targets+=(-target "$name=http://127.0.0.1:$port,pid=$pid")
			return
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited during startup:"
			cat "$dir/log" >&2
			return 1
		fi
		sleep 0.1
	done
	log "$name not ready after 30s:"
	tail -n 50 "$dir/log" >&2
	return 1
}

read -r -a kinds <<<"${BENCH_SERVERS:-berth reference}"
log "building the load tool"
go build -o "$tmp/bin/bench" ./test/bench
for kind in "${kinds[@]}"; do
	case $kind in
	berth | berth-nosync)
		if [[ ! -x $tmp/bin/berth ]]; then
			log "building berth"
			go build -o "$tmp/bin/berth" ./cmd/berth
		fi
		;;
	reference) reference=${reference:-$(reference_bin)} ;;
	esac
done

declare -A seen=()
for kind in "${kinds[@]}"; do
	seen[$kind]=$((${seen[$kind]:-0} + 1))
	name=$kind
	if ((seen[$kind] > 1)); then
		name=$kind-${seen[$kind]}
	fi
	start "$kind" "$name"
done

status=0
"$tmp/bin/bench" "${targets[@]}" "$@" || status=$?
if ((status != 0)); then
	for kind in "${!seen[@]}"; do
		for f in "$tmp"/"$kind"*/log; do
			log "last lines of $f:"
			tail -n 30 "$f" >&2
		done
	done
fi
exit "$status"
