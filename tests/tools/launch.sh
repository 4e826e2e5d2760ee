#!/usr/bin/env bash
# Launcher mode of the tools that run ranks (tools/common/launch.c): on one
# host, N processes started the way torchrun, srun and mpirun start them
# (their environment variables, or --rank/--world-size), finding each other
# through the file store and through a real etcd (started here, on tmpfs,
# free ports; those cases SKIP without etcd):
#  - xfer-weightsync run: 4 trainers -> 2 inference ranks, bf16 and fp8,
#    every tensor of every step checked at the receiver (tensors_checked =
#    writes x steps on every rank, no mismatch);
#  - xfer-moe run --check: EP4, every output bit-exact with the reference;
#  - xfer-bench: one pair, rank 0 the initiator, rank 1 the target;
#  - a rank killed mid-layer, named by the others;
#  - the hello every rank checks: two ranks of a host with one local rank,
#    a rank binding 127.0.0.1 when the ranks span hosts (a UTS namespace);
#  - world sizes that do not fit, launcher variables that disagree with
#    flags, launcher flags without --rdzv: refused, naming the numbers.
# Uses $XFER_BUILD (default build). Prints TAP.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${XFER_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bench=$build/bin/xfer-bench
ws=$build/bin/xfer-weightsync
moe=$build/bin/xfer-moe
. tests/tap.sh

for t in "$bench" "$ws" "$moe"; do
	if [ ! -x "$t" ]; then
		echo "1..0 # SKIP $t not built"
		exit 0
	fi
done
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm   # etcd fsyncs: tmpfs is cheap
tmp=$(mktemp -d "$base/xfer-launch.XXXXXX")
etcd_pid=
cleanup() {
	[ -n "$etcd_pid" ] && kill -9 "$etcd_pid" 2>/dev/null && wait "$etcd_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# A small dense model: 78 writes per step at 4 trainers -> 2 inference ranks.
cat > "$tmp/tiny.json" <<'J'
{"model_type":"qwen2","hidden_size":256,"intermediate_size":640,"num_hidden_layers":3,
 "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":1000,"tie_word_embeddings":false}
J
wsargs="--model $tmp/tiny.json --trainer fsdp=4 --inference tp=1,dp=2 --steps 2 --timeout-ms 5000"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

stores="file"
if command -v etcd >/dev/null 2>&1; then
	cport=$(free_port) pport=$(free_port)
	etcd --name t --data-dir "$tmp/etcd" --listen-client-urls "http://127.0.0.1:$cport" \
		--advertise-client-urls "http://127.0.0.1:$cport" \
		--listen-peer-urls "http://127.0.0.1:$pport" \
		--initial-advertise-peer-urls "http://127.0.0.1:$pport" \
		--initial-cluster "t=http://127.0.0.1:$pport" --log-level warn > "$tmp/etcd.log" 2>&1 &
	etcd_pid=$!
	for _ in $(seq 200); do
		python3 - "$cport" <<'P' 2>/dev/null && break
import sys, urllib.request
r = urllib.request.urlopen("http://127.0.0.1:%s/health" % sys.argv[1], timeout=1).read()
sys.exit(0 if b'"health":"true"' in r else 1)
P
		sleep 0.05
	done
	if kill -0 "$etcd_pid" 2>/dev/null; then
		stores="file etcd"
	else
		etcd_pid=
	fi
fi

url() { # STORE: a fresh store URL
	case $1 in
	file) mkdir -p "$tmp/store"; echo "file://$tmp/store" ;;
	etcd) echo "etcd://127.0.0.1:$cport" ;;
	esac
}

job=0
# launch STYLE N TOOL ARGS...: N ranks as STYLE (torchrun, slurm, openmpi,
# flags) starts them; rank r's stdout, stderr, status in $tmp/{out,err,rc}.r
launch() {
	local style=$1 nr=$2 r
	shift 2
	job=$((job + 1))
	for ((r = 0; r < nr; r++)); do
		case $style in
		torchrun) env RANK=$r WORLD_SIZE=$nr LOCAL_RANK=$r timeout 60 "$@" ;;
		slurm) env SLURM_PROCID=$r SLURM_NTASKS=$nr SLURM_LOCALID=$r timeout 60 "$@" ;;
		openmpi) env OMPI_COMM_WORLD_RANK=$r OMPI_COMM_WORLD_SIZE=$nr \
			OMPI_COMM_WORLD_LOCAL_RANK=$r timeout 60 "$@" ;;
		flags) timeout 60 "$@" --rank $r --world-size $nr ;;
		esac > "$tmp/out.$r" 2> "$tmp/err.$r" &
		eval "pid_$r=\$!"
	done
	for ((r = 0; r < nr; r++)); do
		eval "wait \$pid_$r"
		echo $? > "$tmp/rc.$r"
	done
}

# all_ok N PYCHECK: every rank exited 0 and its JSON passes PYCHECK (a
# Python expression on d); else the first failure's detail in $why (one
# python for all ranks: its start costs more than a rank's run here)
all_ok() {
	why=$(python3 - "$tmp" "$1" "$2" <<'P'
import json, sys
tmp, nr, check = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for r in range(nr):
    rc = open("%s/rc.%d" % (tmp, r)).read().strip()
    out = open("%s/out.%d" % (tmp, r)).read()
    err = open("%s/err.%d" % (tmp, r)).read()
    if rc != "0":
        print("rank %d: status %s: %s %s" % (r, rc, err[:600], out[:600]))
        sys.exit(1)
    try:
        d = json.loads(out)
        ok = eval(check)
    except Exception as e:
        ok = False
    if not ok:
        print("rank %d: %s" % (r, out[:900]))
        sys.exit(1)
P
)
}

for st in $stores; do
	launch torchrun 6 "$ws" run -j $wsargs --dtype bf16 --rdzv "$(url $st)" --job ws$job
	all_ok 6 "d['tensors_checked'] == d['writes'] * 2 > 0 and d['mismatches'] == 0 and d['failed_ranks'] == 0 and d['steps'] == 2 and d['world_size'] == 6" &&
		tap ok "$st: xfer-weightsync run, torchrun's variables: 4 trainers -> 2 inference bf16, every tensor checked on every rank" ||
		tap not-ok "$st: xfer-weightsync run bf16 (torchrun)" "$why"

	launch slurm 6 "$ws" run -j $wsargs --dtype fp8 --rdzv "$(url $st)" --job ws$job
	all_ok 6 "d['tensors_checked'] == d['writes'] * 2 > 0 and d['mismatches'] == 0 and d['failed_ranks'] == 0 and d['launcher'] == 'slurm'" &&
		tap ok "$st: xfer-weightsync run, Slurm's variables: 4 trainers -> 2 inference fp8, every tensor checked" ||
		tap not-ok "$st: xfer-weightsync run fp8 (slurm)" "$why"

	launch openmpi 4 "$moe" run -j --check -c v2-lite --tokens 8 --hidden 256 -i 3 -w 1 \
		--rdzv "$(url $st)" --job moe$job
	# 4 ranks x 8 tokens x 4 layers, each output compared bit for bit
	all_ok 4 "d['moe'][0]['rows_checked'] == 128 and d['moe'][0]['ep'] == 4 and d['launcher'] == 'openmpi'" &&
		tap ok "$st: xfer-moe run --check, Open MPI's variables: EP4, every output bit-exact" ||
		tap not-ok "$st: xfer-moe run --check EP4 (openmpi)" "$why"

	# -v: what each engine published is the --node address it settled
	# (the first up non-loopback interface's here), not another
	launch flags 2 "$bench" -j -v -t single -s 4K,64K -n 10 --rdzv "$(url $st)" --job bench$job
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
ok = len(d["single"]) >= 2 and all(r["GBps"] > 0 for r in d["single"])
ok = ok and all(d["node"] + ":" in a for a in d["addresses"])
ok = ok and all(d["peer_node"] + ":" in a for a in d["peer_addresses"])
sys.exit(0 if ok else 1)' "$tmp/out.0" 2>/dev/null &&
	[ "$(cat "$tmp/rc.0")" = 0 ] && [ "$(cat "$tmp/rc.1")" = 0 ] &&
		tap ok "$st: xfer-bench --rdzv with --rank/--world-size: rank 0 measures against rank 1, both engines publish their --node address" ||
		tap not-ok "$st: xfer-bench --rdzv pair" "status $(cat "$tmp/rc.0") $(cat "$tmp/rc.1"): $(head -c 600 "$tmp/out.0") $(cat "$tmp/err.0" "$tmp/err.1" | head -c 600)"
done
[ "$stores" = file ] && tap ok "etcd cases # SKIP etcd is not installed (scripts/deps.sh test installs etcd-server)"

# A rank that dies mid-layer: the others fail, naming it (its lease of 1 s
# expires; their contexts time out after 2 s).
launch torchrun 4 "$moe" run -j -c v2-lite --tokens 8 --hidden 256 -i 20 -w 1 --kill-rank 2 \
	--timeout-ms 2000 --rdzv-lease-s 1 --rdzv "$(url file)" --job kill$job
bad=
for r in 0 1 3; do
	if [ "$(cat "$tmp/rc.$r")" = 0 ] || ! grep -q "rank 2" "$tmp/err.$r"; then
		bad="rank $r: status $(cat "$tmp/rc.$r"): $(cat "$tmp/err.$r")"
		break
	fi
done
[ "$(cat "$tmp/rc.2")" = 124 ] && bad="rank 2 did not die (timeout)"
[ -z "$bad" ] &&
	tap ok "xfer-moe: rank 2 killed mid-layer; ranks 0, 1, 3 fail naming rank 2" ||
	tap not-ok "xfer-moe: rank 2 killed mid-layer, named by the others" "$bad"

# xfer-weightsync: inference rank 5 SIGKILLed as soon as it registers (64
# steps: the run cannot be over by then); the other five fail naming it.
u=$(url file)
job=$((job + 1))
for r in 0 1 2 3 4 5; do
	# rank 5 without timeout(1): its pid is the tool's, which the kill must hit
	to="timeout 60"
	[ $r = 5 ] && to=
	env RANK=$r WORLD_SIZE=6 LOCAL_RANK=$r $to "$ws" run $wsargs --steps 64 \
		--timeout-ms 2000 --rdzv-lease-s 1 --rdzv "$u" --job wkill$job \
		> "$tmp/out.$r" 2> "$tmp/err.$r" &
	eval "pid_$r=\$!"
done
for _ in $(seq 1000); do
	[ -e "$tmp/store/wkill$job/ranks/5" ] && break
	sleep 0.01
done
kill -9 "$pid_5" 2>/dev/null
bad=
for r in 0 1 2 3 4 5; do
	eval "wait \$pid_$r"
	rc=$?
	[ $r = 5 ] && continue
	if [ $rc = 0 ] || [ $rc -ge 124 ] || ! grep -q "rank 5" "$tmp/err.$r"; then
		bad="rank $r: status $rc: $(cat "$tmp/err.$r")"
	fi
done
[ -z "$bad" ] &&
	tap ok "xfer-weightsync: inference rank 5 killed; the other ranks fail naming rank 5" ||
	tap not-ok "xfer-weightsync: inference rank 5 killed, named by the others" "$bad"

# The hello exchange: two ranks of one host with one local rank; a rank
# publishing 127.0.0.1 when the ranks span hosts (rank 1 on another host
# name, in a UTS namespace of its own).
launch flags 2 "$bench" -t single --rdzv "$(url file)" --job dup$job --local-rank 0
grep -q "ranks 0 and 1 on host $(hostname) both have local rank 0" "$tmp/err.0" &&
	[ "$(cat "$tmp/rc.0")" = 1 ] && [ "$(cat "$tmp/rc.1")" = 1 ] &&
	tap ok "two ranks of one host with one --local-rank: both refuse, naming them" ||
	tap not-ok "two ranks of one host with one --local-rank refused" \
		"status $(cat "$tmp/rc.0") $(cat "$tmp/rc.1"): $(cat "$tmp/err.0")"
if [ "$(id -u)" = 0 ] && unshare -u true 2>/dev/null; then
	u=$(url file)
	job=$((job + 1))
	timeout 60 "$bench" -t single --rdzv "$u" --job lo$job --rank 0 --world-size 2 \
		--node 127.0.0.1 > "$tmp/out.0" 2> "$tmp/err.0" &
	p0=$!
	timeout 60 unshare -u sh -c 'hostname xfer-other-host && exec "$@"' sh "$bench" -t single \
		--rdzv "$u" --job lo$job --rank 1 --world-size 2 --node 127.0.0.1 \
		> "$tmp/out.1" 2> "$tmp/err.1"
	rc1=$?
	wait $p0
	rc0=$?
	grep -q "binds 127.0.0.1, which ranks on other hosts cannot reach: give --node" "$tmp/err.0" &&
		[ $rc0 = 1 ] && [ $rc1 = 1 ] &&
		tap ok "ranks on two hosts, one binding 127.0.0.1: refused, naming --node" ||
		tap not-ok "ranks on two hosts binding 127.0.0.1 refused" "status $rc0 $rc1: $(cat "$tmp/err.0" "$tmp/err.1")"
else
	tap ok "ranks on two hosts binding 127.0.0.1 # SKIP needs root and unshare -u (a host name of its own)"
fi

# refused TEXT ENV... -- TOOL ARGS: exits 1..123, stderr has TEXT
refused() {
	local what=$1 name=$2 rc
	shift 2
	timeout 30 env "$@" > "$tmp/out" 2> "$tmp/err"
	rc=$?
	if [ "$rc" -ge 1 ] && [ "$rc" -lt 124 ] && grep -qF -- "$what" "$tmp/err"; then
		tap ok "$name refused: $what"
	else
		tap not-ok "$name refused naming '$what'" "status $rc: $(cat "$tmp/err")"
	fi
}
u=$(url file)
refused "world size 5 (torchrun) does not fit the layout: 4 trainers + 2 inference ranks = 6" \
	"xfer-weightsync world size 5" RANK=0 WORLD_SIZE=5 LOCAL_RANK=0 "$ws" run $wsargs --rdzv "$u" --job bad1
refused "world size 3 (flags): the 64 experts of v2-lite are not a multiple of it" \
	"xfer-moe world size 3" "$moe" run -c v2-lite --rdzv "$u" --job bad2 --rank 0 --world-size 3
refused "world size 6 (openmpi) does not fit --ep" "xfer-moe --ep 4 in a world of 6" \
	OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=6 OMPI_COMM_WORLD_LOCAL_RANK=0 \
	"$moe" run -c v2-lite --ep 4 --rdzv "$u" --job bad3
refused "world size 3 (slurm): xfer-bench runs one pair" "xfer-bench world size 3" \
	SLURM_PROCID=0 SLURM_NTASKS=3 SLURM_LOCALID=0 "$bench" --rdzv "$u" --job bad4
refused "--rank 2 disagrees with launcher torchrun's 1" "xfer-weightsync --rank against RANK" \
	RANK=1 WORLD_SIZE=6 LOCAL_RANK=1 "$ws" run $wsargs --rdzv "$u" --job bad5 --rank 2
refused "--world-size 4 disagrees with launcher slurm's 2" "xfer-bench --world-size against SLURM_NTASKS" \
	SLURM_PROCID=0 SLURM_NTASKS=2 SLURM_LOCALID=0 "$bench" --rdzv "$u" --job bad6 --world-size 4
refused "launcher openmpi: OMPI_COMM_WORLD_RANK=4 is not below OMPI_COMM_WORLD_SIZE=4" \
	"xfer-moe with a rank not below the size" OMPI_COMM_WORLD_RANK=4 OMPI_COMM_WORLD_SIZE=4 \
	OMPI_COMM_WORLD_LOCAL_RANK=0 "$moe" run --rdzv "$u" --job bad7
refused "no launcher's variables are set" "xfer-moe --rdzv with neither variables nor flags" \
	"$moe" run --rdzv "$u" --job bad8
refused "--rank is for launcher mode: give --rdzv URL too" "xfer-weightsync --rank without --rdzv" \
	"$ws" run $wsargs --rank 0
refused "--node is for launcher mode: give --rdzv URL too" "xfer-moe --node without --rdzv" \
	"$moe" run --node eth0
refused "--rdzv: 'http://x': etcd://host:port[,host:port] or file:///shared/dir" \
	"xfer-bench --rdzv http://x" "$bench" --rdzv http://x
refused "--node: 'nosuchif0': neither an IPv4 address nor an up interface" "xfer-moe --node nosuchif0" \
	"$moe" run --rdzv "$u" --job bad9 --rank 0 --world-size 4 --node nosuchif0
refused "torchrun's run id is 'none' (its default), the same for every run: give --job ID" \
	"xfer-weightsync under torchrun without --rdzv-id" RANK=0 WORLD_SIZE=6 LOCAL_RANK=0 \
	TORCHELASTIC_RUN_ID=none "$ws" run $wsargs --rdzv "$u"
# nothing of the jobs is left in the file store (but the killed rank's
# job: its keys go with the leases, a second after the test)
left=$(find "$tmp/store" -mindepth 1 -maxdepth 1 ! -name 'kill*' ! -name 'wkill*' 2>/dev/null | head -3)
[ -z "$left" ] && tap ok "file store: every job's keys removed at the end" ||
	tap not-ok "file store: every job's keys removed at the end" "left: $left"

echo "1..$n"
exit $fail
