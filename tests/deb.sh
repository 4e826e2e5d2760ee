#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Debian packages (debian/, `make deb`), as an operator meets them: builds
# them (or reuses $XFER_BUILD/deb when its sources have not changed), runs
# lintian, checks what each package holds, then installs them with apt into a
# throwaway Debian root (mmdebstrap; the base is cached under
# /var/cache/xfer), runs the tools and a program built against libxfer-dev
# there, builds the packaged module source with DKMS against this machine's
# kernel headers, purges the packages and checks that nothing of them is
# left. Prints TAP; every line names its step.
#
# Needs root for the chroot steps (they SKIP without it), debhelper, dh-dkms,
# lintian and mmdebstrap (`scripts/deps.sh test`), and the Debian mirror
# the first time (XFER_DEB_MIRROR, default http://deb.debian.org).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
build=${XFER_BUILD:-build}
out=$build/deb
# shellcheck source=tests/tap.sh
source tests/tap.sh
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
lint_pid=""
# lintian runs beside the steps that follow it (it takes 6 to 20 s here);
# its line comes when it is done, at the latest before the plan line.
lint_join() {
	[ -n "$lint_pid" ] || return 0
	wait "$lint_pid"; local rc=$?; lint_pid=""
	grep -v 'running with root privileges' "$out/lintian.log" | sed 's/^/# lintian: /'
	tap "$([ $rc -eq 0 ] && echo ok || echo not-ok)" "lintian: no errors on the four packages"
}
finish() { lint_join; echo "1..$n"; exit $fail; }
t0=$SECONDS
lap() { echo "# $1: $((SECONDS - t0)) s so far"; }

for tool in dpkg-buildpackage dh dh_dkms lintian; do
	if ! command -v $tool >/dev/null; then
		skip "packages" "$tool missing (scripts/deps.sh test installs debhelper, dh-dkms, lintian)"
		finish
	fi
done

# ---- versions: one version, in the Makefile, dkms.conf and debian/changelog
mk_ver=$(make -s --no-print-directory print-VERSION)
dkms_ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
deb_ver=$(dpkg-parsechangelog -S Version)
tap "$([ "$mk_ver" = "$dkms_ver" ] && echo ok || echo not-ok)" \
	"versions: Makefile VERSION ($mk_ver) = dkms.conf PACKAGE_VERSION ($dkms_ver)"
# native package: the Debian version is the upstream one, no revision
tap "$([ "$mk_ver" = "$deb_ver" ] && echo ok || echo not-ok)" \
	"versions: debian/changelog ($deb_ver) = Makefile VERSION ($mk_ver)"

# ---- Build-Depends: what `scripts/deps.sh build` installs (debhelper aside)
bdeps=$(sed -n '/^Build-Depends:/,/^[A-Z]/p' debian/control | sed '1s/^Build-Depends://; $d' |
	tr ',' '\n' | sed 's/(.*)//; s/ //g' | grep -v -e '^$' -e '^debhelper-compat$' -e '^dh-sequence-')
missing=""
for b in $bdeps; do
	grep -qE "(^|[ (])$b([ )]|$)" <(sed -n '/^pkgs=(/,/)/p' scripts/deps.sh) || missing+=" $b"
done
tap "$([ -z "$missing" ] && echo ok || echo not-ok)" \
	"build-depends: every Build-Depends of debian/control is in scripts/deps.sh build" "missing:$missing"

# ---- symbols: every version node of the map has its line in the symbols file
missing=""
for node in $(sed -n 's/^\(XFER_[0-9.]*\) *{.*/\1/p' lib/xfer.map); do
	grep -q "^ (symver)$node " debian/libxfer0.symbols || missing+=" $node"
done
tap "$([ -z "$missing" ] && echo ok || echo not-ok)" \
	"symbols: every version node of lib/xfer.map has a (symver) line in debian/libxfer0.symbols" \
	"missing:$missing"
so=$build/lib/libxfer.so.$mk_ver
if [ -f "$so" ]; then
	tmp=$(mktemp -d); log=$(dpkg-gensymbols -c4 -v"$mk_ver" -plibxfer0 -e"$so" \
		-Idebian/libxfer0.symbols -O"$tmp/symbols" 2>&1); rc=$?; rm -rf "$tmp"
	tap "$([ $rc -eq 0 ] && echo ok || echo not-ok)" \
		"symbols: dpkg-gensymbols -c4 accepts $so against debian/libxfer0.symbols" "$log"
else
	skip "symbols: dpkg-gensymbols against the tree's library" "$so not built (make all)"
fi

# ---- build
status_before=$(git status --porcelain 2>/dev/null)
if ! make -s deb BUILD="$build" > "$out.log" 2>&1; then
	sed 's/^/# /' "$out.log" | tail -30
	tap not-ok "build: make deb (dpkg-buildpackage -b in a scratch copy)"
	finish
fi
sed 's/^/# /' "$out.log"
tap ok "build: make deb (dpkg-buildpackage -b in a scratch copy)"
lap build
arch=$(dpkg --print-architecture)
deb() { echo "$out/${1}_${mk_ver}_$2.deb"; }
libdeb=$(deb libxfer0 "$arch") devdeb=$(deb libxfer-dev "$arch")
tooldeb=$(deb xfer-tools "$arch") dkmsdeb=$(deb xfer-dkms all)
missing=""
for d in "$libdeb" "$devdeb" "$tooldeb" "$dkmsdeb"; do [ -f "$d" ] || missing+=" $d"; done
tap "$([ -z "$missing" ] && echo ok || echo not-ok)" \
	"build: the four packages, at version $mk_ver" "missing:$missing"
[ -z "$missing" ] || finish
status_after=$(git status --porcelain 2>/dev/null)
tap "$([ "$status_before" = "$status_after" ] && echo ok || echo not-ok)" \
	"build: the working tree is as it was (dpkg-buildpackage ran in a copy)" \
	"$(diff <(echo "$status_before") <(echo "$status_after"))"

# ---- lintian: no errors; warnings and the rest as comments
lintian --fail-on error "$out"/xfer_"${mk_ver}"_"$arch".changes > "$out/lintian.log" 2>&1 &
lint_pid=$!

# ---- what each package holds
list() { dpkg-deb -c "$1" | awk '{ p = $6; sub(/^\./, "", p); print p }'; }
has_all() { # name deb path... : each path in the deb's file list
	local name=$1 d=$2 l miss=""; shift 2
	l=$(list "$d")
	for p in "$@"; do grep -qxF -- "$p" <<< "$l" || miss+=" $p"; done
	tap "$([ -z "$miss" ] && echo ok || echo not-ok)" "contents: $name" "missing:$miss"
}
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
has_all "libxfer0 holds libxfer.so.$mk_ver and its soname link" "$libdeb" \
	"/usr/lib/$ma/libxfer.so.$mk_ver" "/usr/lib/$ma/libxfer.so.0"
others=$(list "$libdeb" | grep -v -e '/$' -e "^/usr/lib/$ma/libxfer.so.0" -e "^/usr/share/doc/libxfer0/")
tap "$([ -z "$others" ] && echo ok || echo not-ok)" "contents: libxfer0 holds nothing else" "$others"
tap "$(dpkg-deb -I "$libdeb" symbols >/dev/null 2>&1 && echo ok || echo not-ok)" \
	"contents: libxfer0 ships a symbols file"
paths=()
for h in include/*.h; do paths+=("/usr/include/${h#include/}"); done
for m in man/*.3; do paths+=("/usr/share/man/man3/$(basename "$m").gz"); done
has_all "libxfer-dev holds every public header, linux/xfer.h, libxfer.so, libxfer.a, xfer.pc, every section 3 page" \
	"$devdeb" "${paths[@]}" /usr/include/linux/xfer.h "/usr/lib/$ma/libxfer.so" \
	"/usr/lib/$ma/libxfer.a" "/usr/lib/$ma/pkgconfig/xfer.pc"
paths=()
for t in tools/*/; do
	t=$(basename "$t"); [ "$t" = common ] || paths+=("/usr/bin/$t")
done
for m in models/*.json; do paths+=("/usr/share/xfer/models/$(basename "$m")"); done
for m in man/*.[178]; do paths+=("/usr/share/man/man${m##*.}/$(basename "$m").gz"); done
has_all "xfer-tools holds every tool, every model, every page of sections 1, 7 and 8" \
	"$tooldeb" "${paths[@]}"
paths=(/usr/src/xfer-"$mk_ver"/dkms.conf /usr/lib/udev/rules.d/60-xfer.rules
       /usr/lib/modules-load.d/xfer.conf /usr/src/xfer-"$mk_ver"/kmod/include/uapi/linux/xfer.h)
for f in kmod/Kbuild kmod/Makefile kmod/*.c kmod/*.h; do paths+=("/usr/src/xfer-$mk_ver/$f"); done
has_all "xfer-dkms holds the module source with dkms.conf, the udev rule, the modules-load file" \
	"$dkmsdeb" "${paths[@]}"
tap "$([ "$(dpkg-deb -f "$dkmsdeb" Architecture)" = all ] && echo ok || echo not-ok)" \
	"contents: xfer-dkms is Architecture: all"
pc=$(dpkg-deb --fsys-tarfile "$devdeb" | tar -xOf - "./usr/lib/$ma/pkgconfig/xfer.pc")
tap "$(grep -qx 'prefix=/usr' <<< "$pc" && grep -qx "libdir=/usr/lib/$ma" <<< "$pc" && echo ok || echo not-ok)" \
	"contents: xfer.pc names prefix /usr and libdir /usr/lib/$ma" "$pc"
tmp=$(mktemp -d)
rp=$(dpkg-deb --fsys-tarfile "$tooldeb" | tar -xOf - ./usr/bin/xferctl > "$tmp/xferctl" &&
	readelf -d "$tmp/xferctl" 2>&1 | grep -E 'RPATH|RUNPATH|Error'); rm -rf "$tmp"
tap "$([ -z "$rp" ] && echo ok || echo not-ok)" \
	"contents: the packaged tools carry no RPATH (the build tree's \$ORIGIN/../lib)" "$rp"
dep=$(dpkg-deb -f "$tooldeb" Depends)
tap "$(grep -q "libxfer0 (>= $mk_ver)" <<< "$dep" && echo ok || echo not-ok)" \
	"contents: xfer-tools depends on libxfer0 (>= $mk_ver) (from the symbols file)" "Depends: $dep"
tap "$(dpkg-deb -I "$dkmsdeb" postinst | grep -q 'addgroup --quiet --system xfer' && echo ok || echo not-ok)" \
	"contents: xfer-dkms's postinst creates the system group xfer"

# ---- a throwaway Debian root: apt install ./xfer-*.deb, use, purge
if [ "$(id -u)" != 0 ]; then
	skip "chroot" "not root (mmdebstrap, chroot and mounts need it)"
	finish
fi
if ! unshare --mount true 2>/dev/null; then
	skip "chroot" "no mount namespace here (unshare --mount), which the root's /proc needs"
	finish
fi
if ! command -v mmdebstrap >/dev/null; then
	skip "chroot" "mmdebstrap missing (scripts/deps.sh test installs it)"
	finish
fi
# The base holds what the packages depend on (read from the .debs) plus a
# compiler's libc headers and pkg-config, so that apt installs the packages
# with no network and the program is built inside. Cached by that list (one
# base at a time: a new list's replaces the old).
. /etc/os-release
suite=${VERSION_CODENAME:-bookworm}
mirror=${XFER_DEB_MIRROR:-http://deb.debian.org}
includes=$(for d in "$libdeb" "$devdeb" "$tooldeb" "$dkmsdeb"; do dpkg-deb -f "$d" Depends; done |
	tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//; s/ //g' |
	grep -v -e '^$' -e '^libxfer0$' -e '^libxfer-dev$' -e '^xfer-' | sort -u | tr '\n' ',')
includes+="libc6-dev,pkg-config"
cache=${XFER_DEB_CACHE:-/var/cache/xfer}
# The host's versions of them are in the key too: packages built against a
# newer libc or libfabric get a base at least that new.
# shellcheck disable=SC2046 # one word per package
hostvers=$(dpkg-query -W -f='${Package}=${Version} ' $(tr ',' ' ' <<< "$includes") 2>/dev/null)
key=$(echo "$suite $mirror $includes $hostvers" | sha256sum | cut -c1-16)
base=$cache/deb-root-$suite-$key.tar
if [ ! -f "$base" ]; then
	mkdir -p "$cache"
	part=$cache/.deb-root-part-$key.tar   # mmdebstrap writes a tar for a name in .tar
	echo "# mmdebstrap $suite (minbase + $includes) -> $base"
	if mmdebstrap --variant=minbase --mode=root --aptopt='APT::Install-Recommends "false"' \
		--include="$includes" "$suite" "$part" \
		"deb $mirror/debian $suite main" "deb $mirror/debian $suite-updates main" \
		"deb $mirror/debian-security $suite-security main" > "$out/mmdebstrap.log" 2>&1; then
		rm -f "$cache"/deb-root-*.tar   # the previous list's base
		mv "$part" "$base"
	else
		rm -f "$part"
		tail -5 "$out/mmdebstrap.log" | sed 's/^/# /'
		if grep -qiE 'could not resolve|failed to fetch|temporary failure|unable to connect' \
			"$out/mmdebstrap.log"; then
			skip "chroot" "no base cached and $mirror unreachable"
		else
			tap not-ok "chroot: mmdebstrap a $suite base ($out/mmdebstrap.log)"
		fi
		finish
	fi
fi
lap base
root=$(realpath -m "$out/root")
rm -rf "$root"; mkdir -p "$root"
trap 'rm -rf "$root"' EXIT
if ! tar -xf "$base" -C "$root"; then
	tap not-ok "chroot: unpack the cached base $base"
	finish
fi
tap ok "chroot: a $suite root from $base"
# Every command in the root gets its own mount namespace with /proc and
# /dev/shm: nothing is mounted where this machine sees it, nothing to undo.
inroot() {
	unshare --mount --fork -- sh -c \
		'mount -t proc proc "$0/proc" && mount -t tmpfs tmpfs "$0/dev/shm" && exec chroot "$0" "$@"' \
		"$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}
inroot_step() { # name command... : a TAP line, the output as comments when it fails
	local name=$1 o; shift
	if o=$(inroot "$@" 2>&1); then tap ok "$name"; else tap not-ok "$name" "$(tail -n 8 <<< "$o")"; fi
}
snapshot() { (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev \) -prune -o -print | sort); }
snapshot > "$out/before.lst"

mkdir -p "$root/tmp/debs"
cp "$libdeb" "$devdeb" "$tooldeb" "$dkmsdeb" "$root/tmp/debs/"
o=$(inroot sh -c 'cd /tmp/debs && apt-get install -y --no-install-recommends ./*.deb' 2>&1); rc=$?
# what DKMS said (no headers: nothing to build), and any complaint
grep -iE 'dkms|kernel|header|error|warn' <<< "$o" | grep -vE '^(Selecting|Preparing|Unpacking)' |
	head -20 | sed 's/^/# apt: /'
tap "$([ $rc -eq 0 ] && echo ok || echo not-ok)" \
	"install: apt install ./xfer-*.deb in the root, offline (xfer-dkms without kernel headers too)" \
	"$(tail -n 8 <<< "$o")"
[ $rc -eq 0 ] || finish
lap install

inroot_step "tools: xferctl --help" sh -c 'xferctl --help | grep -q xferctl'
o=$(inroot xferctl -j module 2>&1)
tap "$(grep -q '"module":"not loaded"' <<< "$o" && echo ok || echo not-ok)" \
	"tools: xferctl -j module says the module is not loaded" "$o"
o=$(inroot xfer-bench -p local -t single -s 64K -n 200 -j 2>&1); rc=$?
tap "$([ $rc -eq 0 ] && grep -q '"ops":200' <<< "$o" && ! grep -q '"error"' <<< "$o" && echo ok || echo not-ok)" \
	"tools: xfer-bench -p local, 200 writes of 64 KiB, every byte checked where it landed" "$o"
inroot_step "tools: xfer-weightsync finds its models under /usr/share/xfer/models" \
	sh -c 'xfer-weightsync --help >/dev/null && ls /usr/share/xfer/models/*.json >/dev/null'
cp tests/user_program.c "$root/tmp/user.c"
inroot_step "dev: a program built with pkg-config --cflags --libs xfer creates an engine on local" \
	sh -c 'cd /tmp && cc -std=c11 -Wall -Werror -o user user.c $(pkg-config --cflags --libs xfer) &&
	       ldd ./user | grep -q "libxfer.so.0 => /.*/libxfer.so.0" &&
	       test "$(./user)" = "range outside the registered region"'
inroot_step "dkms: group xfer exists" getent group xfer
inroot_step "dkms: /usr/lib/udev/rules.d/60-xfer.rules gives /dev/xfer to group xfer, 0660" \
	grep -q 'GROUP="xfer", MODE="0660"' /usr/lib/udev/rules.d/60-xfer.rules
inroot_step "dkms: /usr/lib/modules-load.d/xfer.conf loads xfer at boot" \
	grep -qx xfer /usr/lib/modules-load.d/xfer.conf
inroot_step "dkms: DKMS knows xfer/$mk_ver (added, no kernel headers in the root to build for)" \
	sh -c "dkms status -m xfer -v $mk_ver | grep -q '^xfer/$mk_ver'"
lap use

# The packaged source, built by DKMS against this machine's kernel headers
# (outside the root: it has none). DKMS's state, and the signing key it
# makes, go to a tmpfs that only this namespace sees.
kver=""
for b in /lib/modules/*/build; do [ -d "$b" ] && kver=$(basename "$(dirname "$b")") && break; done
if [ -z "$kver" ] || ! command -v dkms >/dev/null || [ ! -d /var/lib/dkms ]; then
	skip "dkms: build the packaged source" "no kernel headers in /lib/modules/*/build, or no dkms"
else
	o=$(unshare --mount -- sh -c 'mount -t tmpfs tmpfs /var/lib/dkms &&
		dkms add -m xfer -v "$2" --sourcetree "$1" && dkms build -m xfer -v "$2" -k "$3" --sourcetree "$1" &&
		find /var/lib/dkms/xfer -name "xfer.ko*" | grep -q .' sh "$root/usr/src" "$mk_ver" "$kver" 2>&1)
	rc=$?
	tap "$([ $rc -eq 0 ] && echo ok || echo not-ok)" \
		"dkms: the packaged source builds with dkms build for $kver" "$(tail -n 8 <<< "$o")"
fi
lap dkms

# ---- purge: nothing of the packages is left
pkgs="libxfer0 libxfer-dev xfer-tools xfer-dkms"
inroot sh -c "for p in $pkgs; do dpkg -L \$p; done" | sort -u > "$out/owned.lst"
inroot_step "purge: apt purge the four packages" apt-get purge -y $pkgs
left=$(while read -r p; do
	if [ ! -d "$root$p" ] && { [ -e "$root$p" ] || [ -L "$root$p" ]; }; then echo "$p"; fi
done < "$out/owned.lst")
tap "$([ -z "$left" ] && echo ok || echo not-ok)" "purge: no file the packages owned is left (dpkg -L before)" "$left"
# New paths since before the install, other than dpkg's and apt's own
# records, logs, /run (adduser's lock) and the group (kept on purge on purpose: see the postinst).
snapshot > "$out/after.lst"
left=$(comm -13 "$out/before.lst" "$out/after.lst" |
	grep -v -e '^./var/lib/dpkg/' -e '^./var/log/' -e '^./var/cache/' -e '^./var/lib/apt/' \
	        -e '^./etc/group-$' -e '^./etc/gshadow-$' -e '^./tmp/' -e '^./run/')
tap "$([ -z "$left" ] && echo ok || echo not-ok)" "purge: nothing new left in the root (find before install, after purge)" "$left"
inroot_step "purge: DKMS no longer knows xfer" sh -c '! dkms status -m xfer | grep -q .'
inroot_step "purge: group xfer stays (its id may still be in use)" getent group xfer
lap purge
lint_join

# ---- make dkms-install / dkms-uninstall, in the same root (no kernel headers
# there: DKMS adds the module and has nothing to build it for)
mkdir -p "$root/tmp/src"
tar -cf - Makefile mk kmod dkms.conf | tar -xf - -C "$root/tmp/src"
inroot groupdel xfer
inroot_step "make dkms-install: runs in the root" make -s -C /tmp/src dkms-install
inroot_step "make dkms-install: the module source in /usr/src, DKMS knows it, group xfer created" \
	sh -c "test -f /usr/src/xfer-$mk_ver/kmod/xfer_main.c && dkms status -m xfer -v $mk_ver | grep -q . &&
	       getent group xfer"
inroot_step "make dkms-install: /etc/udev/rules.d/60-xfer.rules" \
	cmp /tmp/src/kmod/60-xfer.rules /etc/udev/rules.d/60-xfer.rules
inroot_step "make dkms-install: /etc/modules-load.d/xfer.conf" \
	cmp /tmp/src/kmod/xfer-modules-load.conf /etc/modules-load.d/xfer.conf
inroot_step "make dkms-uninstall: removes the source, DKMS's entry, the udev rule and the modules-load file" \
	sh -c "make -s -C /tmp/src dkms-uninstall && ! test -e /usr/src/xfer-$mk_ver &&
	       ! dkms status -m xfer | grep -q . && ! test -e /etc/udev/rules.d/60-xfer.rules &&
	       ! test -e /etc/modules-load.d/xfer.conf"
lap make
finish
