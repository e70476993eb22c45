#!/usr/bin/env bash
# The cluster measured: the same workloads (intake, poll, download) against
# one postoffice on SQLite and against 1, 2 and 3 postoffice nodes sharing
# one PostgreSQL, all on this machine, reported as CPU per operation of the
# nodes and of PostgreSQL (see bench/README.md, "The cluster"):
#
#   bench/cluster.sh                       # 1, 2 and 3 nodes, and SQLite
#   bench/cluster.sh --nodes 1,3 --messages 8000
#
# Every flag goes to `postoffice-bench cluster`. It starts its own
# PostgreSQL (initdb in a throwaway directory, as the postgres user, on a
# free loopback port, fsync and synchronous_commit on as in production), so
# that the CPU measured is this run's only; it is stopped and removed at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_bin() {
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && { echo "$d"; return; }
	done
	echo "bench/cluster.sh: no PostgreSQL server binaries (apt-get install postgresql)" >&2
	exit 1
}
pgbin=$(pg_bin)
work=$(mktemp -d /tmp/postoffice-cluster.XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
	chown postgres: "$work"
	as_pg=(runuser -u postgres --)
fi
port=""
for p in $(seq 55600 55700); do
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		port=$p
		break
	fi
done
[ -n "$port" ] || { echo "bench/cluster.sh: no free port for PostgreSQL" >&2; exit 1; }
cleanup() {
	"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
"${as_pg[@]}" "$pgbin/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/data" -l "$work/log" -w -o \
	"-k $work -h 127.0.0.1 -p $port -c max_connections=300" start >/dev/null
pgpid=$(head -1 "$work/data/postmaster.pid")
"$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres bench

mkdir -p "$work/bin"
CGO_ENABLED=0 go build -o "$work/bin/postoffice" ./cmd/postoffice
CGO_ENABLED=0 go build -o "$work/bin/postoffice-bench" ./cmd/postoffice-bench
"$work/bin/postoffice-bench" cluster --postoffice "$work/bin/postoffice" --bench-dir bench \
	--pg "postgres://postgres@127.0.0.1:$port/bench?sslmode=disable" --pg-pid "$pgpid" "$@"
