#!/usr/bin/env bash
# One command for the side-by-side benchmark of postoffice against Dovecot
# (POP3) and Postfix (SMTP intake), on loopback, as root:
#
#   bench/run.sh                      # quick: a few minutes on 2 cores
#   bench/run.sh --scale full         # issue 7's sizes (see bench/README.md)
#   bench/run.sh --workload poll --peer dovecot --rounds 5
#
# Every flag goes to `postoffice-bench compare` (`postoffice-bench help
# compare` lists them). Dovecot and Postfix are installed from Debian's
# packages when absent; the servers run from a throwaway directory that is
# removed at the end (--keep keeps it). Results: a table on stdout, every
# round as JSON in bench/last-run.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "bench/run.sh: run as root (Dovecot and Postfix are started as root)" >&2
	exit 1
fi
# Tens of thousands of connections (idle workload); the hard limit caps it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=0 go build -o "$bin/postoffice" ./cmd/postoffice
CGO_ENABLED=0 go build -o "$bin/postoffice-bench" ./cmd/postoffice-bench
"$bin/postoffice-bench" compare --postoffice "$bin/postoffice" --bench-dir bench \
	--json bench/last-run.json "$@"
