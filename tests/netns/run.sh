#!/usr/bin/env bash
# Two hosts on one machine: two network namespaces joined by a veth pair
# (10.x addresses, no loopback between them), xfer-bench --server in one and
# --client in the other over tcp;ofi_rxm. Checks that the runs pass (the
# targets check every byte the rows wrote) and that every rail address each
# process publishes, as libfabric reads it (xfer-bench -v: fi_av_straddr),
# names its own namespace's address: a loopback address published across
# hosts is unreachable. Needs root and iproute2's `ip netns`; SKIPs without.
# Uses $XFER_BUILD (default build). Prints TAP.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${XFER_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bench=$build/bin/xfer-bench
prov='tcp;ofi_rxm'
. tests/tap.sh

if [ ! -x "$bench" ]; then
	echo "1..0 # SKIP $bench not built"
	exit 0
fi

# Names and addresses of this run: several runs (a build and a sanitizer
# build, other checkouts) may overlap on one machine.
tag=xb$$
nsa=${tag}a nsb=${tag}b
net=10.$((200 + $$ % 50)).$(($$ / 50 % 250))
ipa=$net.1 ipb=$net.2
port=$((20000 + $$ % 20000))
tmp=$(mktemp -d)

cleanup() {
	local p
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done
	ip netns del "$nsa" 2>/dev/null
	ip netns del "$nsb" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if ! command -v ip >/dev/null; then
	echo "1..0 # SKIP iproute2's ip is not installed"
	exit 0
fi
if ! ip netns add "$nsa" 2>"$tmp/err"; then
	echo "1..0 # SKIP cannot create a network namespace: $(head -1 "$tmp/err") (needs root)"
	exit 0
fi
if ! { ip netns add "$nsb" &&
       ip link add "${tag}va" type veth peer name "${tag}vb" &&
       ip link set "${tag}va" netns "$nsa" && ip link set "${tag}vb" netns "$nsb" &&
       ip -n "$nsa" addr add "$ipa/24" dev "${tag}va" &&
       ip -n "$nsb" addr add "$ipb/24" dev "${tag}vb" &&
       ip -n "$nsa" link set "${tag}va" up && ip -n "$nsb" link set "${tag}vb" up &&
       ip -n "$nsa" link set lo up && ip -n "$nsb" link set lo up; } 2>"$tmp/err"; then
	echo "1..0 # SKIP cannot join two namespaces by a veth pair: $(head -1 "$tmp/err")"
	exit 0
fi

# pair NAME SERVER_ARGS -- CLIENT_ARGS: runs the server in A and the client in
# B (-j -v), a timeout of 120 s each; sets src, crc and the files srv.err,
# cli.out, cli.err
pair() {
	local name=$1 sargs=() cargs=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do sargs+=("$1"); shift; done
	shift
	cargs=("$@")
	ip netns exec "$nsa" timeout 120 "$bench" --server -P "$port" -v "${sargs[@]}" \
		>"$tmp/$name.srv.out" 2>"$tmp/$name.srv.err" &
	local spid=$!
	ip netns exec "$nsb" timeout 120 "$bench" --client "$ipa" -P "$port" -p "$prov" -j -v \
		"${cargs[@]}" >"$tmp/$name.cli.out" 2>"$tmp/$name.cli.err"
	crc=$?
	wait "$spid"
	src=$?
	port=$((port + 1))
}

# addrs_are FILE KEY IP: the JSON document's KEY lists at least one address,
# and each names IP (fi_sockaddr_in://IP:port), none loopback
addrs_are() {
	/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
a = d[sys.argv[2]]
ok = len(a) > 0 and all(x.startswith("fi_sockaddr_in://" + sys.argv[3] + ":") for x in a)
sys.exit(0 if ok else 1)' "$@" 2>/dev/null
}

# rows FILE: every test's rows, busy and idle, are there
rows_both() {
	/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for t in sys.argv[2].split(","):
    if sorted({r["target"] for r in d[t]}) != ["busy", "idle"]:
        sys.exit(1)' "$@" 2>/dev/null
}

# ---- the addresses come from the out-of-band connection: no --node -----------------
pair auto -- --rails 2 -t single,paged,imm,kv,first -s 64K,1M --page-size 4K --pages 64 -n 64 \
	--kv 8,64,4K
if [ "$crc" -eq 0 ] && [ "$src" -eq 0 ] &&
   rows_both "$tmp/auto.cli.out" single,paged,imm,kv,first; then
	tap ok "server in $nsa, client in $nsb over $prov, 2 rails: busy and idle rows of single, paged, imm, kv, first; every byte checked"
else
	tap not-ok "server in $nsa, client in $nsb over $prov, 2 rails" \
		"client $crc, server $src: $(cat "$tmp/auto.cli.err" "$tmp/auto.srv.err") $(head -c 400 "$tmp/auto.cli.out")"
fi
addrs_are "$tmp/auto.cli.out" addresses "$ipb" &&
	tap ok "the client publishes $ipb on every rail (not 127.0.0.1)" ||
	tap not-ok "the client publishes $ipb on every rail" "$(head -c 600 "$tmp/auto.cli.out")"
addrs_are "$tmp/auto.cli.out" peer_addresses "$ipa" &&
	tap ok "the server publishes $ipa on every rail, as the client reads it" ||
	tap not-ok "the server publishes $ipa on every rail, as the client reads it" \
		"$(head -c 600 "$tmp/auto.cli.out")"
line=$(grep "published" "$tmp/auto.srv.err")
if echo "$line" | grep -q "$ipa:" && ! echo "$line" | grep -q "127\.0\.0\.1"; then
	tap ok "the server's own account of what it published names $ipa"
else
	tap not-ok "the server's own account of what it published names $ipa" "$line"
fi

# ---- --node on both sides ------------------------------------------------------------
pair node --node "$ipa" -- --node "$ipb" -t single,imm -s 256K -n 32
if [ "$crc" -eq 0 ] && [ "$src" -eq 0 ] && addrs_are "$tmp/node.cli.out" addresses "$ipb" &&
   addrs_are "$tmp/node.cli.out" peer_addresses "$ipa"; then
	tap ok "--node on both sides: the run passes, each publishes its --node"
else
	tap not-ok "--node on both sides" \
		"client $crc, server $src: $(cat "$tmp/node.cli.err" "$tmp/node.srv.err")"
fi

# ---- a --node that is not this host's: a clear error, no hang ---------------------------
ip netns exec "$nsb" timeout 30 "$bench" --client "$ipa" -P "$port" -p "$prov" \
	--node 10.254.254.254 >"$tmp/bad.out" 2>"$tmp/bad.err"
rc=$?
if [ "$rc" -ge 1 ] && [ "$rc" -lt 124 ] && grep -q "10.254.254.254" "$tmp/bad.err"; then
	tap ok "--node not of this host: status $rc, '$(head -1 "$tmp/bad.err")'"
else
	tap not-ok "--node not of this host: a clear error" "status $rc: $(cat "$tmp/bad.err")"
fi

echo "1..$n"
exit $fail
