#!/usr/bin/env bash
# Kernel-module suite: builds xfer.ko (W=1) for every Debian kernel in
# /lib/modules that has an image and headers, builds the guest test
# programs, boots each kernel under qemu with tests/vm/guest.sh, runs
# tests/kmod/xfer_test (the module's ABI and lifetimes), lib_test
# (lib/kmod/kmod.c) and engine_test (the engine with the module) inside, and
# prints one TAP line per test per kernel ("ok N - <kver>: <prog>:
# <fixture>.<test>"). The programs are kselftest_harness.h tests, built by
# tests/kmod/Makefile (also a kselftest target: see there); each test has its
# own timeout (30 s, the engine's 60 s), so a hang costs one test. The
# newest kernel's guest also runs xferctl against the module
# (tests/kmod/xferctl-guest.sh, judged on the host by xferctl-guest.py;
# "<kver>: xferctl: ..." lines). Exits non-zero on any failure; prints one
# SKIP line and exits 0 when the tools are missing.
#
#   tests/kmod/run.sh [FILTER]     FILTER: run only tests whose name has it
#                                  ("xferctl": that part alone)
# Environment: XFER_BUILD (build dir, default build), XFER_KMOD_TIMEOUT
# (seconds per guest, default 240: a ~30 s run plus several hung tests'
# timeouts; the guard against a guest that hangs as a whole),
# XFER_KMOD_KVERS (kernel versions), KSELFTEST (the harness headers, default
# the Makefile's).
set -uo pipefail
cd "$(dirname "$0")/../.."
top=$PWD
build=${XFER_BUILD:-build}
case "$build" in /*) out=$build/kmod ;; *) out=$top/$build/kmod ;; esac
filter=${1:-}

skip_all() { echo "ok 1 - kmod # SKIP $*"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || skip_all "qemu-system-x86_64 not installed (scripts/deps.sh test)"
bb=$(command -v busybox || true)
{ [ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q 'statically linked'; } || [ -x /bin/busybox ] ||
	skip_all "busybox-static not installed"
command -v cpio >/dev/null || skip_all "cpio not installed"
kvers=()
for d in ${XFER_KMOD_KVERS:-$(ls /lib/modules 2>/dev/null | sort -V)}; do
	[ -r "/boot/vmlinuz-$d" ] && [ -e "/lib/modules/$d/build/Makefile" ] && kvers+=("$d")
done
[ ${#kvers[@]} -gt 0 ] || skip_all "no Debian kernel with image and headers in /lib/modules and /boot"

mkdir -p "$out"
n=0 failed=0
tap() { # ok|not-ok name [directive]
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n - $2${3:+ # $3}"
	else echo "not ok $n - $2"; failed=1; fi
}

# Build the module for every kernel in the background (2 to 4 s each)
# while the test programs build.
for k in "${kvers[@]}"; do
	kdir=$out/$k
	rm -rf "$kdir"; mkdir -p "$kdir/src"
	cp -r kmod/Kbuild kmod/*.c kmod/*.h kmod/include "$kdir/src/"
	( make -C "/lib/modules/$k/build" M="$kdir/src" W=1 modules > "$kdir/build.log" 2>&1
	  echo $? > "$kdir/build.rc" ) &
done

# Guest programs (tests/kmod/Makefile, standalone form, on the harness from
# scripts/deps.sh kselftest): static, so the initramfs needs no libraries.
kselftest=${KSELFTEST:-$(make -s --no-print-directory print-KSELFTEST)}
[ -f "$kselftest/kselftest_harness.h" ] ||
	XFER_KSELFTEST_DIR=$kselftest scripts/deps.sh kselftest > "$out/deps.log" 2>&1
case "$build" in /*) liba=$build/lib/libxfer.a ;; *) liba=$top/$build/lib/libxfer.a ;; esac
progs_ok=1
rm -f "$out/xfer_test" "$out/lib_test" "$out/engine_test"
if ! make -s -C tests/kmod OUTPUT="$out" STATIC=1 KSELFTEST="$kselftest" XFER_LIBA=/nonexistent \
	"$out/xfer_test" "$out/lib_test" > "$out/build-tests.log" 2>&1; then
	progs_ok=0
	sed 's/^/# /' "$out/build-tests.log"
fi
[ $progs_ok = 1 ] && tap ok "kmod: guest test programs build" || tap not-ok "kmod: guest test programs build"

# The engine with the module: needs the library (built by `make tests`).
engine= xferctl=
[ -f "$build/lib/libxfer.a" ] || make -s lib BUILD="$build" > "$out/build-lib.log" 2>&1
if [ -f "$build/lib/libxfer.a" ] &&
   make -s -C tests/kmod OUTPUT="$out" KSELFTEST="$kselftest" XFER_LIBA="$liba" \
	"$out/engine_test" >> "$out/build-tests.log" 2>&1; then
	engine="$out/engine_test:/bin/engine_test"
	tap ok "kmod: engine test program builds"
	# xferctl against the real module (tests/kmod/xferctl-guest.sh), in
	# the newest kernel's boot: the tool and its library, and ctl_proc,
	# the live processes it looks at
	if { [ -z "$filter" ] || [[ xferctl == *"$filter"* ]]; } &&
	   make -s BUILD="$build" "$build/bin/xferctl" >> "$out/build-tests.log" 2>&1 &&
	   make -s -C tests/kmod OUTPUT="$out" KSELFTEST="$kselftest" XFER_LIBA="$liba" \
		"$out/ctl_proc" >> "$out/build-tests.log" 2>&1; then
		xferctl="$build/bin/xferctl:/bin/xferctl $out/ctl_proc:/bin/ctl_proc"
		xferctl="$xferctl tests/kmod/xferctl-guest.sh:/xferctl-guest.sh"
		# the library loads libfabric on first use: no ldd names it
		fab=$(ldconfig -p 2>/dev/null | awk '$1 == "libfabric.so.1" && /x86-64/ { print $NF; exit }')
		[ -n "$fab" ] && xferctl="$xferctl $fab:$fab"
	fi
else
	tap ok "kmod: engine test program builds" "SKIP libxfer.a or its libraries not built"
	sed 's/^/# /' "$out/build-tests.log" | tail -n 20
fi

# Each program's output follows a "# kmod-prog NAME" line: the parser below
# tells the programs (and their TAP numbers) apart by it.
cat > "$out/guest-script.sh" <<GUEST
export XFER_KO=/modules/xfer.ko
rc=0
for p in xfer_test lib_test engine_test; do
	[ -x /bin/\$p ] || continue
	echo "# kmod-prog \$p"
	/bin/\$p $filter 2>&1 || rc=1
done
[ -x /bin/xferctl ] && sh /xferctl-guest.sh 2>&1
exit \$rc
GUEST

wait
echo "# builds took ${SECONDS}s"


for k in "${kvers[@]}"; do
	kdir=$out/$k
	if [ "$(cat "$kdir/build.rc")" = 0 ]; then
		if grep -qE 'warning:|error:' "$kdir/build.log"; then
			grep -E 'warning:|error:' "$kdir/build.log" | sed 's/^/# /'
			tap not-ok "$k: xfer.ko builds W=1 clean"
		else
			tap ok "$k: xfer.ko builds W=1 clean"
		fi
	else
		tail -n 30 "$kdir/build.log" | sed 's/^/# /'
		tap not-ok "$k: xfer.ko builds W=1 clean"
		continue
	fi
	[ $progs_ok = 1 ] || continue

	# A dma-buf exporter for the import tests: udmabuf where it is built
	# in or a module (6.12), else vgem (6.1).
	mods=
	deps=$(modprobe -S "$k" --show-depends udmabuf 2>/dev/null || true)
	if echo "$deps" | grep -q '^insmod'; then mods=udmabuf
	elif ! echo "$deps" | grep -q '^builtin' && modprobe -S "$k" --show-depends vgem >/dev/null 2>&1; then
		mods=vgem
	fi
	ctlfiles=
	[ "$k" = "${kvers[-1]}" ] && ctlfiles=$xferctl
	t0=$SECONDS
	tests/vm/guest.sh --kver "$k" --modules "$mods $kdir/src/xfer.ko" \
		--files "$out/xfer_test:/bin/xfer_test $out/lib_test:/bin/lib_test $engine $ctlfiles" \
		--script "$out/guest-script.sh" --log "$kdir/serial.log" \
		--timeout "${XFER_KMOD_TIMEOUT:-240}" --quiet 2> "$kdir/guest.err"
	grc=$?
	echo "# $k: guest took $((SECONDS - t0))s"
	# kselftest TAP: "#  RUN  fixture.test ..." starts a test, then
	# "ok N fixture.test", "not ok N fixture.test" or (6.1: without the name)
	# "ok N # SKIP why". Out: "R<TAB>ok|not-ok<TAB>prog: name<TAB>why" per
	# test; after a failure "D<TAB>line" for its diagnostics (RUN to result).
	results=$(awk '
		/# kmod-prog [a-z_]+$/ { prog = $NF; planned[prog] = 0; seen[prog] = 0; next }
		/^1\.\.[0-9]+$/ && prog != "" { planned[prog] = substr($0, 4) + 0; next }
		/^#  RUN / { name = $3; nd = 0; next }
		/^# / { diag[++nd] = $0; next }
		/^(not )?ok [0-9]+ / && prog != "" {
			seen[prog]++
			why = ""
			if (match($0, / # SKIP.*$/)) why = substr($0, RSTART + 3)
			n = $0; sub(/^(not )?ok [0-9]+ /, "", n); sub(/ # .*$/, "", n)
			if (n == "") n = name
			if (/^not ok/) {
				printf "R\tnot-ok\t%s: %s\n", prog, n
				for (i = 1; i <= nd; i++) printf "D\t  %s\n", diag[i]
			} else printf "R\tok\t%s: %s\t%s\n", prog, n, why
			nd = 0
		}
		END { for (p in planned) if (seen[p] != planned[p])
			printf "R\tnot-ok\t%s: ran all %d planned tests (%d reported)\n", p, planned[p], seen[p] }
		' "$kdir/serial.log")
	if [ -n "$ctlfiles" ]; then   # xferctl's runs, judged against the processes' truth
		if [ -x /usr/bin/python3 ]; then
			results+=$'\n'$(/usr/bin/python3 tests/kmod/xferctl-guest.py "$kdir/serial.log")
		else
			tap ok "$k: xferctl against the module" "SKIP /usr/bin/python3 missing"
		fi
	fi
	while IFS= read -r line; do
		case "$line" in
		R$'\t'*)
			IFS=$'\t' read -r _ res name why <<< "$line"
			if [ "$res" = ok ]; then tap ok "$k: $name" "$why"; else tap not-ok "$k: $name"; fi ;;
		D$'\t'*) echo "${line#D?}" ;;
		esac
	done <<< "$results"
	if grep -q 'kernel log has' "$kdir/guest.err"; then
		sed 's/^/# /' "$kdir/guest.err"
		tap not-ok "$k: guest kernel log free of BUG/WARNING/Oops/KASAN/refcount"
	else
		tap ok "$k: guest kernel log free of BUG/WARNING/Oops/KASAN/refcount"
	fi
	if [ -z "$results" ] || { [ "$grc" != 0 ] && ! echo "$results" | grep -q $'^R\tnot-ok'; }; then
		sed 's/^/# /' "$kdir/guest.err"
		tail -n 20 "$kdir/serial.log" | sed 's/^/# /'
		tap not-ok "$k: guest ran the tests to the end (exit $grc)"
	fi
done
echo "1..$n"
exit $failed
