#!/usr/bin/env bash
# Kernel-module suite: builds xfer.ko (W=1) for every Debian kernel in
# /lib/modules that has an image and headers, builds the guest test
# programs, boots each kernel under qemu with tests/vm/guest.sh, runs
# tests/kmod/xfer_test (the module's ABI and lifetimes), lib_test (lib/kmod.c)
# and engine_test (the engine with the module) inside, and prints one
# TAP line per test per kernel ("ok N - <kver>: <test>"). Exits non-zero on
# any failure; prints one SKIP line and exits 0 when the tools are missing.
#
#   tests/kmod/run.sh [FILTER]     FILTER: run only tests whose name has it
# Environment: XFER_BUILD (build dir, default build), XFER_KMOD_TIMEOUT
# (seconds per guest, default 150), XFER_KMOD_KVERS (kernel versions).
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

# Guest programs: static, so the initramfs needs no libraries.
progs_ok=1
if ! gcc -std=gnu11 -Wall -Wextra -Werror -Wshadow -O2 -static -Ikmod/include/uapi \
	-o "$out/xfer_test" tests/kmod/xfer_test.c > "$out/build-tests.log" 2>&1 ||
   ! gcc -std=gnu11 -Wall -Wextra -Werror -Wshadow -O2 -static -Ilib/kmod -Ilib/util -Ikmod/include/uapi \
	-o "$out/lib_test" tests/kmod/lib_test.c lib/kmod/kmod.c >> "$out/build-tests.log" 2>&1; then
	progs_ok=0
	sed 's/^/# /' "$out/build-tests.log"
fi
[ $progs_ok = 1 ] && tap ok "kmod: guest test programs build" || tap not-ok "kmod: guest test programs build"

# The engine with the module: needs the library (built by `make tests`).
engine=
[ -f "$build/lib/libxfer.a" ] || make -s lib BUILD="$build" > "$out/build-lib.log" 2>&1
if [ -f "$build/lib/libxfer.a" ] &&
   gcc -std=gnu11 -Wall -Wextra -Werror -Wshadow -O2 -Iinclude -Ikmod/include/uapi \
	-o "$out/engine_test" tests/kmod/engine_test.c "$build/lib/libxfer.a" \
	$(pkg-config --libs libfabric hwloc json-c 2>/dev/null) \
	$(pkg-config --exists libibverbs 2>/dev/null && pkg-config --libs libibverbs) \
	-lpthread -lm -ldl >> "$out/build-tests.log" 2>&1; then
	engine="$out/engine_test:/bin/engine_test"
	tap ok "kmod: engine test program builds"
else
	tap ok "kmod: engine test program builds" "SKIP libxfer.a or its libraries not built"
fi

cat > "$out/guest-script.sh" <<GUEST
export XFER_KO=/modules/xfer.ko
rc=0
/bin/xfer_test $filter || rc=1
/bin/lib_test $filter || rc=1
if [ -x /bin/engine_test ]; then /bin/engine_test $filter || rc=1; fi
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
	t0=$SECONDS
	tests/vm/guest.sh --kver "$k" --modules "$mods $kdir/src/xfer.ko" \
		--files "$out/xfer_test:/bin/xfer_test $out/lib_test:/bin/lib_test $engine" \
		--script "$out/guest-script.sh" --log "$kdir/serial.log" \
		--timeout "${XFER_KMOD_TIMEOUT:-150}" --quiet 2> "$kdir/guest.err"
	grc=$?
	echo "# $k: guest took $((SECONDS - t0))s"
	results=$(grep -E '^(not )?ok [0-9]+ - ' "$kdir/serial.log" || true)
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		name=$(echo "$line" | sed -E 's/^(not )?ok [0-9]+ - //; s/ # .*//')
		dir=$(echo "$line" | sed -nE 's/^ok [0-9]+ - .* # (SKIP.*)$/\1/p')
		case "$line" in
		ok*) tap ok "$k: $name" "$dir" ;;
		*) tap not-ok "$k: $name"
		   # the test's diagnostics, from its start to its result
		   awk -v t="$line" 'index($0, "# ") == 1 { buf = buf "\n" $0 }
			/^(not )?ok [0-9]+ - / { if ($0 == t) { print buf; exit } buf = "" }' \
			"$kdir/serial.log" | grep . | sed 's/^/  /' ;;
		esac
	done <<< "$results"
	if grep -q 'kernel log has' "$kdir/guest.err"; then
		sed 's/^/# /' "$kdir/guest.err"
		tap not-ok "$k: guest kernel log free of BUG/WARNING/Oops/KASAN/refcount"
	else
		tap ok "$k: guest kernel log free of BUG/WARNING/Oops/KASAN/refcount"
	fi
	if [ -z "$results" ] || { [ "$grc" != 0 ] && ! echo "$results" | grep -q '^not ok'; }; then
		sed 's/^/# /' "$kdir/guest.err"
		tail -n 20 "$kdir/serial.log" | sed 's/^/# /'
		tap not-ok "$k: guest ran the tests to the end (exit $grc)"
	fi
done
echo "1..$n"
exit $failed
