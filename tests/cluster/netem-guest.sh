#!/usr/bin/env bash
# Added latency and reordering (netem) between two "hosts", inside a qemu
# guest. This machine's kernel has no sch_netem; the Debian kernels in
# /lib/modules do, so one guest boots the newest of them with
# tests/vm/guest.sh (veth and sch_netem loaded, iproute2's ip and tc, the
# tools and libfabric copied in with their ldd closure) and, in it:
#  - joins two network namespaces A (10.77.0.1) and B (10.77.0.2) by a veth
#    pair and puts `netem delay 5ms 2ms reorder 25% 50%` on both ends as the
#    root qdisc: a quarter of the packets go out at once and overtake the
#    delayed ones, and the 2 ms jitter reorders the delayed ones among
#    themselves, so TCP segments really arrive out of order;
#  - xfer-bench --server in A, --client in B over tcp;ofi_rxm (single and
#    imm, busy and idle targets; the targets check every byte): passes;
#  - xfer-weightsync run in launcher mode, 2 trainers (A, host name
#    xfer-host-a) -> 1 inference rank (B, xfer-host-b; one UTS namespace per
#    rank) through the file store /tmp/store, tcp;ofi_rxm: every tensor of
#    every step checked on every rank (tensors_checked = writes x steps,
#    mismatches 0), each rank publishing its own namespace's address;
#  - the fault acted: both netem qdiscs sent packets (tc -s qdisc), and the
#    receiving TCP stacks saw out-of-order segments (TcpExt TCPOFOQueue of
#    /proc/net/netstat in A and B together);
#  - the qdiscs removed: xfer-bench passes once more (a run after the fault).
# Each run's wall time (guest clock, software emulation) is in its TAP line:
# for the record only, nothing asserts a time. The suite costs 30-40 s
# here: boot ~3 s, then mostly each program's start under TCG (xfer-bench
# fills and checks a 64 MiB region: a minimal pair takes ~5 s).
#
# SKIPs, with the reason, when qemu, busybox-static, cpio, iproute2's tc,
# libfabric or a Debian kernel image with sch_netem and veth is missing, or
# the tools are not built. One guest boot; its serial log stays in
# tests/out/netem-guest.log.
#
# Environment: XFER_BUILD (default build), XFER_NETEM_KVER (a version in
# /lib/modules; default the newest with sch_netem), and, not in `make test`
# (each ~8 s more): XFER_NETEM_BASELINE=1, the weight sync also before netem
# is added (times to compare); XFER_NETEM_LOSS=1, xfer-bench also under
# netem with 1% loss (TCP retransmits; the host test bed covers loss with
# nftables). Prints TAP.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${XFER_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bench=$build/bin/xfer-bench
ws=$build/bin/xfer-weightsync
. tests/tap.sh

skip() { echo "1..0 # SKIP $*"; exit 0; }
for t in "$bench" "$ws"; do
	[ -x "$t" ] || skip "$t not built (make tools)"
done
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed (scripts/deps.sh test)"
bb=$(command -v busybox || true)
{ [ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q 'statically linked'; } || [ -x /bin/busybox ] ||
	skip "busybox-static not installed"
command -v cpio >/dev/null || skip "cpio not installed"
ipbin=$(command -v ip || true) tcbin=$(command -v tc || true)
[ -n "$ipbin" ] && [ -n "$tcbin" ] || skip "iproute2's ip and tc not installed"
# libfabric is dlopened on first use (lib/backend/fabric_load.c): ldd of the
# tools does not name it, so it is copied in by itself.
fabric=$(ldconfig -p 2>/dev/null | awk '$1 == "libfabric.so.1" && /x86-64/ { print $NF; exit }')
[ -n "$fabric" ] && [ -r "$fabric" ] || skip "libfabric.so.1 not installed"
kver=${XFER_NETEM_KVER:-}
if [ -z "$kver" ]; then   # newest Debian kernel with an image, sch_netem and veth
	for k in $(ls -1 /lib/modules 2>/dev/null | sort -rV); do
		[ -r "/boot/vmlinuz-$k" ] || continue
		modprobe -S "$k" --show-depends sch_netem >/dev/null 2>&1 || continue
		modprobe -S "$k" --show-depends veth >/dev/null 2>&1 || continue
		kver=$k; break
	done
fi
[ -n "$kver" ] && [ -r "/boot/vmlinuz-$kver" ] ||
	skip "no Debian kernel image with sch_netem and veth in /lib/modules (this machine's own kernel has no netem)"

work=$(mktemp -d "${TMPDIR:-/tmp}/xfer-netem.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p tests/out
log=tests/out/netem-guest.log

# A small dense model: 39 writes per step at 2 trainers -> 1 inference rank.
cat > "$work/tiny.json" <<'J'
{"model_type":"qwen2","hidden_size":256,"intermediate_size":640,"num_hidden_layers":3,
 "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":1000,"tie_word_embeddings":false}
J
# what the guest runs besides the default cases
echo "baseline=${XFER_NETEM_BASELINE:-0} loss=${XFER_NETEM_LOSS:-0}" > "$work/opts"

# The guest's side: busybox sh. Every run's outputs go to the serial log
# between markers; the host judges them below (the guest has no python).
cat > "$work/in-guest.sh" <<'G'
#!/bin/sh
# iproute2's ip and tc by their paths: busybox's sh runs its own applets of
# those names before searching PATH, and busybox tc knows no netem
export PATH=/xfer/bin:/bin:/sbin:/usr/bin:/usr/sbin
X=/xfer/bin IP=/xfer/bin/ip TC=/xfer/bin/tc
prov='tcp;ofi_rxm'
now() { cut -d' ' -f1 /proc/uptime; }
# show NAME FILE: a file's text between markers
show() { echo "NG-FILE-BEGIN $1"; cat "$2" 2>/dev/null; echo; echo "NG-FILE-END $1"; }
# counters NAME: both namespaces' qdiscs and TCP extension counters
counters() {
	for ns in a b; do
		echo "NG-QDISC $1 $ns $($IP netns exec $ns $TC -s qdisc show dev v$ns root | tr '\n' ' ')"
		$IP netns exec $ns cat /proc/net/netstat > /tmp/netstat.$ns
		show "$1.netstat.$ns" /tmp/netstat.$ns
	done
}
port=18515
# bench NAME: xfer-bench --server in A, --client in B; NG-RUN NAME client
# status, server status, seconds
bench() {
	t0=$(now)
	$IP netns exec a timeout 180 $X/xfer-bench --server -P $port -v \
		> /tmp/$1.srv.out 2> /tmp/$1.srv.err &
	spid=$!
	$IP netns exec b timeout 180 $X/xfer-bench --client 10.77.0.1 -P $port -p "$prov" -j -v \
		-t single,imm -s 64K,1M -n 16 > /tmp/$1.cli.out 2> /tmp/$1.cli.err
	crc=$?
	wait $spid
	src=$?
	t1=$(now)
	port=$((port + 1))
	show "$1.cli.out" /tmp/$1.cli.out
	show "$1.cli.err" /tmp/$1.cli.err
	show "$1.srv.err" /tmp/$1.srv.err
	echo "NG-RUN $1 $crc $src $t0 $t1"
}
# weightsync NAME: 2 trainers in A, 1 inference rank in B, each rank in a
# UTS namespace named after its host; NG-RUN NAME rank statuses, seconds
job=0
weightsync() {
	job=$((job + 1))
	mkdir -p /tmp/store
	t0=$(now)
	for r in 0 1 2; do
		ns=a lr=$r
		[ $r = 2 ] && ns=b lr=0
		$IP netns exec $ns unshare -u sh -c 'hostname "$0" && exec "$@"' xfer-host-$ns \
			env RANK=$r WORLD_SIZE=3 LOCAL_RANK=$lr timeout 180 $X/xfer-weightsync run -j \
			--model /xfer/tiny.json --trainer fsdp=2 --inference tp=1,dp=1 --dtype bf16 \
			--steps 2 --timeout-ms 30000 -p "$prov" --rdzv file:///tmp/store --job $1.$job \
			> /tmp/$1.out.$r 2> /tmp/$1.err.$r &
		eval "pid_$r=\$!"
	done
	rcs=
	for r in 0 1 2; do
		eval "wait \$pid_$r"
		rcs="$rcs $?"
	done
	t1=$(now)
	for r in 0 1 2; do
		show "$1.out.$r" /tmp/$1.out.$r
		show "$1.err.$r" /tmp/$1.err.$r
	done
	echo "NG-RUN $1$rcs $t0 $t1"
}

mkdir -p /run/netns /var/run/netns   # ip netns keeps its mounts there
# libfabric's verbs provider reads all of /proc/kallsyms (looking for
# ib_umem_dmabuf_get) in every fi_getinfo: ~4 s under software emulation,
# twice per program, most of the suite's time. The guest has no verbs device
# and the tests use tcp;ofi_rxm: an empty file serves them alike.
mount --bind /dev/null /proc/kallsyms
echo "NG-TC $($TC -V 2>&1)"
if ! { $IP netns add a && $IP netns add b &&
       $IP link add va type veth peer name vb &&
       $IP link set va netns a && $IP link set vb netns b &&
       $IP -n a addr add 10.77.0.1/24 dev va && $IP -n b addr add 10.77.0.2/24 dev vb &&
       $IP -n a link set va up && $IP -n b link set vb up &&
       $IP -n a link set lo up && $IP -n b link set lo up; } > /tmp/setup.err 2>&1; then
	echo "NG-SETUP-FAIL namespaces: $(cat /tmp/setup.err | tr '\n' ' ')"
	exit 0
fi
opts=$(cat /xfer/opts)
case " $opts " in *" baseline=1 "*) weightsync ws_plain ;; esac
netem="delay 5ms 2ms reorder 25% 50%"
for ns in a b; do
	$IP netns exec $ns $TC qdisc add dev v$ns root netem $netem > /tmp/netem.err 2>&1 ||
		{ echo "NG-SETUP-FAIL netem on v$ns: $(cat /tmp/netem.err | tr '\n' ' ')"; exit 0; }
done
counters before
bench bench_netem
weightsync ws_netem
counters after
case " $opts " in *" loss=1 "*)
	for ns in a b; do
		$IP netns exec $ns $TC qdisc change dev v$ns root netem $netem loss 1% > /tmp/netem.err 2>&1 ||
			echo "NG-SETUP-FAIL netem loss on v$ns: $(cat /tmp/netem.err | tr '\n' ' ')"
	done
	bench bench_loss
	counters loss ;;
esac
for ns in a b; do
	$IP netns exec $ns $TC qdisc del dev v$ns root > /tmp/netem.err 2>&1 ||
		echo "NG-SETUP-FAIL removing netem from v$ns: $(cat /tmp/netem.err | tr '\n' ' ')"
done
counters removed
bench bench_after
exit 0
G

files="$bench:/xfer/bin/ $ws:/xfer/bin/ $ipbin:/xfer/bin/ip $tcbin:/xfer/bin/tc"
files="$files $fabric:$fabric $work/tiny.json:/xfer/tiny.json $work/opts:/xfer/opts"
t0=$SECONDS
# One vCPU thread on the host (guest.sh's default): both ranks' busy polling
# shares it, slow but it never meets the boot-time int3 race of "multi".
tests/vm/guest.sh --kver "$kver" --script "$work/in-guest.sh" --modules "veth sch_netem" \
	--files "$files" --log "$log" --timeout 300 --mem 1G --smp 2 --quiet 2> "$work/guest.err"
grc=$?
boot_s=$((SECONDS - t0))

# Everything below reads the serial log.
python3 - "$log" "$work/judge" <<'P'
import json, re, sys
log, out = sys.argv[1], sys.argv[2]
files, runs, qdisc, tcver, setup = {}, {}, {}, "", []
cur = None
for line in open(log, errors="replace").read().split("\n"):
    line = re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|.)", "", line)   # the firmware's terminal codes
    if cur is not None:
        if line == "NG-FILE-END " + cur[0]:
            files[cur[0]] = "\n".join(cur[1]).strip()
            cur = None
        else:
            cur[1].append(line)
        continue
    m = line.split(" ", 1)
    if line.startswith("NG-FILE-BEGIN "):
        cur = (m[1], [])
    elif line.startswith("NG-RUN "):
        f = line.split()
        runs[f[1]] = ([int(x) for x in f[2:-2]], float(f[-1]) - float(f[-2]))
    elif line.startswith("NG-QDISC "):
        f = line.split(" ", 3)
        qdisc[(f[1], f[2])] = f[3] if len(f) > 3 else ""
    elif line.startswith("NG-TC "):
        tcver = m[1]
    elif line.startswith("NG-SETUP-FAIL"):
        setup.append(line)

res = []   # (ok, name, detail)
def tap(ok, name, detail=""):
    res.append((ok, name, detail))

def netstat(text):
    """TcpExt counters of a /proc/net/netstat text"""
    hdr = None
    for l in (text or "").split("\n"):
        if l.startswith("TcpExt:"):
            if hdr is None:
                hdr = l.split()[1:]
            else:
                return dict(zip(hdr, map(int, l.split()[1:])))
    return {}

def sent(q):
    m = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+)", q or "")
    return tuple(map(int, m.groups())) if m else None

if setup:
    tap(False, "guest set-up", "; ".join(setup))
elif not runs:
    tap(False, "guest set-up: no run reported", "")
else:
    before = [qdisc.get(("before", ns), "") for ns in "ab"]
    if all("netem" in q and "delay 5ms" in q and "reorder 25%" in q for q in before):
        tap(True, "two namespaces joined by a veth pair, netem delay 5ms 2ms reorder 25%% 50%% "
            "on both ends (%s)" % tcver)
    else:
        tap(False, "netem on both ends of the veth pair", " | ".join(before))

def bench(name, what):
    if name not in runs:
        tap(False, what + ": did not run")
        return
    (crc, src), secs = runs[name]
    try:
        d = json.loads(files.get(name + ".cli.out", ""))
        ok = (d["provider"] == "tcp;ofi_rxm" and
              sorted({r["target"] for r in d["single"]}) == ["busy", "idle"] and
              {r["size"] for r in d["single"]} == {65536, 1048576} and
              all(r["GBps"] > 0 for r in d["single"]) and
              sorted({r["target"] for r in d["imm"]}) == ["busy", "idle"] and
              all(a.startswith("fi_sockaddr_in://10.77.0.2:") for a in d["addresses"]) and
              all(a.startswith("fi_sockaddr_in://10.77.0.1:") for a in d["peer_addresses"]))
    except Exception as e:
        ok = False
    if crc == 0 and src == 0 and ok:
        tap(True, "%s: xfer-bench server in A, client in B over tcp;ofi_rxm, single 64K/1M and "
            "imm, busy and idle targets, every byte checked (%.1f s)" % (what, secs))
    else:
        tap(False, what + ": xfer-bench across the namespaces",
            "client %d, server %d: %s %s %s" % (crc, src, files.get(name + ".cli.err", "")[:400],
                                              files.get(name + ".srv.err", "")[:400],
                                              files.get(name + ".cli.out", "")[:300]))

def weightsync(name, what):
    if name not in runs:
        tap(False, what + ": did not run")
        return
    rcs, secs = runs[name]
    why = ""
    for r in range(3):
        o = files.get("%s.out.%d" % (name, r), "")
        try:
            d = json.loads(o)
            node = "10.77.0.1" if r < 2 else "10.77.0.2"
            ok = (rcs[r] == 0 and d["tensors_checked"] == d["writes"] * 2 > 0 and
                  d["mismatches"] == 0 and d["failed_ranks"] == 0 and d["steps"] == 2 and
                  d["world_size"] == 3 and d["rank"] == r and d["node"] == node and
                  d["role"] == ("trainer" if r < 2 else "inference"))
        except Exception:
            ok = False
        if not ok:
            why = "rank %d: status %d: %s %s" % (r, rcs[r],
                                                files.get("%s.err.%d" % (name, r), "")[:500], o[:500])
            break
    if not why:
        tap(True, "%s: xfer-weightsync run, launcher mode, 2 trainers (A) -> 1 inference rank (B), "
            "bf16, file store: every tensor of both steps checked on every rank (%.1f s)" % (what, secs))
    else:
        tap(False, what + ": xfer-weightsync run 2 -> 1 across the namespaces", why)

if runs:
    if "ws_plain" in runs:
        weightsync("ws_plain", "no netem (baseline)")
    bench("bench_netem", "netem")
    weightsync("ws_netem", "netem")
    # the fault acted: packets went through both qdiscs, and TCP saw them
    # out of order (segments queued out of order at a receiver)
    s = [sent(qdisc.get(("after", ns))) for ns in "ab"]
    def moved(key):
        return sum(netstat(files.get("after.netstat." + ns)).get(key, 0) -
                   netstat(files.get("before.netstat." + ns)).get(key, 0) for ns in "ab")
    ofo, sackre = moved("TCPOFOQueue"), moved("TCPSACKReorder")
    if all(x and x[1] > 0 for x in s) and ofo > 0:
        tap(True, "netem acted: %d and %d packets through A's and B's qdisc; %d segments "
            "queued out of order by the receivers (TCPOFOQueue), %d reorderings seen by the "
            "senders (TCPSACKReorder)" % (s[0][1], s[1][1], ofo, sackre))
    else:
        tap(False, "netem acted: packets through both qdiscs and out-of-order segments",
            "qdisc A %s, B %s, TCPOFOQueue +%d" % (qdisc.get(("after", "a")),
                                                   qdisc.get(("after", "b")), ofo))
    if "bench_loss" in runs:
        bench("bench_loss", "netem with 1% loss")
    d = [sent(qdisc.get(("loss", ns))) for ns in "ab"]
    if "bench_loss" in runs and all(d):
        print("# netem with loss: qdisc drops A %d, B %d (counted from the qdisc's creation)"
              % (d[0][2], d[1][2]))
    gone = [qdisc.get(("removed", ns), "") for ns in "ab"]
    if any("netem" in q for q in gone) or ("removed", "a") not in qdisc:
        tap(False, "netem removed from both ends", " | ".join(gone))
    bench("bench_after", "netem removed (a run after the fault)")

with open(out, "w") as f:
    for ok, name, detail in res:
        f.write("%s\t%s\t%s\n" % ("ok" if ok else "not-ok", name, detail.replace("\n", " ")))
P
prc=$?
[ "$prc" = 0 ] || tap not-ok "reading the guest's serial log" "python3 exit $prc"
while IFS=$'\t' read -r st name detail; do
	tap "$st" "$name" "$detail"
done < "$work/judge"
if [ "$grc" = 0 ]; then
	tap ok "guest $kver: clean kernel log, finished in time (boot and runs ${boot_s} s)"
else
	tap not-ok "guest $kver: tests/vm/guest.sh exit $grc (serial log: $log)" "$(cat "$work/guest.err")"
fi
echo "1..$n"
exit $fail
