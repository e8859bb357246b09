#!/usr/bin/env bash
# Starts Berth and the reference registry (distribution v3) on free local ports with fresh data,
# runs the load tool against both in one run, prints its Markdown table, and stops them.
#
#   test/bench/run.sh [tool flags…]        e.g. test/bench/run.sh -quick -json /tmp/bench.json
#   BENCH_BACKEND=s3 test/bench/run.sh     both registries on one S3 server, Berth on PostgreSQL
#
# BENCH_BACKEND  disk (default): each registry stores on disk in the scratch directory, Berth's
#                metadata in SQLite. s3: one versitygw server (S3 on its POSIX backend, in the
#                scratch directory) holds a bucket per registry, and one PostgreSQL server a
#                database per Berth instance.
# BENCH_SERVERS  kinds to start, in column order (default "berth reference"); repeat a kind to start
#                two instances, e.g. BENCH_SERVERS="reference reference". berth-nosync (disk only)
#                is Berth with --storage.disk.fsync=false, which acknowledges blobs before they are
#                on disk, as the reference registry does.
# BENCH_BERTH_FLAGS  extra flags for Berth instead of the default "--log.level warn" (request logs off).
# BERTH_TEST_TOOLS  tool cache shared with the e2e suite (default <user cache>/berth-test-tools).
# BERTH_TEST_PG_BIN  directory of initdb and postgres (default: the newest /usr/lib/postgresql/*/bin).
# BENCH_KEEP=1   keep the scratch directory (server data and logs) after the run.
set -euo pipefail

registry_version=v3.1.2
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
backend=${BENCH_BACKEND:-disk}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
pids=() # every server started, in order; cleanup stops them in reverse
started=$(date +%s)

# S3 credentials of the throwaway versitygw server.
s3_access=berthbench
s3_secret=berthbenchsecret
s3_region=us-east-1

cleanup() {
	local i p
	# Newest first: the registries, then the servers they were clients of.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[i]}
		if [[ $p == "${pg_pid:-}" ]]; then
			kill -INT "$p" 2>/dev/null || true # PostgreSQL's fast shutdown; TERM waits for clients
		else
			kill "$p" 2>/dev/null || true
		fi
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

# free_port prints a port on 127.0.0.1 that nothing listens on. It picks below the kernel's
# ephemeral range: a port there can be the local end of some client's connection a moment later,
# and a server binding it then fails with "address in use".
free_port() {
	local p lo=32768
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	for _ in $(seq 100); do
		p=$((10000 + RANDOM % (lo > 11000 ? lo - 10000 : 1000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	log "no free port found"
	return 1
}

# tool_bin PACKAGE VERSION prints the binary of a Go command, installing it into the cache shared
# with internal/testserver (<cache>/<name>-<version>/<name>) the first time.
tool_bin() {
	local pkg=$1 version=$2 name cache dir scratch
	name=$(basename "$pkg")
	cache=${BERTH_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-test-tools}
	dir=$cache/$name-$version
	if [[ ! -x $dir/$name ]]; then
		log "installing $pkg@$version into $dir"
		mkdir -p "$dir"
		# Install beside the final name and rename, as internal/testserver does, so that an
		# interrupted install, or two at once, never leave half a binary.
		scratch=$(mktemp -d "$dir/install-XXXXXX")
		(cd "$tmp" && GOWORK=off CGO_ENABLED=0 GOBIN=$scratch go install "$pkg@$version") >&2
		mv "$scratch/$name" "$dir/$name"
		rm -rf "$scratch"
	fi
	echo "$dir/$name"
}

# wait_ready NAME PID LOG CMD…: polls CMD until it succeeds; fails, showing LOG, if PID exits
# or 30 s pass.
wait_ready() {
	local name=$1 pid=$2 logf=$3
	shift 3
	for _ in $(seq 300); do
		if "$@" >/dev/null 2>&1; then
			return
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited during startup:"
			cat "$logf" >&2
			return 1
		fi
		sleep 0.1
	done
	log "$name not ready after 30s:"
	tail -n 50 "$logf" >&2
	return 1
}

# http_is CODE URL: whether GET URL answers CODE (any: any HTTP answer at all).
http_is() {
	local got
	got=$(curl -s -o /dev/null -w '%{http_code}' "$2" || true)
	[[ $1 == any && $got != 000 ]] || [[ $got == "$1" ]]
}

# start_s3 starts versitygw, pinned to the version internal/testserver runs and with its flags,
# on the POSIX backend in the scratch directory; sets s3_endpoint.
start_s3() {
	local version exe port pid dir=$tmp/versitygw
	version=$(sed -n 's/^const VersityGWVersion = "\(.*\)"$/\1/p' internal/testserver/s3.go)
	if [[ -z $version ]]; then
		log "cannot read VersityGWVersion from internal/testserver/s3.go"
		return 1
	fi
	exe=$(tool_bin github.com/versity/versitygw/cmd/versitygw "$version")
	port=$(free_port)
	mkdir -p "$dir/data"
	"$exe" --port "127.0.0.1:$port" --access "$s3_access" --secret "$s3_secret" --region "$s3_region" \
		--keep-alive --quiet posix "$dir/data" >"$dir/log" 2>&1 &
	pid=$!
	pids+=("$pid")
	s3_endpoint=http://127.0.0.1:$port
	wait_ready versitygw "$pid" "$dir/log" http_is any "$s3_endpoint/" # even a 403 means it serves
	log "versitygw $version ready on 127.0.0.1:$port, pid $pid"
}

# make_bucket NAME creates a bucket on the versitygw server, signing with curl's SigV4 (no SDK or
# aws CLI needed); S3 wants the payload's hash even when it is empty.
make_bucket() {
	local empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 code
	code=$(curl -sS -o "$tmp/versitygw/mkbucket.out" -w '%{http_code}' -X PUT \
		--aws-sigv4 "aws:amz:$s3_region:s3" --user "$s3_access:$s3_secret" \
		-H "x-amz-content-sha256: $empty_sha256" "$s3_endpoint/$1")
	if [[ $code != 200 ]]; then
		log "creating bucket $1: HTTP $code"
		cat "$tmp/versitygw/mkbucket.out" >&2
		return 1
	fi
}

# pg_bin_dir prints the directory of initdb and postgres, looked for as internal/testserver does.
pg_bin_dir() {
	local d
	for d in ${BERTH_TEST_PG_BIN:-} $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5nr) \
		"$(dirname "$(command -v postgres 2>/dev/null || echo /nonexistent/postgres)")"; do
		if [[ -x $d/initdb && -x $d/postgres ]]; then
			echo "$d"
			return
		fi
	done
	log "initdb and postgres not found; install the Debian package postgresql (apt-get install -y postgresql)"
	return 1
}

# start_postgres runs initdb and PostgreSQL in the scratch directory, listening on 127.0.0.1 only;
# sets pg_pid and psql (a command line that runs SQL on it). As root it runs them as the postgres
# OS user, since PostgreSQL refuses to run as root.
start_postgres() {
	local bin port dir=$tmp/postgres as=()
	bin=$(pg_bin_dir)
	mkdir -p "$dir"
	if ((EUID == 0)); then
		as=(setpriv --reuid=postgres --regid=postgres --init-groups) # exec, so $! is postgres itself
		chmod 711 "$tmp" # mktemp's 700 would keep the postgres user out of its own directory
		chown postgres: "$dir"
	fi
	(cd "$dir" && exec "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync \
		--encoding=UTF8 --locale=C) >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		return 1
	}
	port=$(free_port)
	# PostgreSQL's durable defaults (fsync, synchronous_commit), unlike the tests' server: Berth
	# acknowledges a push once it is committed, so a benchmark measures those commits too.
	# max_connections as in the tests: a Berth instance may open 16 + 64 connections.
	(cd "$dir" && exec "${as[@]}" "$bin/postgres" -D "$dir/data" -p "$port" \
		-c listen_addresses=127.0.0.1 -c unix_socket_directories="$dir" \
		-c max_connections=300) >"$dir/log" 2>&1 &
	pg_pid=$!
	pids+=("$pg_pid")
	pg_url=postgres://postgres@127.0.0.1:$port
	psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 "$pg_url/postgres?sslmode=disable")
	wait_ready postgres "$pg_pid" "$dir/log" "${psql[@]}" -c 'SELECT 1'
	log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') ready on 127.0.0.1:$port, pid $pg_pid"
}

# reference_storage NAME DIR prints the storage section of the reference registry's configuration.
reference_storage() {
	local name=$1 dir=$2
	case $backend in
	disk)
		cat <<-EOF
			storage:
			  filesystem:
			    rootdirectory: $dir/data
		EOF
		;;
	s3)
		# chunksize is Berth's default multipart part size (--storage.s3.part-size), so that both
		# write the same parts. Redirects off: by default the reference answers a blob GET with a
		# redirect to S3, and the pulls would measure versitygw, not the registry.
		cat <<-EOF
			storage:
			  s3:
			    accesskey: $s3_access
			    secretkey: $s3_secret
			    region: $s3_region
			    regionendpoint: $s3_endpoint
			    bucket: $name
			    forcepathstyle: true
			    secure: false
			    v4auth: true
			    chunksize: 8388608
			  redirect:
			    disable: true
		EOF
		;;
	esac
}

# start KIND NAME: starts a registry, waits until GET /v2/ answers 200, appends its -target flag.
targets=()
start() {
	local kind=$1 name=$2 port dir pid flags=()
	port=$(free_port)
	dir=$tmp/$name
	mkdir -p "$dir/data"
	if [[ $backend == s3 ]]; then
		make_bucket "$name"
	fi
	case $kind in
	berth | berth-nosync)
		# Request logs off, as the reference's access log is below; BENCH_BERTH_FLAGS replaces that.
		read -r -a flags <<<"${BENCH_BERTH_FLAGS:---log.level warn}"
		if [[ $kind == berth-nosync ]]; then
			[[ $backend == disk ]] || {
				log "berth-nosync is Berth's disk driver without fsync; it has no place in BENCH_BACKEND=$backend"
				return 1
			}
			flags+=(--storage.disk.fsync=false)
		fi
		if [[ $backend == s3 ]]; then
			local db=${name//-/_}
			"${psql[@]}" -c "CREATE DATABASE $db" >&2
			flags+=(--storage.driver s3 --storage.s3.endpoint "$s3_endpoint" --storage.s3.bucket "$name"
				--storage.s3.path-style --storage.s3.access-key "$s3_access" --storage.s3.secret-key "$s3_secret"
				--storage.s3.region "$s3_region"
				--database "$pg_url/$db?sslmode=disable")
		fi
		"$tmp/bin/berth" serve --addr "127.0.0.1:$port" --data "$dir/data" "${flags[@]}" >"$dir/log" 2>&1 &
		;;
	reference)
		# catalog.maxentries lets the tool's one-page catalog listing (-catalog-n, 10000) through;
		# the default, 1000, would refuse it.
		{
			cat <<-EOF
				version: 0.1
				log:
				  level: warn
				  accesslog:
				    disabled: true
			EOF
			reference_storage "$name" "$dir"
			cat <<-EOF
				  delete:
				    enabled: true
				  cache:
				    blobdescriptor: inmemory
				catalog:
				  maxentries: 10000
				http:
				  addr: 127.0.0.1:$port
				  secret: berth-bench-secret
			EOF
		} >"$dir/config.yml"
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
	wait_ready "$name" "$pid" "$dir/log" http_is 200 "http://127.0.0.1:$port/v2/"
	log "$name ($kind) ready on 127.0.0.1:$port, pid $pid"
	targets+=(-target "$name=http://127.0.0.1:$port,pid=$pid")
}

case $backend in
disk | s3) ;;
*)
	log "BENCH_BACKEND=$backend: want disk or s3"
	exit 2
	;;
esac
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
	reference)
		reference=${reference:-$(tool_bin github.com/distribution/distribution/v3/cmd/registry "$registry_version")}
		;;
	esac
done

if [[ $backend == s3 ]]; then
	start_s3
	start_postgres
fi
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
	for f in "$tmp"/*/log; do
		log "last lines of $f:"
		tail -n 30 "$f" >&2
	done
fi
exit "$status"
