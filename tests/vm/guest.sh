#!/usr/bin/env bash
# Boot a Debian kernel under qemu (software emulation) with a minimal
# initramfs, run one script inside, and check the guest's kernel log.
#
# usage: tests/vm/guest.sh --kver KVER --script guest-script.sh
#            [--modules "NAME|PATH.ko ..."] [--files "SRC:DST ..."]
#            [--log FILE] [--timeout SECONDS] [--mem 1G] [--smp 2]
#            [--append "kernel args"] [--tcg-threads single|multi] [--quiet]
#
#   --kver     a version in /lib/modules (never `uname -r`: that is the host)
#   --modules  loaded in order before the script runs: a NAME is an in-tree
#              module of KVER whose dependencies come from
#              `modprobe -S KVER --show-depends NAME` (builtins are skipped,
#              .ko.xz/.ko.zst are decompressed); a PATH ending in .ko is an
#              out-of-tree module. In the guest they lie in /modules/ under
#              their base names, e.g. /modules/xfer.ko.
#   --files    copied into the guest; ELF programs and libraries bring their
#              `ldd` closure (e.g. "build/t:/bin/t
#              /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so:/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so").
#              A directory DST (ending in /) keeps the source's base name.
#   --script   run by busybox sh as /guest-script.sh with /proc, /sys,
#              /dev (devtmpfs), /sys/kernel/debug, /tmp and /dev/shm
#              mounted and PATH holding every busybox applet; its exit
#              status is the guest's.
#
# The guest's serial console goes to --log (and to stdout unless --quiet);
# after the script the guest prints its whole dmesg there. Exit status: the
# script's, or 1 when the kernel log has BUG:, WARNING:, Oops, general
# protection, KASAN or refcount_t, or a module failed to load; 124 when the
# guest did not finish within --timeout (default 120 s).
set -euo pipefail

kver= script= modules= files= log= timeout_s=120 mem=1G smp=2 quiet=0
append="console=ttyS0 panic=-1 quiet loglevel=3"
# One host thread runs all vCPUs unless asked: with a thread per vCPU (TCG's
# "multi"), a static key the kernel flips while booting (sched_clock_cpu's,
# text patched through an int3) now and then reaches the other vCPU half
# done on a loaded host, and the guest dies with "Oops: int3" (seen in 2 of
# about 10 runs). Benchmarks ask for multi: they need both vCPUs at once.
tcg_threads=single
while [ $# -gt 0 ]; do
	case "$1" in
	--kver) kver=$2; shift 2 ;;
	--script) script=$2; shift 2 ;;
	--modules) modules=$2; shift 2 ;;
	--files) files=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--append) append="$append $2"; shift 2 ;;
	--tcg-threads) tcg_threads=$2; shift 2 ;;
	--quiet) quiet=1; shift ;;
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
	*) echo "guest.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$kver" ] && [ -n "$script" ] || { echo "guest.sh: --kver and --script are required" >&2; exit 2; }
kernel=/boot/vmlinuz-$kver
[ -r "$kernel" ] || { echo "guest.sh: no kernel image $kernel" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "guest.sh: qemu-system-x86_64 missing" >&2; exit 2; }
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
	busybox=/bin/busybox
[ -x "$busybox" ] || { echo "guest.sh: busybox-static missing" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/xfer-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,modules,etc,lib,lib64}
cp "$busybox" "$root/bin/busybox"
[ -n "$log" ] || log=$work/serial.log

# Copy a file and, for ELF objects, every library ldd names plus the loader.
copy_in() { # src dst
	local src=$1 dst=$2 lib
	case "$dst" in */) dst=$dst$(basename "$src") ;; esac
	mkdir -p "$root$(dirname "$dst")"
	cp -L "$src" "$root$dst"
	if head -c4 "$src" | grep -q 'ELF' && ldd "$src" >/dev/null 2>&1; then
		for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
			[ -e "$root$lib" ] && continue
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
			# A library of the build tree (libxfer.so) is found through an
			# absolute RUNPATH, which the guest's own /tmp (a tmpfs) hides
			# when the tree lies under /tmp: give the loader a copy in its
			# default directory as well.
			case "$lib" in
			/lib/*|/lib64/*|/usr/lib/*) ;;
			*) mkdir -p "$root/usr/lib"; cp -L "$lib" "$root/usr/lib/$(basename "$lib")" ;;
			esac
		done
	fi
}
for spec in $files; do
	copy_in "${spec%%:*}" "${spec#*:}"
done

# Modules: in-tree names resolved with their dependencies, in load order.
: > "$root/modules/order"
add_module() { # path
	local src=$1 base
	base=$(basename "$src"); base=${base%.xz}; base=${base%.zst}
	grep -qx "$base" "$root/modules/order" && return 0
	case "$src" in
	*.xz) xz -dc "$src" > "$root/modules/$base" ;;
	*.zst) zstd -qdc "$src" > "$root/modules/$base" ;;
	*) cp "$src" "$root/modules/$base" ;;
	esac
	echo "$base" >> "$root/modules/order"
}
for m in $modules; do
	case "$m" in
	*.ko) add_module "$m" ;;
	*)
		deps=$(modprobe -S "$kver" --show-depends "$m") ||
			{ echo "guest.sh: module $m not found for $kver" >&2; exit 2; }
		for p in $(echo "$deps" | awk '$1 == "insmod" { print $2 }'); do
			add_module "$p"
		done ;;
	esac
done

cp "$script" "$root/guest-script.sh"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmp /tmp
mkdir -p /dev/shm && mount -t tmpfs shm /dev/shm
rc=0
for m in $(cat /modules/order); do
	insmod /modules/$m || { echo "XFER-GUEST: insmod $m failed"; rc=99; }
done
if [ $rc = 0 ]; then
	sh /guest-script.sh
	rc=$?
fi
echo "XFER-GUEST-RC=$rc"
echo "XFER-GUEST-DMESG-BEGIN"
dmesg
echo "XFER-GUEST-DMESG-END"
poweroff -f
INIT
chmod +x "$root/init" "$root/guest-script.sh"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.gz"

set +e
timeout -k 5 "$timeout_s" qemu-system-x86_64 -accel tcg,thread="$tcg_threads" -cpu max \
	-smp "$smp" -m "$mem" -nographic -no-reboot -nic none \
	-kernel "$kernel" -initrd "$work/initrd.gz" -append "$append" \
	< /dev/null 2>&1 | tr -d '\r' > "$log"
qrc=${PIPESTATUS[0]}
set -e
[ "$quiet" = 1 ] || cat "$log"

if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	echo "guest.sh: $kver guest timed out after ${timeout_s}s" >&2
	exit 124
fi
rc=$(sed -n 's/^XFER-GUEST-RC=\([0-9]*\)$/\1/p' "$log" | tail -n1)
bad=$(grep -E 'BUG:|WARNING:|Oops|general protection|KASAN|refcount_t|XFER-GUEST: insmod' "$log" || true)
if [ -n "$bad" ]; then
	echo "guest.sh: $kver kernel log has:" >&2
	echo "$bad" | head -n 20 | sed 's/^/  /' >&2
	exit 1
fi
if [ -z "$rc" ]; then
	echo "guest.sh: $kver guest ended without a result (qemu exit $qrc)" >&2
	exit 1
fi
exit "$rc"
