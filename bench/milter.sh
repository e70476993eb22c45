#!/usr/bin/env bash
# The cost of a milter on SMTP intake: the same intake load against
# postoffice with no milter and with rspamd (Debian's package, its proxy
# worker in milter mode, self-scanning, no Redis) as [[milter]], on
# loopback, alternating, each round on a fresh data directory. Reports
# messages/s and the CPU time per message of postoffice and, separately,
# of rspamd (user + system time of its whole process group).
#
#   bench/milter.sh [MESSAGES [ROUNDS]]      # default 2000 messages, 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
msgs=${1:-2000}
rounds=${2:-3}
command -v rspamd >/dev/null || { echo "bench/milter.sh: install rspamd (apt-get install --no-install-recommends rspamd)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$work/postoffice" ./cmd/postoffice
CGO_ENABLED=0 go build -o "$work/postoffice-bench" ./cmd/postoffice-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# cpu_ms PID...: user + system CPU of the processes, in ms (clock ticks of /proc/PID/stat).
cpu_ms() {
	local hz t=0 f
	hz=$(getconf CLK_TCK)
	for p in "$@"; do
		f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${f% *} + ${f#* }))
	done
	echo $((t * 1000 / hz))
}

# rspamd as in internal/testlib/rspamd.go.
rs="$work/rspamd"
mkdir -p "$rs"/{local.d,db,run,log}
rport=$(free_port)
cat >"$rs/rspamd.conf" <<EOF
.include "\$CONFDIR/common.conf"
options {
    pidfile = "\$RUNDIR/rspamd.pid";
    .include "\$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "\$LOCAL_CONFDIR/local.d/options.inc"
}
logging { type = "file"; filename = "\$LOGDIR/rspamd.log"; level = "warning"; }
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:$rport";
    milter = yes;
    upstream "local" { default = yes; self_scan = yes; }
    count = 1;
    timeout = 60s;
}
EOF
cat >"$rs/local.d/options.inc" <<EOF
dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 0; }
hs_cache_dir = "${XDG_CACHE_HOME:-$HOME/.cache}/postoffice-test-rspamd-hs/";
EOF
mkdir -p "${XDG_CACHE_HOME:-$HOME/.cache}/postoffice-test-rspamd-hs"
root=()
[ "$(id -u)" = 0 ] && root=(-i)
setsid rspamd -f -c "$rs/rspamd.conf" --var "LOCAL_CONFDIR=$rs" --var "DBDIR=$rs/db" \
	--var "RUNDIR=$rs/run" --var "LOGDIR=$rs/log" "${root[@]}" >"$rs/out" 2>&1 &
rpid=$!
pids+=("$rpid")
for _ in $(seq 600); do
	python3 -c "import socket; socket.create_connection(('127.0.0.1',$rport),1)" 2>/dev/null && break
	sleep 0.5
done
echo "rspamd on 127.0.0.1:$rport" >&2

users="$work/users.txt"
for i in $(seq 100); do echo "user$i@bench.test"; done >"$users"

# round NAME MILTER: one intake run; prints "name msgs/s po_ms/msg rspamd_ms/msg".
round() {
	local name=$1 milter=$2 dir port po
	dir=$(mktemp -d "$work/round.XXXX")
	port=$(free_port)
	cat >"$dir/postoffice.toml" <<EOF
data_dir = "$dir/data"
hostname = "mail.bench.test"
[pop3]
listen = []
tls_listen = []
[smtp]
listen = ["127.0.0.1:$port"]
[submission]
listen = []
tls_listen = []
[admin]
listen = ""
[queue]
autostart = false
$milter
EOF
	for u in $(cat "$users"); do echo pw | "$work/postoffice" user add "$u" --password-stdin --config "$dir/postoffice.toml" >/dev/null; done
	"$work/postoffice" serve --config "$dir/postoffice.toml" 2>"$dir/log" &
	po=$!
	for _ in $(seq 100); do grep -qs "postoffice ready" "$dir/log" && break; sleep 0.1; done
	local po0 rs0 out po1 rs1 rate
	po0=$(cpu_ms "$po")
	rs0=$(cpu_ms $(pgrep -g "$rpid"))
	out=$("$work/postoffice-bench" run --workload intake --addr "127.0.0.1:$port" --users-file "$users" \
		--count "$msgs" --sizes 20k --concurrency 20 --json)
	po1=$(cpu_ms "$po")
	rs1=$(cpu_ms $(pgrep -g "$rpid"))
	kill "$po"; wait "$po" 2>/dev/null || true
	rate=$(python3 -c 'import json,sys; r=json.loads(sys.stdin.read())["ops"]["message"]; print("%.1f %d" % (r["ops_per_sec"], r["errors"]))' <<<"$out" 2>/dev/null || echo "? ?")
	python3 -c "print('$name', '$rate', '%.2f' % (($po1-$po0)/$msgs), '%.2f' % (($rs1-$rs0)/$msgs))"
	rm -rf "$dir"
}

echo "variant  msgs/s errors  postoffice_cpu_ms/msg  rspamd_cpu_ms/msg"
for r in $(seq "$rounds"); do
	round none ""
	round rspamd "[[milter]]
name = \"rspamd\"
address = \"tcp:127.0.0.1:$rport\""
done
