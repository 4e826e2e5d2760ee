#!/usr/bin/env bash
# xferctl on a host without the module: the grammar (--help, unknown
# object/command/filter refused with a message naming it, as JSON with -j,
# never a signal), `module` says not loaded, `health` fails naming the
# missing module, `topo` on this machine and on a described GPU node
# (tests/tools/fixtures/xferctl/topo-2socket.xml); and the parsers of the
# module's sysfs and debugfs files against samples written from
# kmod/xfer_state.c's formats (fixtures/xferctl/good), each malformed one
# (fixtures/xferctl/bad) refused naming the file and line, version-1 and
# version-2 stats pages among them. Live engines without the module
# (tests/tools/xferctl_engine.c): stat finds their memfd pages, monitor's
# rates move, stat -o prom's file parsed strictly; bad memfd pages held by
# a python process; health's "failed pins growing" across two probes.
# `check` without the module (module checks skipped, local/shm/tcp loopback
# pass, a hung or crashing provider fails its line).
# Uses $XFER_BUILD (default build). Prints TAP.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${XFER_BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
ctl=$build/bin/xferctl
fix=$root/tests/tools/fixtures/xferctl
. tests/tap.sh
tmp=$(mktemp -d)
eng_pid=
trap '[ -n "$eng_pid" ] && kill $eng_pid 2>/dev/null; rm -rf "$tmp"' EXIT
# health's record of the last probe: never the host's /run/xferctl
export XFERCTL_STATE_DIR=$tmp/state
# No processes for the sample trees (this host's live engines, other
# tests' included, would join their rows); the live cases use /proc.
mkdir -p "$tmp/noproc"
export XFERCTL_PROC=$tmp/noproc

if [ ! -x "$ctl" ]; then
	echo "1..0 # SKIP $ctl not built"
	exit 0
fi

# run ARGS...: xferctl with the environment as set; sets rc, out, err
run() {
	timeout 60 "$ctl" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	out=$(cat "$tmp/out")
	err=$(cat "$tmp/err")
}

# jq_ok CODE [ARG]: python over d (stdout parsed as JSON) and arg; the
# value of its last line (an expression) must be true
jq_ok() {
	python3 -c '
import ast, json, sys
d = json.load(open(sys.argv[1]))
arg = sys.argv[3] if len(sys.argv) > 3 else None
tree = ast.parse(sys.argv[2].strip())
last = tree.body.pop()
exec(compile(tree, "check", "exec"))
sys.exit(0 if eval(compile(ast.Expression(last.value), "check", "eval")) else 1)' "$tmp/out" "$1" "${2:-}" 2>/dev/null
}

# refused WHAT ARGS...: exits 1..123 with stderr naming WHAT; with -j
# the same status and stdout a JSON object whose "error" names WHAT
refused() {
	local what=$1 name
	shift
	name="xferctl $* refused"
	run "$@"
	if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ] || ! grep -qF -- "$what" "$tmp/err"; then
		tap not-ok "$name" "status $rc (0: accepted, 124: hang, >128: signal); stderr: $err"
		return
	fi
	run -j "$@"
	if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ] || ! jq_ok "arg in d['error']" "$what"; then
		tap not-ok "$name" "-j: status $rc, stdout not a JSON error naming '$what': $out"
		return
	fi
	tap ok "$name: names '$what', status $rc, JSON error with -j"
}

# ---- grammar -----------------------------------------------------------------
# No module anywhere: an empty sysfs and debugfs (whatever this host has).
mkdir -p "$tmp/nosys" "$tmp/nodebug"
export XFERCTL_SYSFS=$tmp/nosys XFERCTL_DEBUGFS=$tmp/nodebug XFER_KMOD_DEV=$tmp/nodev

run --help
if [ "$rc" -eq 0 ] && for o in module region share ctx stat topo health; do
	echo "$out" | grep -qw "$o" || exit 1; done; then
	tap ok "--help exits 0 and lists every object"
else
	tap not-ok "--help exits 0 and lists every object" "rc $rc: $out"
fi
run help
[ "$rc" -eq 0 ] && echo "$out" | grep -q usage && tap ok "help exits 0" || tap not-ok "help exits 0" "rc $rc"

refused "no object" 
refused "unknown object 'frob'" frob
refused "unknown object 'mod'" mod                # no abbreviations
refused "unknown command 'list'" region list
refused "unknown command 'frob'" module frob
refused "unknown filter 'region'" ctx region 1       # ctx takes pid only
refused "unknown filter 'comm'" region show comm x
refused "'pid' needs a value" region pid
refused "pid 'x' is not a number" region pid x
refused "pid '-1' is not a number" share pid -1
refused "region '99999999999' is not a number" region region 99999999999
refused "given twice" region pid 1 pid 2
refused "module takes no filters" module show pid 1
refused "topo takes no filters" topo show pid 1
refused "unknown option '--frob'" --frob module
refused "unknown option '-x'" -x module

# ---- no module ----------------------------------------------------------------
run module
if [ "$rc" -eq 0 ] && echo "$out" | grep -q "not loaded"; then
	tap ok "module without the module: 'not loaded', exit 0"
else
	tap not-ok "module without the module: 'not loaded', exit 0" "rc $rc: $out $err"
fi
run -j module
if [ "$rc" -eq 0 ] && jq_ok "d['module'] == 'not loaded' and d['library_abi_version'] >= 1"; then
	tap ok "-j module: module 'not loaded', library ABI given"
else
	tap not-ok "-j module: module 'not loaded'" "rc $rc: $out"
fi
run -j region
if [ "$rc" -eq 0 ] && jq_ok "d['module'] == 'not loaded' and d['regions'] == []"; then
	tap ok "-j region without the module: empty list, exit 0"
else
	tap not-ok "-j region without the module" "rc $rc: $out"
fi
# Without the module stat reads the memfd pages of live engines (this
# host may have some: other tests'); each row says so.
XFERCTL_PROC=/proc run -j stat
[ "$rc" -eq 0 ] && jq_ok "all(r['source'] == 'memfd' for r in d['rails'])" &&
	tap ok "stat without the module: exit 0, memfd pages only" ||
	tap not-ok "stat without the module" "rc $rc: $out $err"
run health
if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && echo "$out" | grep -q "problem: module: xfer is not loaded"; then
	tap ok "health without the module: exit $rc, names the missing module"
else
	tap not-ok "health without the module fails naming it" "rc $rc: $out $err"
fi
run -j health
if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && jq_ok "d['health'] == 'unhealthy' and any('not loaded' in p for p in d['problems'])"; then
	tap ok "-j health without the module: unhealthy, problem listed"
else
	tap not-ok "-j health without the module" "rc $rc: $out"
fi
# the host as it is (this machine has no module: the real /sys says so too)
if [ ! -e /sys/module/xfer ]; then
	XFERCTL_SYSFS=/sys XFERCTL_DEBUGFS=/sys/kernel/debug XFER_KMOD_DEV=/dev/xfer run health
	if [ "$rc" -ne 0 ] && echo "$out" | grep -q "module: xfer is not loaded"; then
		tap ok "health on this host (no module): exit $rc, names the module"
	else
		tap not-ok "health on this host (no module)" "rc $rc: $out $err"
	fi
else
	tap ok "health on this host # SKIP the xfer module is loaded here"
fi

# ---- topo ----------------------------------------------------------------------
run topo
[ "$rc" -eq 0 ] && echo "$out" | grep -q "^nics" && tap ok "topo on this machine: exit 0" ||
	tap not-ok "topo on this machine" "rc $rc: $out $err"
run -j topo
if [ "$rc" -eq 0 ] && jq_ok "isinstance(d['gpus'], int) and isinstance(d['nics'], int) and len(d['devices']) == d['gpus'] + d['nics'] and (d['gpus'] > 0 or 'note_gpus' in d)"; then
	tap ok "-j topo parses (devices = GPUs + NICs; no GPU: said so)"
else
	tap not-ok "-j topo parses" "rc $rc: $out"
fi
# The described node (tests/harness/xt_topo.h): GPU0 and rxe1 share a switch
# on socket 0; GPU1 and rxe0 one on socket 1; GPU2 hangs off socket 1's root.
HWLOC_XMLFILE=$fix/topo-2socket.xml run -j topo
if [ "$rc" -eq 0 ] && jq_ok "
m = {r['device']: r for r in d['matrix']}; e = {r['gpu']: r['nics'] for r in d['engines']}
(d['gpus'] == 3 and d['nics'] == 2 and m['GPU0']['GPU0'] == 'X' and m['GPU0']['rxe1'] == 'PIX' and
m['GPU0']['rxe0'] == 'SYS' and m['GPU1']['rxe0'] == 'PIX' and m['GPU2']['rxe0'] == 'PHB' and
m['GPU1']['GPU2'] == 'PHB' and m['rxe1']['GPU0'] == 'PIX' and
e == {'GPU0': 'rxe1,rxe0', 'GPU1': 'rxe0,rxe1', 'GPU2': 'rxe0,rxe1'})"; then
	tap ok "topo of a two-socket node: PIX/PHB/SYS as nvidia-smi says, nearest NIC first"
else
	tap not-ok "topo of a two-socket node" "rc $rc: $out"
fi

HWLOC_XMLFILE=$fix/topo-2socket.xml run -j -d topo
[ "$rc" -eq 0 ] && jq_ok "h = {r['device']: r for r in d['hops']}
h['GPU0']['GPU0'] == 0 and h['GPU0']['rxe1'] < h['GPU0']['rxe0'] and h['GPU2']['rxe0'] < h['GPU2']['rxe1']" &&
	tap ok "-d topo: hop counts, nearest NIC fewest" || tap not-ok "-d topo" "rc $rc: $out"
run module help
[ "$rc" -eq 0 ] && echo "$out" | grep -q usage && tap ok "OBJECT help exits 0" || tap not-ok "OBJECT help" "rc $rc"

# ---- the module's files: good samples ------------------------------------------------
export XFERCTL_SYSFS=$fix/good/sys XFERCTL_DEBUGFS=$fix/good/debug
run -j module
if [ "$rc" -eq 0 ] && jq_ok "(d['module'] == 'loaded' and d['abi'] == 'match' and d['abi_version'] == 1 and
d['pinned_bytes'] == 2097152 and d['max_pinned_bytes'] == 4194304 and d['pinned_pct'] == 50 and
d['pins_failed'] == 1 and d['param_max_handles'] == 65536 and d['param_max_pinned_mb'] == 4 and d['device'] == 'missing')"; then
	tap ok "-j module from sample sysfs: every value read"
else
	tap not-ok "-j module from sample sysfs" "rc $rc: $out $err"
fi
run -j region
if [ "$rc" -eq 0 ] && jq_ok "(d['source'] == 'debugfs' and [r['id'] for r in d['regions']] == [1, 2, 3] and
d['regions'][0] == {'id': 1, 'owner_pid': 1, 'owner': 'init worker', 'kind': 'host', 'bytes': 4194304,
'refs': 2, 'holders': 1, 'shares': 1, 'exports': 0, 'maps': 1, 'state': 'active'} and d['regions'][2]['state'] == 'orphaned')"; then
	tap ok "-j region from sample debugfs: every field typed"
else
	tap not-ok "-j region from sample debugfs" "rc $rc: $out $err"
fi
run -j region pid 1
[ "$rc" -eq 0 ] && jq_ok "[r['id'] for r in d['regions']] == [1, 3]" && tap ok "region pid 1: regions 1 and 3" ||
	tap not-ok "region pid 1" "rc $rc: $out"
run -j region region 2
[ "$rc" -eq 0 ] && jq_ok "[r['id'] for r in d['regions']] == [2]" && tap ok "region region 2: region 2" ||
	tap not-ok "region region 2" "rc $rc: $out"
run -j share show region 1
[ "$rc" -eq 0 ] && jq_ok "d['shares'] == [{'share_id': 5, 'region': 1, 'owner_pid': 1, 'rule': 'group', 'id': 1000, 'opens': 1}]" &&
	tap ok "share show region 1: the group share" || tap not-ok "share show region 1" "rc $rc: $out"
run -j share region 2
[ "$rc" -eq 0 ] && jq_ok "d['shares'] == []" && tap ok "share region 2: none" || tap not-ok "share region 2" "rc $rc: $out"
run -j ctx pid 4194305
[ "$rc" -eq 0 ] && jq_ok "d['contexts'] == [{'ctx': 2, 'pid': 4194305, 'comm': 'xfer-bench', 'regions': 1, 'pinned_bytes': 2097152}]" &&
	tap ok "ctx pid 4194305: its context" || tap not-ok "ctx pid 4194305" "rc $rc: $out"
run ctx
[ "$rc" -eq 0 ] && echo "$out" | grep -q " init worker" && tap ok "ctx text: a long comm stays apart from the pid" ||
	tap not-ok "ctx text" "rc $rc: $out"
run -j stat
if [ "$rc" -eq 0 ] && jq_ok "([(r['ctx'], r['rail']) for r in d['rails']] == [(1, 0), (1, 1), (2, 0)] and
d['rails'][1]['bytes_posted'] == 2097152 and d['rails'][1]['ops_failed'] == 1 and d['rails'][0]['imm_received'] == 4 and
d['rails'][0]['ops_inflight'] == 3 and d['rails'][2]['last_error'] == -110 and d['rails'][2]['comm'] == 'xfer-bench')"; then
	tap ok "-j stat from sample stats files: per context and rail"
else
	tap not-ok "-j stat from sample stats files" "rc $rc: $out $err"
fi
# ctx-1 is a version-1 page, ctx-2 a version-2 one (peers, in flight per rail, names)
if [ "$rc" -eq 0 ] && jq_ok "r = d['rails']
(r[0]['version'] == 1 and r[0]['peers_up'] is None and r[0]['rail_ops_inflight'] is None and
r[2]['version'] == 2 and r[2]['peers_up'] == 2 and r[2]['peers_down'] == 1 and r[2]['rail_ops_inflight'] == 0 and
r[2]['name'] == 'mlx5_0' and r[2]['provider'] == 'verbs' and r[2]['engine_id'] == 'fedcba9876543210' and
all(x['source'] == 'debugfs' for x in r))"; then
	tap ok "-j stat: a version-1 and a version-2 page side by side, the tail only from version 2"
else
	tap not-ok "-j stat from sample stats files" "rc $rc: $out $err"
fi
run -j stat pid 1
[ "$rc" -eq 0 ] && jq_ok "[r['rail'] for r in d['rails']] == [0, 1]" && tap ok "stat pid 1: its two rails" ||
	tap not-ok "stat pid 1" "rc $rc: $out"
run -j health
if [ "$rc" -eq 1 ] && jq_ok "
p = d['problems']
(any('region 2: owner pid 4194305' in x for x in p) and any('region 3:' in x for x in p) and
not any('region 1:' in x for x in p) and any(x.startswith('device:') for x in p) and not any('module:' in x for x in p))"; then
	tap ok "health on samples: orphaned regions 2 (pid gone) and 3 (module says), missing device; not region 1"
else
	tap not-ok "health on samples" "rc $rc: $out $err"
fi
# a /dev/xfer of the wrong mode: module shows it, health names it
: >"$tmp/dev"; chmod 0644 "$tmp/dev"
XFER_KMOD_DEV=$tmp/dev run -j module
[ "$rc" -eq 0 ] && jq_ok "d['device_mode'] == '0644' and d['features'].startswith('unknown')" &&
	tap ok "module: device mode shown; features unknown when the device does not answer" ||
	tap not-ok "module: device mode" "rc $rc: $out"
XFER_KMOD_DEV=$tmp/dev run health
[ "$rc" -eq 1 ] && echo "$out" | grep -q "problem: device: $tmp/dev is mode 0644 group .*, expected 0660 group xfer" &&
	tap ok "health: /dev/xfer mode and group named" || tap not-ok "health: device mode" "rc $rc: $out"
run -j -d health
[ "$rc" -eq 1 ] && jq_ok "'an engine on local' in d['passed'] and 'RLIMIT_MEMLOCK' in d['passed'] and 'orphaned regions' not in d['passed']" &&
	tap ok "-d health: the checks that passed listed, failed ones not" || tap not-ok "-d health" "rc $rc: $out"
# RLIMIT_MEMLOCK under the module's limit
cp -r "$fix/good" "$tmp/big"
echo 1099511627776 > "$tmp/big/sys/class/misc/xfer/max_pinned_bytes"
(ulimit -l 1024; XFERCTL_SYSFS=$tmp/big/sys XFERCTL_DEBUGFS=$tmp/big/debug "$ctl" health >"$tmp/out" 2>&1)
rc=$?
[ "$rc" -eq 1 ] && grep -q "problem: memlock: RLIMIT_MEMLOCK 1048576 bytes is below" "$tmp/out" &&
	tap ok "health: RLIMIT_MEMLOCK below max_pinned_bytes named" || tap not-ok "health: memlock" "rc $rc: $(cat "$tmp/out")"
# no debugfs for us: the sysfs totals; filters need the list
XFERCTL_DEBUGFS=$tmp/nodebug run -j region
[ "$rc" -eq 0 ] && jq_ok "d['source'] == 'sysfs' and d['regions'] == 3" && tap ok "region without debugfs: the sysfs total" ||
	tap not-ok "region without debugfs" "rc $rc: $out"
XFERCTL_DEBUGFS=$tmp/nodebug refused "filters need the list" region pid 1
XFERCTL_DEBUGFS=$tmp/nodebug run -j stat
[ "$rc" -eq 0 ] && jq_ok "d['rails'] == [] and 'debugfs' in d['note']" &&
	tap ok "stat with the module but no debugfs for us: a note says the contexts are not shown" ||
	tap not-ok "stat without debugfs" "rc $rc: $out $err"

# ---- malformed files: each refused naming the file and line ---------------------------
# bad FIXTURE TARGET WHAT ARGS...: the good tree with TARGET replaced by
# bad/FIXTURE; xferctl ARGS refused, stderr naming TARGET and WHAT
bad() {
	local f=$1 target=$2 what=$3
	shift 3
	rm -rf "$tmp/t"
	cp -r "$fix/good" "$tmp/t"
	cp "$fix/bad/$f" "$tmp/t/$target"
	XFERCTL_SYSFS=$tmp/t/sys XFERCTL_DEBUGFS=$tmp/t/debug refused "$tmp/t/$target$what" "$@"
}
bad regions.truncated debug/xfer/regions ":3: truncated line" region
bad regions.fields debug/xfer/regions ":2: 10 fields, expected 11" region
bad regions.number debug/xfer/regions ":2: bytes '4x194304' is not an unsigned number" region
bad regions.kind debug/xfer/regions ":2: kind 'gpu' is not a value" region
bad regions.header debug/xfer/regions ":1: column 5 is 'size', expected 'bytes'" region
bad regions.empty debug/xfer/regions ":1: empty" region
bad regions.truncated debug/xfer/regions ":3: truncated line" health
bad shares.extra debug/xfer/shares ":2: more than 6 fields" share
bad shares.rule debug/xfer/shares ":2: rule 'world' is not a value" share
bad contexts.pid debug/xfer/contexts ":2: pid '-' is not a number" ctx
bad contexts.pid debug/xfer/contexts ":2: pid '-' is not a number" stat
bad stats.rails debug/xfer/ctx-1/stats ": 1 rail rows, num_rails says 2" stat
bad stats.truncated debug/xfer/ctx-1/stats ":3: truncated" stat
bad stats.version0 debug/xfer/ctx-1/stats ":1: version 0: not a stats page" stat
bad stats.rails99 debug/xfer/ctx-2/stats ":2: num_rails 99 is more than the page holds (8)" stat
bad stats.v2truncated debug/xfer/ctx-2/stats ":9: truncated line" stat
bad abi_version.junk sys/class/misc/xfer/abi_version ": '1x' is not an unsigned number" module
bad abi_version.empty sys/class/misc/xfer/abi_version ": expected one number and a newline" module
# mutated files (seeded): every one read or refused, exit 0 or 1, stdout
# one JSON document, never a signal or a hang. The mutations are made,
# and the outputs checked, by one python each (a python per file was most
# of this suite's time).
rm -rf "$tmp/m" "$tmp/mut"; cp -r "$fix/good" "$tmp/m"; mkdir -p "$tmp/mut"
python3 -c '
import random, sys
srcs = {"regions": sys.argv[1], "stats": sys.argv[2], "stats2": sys.argv[3]}
for f, src in srcs.items():
    for i in range(1, 15):
        r = random.Random(i)
        b = bytearray(open(src, "rb").read())
        for _ in range(r.randint(1, 4)):
            op = r.randrange(3)
            p = r.randrange(len(b) + 1)
            if op == 0 and b: del b[min(p, len(b) - 1)]
            elif op == 1: b[p:p] = bytes([r.choice(b"\t\n-09x ")])
            else: b = b[:p]
        open("%s/%s.%d" % (sys.argv[4], f, i), "wb").write(b)' \
	"$fix/good/debug/xfer/regions" "$fix/good/debug/xfer/ctx-1/stats" "$fix/good/debug/xfer/ctx-2/stats" "$tmp/mut"
bad_runs=""
for f in regions stats stats2; do
	case $f in
	regions) dst=$tmp/m/debug/xfer/regions obj=region ;;
	stats) dst=$tmp/m/debug/xfer/ctx-1/stats obj=stat ;;
	stats2) dst=$tmp/m/debug/xfer/ctx-2/stats obj=stat ;;
	esac
	cp "$dst" "$tmp/mut/$f.orig"
	for i in $(seq 1 14); do
		cp "$tmp/mut/$f.$i" "$dst"
		XFERCTL_SYSFS=$tmp/m/sys XFERCTL_DEBUGFS=$tmp/m/debug XFERCTL_PROC=$tmp/nodebug \
			timeout 60 "$ctl" -j $obj >"$tmp/mut/$f.$i.out" 2>/dev/null
		rc=$?
		[ "$rc" -gt 1 ] && bad_runs+=" $f#$i:rc=$rc"
	done
	cp "$tmp/mut/$f.orig" "$dst"
done
notjson=$(cd "$tmp/mut" && python3 -c '
import glob, json
for f in sorted(glob.glob("*.out")):
    try:
        assert isinstance(json.load(open(f)), dict)
    except Exception:
        print(f)')
[ -z "$bad_runs$notjson" ] && tap ok "42 mutated regions/stats files (v1 and v2): each read or refused, JSON, exit 0 or 1" ||
	tap not-ok "mutated files" "$bad_runs $notjson"

# a module of another ABI: module says so (exit 0), health fails on it
rm -rf "$tmp/t"; cp -r "$fix/good" "$tmp/t"; cp "$fix/bad/abi_version.mismatch" "$tmp/t/sys/class/misc/xfer/abi_version"
export XFERCTL_SYSFS=$tmp/t/sys XFERCTL_DEBUGFS=$tmp/t/debug
run -j module
[ "$rc" -eq 0 ] && jq_ok "d['abi'] == 'MISMATCH' and d['abi_version'] == 2" && tap ok "module: ABI 2 against 1 is a MISMATCH" ||
	tap not-ok "module: ABI mismatch" "rc $rc: $out"
run health
[ "$rc" -eq 1 ] && echo "$out" | grep -q "problem: module: ABI version 2, the library speaks 1" &&
	tap ok "health: ABI mismatch named" || tap not-ok "health: ABI mismatch" "rc $rc: $out"

# ---- live engines without the module: their memfd stats pages ------------------
# prom_ok FILE CODE: FILE parsed as a Prometheus text file, strictly (every
# family HELP then TYPE then its samples, together; counters *_total;
# labels quoted and escaped; no series twice; a newline at the end); CODE
# over s, a list of (name, labels, value), must be true
cat >"$tmp/prom.py" <<'PY'
import ast, re, sys
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
text = open(sys.argv[1]).read()
assert text.endswith("\n"), "no newline at the end"
helps, types, s, seen, cur = set(), {}, [], set(), None
for no, ln in enumerate(text.split("\n")[:-1], 1):
    if ln.startswith("# HELP "):
        name, _, doc = ln[7:].partition(" ")
        assert re.fullmatch(NAME, name) and doc and name not in helps, (no, ln)
        helps.add(name); cur = None
    elif ln.startswith("# TYPE "):
        name, _, t = ln[7:].partition(" ")
        assert name in helps and name not in types and t in ("counter", "gauge"), (no, ln)
        assert (t == "counter") == name.endswith("_total"), (no, "counters, and only they, end in _total")
        types[name] = t; cur = name
    else:
        m = re.fullmatch(r"(%s)(?:\{(.*)\})? (-?[0-9]+)" % NAME, ln)
        assert m and m.group(1) == cur, (no, ln)
        labels = {}
        if m.group(2):
            parts = re.findall(LABEL, m.group(2))
            assert ",".join('%s="%s"' % p for p in parts) == m.group(2), (no, "labels", ln)
            labels = dict(parts)
            assert len(labels) == len(parts), (no, "label twice")
        key = (cur, tuple(sorted(labels.items())))
        assert key not in seen, (no, "series twice", ln)
        seen.add(key)
        s.append((cur, labels, int(m.group(3))))
arg = sys.argv[3] if len(sys.argv) > 3 else None
tree = ast.parse(sys.argv[2].strip())
last = tree.body.pop()
exec(compile(tree, "check", "exec"))
sys.exit(0 if eval(compile(ast.Expression(last.value), "check", "eval")) else 1)
PY
prom_ok() {
	python3 "$tmp/prom.py" "$@" 2>"$tmp/prom.err"
}

eng=$build/tests/tools/xferctl_engine
if [ ! -x "$eng" ]; then
	tap ok "live engine cases # SKIP $eng not built"
else
	export XFERCTL_SYSFS=$tmp/nosys XFERCTL_DEBUGFS=$tmp/nodebug XFERCTL_PROC=/proc
	# two engines of one process on local, 2 rails each, writing into each
	# other with immediates until told to stop (SIGTERM)
	"$eng" 60 2 >"$tmp/eng.out" 2>"$tmp/eng.err" &
	eng_pid=$!
	for _ in $(seq 1 150); do grep -q '^ready' "$tmp/eng.out" && break; sleep 0.1; done
	run -j stat pid $eng_pid
	if [ "$rc" -eq 0 ] && jq_ok "r = d['rails']; pid = int(arg)
(len(r) == 4 and len({x['engine_id'] for x in r}) == 2 and
all(x['source'] == 'memfd' and x['pid'] == pid and x['comm'] == 'xferctl_engine' and x['ctx'] is None and
    x['version'] == 2 and x['provider'] == 'local' and x['name'] == 'local' and x['peers_up'] == 1 and
    x['peers_down'] == 0 and x['last_error'] == 0 and x['bytes_completed'] % 65536 == 0 for x in r) and
sorted(x['rail'] for x in r) == [0, 0, 1, 1] and
sum(x['ops_completed'] for x in r) > 0 and sum(x['imm_received'] for x in r) > 0)" "$eng_pid"; then
		tap ok "stat of a live engine without the module: its memfd pages, 2 engines x 2 rails, peers up"
	else
		tap not-ok "stat of a live engine without the module" "rc $rc: $out $err $(cat "$tmp/eng.err")"
	fi
	run stat pid $eng_pid
	[ "$rc" -eq 0 ] && echo "$out" | grep -q "memfd .*$eng_pid .*xferctl_engine" &&
		tap ok "stat text: source memfd, pid, comm" || tap not-ok "stat text" "rc $rc: $out"
	run -j monitor -i 0.3 -c 2 pid $eng_pid
	if [ "$rc" -eq 0 ] && python3 -c '
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
assert len(ls) == 2 and all(len(o["rails"]) == 4 and o["interval_s"] > 0 for o in ls)
assert all(r["pid"] == int(sys.argv[2]) and r["bytes_per_s"] >= 0 for o in ls for r in o["rails"])
assert any(sum(r["bytes_per_s"] for r in o["rails"]) > 0 and sum(r["imm_per_s"] for r in o["rails"]) > 0 for o in ls)' "$tmp/out" "$eng_pid" 2>"$tmp/py.err"; then
		tap ok "monitor -j -c 2: two JSON lines, bytes/s and immediates/s of the live engine above 0"
	else
		tap not-ok "monitor -j -c 2" "rc $rc: $out $(cat "$tmp/py.err")"
	fi
	run monitor -i 0.2 -c 1 pid $eng_pid
	[ "$rc" -eq 0 ] && echo "$out" | grep -q "bytes_per_s" && [ "$(echo "$out" | grep -c " xferctl_engine ")" -eq 4 ] &&
		tap ok "monitor text: one block, a row per rail" || tap not-ok "monitor text" "rc $rc: $out"
	timeout 20 "$ctl" monitor -i 0.2 pid $eng_pid >"$tmp/mon.out" 2>&1 &
	mon=$!
	sleep 0.7
	kill -INT $mon
	wait $mon
	rc=$?
	[ "$rc" -eq 0 ] && grep -q bytes_per_s "$tmp/mon.out" && tap ok "monitor without -c: runs until SIGINT, then exit 0" ||
		tap not-ok "monitor until SIGINT" "rc $rc: $(cat "$tmp/mon.out")"
	mkdir -p "$tmp/prom"
	run stat pid $eng_pid -o prom "$tmp/prom/xfer.prom"
	if [ "$rc" -eq 0 ] && [ -z "$(ls "$tmp/prom" | grep -v '^xfer.prom$')" ] && prom_ok "$tmp/prom/xfer.prom" "
mine = [x for x in s if x[1].get('pid') == arg]
v = lambda n: [x[2] for x in mine if x[0] == n]
(len(v('xfer_bytes_completed_total')) == 4 and sum(v('xfer_bytes_completed_total')) > 0 and
sum(v('xfer_imm_received_total')) > 0 and v('xfer_peers_up') == [1, 1] and v('xfer_peers_down') == [0, 0] and
len(v('xfer_rail_ops_inflight')) == 4 and all(x[1]['comm'] == 'xferctl_engine' and 'ctx' not in x[1] for x in mine) and
{x[1]['rail'] for x in mine if 'rail' in x[1]} == {'0', '1'} and ('xfer_module_loaded', {}, 0) in s)" "$eng_pid"; then
		tap ok "stat -o prom: a strict Prometheus textfile, counters and gauges of the live engine, nothing else left in the directory"
	else
		tap not-ok "stat -o prom" "rc $rc: $out $err $(cat "$tmp/prom.err"; ls "$tmp/prom")"
	fi
	# the engine ends: every write's bytes were checked at the target,
	# and its pages are gone with it
	kill -TERM $eng_pid
	wait $eng_pid
	rc=$?
	[ "$rc" -eq 0 ] && grep -q '^done [1-9]' "$tmp/eng.out" &&
		tap ok "the live engine's writes all arrived, byte for byte ($(grep '^done' "$tmp/eng.out"))" ||
		tap not-ok "the live engine" "rc $rc: $(cat "$tmp/eng.out" "$tmp/eng.err")"
	run -j stat pid $eng_pid
	[ "$rc" -eq 0 ] && jq_ok "d['rails'] == []" && tap ok "stat after the engine exited: nothing left behind" ||
		tap not-ok "stat after exit" "rc $rc: $out"
	eng_pid=
fi

# Pages that cannot be an engine's, in memfds named xfer-stats of a live
# process beside a good one: each named (pid and fd), exit 1, the good one shown.
python3 -c '
import os, struct, sys, time
def page(version, rails, size=None, total=4096):
    b = bytearray(total)
    struct.pack_into("<II", b, 0, version, rails)
    if size is not None:
        struct.pack_into("<I", b, 408, size)
    return bytes(b)
good = bytearray(page(2, 1, 784))
good[496:501] = b"local"; good[528:532] = b"lo:0"
# an empty memfd and a page of version 0: engines starting, skipped quietly
for p in (page(2, 1)[:100], page(0x41414141, 1), page(2, 99, 784), page(2, 1, 100), bytes(good),
          b"", page(0, 0)):
    fd = os.memfd_create("xfer-stats")
    os.write(fd, p)
print("ready", flush=True)
time.sleep(60)' >"$tmp/bad.out" &
bad_pid=$!
for _ in $(seq 1 100); do grep -q ready "$tmp/bad.out" && break; sleep 0.1; done
XFERCTL_PROC=/proc run -j stat pid $bad_pid
missing=""
for w in "truncated stats page: 100 bytes, a page has at least 408" "version 1094795585: not a stats page" \
	"num_rails 99 is more than the page holds (8)" "version 2 with size 100: a version-2 page has at least 784"; do
	grep -qF "pid $bad_pid: /proc/$bad_pid/fd/" "$tmp/err" && grep -qF "$w" "$tmp/err" || missing+=" [$w]"
done
if [ "$rc" -eq 1 ] && [ -z "$missing" ] && [ "$(grep -c "pid $bad_pid: " "$tmp/err")" -eq 4 ] && jq_ok "[(r['pid'], r['provider'], r['name']) for r in d['rails']] == [(int(arg), 'local', 'lo:0')] and 'error' in d" "$bad_pid"; then
	tap ok "stat: truncated, foreign, 99-rail and short version-2 pages each named with pid and fd, exit 1; the good page shown, starting ones skipped"
else
	tap not-ok "stat of bad memfd pages" "rc $rc missing:$missing; $out $err"
fi
kill $bad_pid 2>/dev/null; wait $bad_pid 2>/dev/null

# ---- monitor and stat -o: bad input ------------------------------------------------
export XFERCTL_PROC=$tmp/noproc
refused "-i: '0': must be above 0" monitor -i 0
refused "-i: '-1': must be above 0" monitor -i -1
refused "-i: 'x': not a number" monitor -i x
refused "-c: '0'" monitor -c 0
refused "-i needs a value" monitor -i
refused "unknown filter 'region'" monitor region 1
refused "unknown output format 'json'" stat -o json "$tmp/x"
refused "-o needs a format and a file" stat -o prom
refused "cannot write $tmp/nodir/x.prom.tmp." stat -o prom "$tmp/nodir/x.prom"
mkdir -p "$tmp/pdir/isdir"
refused "stat -o prom: $tmp/pdir/isdir not written" stat -o prom "$tmp/pdir/isdir"
[ -z "$(ls "$tmp/pdir" | grep -v '^isdir$')" ] && tap ok "stat -o prom onto a directory: no temporary file left" ||
	tap not-ok "stat -o prom onto a directory leaves" "$(ls "$tmp/pdir")"

# ---- prom from the module's files (samples) ------------------------------------------
export XFERCTL_SYSFS=$fix/good/sys XFERCTL_DEBUGFS=$fix/good/debug
run stat -o prom "$tmp/prom/mod.prom"
if [ "$rc" -eq 0 ] && prom_ok "$tmp/prom/mod.prom" "
v = {(x[0], x[1].get('ctx'), x[1].get('rail')): (x[1], x[2]) for x in s}
(v[('xfer_bytes_posted_total', '1', '1')][1] == 2097152 and v[('xfer_bytes_posted_total', '1', '1')][0]['engine'] == 'ctx-1' and
v[('xfer_ops_failed_total', '1', '1')][1] == 1 and v[('xfer_imm_received_total', '1', '0')][1] == 4 and
v[('xfer_bytes_posted_total', '2', '0')][0]['engine'] == 'fedcba9876543210' and
v[('xfer_bytes_posted_total', '2', '0')][0]['device'] == 'mlx5_0' and v[('xfer_last_error', '2', None)][1] == -110 and
v[('xfer_peers_up', '2', None)][1] == 2 and ('xfer_peers_up', '1', None) not in v and
v[('xfer_bytes_posted_total', '1', '0')][0]['comm'] == 'init worker' and
v[('xfer_module_loaded', None, None)][1] == 1 and v[('xfer_module_pins_failed_total', None, None)][1] == 1 and
v[('xfer_module_pinned_bytes', None, None)][1] == 2097152 and v[('xfer_module_pins_total', None, None)][1] >= 1)"; then
	tap ok "stat -o prom from the module's files: ctx and engine labels, version-2 gauges, module totals from sysfs"
else
	tap not-ok "stat -o prom from the module's files" "rc $rc: $out $err $(cat "$tmp/prom.err")"
fi

# ---- health: failed pins growing between two probes ----------------------------------
rm -rf "$tmp/h"; cp -r "$fix/good" "$tmp/h"
export XFERCTL_SYSFS=$tmp/h/sys XFERCTL_DEBUGFS=$tmp/h/debug XFERCTL_STATE_DIR=$tmp/hstate
run -j health
[ "$rc" -eq 1 ] && jq_ok "d['pins_failed_growth'] == 'first sample recorded' and not any(p.startswith('pins:') for p in d['problems'])" &&
	grep -qx "pins_failed 1" "$tmp/hstate/health" &&
	tap ok "health: the first probe records pins_failed, no problem from it" || tap not-ok "health: first probe" "rc $rc: $out"
echo 5 >"$tmp/h/sys/class/misc/xfer/pins_failed"
run health
[ "$rc" -eq 1 ] && echo "$out" | grep -q "problem: pins: 4 pins failed since the last probe (pins_failed 5, was 1)" &&
	tap ok "health: pins_failed grown since the last probe named" || tap not-ok "health: pins growing" "rc $rc: $out"
run -j -d health
[ "$rc" -eq 1 ] && jq_ok "'failed pins not growing' in d['passed'] and not any(p.startswith('pins:') for p in d['problems'])" &&
	tap ok "health: unchanged since the last probe passes" || tap not-ok "health: pins unchanged" "rc $rc: $out"
: >"$tmp/afile"
XFERCTL_STATE_DIR=$tmp/afile/sub run -j health
[ "$rc" -eq 1 ] && jq_ok "d['pins_failed_growth'].startswith('not checked') and not any(p.startswith('pins:') for p in d['problems'])" &&
	tap ok "health: a state directory it cannot write is 'not checked', not a failure" ||
	tap not-ok "health: unwritable state dir" "rc $rc: $out $err"

# ---- health: the RDMA NICs a node must have (nics N, default 1) ------------------------
nics_ok() { jq_ok "d['rdma_nics_active'] == $1 and not any(p.startswith('nic:') for p in d['problems'])"; }
run -j health
[ "$rc" -eq 1 ] && jq_ok "any(p.startswith('nic: 0 RDMA NICs with an active port in $tmp/h/sys/class/infiniband, 1 expected') for p in d['problems'])" &&
	tap ok "health: no RDMA NIC named by default" || tap not-ok "health: no RDMA NIC" "rc $rc: $out"
mkdir -p "$tmp/h/sys/class/infiniband/mlx5_0/ports/1" "$tmp/h/sys/class/infiniband/mlx5_1/ports/1"
echo "4: ACTIVE" >"$tmp/h/sys/class/infiniband/mlx5_0/ports/1/state"
echo "1: DOWN" >"$tmp/h/sys/class/infiniband/mlx5_1/ports/1/state"
run -j health
[ "$rc" -eq 1 ] && nics_ok 1 && tap ok "health: one NIC with an active port (one down not counted) passes nics 1" ||
	tap not-ok "health: one active NIC" "rc $rc: $out"
run health nics 2
[ "$rc" -eq 1 ] && echo "$out" | grep -q "problem: nic: 1 RDMA NIC with an active port in .*, 2 expected" &&
	tap ok "health nics 2 with one active: named" || tap not-ok "health nics 2" "rc $rc: $out"
rm -rf "$tmp/h/sys/class/infiniband"
run -j health nics 0
[ "$rc" -eq 1 ] && nics_ok 0 && tap ok "health nics 0: a one-host node needs no NIC" ||
	tap not-ok "health nics 0" "rc $rc: $out"
refused "health: nics 'x' is not a number" health nics x
refused "health: filter 'nics' needs a value" health nics
refused "health: unknown filter 'pid' (health takes nics N)" health pid 3

# ---- check: the self-test on this host (no module) --------------------------------------
export XFERCTL_SYSFS=$tmp/nosys XFERCTL_DEBUGFS=$tmp/nodebug XFER_KMOD_DEV=$tmp/nodev
run -j check
# shm and tcp pass wherever libfabric lists them (Debian's does)
if [ "$rc" -eq 0 ] && jq_ok "
c = {x['check']: x for x in d['checks']}
def ok(name):
    r = c[name]
    return (r['result'] == 'pass' and 'every byte checked' in r['detail']) or (
            r['result'] == 'skip' and 'libfabric does not list' in r['detail'])
(c['module pin and release']['result'] == 'skip' and c['module pin and release']['detail'] == 'module not loaded' and
c['module share and open']['result'] == 'skip' and c['provider local']['result'] == 'pass' and
ok('provider shm') and ok('provider tcp;ofi_rxm') and c['provider efa']['result'] == 'skip' and
d['failed'] == 0 and d['passed'] == sum(x['result'] == 'pass' for x in d['checks']) and
d['skipped'] == sum(x['result'] == 'skip' for x in d['checks']))"; then
	tap ok "check -j without the module: module checks skipped (named), local/shm/tcp loopback pass, totals add up"
else
	tap not-ok "check -j without the module" "rc $rc: $out $err"
fi
run check
if [ "$rc" -eq 0 ] && echo "$out" | grep -q "^pass provider local: rail local: " &&
   echo "$out" | grep -q "^skip module pin and release: module not loaded$" &&
   echo "$out" | tail -n1 | grep -Eq "^[0-9]+ passed, 0 failed, [0-9]+ skipped$"; then
	tap ok "check (text): a line per check, then 'N passed, 0 failed, N skipped', exit 0"
else
	tap not-ok "check (text)" "rc $rc: $out $err"
fi
refused "unknown word 'frob'" check frob
refused "'provider' needs a value" check provider
refused "timeout '0' is not a number" check timeout 0
refused "timeout 'x' is not a number" check timeout x
refused "'module' and 'provider' exclude each other" check module provider local
run -j check provider nope
[ "$rc" -eq 1 ] && jq_ok "d['failed'] == 1 and \"libfabric does not list 'nope'\" in d['checks'][0]['detail'] and 'local' in d['checks'][0]['detail']" &&
	tap ok "check provider nope: exit 1, names what this host has" || tap not-ok "check provider nope" "rc $rc: $out"
run -j check provider verbs
[ "$rc" -eq 1 ] && jq_ok "d['checks'][0]['detail'].startswith('no RDMA device in')" &&
	tap ok "check provider verbs without an RDMA device: exit 1, said so" || tap not-ok "check provider verbs" "rc $rc: $out"
# a module that sysfs says is loaded, but no /dev/xfer: the module's checks fail, naming it
XFERCTL_SYSFS=$fix/good/sys run -j check module
[ "$rc" -eq 1 ] && jq_ok "d['failed'] == 2 and all(x['detail'].startswith('open $tmp/nodev: No such file') for x in d['checks'])" &&
	tap ok "check module without /dev/xfer: both module checks fail naming the device" ||
	tap not-ok "check module without /dev/xfer" "rc $rc: $out"
# a provider that hangs is killed at its deadline, one that crashes fails
# its line, and the checks after them still run (an interposed
# xfer_engine_create does the hanging and the crashing)
if command -v cc >/dev/null; then
	cat >"$tmp/shim.c" <<'SHIM'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "xfer.h"
int xfer_engine_create(const struct xfer_engine_attr *a, xfer_engine **e)
{
	int (*real)(const struct xfer_engine_attr *, xfer_engine **) =
		(int (*)(const struct xfer_engine_attr *, xfer_engine **))dlsym(RTLD_NEXT, "xfer_engine_create");

	if (a->provider && !strcmp(a->provider, "shm"))
		for (;;)
			pause();
	if (a->provider && !strcmp(a->provider, "local"))
		abort();
	return real(a, e);
}
SHIM
	if cc -shared -fPIC -I"$root/include" -o "$tmp/shim.so" "$tmp/shim.c" -ldl 2>"$tmp/cc.err"; then
		t0=$SECONDS
		# a sanitizer build wants its runtime first among the preloads
		asan=$(ldd "$ctl" 2>/dev/null | awk '/libasan/ { print $3 }')
		LD_PRELOAD="${asan:+$asan }$tmp/shim.so" run -j check timeout 5
		secs=$((SECONDS - t0))
		# the bound is the functional one: the hung check cost its 5 s
		# deadline, not the default 30
		if [ "$rc" -eq 1 ] && [ "$secs" -lt 28 ] && jq_ok "
c = {x['check']: x for x in d['checks']}
(c['provider local']['result'] == 'fail' and 'died' in c['provider local']['detail'] and
c['provider shm']['result'] == 'fail' and 'no result within 5 s: killed' in c['provider shm']['detail'] and
c['provider tcp;ofi_rxm']['result'] in ('pass', 'skip') and d['failed'] == 2)"; then
			tap ok "check: a crashing provider fails its line, a hanging one is killed at 'timeout 5', the rest run"
		else
			tap not-ok "check: crash and hang" "rc $rc in ${secs}s: $out"
		fi
	else
		tap not-ok "check: crash and hang shim builds" "$(cat "$tmp/cc.err")"
	fi
else
	tap ok "check: crash and hang # SKIP no cc to build the interposer"
fi

echo "1..$n"
exit $fail
