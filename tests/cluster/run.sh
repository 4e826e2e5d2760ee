#!/usr/bin/env bash
# Hosts on one machine (make test-cluster): four network namespaces on a
# bridge (tests/cluster/bed.sh), each its own host name, etcd in host 0, the
# tools' ranks started in them as a launcher would start them, over
# tcp;ofi_rxm on the namespaces' addresses:
#  - xfer-weightsync run, 4 trainers -> 2 inference ranks on 4 hosts, bf16
#    and fp8: every tensor of every step checked, and no byte found outside
#    the destinations (stray_bytes);
#  - xfer-moe run --check, EP4 on 2 hosts: every output bit-exact;
#  - xfer-bench, one pair across hosts: every address each engine publishes
#    names its host's address (nothing advertises 127.0.0.1);
#  - a rendezvous of 16 ranks, 4 per host, every blob checked by every rank;
#  - faults, each followed by a run that must succeed: 1% of packets dropped
#    on every host (nftables numgen), a rate limit (tc tbf), a host's cable
#    cut mid-transfer, a host's processes SIGKILLed mid-transfer (beside a
#    job on two other hosts that must finish), etcd killed during a
#    rendezvous and restarted (it resumes), etcd killed for good (every rank
#    fails naming the store).
# netem (latency, reordering) needs a kernel with sch_netem: that fault is
# tests/cluster/netem-guest.sh's, in the qemu guest.
# Needs root, iproute2, nftables, tc and etcd; SKIPs without. Uses $XFER_BUILD
# (default build); $XFER_CLUSTER_CASES limits the cases (words of: ws moe
# bench rdzv loss rate cut kill after etcd). Prints TAP. Everything is
# removed at the end, failed or not; a failed run's logs (or with
# XFER_CLUSTER_KEEP=1 any run's) are kept in
# tests/out/cluster/.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${XFER_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
ws=$build/bin/xfer-weightsync moe=$build/bin/xfer-moe bench=$build/bin/xfer-bench
rdzv=$build/tests/cluster/rdzv_rank
prov='tcp;ofi_rxm'
. tests/tap.sh
. tests/cluster/bed.sh

for t in "$ws" "$moe" "$bench" "$rdzv"; do
	[ -x "$t" ] || { echo "1..0 # SKIP $t not built"; exit 0; }
done
for c in ip tc nft etcd etcdctl curl; do
	command -v $c >/dev/null || { echo "1..0 # SKIP $c is not installed (scripts/deps.sh test)"; exit 0; }
done
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP network namespaces need root"; exit 0; }
if ! bed_up 4 2>"${TMPDIR:-/tmp}/bed.$$"; then
	echo "1..0 # SKIP no test bed: $(head -1 "${TMPDIR:-/tmp}/bed.$$")"
	rm -f "${TMPDIR:-/tmp}/bed.$$"
	exit 0
fi
rm -f "${TMPDIR:-/tmp}/bed.$$"
o=$BED_OUT
keep_logs() {
	if { [ "$fail" != 0 ] || [ -n "${XFER_CLUSTER_KEEP:-}" ]; } && [ -d "$o" ]; then
		rm -rf "$root/tests/out/cluster"
		mkdir -p "$root/tests/out" && cp -r "$o" "$root/tests/out/cluster"
	fi
	bed_down
}
trap keep_logs EXIT
trap 'exit 1' INT TERM
bed_etcd_start || { tap not-ok "etcd in host 0" "$(tail -3 "$BED_TMP/etcd.log")"; exit 1; }

cat > "$BED_TMP/tiny.json" <<'J'
{"model_type":"qwen2","hidden_size":256,"intermediate_size":640,"num_hidden_layers":3,
 "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":1000,"tie_word_embeddings":false}
J
ws42="run -j -p $prov --model $BED_TMP/tiny.json --trainer fsdp=4 --inference tp=1,dp=2"
ws21="run -j -p $prov --model $BED_TMP/tiny.json --trainer fsdp=2 --inference tp=1,dp=1"

# ranks_ok JOB N PYCHECK: every rank exited 0 and its JSON passes PYCHECK (a
# Python expression on d, with ip = the address of the rank's host); else
# the first failure in $why
ranks_ok() {
	why=$(python3 - "$o" "$1" "$2" "$3" "${hostsof:-}" "${BED_IP[*]}" <<'P'
import json, sys
o, job, n, check, hosts, ips = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5].split(), sys.argv[6].split()
for r in range(n):
    rd = lambda k: open("%s/%s.%s.%d" % (o, k, job, r)).read()
    rc, out, err = rd("rc").strip(), rd("out"), rd("err")
    if rc != "0":
        print("rank %d: status %s: %s %s" % (r, rc, err[-600:], out[:600]))
        sys.exit(1)
    try:
        d = json.loads(out)
        ip = ips[int(hosts[r])] if hosts else None
        ok = eval(check)
    except Exception as e:
        ok = False
        out += " (%r)" % e
    if not ok:
        print("rank %d: %s" % (r, out[:900]))
        sys.exit(1)
P
)
}

want() { [ -z "${XFER_CLUSTER_CASES:-}" ] || [[ " $XFER_CLUSTER_CASES " == *" $1 "* ]]; }

wscheck="d['tensors_checked'] == d['writes'] * d['steps'] > 0 and d['mismatches'] == 0 and d['stray_bytes'] == 0 and d['failed_ranks'] == 0 and d['node'] == ip"

# ---- weight sync across 4 hosts: trainer r on host r, inference 4, 5 on hosts 0, 1
case_ws() {
	local dt
	hostsof="0 1 2 3 0 1"
	for dt in bf16 fp8; do
		launch ws-$dt 6 "$hostsof" "$ws" $ws42 --steps 2 --dtype $dt --rdzv "$BED_ETCD"
		wait_all
		ranks_ok ws-$dt 6 "$wscheck and d['dtype'].startswith('$dt')" &&
			tap ok "xfer-weightsync run across 4 hosts, 4 trainers -> 2 inference ranks $dt: every tensor of both steps checked on every rank, no stray byte, each rank on its host's address ($(times_of ws-$dt))" ||
			tap not-ok "xfer-weightsync run across 4 hosts $dt" "$why"
	done
}

# where a weight-sync job's time went, slowest rank of each phase
times_of() {
	python3 - "$o" "$1" <<'P' 2>/dev/null
import glob, json, sys
d = [json.load(open(f)) for f in glob.glob("%s/out.%s.*" % (sys.argv[1], sys.argv[2]))]
print("rendezvous %.2f s, set-up %.2f s, first step %.3f s, warm step %.3f s" % (
    max(x["join_s"] for x in d), max(x["setup_s"] for x in d), d[0]["first_step_s"], d[0]["seconds"]))
P
}

# ---- MoE EP4 on 2 hosts, two ranks each
case_moe() {
	hostsof="0 0 1 1"
	launch moe 4 "$hostsof" "$moe" run -j -p "$prov" --check -c v2-lite --tokens 8 --hidden 256 \
		-i 3 -w 1 --rdzv "$BED_ETCD"
	wait_all
	ranks_ok moe 4 "d['moe'][0]['rows_checked'] == 128 and d['moe'][0]['ep'] == 4 and d['node'] == ip" &&
		tap ok "xfer-moe run --check EP4 on 2 hosts, 2 ranks each: every output bit-exact" ||
		tap not-ok "xfer-moe run --check EP4 on 2 hosts" "$why"
}

# ---- xfer-bench pair, hosts 2 and 3: what each engine publishes is its host's address
case_bench() {
	hostsof="2 3"
	launch bench 2 "$hostsof" "$bench" -j -v -p "$prov" -t single -s 4K,1M -n 10 --rdzv "$BED_ETCD"
	wait_all
	python3 - "$o/out.bench.0" "${BED_IP[2]}" "${BED_IP[3]}" <<'P' 2>/dev/null &&
import json, sys
d = json.load(open(sys.argv[1]))
ok = len(d["single"]) >= 2 and all(r["GBps"] > 0 for r in d["single"])
ok = ok and d["node"] == sys.argv[2] and d["peer_node"] == sys.argv[3]
ok = ok and all(sys.argv[2] + ":" in a for a in d["addresses"])
ok = ok and all(sys.argv[3] + ":" in a for a in d["peer_addresses"])
ok = ok and not any("127.0.0.1" in a for a in d["addresses"] + d["peer_addresses"])
sys.exit(0 if ok else 1)
P
	[ "$(cat "$o/rc.bench.0")" = 0 ] && [ "$(cat "$o/rc.bench.1")" = 0 ] &&
		tap ok "xfer-bench, rank 0 on host 2 against rank 1 on host 3: every rail address published is the host's own (no 127.0.0.1)" ||
		tap not-ok "xfer-bench across hosts" "status $(cat "$o/rc.bench.0") $(cat "$o/rc.bench.1"): $(head -c 600 "$o/out.bench.0") $(cat "$o/err.bench.0" "$o/err.bench.1" | head -c 600)"
}

# rdzv_job JOB N TIMEOUT_MS: a rendezvous of N ranks, rank r on host r % 4,
# lease 2 s
rdzv_job() {
	local job=$1 n=$2 r
	for ((r = 0; r < n; r++)); do
		start "$job.$r" $((r % 4)) 60 "$rdzv" "$BED_ETCD" "$job" $r "$n" "$3" 2
	done
}
ready_of() {
	cat "$o"/out."$1".* | python3 -c 'import json,sys; print("all ready in %.2f s" % max(json.loads(l)["ready_s"] for l in sys.stdin))' 2>/dev/null
}

# ---- a rendezvous of 16 ranks, 4 per host
case_rdzv() {
	hostsof=
	rdzv_job rdzv16 16 20000
	wait_all
	ranks_ok rdzv16 16 "d['host'] == 'host%d' % (d['rank'] % 4)" &&
		tap ok "rendezvous of 16 ranks on 4 hosts: every rank holds every other's blob, byte for byte ($(ready_of rdzv16))" ||
		tap not-ok "rendezvous of 16 ranks on 4 hosts" "$why"
}

# ---- fault: 1% of the packets every host receives dropped
case_loss() {
	local i dropped=0
	for i in 0 1 2 3; do bed_loss $i 1; done
	hostsof="0 1 2 3 0 1"
	launch loss 6 "$hostsof" "$ws" $ws42 --steps 4 --dtype bf16 --rdzv "$BED_ETCD"
	wait_all
	for i in 0 1 2 3; do dropped=$((dropped + $(bed_loss_count $i))); bed_loss $i 0; done
	ranks_ok loss 6 "$wscheck" && [ "$dropped" -gt 0 ] &&
		tap ok "1% packet loss on every host (nftables dropped $dropped packets): weight sync 4 -> 2 passes, every tensor checked, no stray byte" ||
		tap not-ok "1% packet loss: weight sync" "dropped $dropped; $why"
}

# ---- fault: host 3 limited to 40 Mbit/s both ways (tc tbf)
case_rate() {
	local sent
	bed_rate 3 40mbit
	hostsof="0 1 2 3 0 1"
	launch rate 6 "$hostsof" "$ws" $ws42 --steps 2 --dtype bf16 --rdzv "$BED_ETCD"
	wait_all
	sent=$(tc -n "${BED_NS[3]}" -s qdisc show dev eth0 | sed -n 's/.*Sent \([0-9]*\) bytes.*/\1/p' | head -1)
	bed_rate 3 ""
	ranks_ok rate 6 "$wscheck" && [ "${sent:-0}" -gt 1000000 ] &&
		tap ok "host 3 rate-limited to 40 Mbit/s (tbf sent $sent bytes): weight sync passes, every tensor checked ($(times_of rate))" ||
		tap not-ok "rate limit on host 3: weight sync" "tbf sent ${sent:-?} bytes; $why"
}

# ---- a host lost mid-transfer, beside a job that does not need it: job A,
# 2 trainers -> 1 inference on hosts 0, 1; job B the same on hosts 2, 3 (its
# inference rank on host 2), slowed by a rate limit on host 3 so that the
# loss lands mid-run. B's ranks on host 2 must fail within the engine's
# timeout plus the lease, naming rank 1 (host 3's); A must finish.
lost() { # HOW (cut|kill)
	local how=$1 b=$1 r t0 took
	hostsof="0 1 0"
	launch "$b-A" 3 "$hostsof" "$ws" $ws21 --steps 24 --dtype bf16 --timeout-ms 3000 \
		--rdzv-lease-s 2 --rdzv "$BED_ETCD"
	bed_rate 3 20mbit
	launch "$b-B" 3 "2 3 2" "$ws" $ws21 --steps 64 --dtype bf16 --timeout-ms 3000 \
		--rdzv-lease-s 2 --rdzv "$BED_ETCD"
	# mid-transfer: once every rank of B has started step 1
	bed_wait 60 bed_keys "/xfer/$b-B/bar/go1/" 3
	t0=$SECONDS
	case $how in
	cut) bed_link 3 down ;;
	kill) bed_kill 3 ;;
	esac
	# B's ranks on host 2 end by themselves; host 3's rank (cut off from
	# etcd too) waits out its own store timeout: the test ends it
	for _ in $(seq 600); do
		[ -e "$o/rc.$b-B.0" ] && [ -e "$o/rc.$b-B.2" ] && break
		sleep 0.1
	done
	took=$((SECONDS - t0))
	bed_kill 3
	wait_all
	bed_rate 3 ""
	[ "$how" = cut ] && bed_link 3 up
	why=
	for r in 0 2; do
		if [ "$(cat "$o/rc.$b-B.$r" 2>/dev/null)" = 0 ] ||
		   ! grep -Eq "rank 1\b|${BED_IP[3]}" "$o/err.$b-B.$r" 2>/dev/null; then
			why="job B rank $r: status $(cat "$o/rc.$b-B.$r" 2>/dev/null): $(head -c 500 "$o/err.$b-B.$r")"
			break
		fi
	done
	[ -z "$why" ] && [ "$took" -gt 30 ] && why="job B's ranks on host 2 took ${took}s to fail"
	[ -z "$why" ] && { hostsof="0 1 0"; ranks_ok "$b-A" 3 "$wscheck and d['steps'] == 24"; }
	lost_took=$took
	[ -z "$why" ]
}
case_cut() {
	lost cut &&
		tap ok "host 3's cable cut mid-transfer: job B's ranks on host 2 fail within ${lost_took}s naming rank 1 (host 3): $(grep -m1 failed "$o/err.cut-B.0" | cut -c1-220); job A on hosts 0 and 1 finishes, every tensor checked" ||
		tap not-ok "host 3's cable cut mid-transfer" "$why"
}
case_kill() {
	lost kill &&
		tap ok "host 3's processes SIGKILLed mid-transfer: job B's ranks on host 2 fail within ${lost_took}s naming rank 1: $(grep -m1 failed "$o/err.kill-B.0" | cut -c1-220); job A finishes, every tensor checked" ||
		tap not-ok "host 3's processes SIGKILLed mid-transfer" "$why"
}

# a run after the faults: 4 hosts again, host 3 included
case_after() {
	hostsof="0 1 2 3 0 1"
	launch after 6 "$hostsof" "$ws" $ws42 --steps 2 --dtype fp8 --rdzv "$BED_ETCD"
	wait_all
	ranks_ok after 6 "$wscheck" &&
		tap ok "after the faults, weight sync across the 4 hosts passes again (host 3 back)" ||
		tap not-ok "weight sync after the faults" "$why"
}

case_etcd() {
	local r
	# etcd killed during a rendezvous and restarted on its data: ranks 0..6
	# of 8 wait for rank 7, which starts only after the restart; they resume
	hostsof=
	for ((r = 0; r < 7; r++)); do
		start "etcdre.$r" $((r % 4)) 60 "$rdzv" "$BED_ETCD" etcdre $r 8 20000 2
	done
	bed_wait 20 bed_keys /xfer/etcdre/blob/ 7
	bed_etcd_stop
	sleep 1
	bed_etcd_start
	start "etcdre.7" 3 60 "$rdzv" "$BED_ETCD" etcdre 7 8 20000 2
	wait_all
	ranks_ok etcdre 8 "d['host'] == 'host%d' % (d['rank'] % 4)" &&
		tap ok "etcd killed mid-rendezvous and restarted on its data: the 8 ranks resume and finish, every blob checked" ||
		tap not-ok "etcd killed mid-rendezvous and restarted" "$why"

	# etcd killed for good: every rank fails within its timeout, naming the store
	for ((r = 0; r < 4; r++)); do
		start "etcdgone.$r" $r 60 "$rdzv" "$BED_ETCD" etcdgone $r 5 4000 2
	done
	bed_wait 20 bed_keys /xfer/etcdgone/blob/ 4
	bed_etcd_stop
	wait_all
	why=
	for r in 0 1 2 3; do
		if [ "$(cat "$o/rc.etcdgone.$r")" != 1 ] ||
		   ! grep -q "store's last answer.*${BED_IP[0]}:$BED_ETCD_PORT" "$o/out.etcdgone.$r" ||
		   [ "$(cat "$o/s.etcdgone.$r")" -gt 15 ]; then
			why="rank $r: status $(cat "$o/rc.etcdgone.$r") after $(cat "$o/s.etcdgone.$r")s: $(head -c 500 "$o/out.etcdgone.$r")"
			break
		fi
	done
	[ -z "$why" ] &&
		tap ok "etcd killed for good mid-rendezvous: every rank fails within its 4 s timeout, naming the ranks it lacks and the store: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["error"][:300])' "$o/out.etcdgone.0")" ||
		tap not-ok "etcd killed for good" "$why"

	# a rendezvous after it, on etcd started again
	bed_etcd_start
	rdzv_job rdzvafter 8 20000
	wait_all
	ranks_ok rdzvafter 8 "d['host'] == 'host%d' % (d['rank'] % 4)" &&
		tap ok "etcd started again: a rendezvous of 8 ranks on 4 hosts succeeds" ||
		tap not-ok "rendezvous after etcd's restart" "$why"
}

for c in ws moe bench rdzv loss rate cut kill after etcd; do
	want $c && case_$c
done
echo "1..$n"
exit $fail
