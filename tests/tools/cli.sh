#!/usr/bin/env bash
# The tools as a user runs them: every bad input is refused with a message
# naming it and a non-zero exit (never a signal), in -j mode as a JSON
# {"error": ...} on stdout; --help exits 0; short real xfer-bench runs give
# the rows asked for; xfer-weightsync finds its models from any directory;
# xfer-moe --check matches the reference and names a rank that dies.
# Uses $XFER_BUILD (default build). Prints TAP.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${XFER_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
bench=$build/bin/xfer-bench
ws=$build/bin/xfer-weightsync
moe=$build/bin/xfer-moe
small="--model $root/models/qwen2.5-0.5b.json --trainer fsdp=3"
. tests/tap.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for t in "$bench" "$ws" "$moe"; do
	if [ ! -x "$t" ]; then
		echo "1..0 # SKIP $t not built"
		exit 0
	fi
done

# run TOOL ARGS...: sets rc, out, err (a timeout of 60 s turns a hang into a failure)
run() {
	timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	out=$(cat "$tmp/out")
	err=$(cat "$tmp/err")
}

# json_has KEY [SUBSTRING]: stdout is one JSON object with KEY (whose
# value contains SUBSTRING)
json_has() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
v = d[sys.argv[2]]
sys.exit(0 if len(sys.argv) < 4 or sys.argv[3] in str(v) else 1)' "$tmp/out" "$@" 2>/dev/null
}

# refused WHAT TOOL ARGS...: exits 1..127, stderr names WHAT; with -j
# added, stdout is JSON whose "error" names WHAT, and the same status
refused() {
	local what=$1 tool=$2 name
	shift 2
	name="$(basename "$tool") $* refused"
	run "$tool" "$@"
	if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; then
		tap not-ok "$name" "exit status $rc (0: accepted; 124: hang; >128: signal)"
		return
	fi
	if ! grep -qF -- "$what" "$tmp/err"; then
		tap not-ok "$name" "stderr does not name '$what': $err"
		return
	fi
	run "$tool" -j "$@"
	if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ] || ! json_has error "$what"; then
		tap not-ok "$name" "-j: status $rc, stdout not a JSON error naming '$what': $out"
		return
	fi
	tap ok "$name: names '$what', status $rc, JSON error with -j"
}

# ---- xfer-bench: bad values --------------------------------------------------
refused "'0'" "$bench" -s 0                     # was SIGFPE
refused "3Q" "$bench" -s 3Q                     # was accepted as 3
refused "1G" "$bench" -s 1G                     # was above the 64 MiB region, silently skipped
refused "'x'" "$bench" -s 4K,x
refused "bogus" "$bench" -t bogus               # was accepted, ran nothing
refused "'bogus'" "$bench" -t single,bogus
refused "nosuchprov" "$bench" -p nosuchprov     # was "No data available", no JSON
refused "'0'" "$bench" --rails 0
refused "99" "$bench" --rails 99
refused "1x" "$bench" --reps 1x
refused "'-1'" "$bench" -n -1
refused "99999999999999999999" "$bench" -n 99999999999999999999
refused "'0'" "$bench" --page-size 0
refused "5Q" "$bench" --pages 5Q
refused "70000" "$bench" -P 70000
refused "--frobnicate" "$bench" --frobnicate
refused "--rails" "$bench" --rails
refused "local" "$bench" --raw -p local
refused "stray" "$bench" stray
refused "'bogus' is not one of busy, idle, both" "$bench" --target bogus
refused "busy,idle" "$bench" --target busy,idle     # one mode, not a list
refused "--target" "$bench" --target
refused "'0'" "$bench" --idle-gap 0
refused "10001" "$bench" --idle-gap 10001
refused "5x" "$bench" --idle-gap 5x
refused "three values" "$bench" --kv 32,64
refused "more than 3 values" "$bench" --kv 32,64,4K,1
refused "'0'" "$bench" --kv 0,64,4K
refused "at most 4096 layers" "$bench" --kv 5000,64,4K
refused "all pages within" "$bench" --kv 4096,65536,4K
refused "'x'" "$bench" --kv 32,x,4K
refused "17" "$bench" --peers 17
refused "loopback only" "$bench" -t peers --client 127.0.0.1
refused "'frist' is not one of" "$bench" -t kv,frist
# a --node this host does not have: named, at once (before: the server
# listened on every address and the engine on 127.0.0.1 whatever --node said)
refused "10.254.254.254" "$bench" --server --node 10.254.254.254 -P 18599
refused "10.254.254.254" "$bench" --client 127.0.0.1 -P 18599 --node 10.254.254.254
refused "no.such.host.invalid" "$bench" --server --node no.such.host.invalid -P 18599

# an unknown provider: the message lists the providers there are
run "$bench" -p nosuchprov
if grep -q "available:.*shm" "$tmp/err" && grep -q "local" "$tmp/err"; then
	tap ok "unknown provider: the providers there are are listed"
else
	tap not-ok "unknown provider: the providers there are are listed" "$err"
fi

# ---- xfer-weightsync: bad values ---------------------------------------------
refused "tp=1000" "$ws" simulate --inference tp=1000           # was SIGFPE
refused "tp=1000" "$ws" simulate $small --inference tp=1000
refused "bogus" "$ws" run $small --inference tp=2 --provider bogus   # was SIGPIPE after 7 s
refused "fsdp" "$ws" plan $small --trainer fsdp=0
refused "bogus" "$ws" plan $small --inference bogus=3
refused "'x'" "$ws" plan $small --trainer fsdp=x
refused "fp4" "$ws" plan --dtype fp4
refused "3x" "$ws" simulate --window 3x
refused "'0'" "$ws" run --steps 0
refused "999" "$ws" run --threads 999
refused "abc" "$ws" simulate --nic-gbps abc
refused "'-5'" "$ws" simulate --copy-gbs -5
refused "--rails" "$ws" run --rails
refused "frobnicate" "$ws" frobnicate
refused "--no-such-option" "$ws" plan --no-such-option
refused "nosuch" "$ws" plan --model nosuch
echo '{"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2}' > "$tmp/bad.json"
refused "vocab_size" "$ws" plan --model "$tmp/bad.json"     # was "FILE: Invalid argument"
echo '{"hidden_size": 8' > "$tmp/broken.json"
refused "not valid JSON" "$ws" plan --model "$tmp/broken.json"
echo 'not a schedule' > "$tmp/junk.sched"
refused "not a schedule file" "$ws" simulate --schedule "$tmp/junk.sched"

# ---- xfer-moe: bad values ----------------------------------------------------
refused "'nosuch': no such configuration" "$moe" -c nosuch
refused "'nosuch'" "$moe" -c v2-lite,nosuch
refused "--ep: '0'" "$moe" --ep 0
refused "--ep: 3: the 256 experts of v3-decode are not a multiple" "$moe" --ep 3
refused "--ep: 3" "$moe" -c v2-lite --ep 2,3
refused "--ep: '1000'" "$moe" --ep 1000
refused "--tokens: '2000000'" "$moe" --tokens 2000000
refused "--topk: 9: more than the 8 experts" "$moe" --experts 8 --topk 9
refused "--topk: '33'" "$moe" --topk 33
refused "--dtype: 'bad'" "$moe" --dtype bad
refused "--hidden: 200: fp8 dispatch needs a multiple of 128" "$moe" --hidden 200
refused "--hidden: 204: bf16" "$moe" --hidden 204 --dtype bf16   # bf16: a multiple of 8
refused "--experts: '0'" "$moe" --experts 0
refused "nosuchprov" "$moe" -p nosuchprov
refused "--none-frac: '1.5'" "$moe" --none-frac 1.5
refused "--slots: '3'" "$moe" --slots 3
refused "--iters: '0'" "$moe" -i 0
refused "--kill-rank: 4" "$moe" --kill-rank 4
refused "--seed: 'x'" "$moe" --seed x
refused "'frobnicate'" "$moe" frobnicate
refused "--frobnicate" "$moe" --frobnicate
refused "--ep needs a value" "$moe" --ep
# more than this host's memory holds: refused before a rank is forked, not left to the OOM killer
refused "--copy-size: '1K'" "$moe" --copy-size 1K
refused "GB resident" "$moe" -c v3-prefill --tokens 1048576 --ep 2 --no-bound

run "$moe" -j list
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
c = {r["name"]: r for r in d["configs"]}
assert sorted(c) == ["kimi-k2-decode", "v2-lite", "v3-decode", "v3-prefill"], c
assert c["v3-decode"]["record_bytes"] == 7408 and c["v3-decode"]["combine_bytes"] == 14336
assert c["v3-prefill"]["mode"] == "prefill" and c["kimi-k2-decode"]["experts"] == 384
assert c["v2-lite"]["hidden"] == 2048 and c["v2-lite"]["topk"] == 6' "$tmp/out" 2>/dev/null &&
	tap ok "xfer-moe list: the four configurations, 7,408 B dispatch and 14,336 B combine records" ||
	tap not-ok "xfer-moe list: the four configurations" "status $rc: $out $err"

# a small layer checked bit for bit: every output of both ranks, every layer
run "$moe" -j --check -c v2-lite --tokens 8 --hidden 256 --ep 2 -i 3 -w 1 --no-bound
[ "$rc" -eq 0 ] && python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
r = d["moe"]
assert len(r) == 1 and r[0]["config"] == "v2-lite" and r[0]["ep"] == 2, r
assert r[0]["rows_checked"] == 2 * 8 * 4, r[0]["rows_checked"]  # 2 ranks, 8 tokens, 4 layers
assert r[0]["dispatch_p50_us"] > 0 and r[0]["combine_p50_us"] > 0' "$tmp/out" 2>/dev/null &&
	tap ok "xfer-moe --check (v2-lite, 8 tokens, H 256, EP2): every output matches the reference" ||
	tap not-ok "xfer-moe --check (v2-lite, 8 tokens, H 256, EP2)" "status $rc: $out $err"

# a rank SIGKILLed mid-layer: named with its signal, status 1, no hang
start=$(date +%s)
run "$moe" -c v2-lite --tokens 8 --hidden 256 --ep 4 -i 4 -w 0 --no-bound --kill-rank 1 --timeout-ms 2000
secs=$(( $(date +%s) - start ))
[ "$rc" -eq 1 ] && echo "$err" | grep -q "rank 1 of 4: killed by signal 9" && [ "$secs" -le 30 ] &&
	tap ok "xfer-moe --kill-rank 1: 'rank 1 of 4: killed by signal 9', status 1, in ${secs} s" ||
	tap not-ok "xfer-moe --kill-rank 1: the dead rank named, status 1, within 30 s" \
		"status $rc after ${secs} s: $err"

# run --provider bogus: said at once, not after a calibration
start=$(date +%s)
run "$ws" run $small --inference tp=2 --provider bogus
[ $(( $(date +%s) - start )) -le 3 ] && [ "$rc" -eq 1 ] &&
	tap ok "run --provider bogus fails within 3 s with status 1" ||
	tap not-ok "run --provider bogus fails within 3 s with status 1" "status $rc: $err"

# ---- --help everywhere ---------------------------------------------------------
for args in "$bench --help" "$bench -h" "$ws --help" "$ws -h" "$ws help" "$ws simulate --help" \
	    "$ws -j --help" "$moe --help" "$moe help" "$moe run -h" "$moe -j --help"; do
	run $args
	[ "$rc" -eq 0 ] && grep -q "^usage:" "$tmp/out" &&
		tap ok "$(basename "${args%% *}") ${args#* }: usage on stdout, status 0" ||
		tap not-ok "$(basename "${args%% *}") ${args#* }: usage on stdout, status 0" "status $rc"
done

# ---- models by name, from any directory -------------------------------------------
(cd "$tmp" && run "$ws" -j plan --model qwen2.5-0.5b --trainer fsdp=3 --inference tp=2 &&
	json_has writes) && tap ok "--model NAME found from another directory (build tree)" ||
	tap not-ok "--model NAME found from another directory (build tree)" "$err"
mkdir -p "$tmp/data/models"
sed 's/"num_hidden_layers": *[0-9]*/"num_hidden_layers": 3/' models/qwen2.5-0.5b.json \
	> "$tmp/data/models/mine.json"
(cd "$tmp" && XFER_DATADIR=$tmp/data run "$ws" -j plan --model mine --trainer fsdp=3 &&
	json_has model "$tmp/data/models/mine.json") &&
	tap ok "--model NAME found in \$XFER_DATADIR/models first" ||
	tap not-ok "--model NAME found in \$XFER_DATADIR/models first" "$out $err"

# an installed layout (make install): bin/, lib/, share/xfer/models/
mkdir -p "$tmp/prefix/bin" "$tmp/prefix/lib" "$tmp/prefix/share/xfer/models"
cp "$ws" "$tmp/prefix/bin/" && cp -P "$build"/lib/libxfer.so* "$tmp/prefix/lib/" &&
	cp "$tmp/data/models/mine.json" "$tmp/prefix/share/xfer/models/installed.json"
(cd "$tmp" && run "$tmp/prefix/bin/xfer-weightsync" -j plan --model installed --trainer fsdp=3 &&
	json_has model "$tmp/prefix/share/xfer/models/installed.json") &&
	tap ok "--model NAME found in <bin>/../share/xfer/models (installed)" ||
	tap not-ok "--model NAME found in <bin>/../share/xfer/models (installed)" "$out $err"

# ---- short real xfer-bench runs ---------------------------------------------------
# rows_are TABLE KEY VALUES: the table's rows have KEY equal to VALUES, in order
rows_are() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
got = [r[sys.argv[3]] for r in d[sys.argv[2]]]
want = [int(x) for x in sys.argv[4].split(",")]
sys.exit(0 if got == want else 1)' "$tmp/out" "$@" 2>/dev/null
}

# words_are TABLE KEY VALUES: the same for string values
words_are() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
got = [r[sys.argv[3]] for r in d[sys.argv[2]]]
sys.exit(0 if got == sys.argv[4].split(",") else 1)' "$tmp/out" "$@" 2>/dev/null
}

# each row twice: the target busy, then idle (--target both, the default)
run "$bench" -j -t single,imm -s 4K,64K -n 200
[ "$rc" -eq 0 ] && rows_are single size 4096,4096,65536,65536 &&
	words_are single target busy,idle,busy,idle && rows_are imm size 8,8 &&
	words_are imm target busy,idle && ! json_has paged && ! json_has scatter && ! json_has kv &&
	tap ok "xfer-bench -t single,imm -s 4K,64K: those rows, busy and idle, no others" ||
	tap not-ok "xfer-bench -t single,imm -s 4K,64K: those rows, busy and idle, no others" \
		"status $rc: $out $err"

run "$bench" -j -t single -s 4K -n 20 --target idle
[ "$rc" -eq 0 ] && words_are single target idle &&
	tap ok "xfer-bench --target idle: idle rows only" ||
	tap not-ok "xfer-bench --target idle: idle rows only" "status $rc: $out $err"

run "$bench" -j -t paged --page-size 4K,16K --pages 10 -n 50
[ "$rc" -eq 0 ] && rows_are paged size 4096,4096,16384,16384 && rows_are paged pages 10,10,10,10 &&
	tap ok "xfer-bench -t paged honours --page-size and --pages" ||
	tap not-ok "xfer-bench -t paged honours --page-size and --pages" "status $rc: $out $err"

run "$bench" -j -t scatter -s 8K --peers 2 -n 50
[ "$rc" -eq 0 ] && rows_are scatter size 8192,8192 && rows_are scatter peers 2,2 &&
	tap ok "xfer-bench -t scatter honours -s and --peers" ||
	tap not-ok "xfer-bench -t scatter honours -s and --peers" "status $rc: $out $err"

run "$bench" -j -t kv --kv 4,16,4K --idle-gap 2
[ "$rc" -eq 0 ] && rows_are kv layers 4,4 && rows_are kv pages 16,16 && rows_are kv size 4096,4096 &&
	words_are kv target busy,idle &&
	tap ok "xfer-bench -t kv --kv 4,16,4K: a busy and an idle row" ||
	tap not-ok "xfer-bench -t kv --kv 4,16,4K: a busy and an idle row" "status $rc: $out $err"

run "$bench" -j -t peers --peers 3 -s 16K -n 64 -p local
[ "$rc" -eq 0 ] && rows_are peers peers 3,3,3,3 && words_are peers direction 1_to_n,1_to_n,n_to_1,n_to_1 &&
	words_are peers target busy,idle,busy,idle &&
	tap ok "xfer-bench -t peers --peers 3 (local): one to three and three to one, busy and idle" ||
	tap not-ok "xfer-bench -t peers --peers 3 (local)" "status $rc: $out $err"

run "$bench" -j -t first -s 4K -p local
[ "$rc" -eq 0 ] && words_are first target busy,idle && json_has first cold_ratio &&
	tap ok "xfer-bench -t first: cold, after connect and steady, as ratios" ||
	tap not-ok "xfer-bench -t first: cold, after connect and steady, as ratios" "status $rc: $out $err"

# -v: the addresses each side publishes, as libfabric reads them
run "$bench" -j -v -t single -s 4K -n 20 --target busy -p 'tcp;ofi_rxm'
[ "$rc" -eq 0 ] && json_has addresses "fi_sockaddr_in://127.0.0.1:" &&
	json_has peer_addresses "fi_sockaddr_in://127.0.0.1:" &&
	tap ok "xfer-bench -v: published rail addresses, both sides" ||
	tap not-ok "xfer-bench -v: published rail addresses, both sides" "status $rc: $out $err"

run "$bench" -j -t single -s 128M -n 2 --target busy
[ "$rc" -eq 0 ] && rows_are single size 134217728 && json_has region_bytes 134217728 &&
	tap ok "xfer-bench -s 128M: the region grows to hold it" ||
	tap not-ok "xfer-bench -s 128M: the region grows to hold it" "status $rc: $out $err"

run "$bench" -t single -s 4K -n 50
[ "$rc" -eq 0 ] && grep -q "^single" "$tmp/out" && grep -qE "^ +4096 +busy " "$tmp/out" &&
	grep -qE "^ +4096 +idle " "$tmp/out" &&
	tap ok "xfer-bench text mode: a table with the row" ||
	tap not-ok "xfer-bench text mode: a table with the row" "status $rc: $out $err"

# ---- a timeout's text claims no peer (xfer_imm_wait has none) ---------------------
text=$(python3 -c '
import ctypes, errno, sys
lib = ctypes.CDLL(sys.argv[1])
lib.xfer_strerror.restype = ctypes.c_char_p
print(lib.xfer_strerror(-errno.ETIMEDOUT).decode())' "$build/lib/libxfer.so" 2>/dev/null)
if [ -z "$text" ]; then
	tap ok "xfer_strerror(-ETIMEDOUT) is neutral # SKIP cannot load $build/lib/libxfer.so here"
elif echo "$text" | grep -qi "timed out" && ! echo "$text" | grep -qi peer; then
	tap ok "xfer_strerror(-ETIMEDOUT) is neutral: '$text'"
else
	tap not-ok "xfer_strerror(-ETIMEDOUT) is neutral" "'$text'"
fi

# ---- libfabric loaded on demand (lib/backend/fabric_load.c) -----------------------
# No program links libfabric: a node without it still runs local (and verbs),
# and a libfabric provider is refused naming the library. Hidden here by
# binding /dev/null over it in a private mount namespace (root only).
needed=$(for f in "$build/lib/libxfer.so" "$bench" "$ws" "$moe" "$build/bin/xferctl"; do
	readelf -d "$f" 2>/dev/null | grep -F 'libfabric'; done)
[ -z "$needed" ] && tap ok "libxfer.so and the tools do not link libfabric (loaded on first use)" ||
	tap not-ok "libxfer.so and the tools do not link libfabric" "$needed"
fab=$(python3 -c 'import ctypes.util, sys; print(ctypes.util.find_library("fabric") or "")' 2>/dev/null)
fab=$(readlink -f "/usr/lib/$(gcc -print-multiarch 2>/dev/null)/${fab:-libfabric.so.1}" 2>/dev/null)
if [ "$(id -u)" != 0 ] || [ ! -f "$fab" ] || ! unshare -m true 2>/dev/null; then
	tap ok "without libfabric: local runs, shm refused # SKIP needs root, unshare and $fab"
else
	unshare -m sh -c "mount --bind /dev/null '$fab' && timeout 60 '$bench' -j -t imm -n 50 --target busy -p shm" \
		> "$tmp/out" 2> "$tmp/err"
	rc=$?
	unshare -m sh -c "mount --bind /dev/null '$fab' && timeout 60 '$bench' -j -t imm -n 50 --target busy -p local" \
		> "$tmp/out2" 2>> "$tmp/err"
	rc2=$?
	[ "$rc" = 1 ] && json_has error "libfabric.so.1 cannot be loaded" && [ "$rc2" = 0 ] &&
		tap ok "without libfabric: -p local runs, -p shm refused naming libfabric.so.1" ||
		tap not-ok "without libfabric: -p local runs, -p shm refused naming libfabric.so.1" \
			"shm: status $rc: $(cat "$tmp/out"); local: status $rc2; $(cat "$tmp/err")"
fi

echo "1..$n"
exit $fail
