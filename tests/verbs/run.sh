#!/usr/bin/env bash
# The verbs suite: boots a Debian kernel under qemu (tests/vm/guest.sh) with
# rdma_rxe on two dummy netdevs and runs, against the verbs backend:
# the engine's integration tests (build/tests/integration/test_* but those with
# no verbs code path: test_rdzv, test_local, test_ws_run; with
# XFER_TEST_PROVIDERS=verbs XFER_TEST_DEVICES=rxe0,rxe1) and the
# verbs-specific tests (build/tests/verbs/test_*; test_verbs_share loads
# xfer.ko, built here for the guest's kernel, and unloads it). Prints TAP; exits non-zero
# on any failure or kernel splat; one SKIP line and exit 0 when qemu, a
# kernel image or rdma_rxe is missing.
#
# usage: tests/verbs/run.sh [--bench] [--kver KVER] [--log FILE] [--only "prog ..."]
#   --bench  instead of the tests: perftest ib_write_bw and xfer's verbs
#            benchmark (build/tests/verbs/bench_verbs) in the same guest boot,
#            at the same message sizes; prints a table (docs/verbs-benchmarks.md).
#   --kver   a Debian kernel in /lib/modules (default: the newest with rdma_rxe;
#            also $XFER_VERBS_KVER); --only: test program names to run.
# Environment: XFER_BUILD (default build), XFER_VERBS_GUEST_ENV ("VAR=v ..."
# put before each test program in the guest), XFER_BENCH_REPS, XFER_BENCH_SIZES,
# XFER_BENCH_EXTRA (extra "name command" lines per repetition, experiments),
# XFER_VERBS_MOE_TESTS (test_moe's cases in the guest, comma-separated; empty: all).
# The serial log stays in tests/out/verbs-guest-{test,bench}.log (or --log).
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${XFER_BUILD:-build}
mode=test kver=${XFER_VERBS_KVER:-} log= only= reps=${XFER_BENCH_REPS:-5}
while [ $# -gt 0 ]; do
	case "$1" in
	--bench) mode=bench; shift ;;
	--kver) kver=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
skip() { echo "ok 1 - verbs suite # SKIP $*"; exit 0; }

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
command -v rdma >/dev/null || skip "iproute2 rdma tool not installed"
# the provider must lie at the path libibverbs was built with (/usr/lib/..., not /lib/...)
rxelib=$(ls -1 /usr/lib/*/libibverbs/librxe-rdmav*.so /usr/lib64/libibverbs/librxe-rdmav*.so 2>/dev/null | head -n1)
[ -n "$rxelib" ] || skip "rdma-core's rxe provider (ibverbs-providers) not installed"
if [ -z "$kver" ]; then   # newest Debian kernel that has an image and rdma_rxe
	for k in $(ls -1 /lib/modules 2>/dev/null | sort -rV); do
		[ -r "/boot/vmlinuz-$k" ] || continue
		modprobe -S "$k" --show-depends rdma_rxe >/dev/null 2>&1 || continue
		kver=$k; break
	done
fi
[ -n "$kver" ] && [ -r "/boot/vmlinuz-$kver" ] || skip "no Debian kernel image with rdma_rxe in /lib/modules"

progs=()
if [ "$mode" = test ]; then
	for p in "$build"/tests/integration/test_* "$build"/tests/verbs/test_*; do
		[ -x "$p" ] || continue
		# Not in the guest: what has no verbs code path. test_rdzv opens no
		# engine (rendezvous through a store: the host runs it); test_local
		# is the local backend's alone and test_ws_run runs a tool the guest
		# lacks: every case of theirs skipped here, at a program start of
		# TCG time each. --only still names them.
		case $(basename "$p") in test_rdzv|test_local|test_ws_run)
			[[ " $only " == *" $(basename "$p") "* ]] || continue ;;
		esac
		[ -z "$only" ] || [[ " $only " == *" $(basename "$p") "* ]] || continue
		progs+=("$p")
	done
	# xferctl check on each rxe device (the verbs backend's loopback)
	ctlcheck=
	[ -x "$build/bin/xferctl" ] && { [ -z "$only" ] || [[ " $only " == *" xferctl "* ]]; } &&
		ctlcheck=$build/bin/xferctl
	[ ${#progs[@]} -gt 0 ] || [ -n "$ctlcheck" ] ||
		{ echo "not ok 1 - verbs suite: no test programs in $build (make tests)"; exit 1; }
else
	[ -x "$build/tests/verbs/bench_verbs" ] || { echo "run.sh: $build/tests/verbs/bench_verbs missing (make tests)" >&2; exit 1; }
	command -v ib_write_bw >/dev/null || { echo "run.sh: perftest's ib_write_bw missing" >&2; exit 1; }
	progs=("$build/tests/verbs/bench_verbs")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/xfer-verbs.XXXXXX")
trap 'rm -rf "$work"' EXIT
# xfer.ko for the guest's kernel, built as tests/kmod/run.sh builds it:
# test_verbs_share loads it from $XFER_KO and unloads it at its end, so the
# other programs run without the module, as before.
guest_env=${XFER_VERBS_GUEST_ENV:-}
if [ "$mode" = test ] && [ -e "/lib/modules/$kver/build/Makefile" ]; then
	mkdir -p "$work/kmod"
	cp -r kmod/Kbuild kmod/*.c kmod/*.h kmod/include "$work/kmod/"
	if make -C "/lib/modules/$kver/build" M="$work/kmod" modules > "$work/kmod.log" 2>&1; then
		guest_env="XFER_KO=/verbs/xfer.ko $guest_env"
	else
		echo "# xfer.ko does not build for $kver (test_verbs_share skips):"
		tail -n 5 "$work/kmod.log" | sed 's/^/# /'
	fi
fi
[ -n "$log" ] || { mkdir -p tests/out; log=tests/out/verbs-guest-$mode.log; }
files="$rxelib:$rxelib /etc/libibverbs.d/rxe.driver:/etc/libibverbs.d/rxe.driver"
files="$files $(command -v ip):/sbin/ip $(command -v rdma):/sbin/rdma"
: > "$work/list"
for p in "${progs[@]}"; do
	files="$files $p:/verbs/"
done
if [ "$mode" = test ]; then
	# test_moe's cases cost ~200 s on rxe under TCG: the guest runs those that
	# exercise what verbs adds (immediates per block, blocks split over rails,
	# slot reuse, a killed rank); every case runs on local, shm and tcp on the host.
	moe_cases=${XFER_VERBS_MOE_TESTS-r2_fp8_decode,r4_fp8_decode,r4_bf16_prefill,hot_expert_prefill,rank_receives_nothing,both_slots_in_flight,rank_killed_mid_layer}
	for p in "${progs[@]}"; do
		env=$guest_env
		[ "$(basename "$p")" = test_moe ] && env="$env XFER_MOE_TESTS=$moe_cases"
		echo "$(basename "$p") $env /verbs/$(basename "$p")" >> "$work/list"
	done
	[ -f "$work/kmod/xfer.ko" ] && files="$files $work/kmod/xfer.ko:/verbs/xfer.ko"
	if [ -n "$ctlcheck" ]; then
		files="$files $ctlcheck:/verbs/"
		echo "xferctl_check /verbs/xferctl check provider verbs timeout 60" >> "$work/list"
	fi
	# perftest on the same devices: the rxe set-up itself works
	files="$files $(command -v ib_write_bw):/bin/ib_write_bw"
	echo "perftest_smoke ib_write_bw -d rxe0 -x 1 -s 4096 -n 200 -F >/tmp/s.log 2>&1 & sleep 1; ib_write_bw -d rxe0 -x 1 -s 4096 -n 200 -F 127.0.0.1" >> "$work/list"
else
	files="$files $(command -v ib_write_bw):/bin/ib_write_bw"
	# interleaved: every repetition runs each measurement once, so that the
	# machine's drift (2 shared cores) spreads over all of them alike
	for r in $(seq 1 "$reps"); do
		for size in ${XFER_BENCH_SIZES:-4096 65536 1048576}; do
			n=$((size >= 1048576 ? 100 : size >= 65536 ? 1000 : 5000))
			echo "perf_${size}_$r ib_write_bw -d rxe0 -x 1 -s $size -n $n -F >/dev/null 2>&1 & sleep 1; ib_write_bw -d rxe0 -x 1 -s $size -n $n -F 127.0.0.1; wait" >> "$work/list"
			echo "xfer_${size}_$r /verbs/bench_verbs --test single --size $size --iters $n" >> "$work/list"
			[ "$size" = 65536 ] && echo "xferspan_${size}_$r /verbs/bench_verbs --test single --size $size --iters $n --span 33554432" >> "$work/list"
			# paged 4 KiB pages against ib_write_bw -s 4096 of the same moment
			[ "$size" = 4096 ] && echo "xferpaged_4096_$r /verbs/bench_verbs --test paged --size 4096 --iters 5000" >> "$work/list"
		done
		case " ${XFER_BENCH_SIZES:-4096} " in *" 4096 "*) ;; *)
			echo "xferpaged_4096_$r /verbs/bench_verbs --test paged --size 4096 --iters 5000" >> "$work/list" ;;
		esac
		[ -z "${XFER_BENCH_EXTRA:-}" ] || echo "$XFER_BENCH_EXTRA" | sed "s/^\([^ ]*\)/\1_$r/" >> "$work/list"
	done
fi
files="$files $work/list:/verbs/list"
if [ "$mode" = bench ]; then   # CPU time per measurement, from /proc/stat
	echo 1 > "$work/cpustat"
	files="$files $work/cpustat:/verbs/cpustat"
fi

modules="crc32_generic udp_tunnel ip6_udp_tunnel ib_core ib_uverbs rdma_rxe dummy"
timeout_s=$([ "$mode" = bench ] && echo 900 || echo 600)
# benchmarks need both vCPUs running at once (see guest.sh on --tcg-threads)
tcg=$([ "$mode" = bench ] && echo multi || echo single)
tests/vm/guest.sh --kver "$kver" --script tests/verbs/in-guest.sh --modules "$modules" --tcg-threads "$tcg" \
	--files "$files" --log "$log" --timeout "$timeout_s" --mem 1G --smp 2 --quiet \
	2> "$work/guest.err"
grc=$?

if [ "$mode" = bench ]; then
	tests/verbs/bench-report.sh "$log" "$kver"
	[ "$grc" = 0 ] || { cat "$work/guest.err" >&2; exit 1; }
	exit 0
fi

# Blocks between XV-BEGIN/XV-END become TAP lines, renumbered; a block
# without TAP lines counts by its exit status (0 ok, 77 skip).
awk '
	/^XV-BEGIN / { name = $2; tap = 0; bad = 0; next }
	/^XV-END / {
		rc = $3; secs = $5 - $4
		if (!tap) {
			if (rc == 0) printf "ok %d - %s (%.0f s)\n", ++n, name, secs
			else if (rc == 77) printf "ok %d - %s # SKIP exit 77\n", ++n, name
			else printf "not ok %d - %s (exit %d)\n", ++n, name, rc
		} else if (rc != 0 && !bad) printf "not ok %d - %s (exit %d)\n", ++n, name, rc
		name = ""; next
	}
	name != "" && /^(not )?ok [0-9]+/ {
		line = $0; isnot = (line ~ /^not /)
		sub(/^(not )?ok [0-9]+ *-? */, "", line)
		printf "%sok %d - %s: %s\n", isnot ? "not " : "", ++n, name, line
		tap = 1; if (isnot) bad = 1
	}
	/^XV-DEV / && $0 !~ /ACTIVE/ { printf "not ok %d - %s is not ACTIVE\n", ++n, $2 }
	/^XV-SETUP-FAIL/ { printf "not ok %d - guest set-up: %s\n", ++n, $0 }
	name != "" && /(BUG:|WARNING:|Oops|general protection|KASAN|refcount_t)/ { splat = 1 }
' "$log" > "$work/tap"
n=$(grep -cE '^(not )?ok ' "$work/tap")
cat "$work/tap"
if [ "$grc" = 0 ]; then
	echo "ok $((n + 1)) - guest $kver: clean kernel log, finished in time"
else
	echo "not ok $((n + 1)) - guest $kver: tests/vm/guest.sh exit $grc"
	sed 's/^/# /' "$work/guest.err"
fi
echo "1..$((n + 1))"
if [ "$grc" != 0 ] || grep -q '^not ok' "$work/tap"; then
	echo "# serial log: $log" >&2
	exit 1
fi
exit 0
