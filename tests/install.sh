#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make install` as a user of the library sees it: installs into a temporary
# PREFIX, checks the files (man pages too) and xfer.pc, builds a small
# program outside the repository with pkg-config alone, runs it and an
# installed tool, and checks that a build that was complete stays complete. Prints TAP.
#
# XFER_BUILD names the build directory (default build); run `make all` first.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
build=${XFER_BUILD:-build}
n=0 fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; fail=1; }
check() { # name command...
	local name=$1; shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}
finish() { echo "1..$n"; exit $fail; }

tmp=$(mktemp -d /tmp/xfer-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# A complete build must leave install nothing to build (as root after a
# build as a user, it would otherwise write into the build tree).
check "make all left nothing to rebuild" make -q all BUILD="$build"

if make -s install PREFIX="$tmp" BUILD="$build" > "$tmp/install.log" 2>&1; then
	ok "make install PREFIX=<temporary directory>"
else
	sed 's/^/# /' "$tmp/install.log"
	not_ok "make install PREFIX=<temporary directory>"
	finish
fi

ver=$(make -s --no-print-directory print-VERSION)
so=$(make -s --no-print-directory print-SOVERSION)
check "shared library, its soname link and the static library installed" \
	test -f "$tmp/lib/libxfer.so.$ver" -a -L "$tmp/lib/libxfer.so.$so" \
	     -a -L "$tmp/lib/libxfer.so" -a -f "$tmp/lib/libxfer.a"
missing=""
for h in include/*.h; do
	cmp -s "$h" "$tmp/include/$(basename "$h")" || missing+=" $h"
done
cmp -s kmod/include/uapi/linux/xfer.h "$tmp/include/linux/xfer.h" ||
	missing+=" linux/xfer.h"
[ -z "$missing" ] || echo "# missing or different:$missing"
check "every public header installed (include/*.h and linux/xfer.h)" test -z "$missing"
missing=""
for t in "$build"/bin/*; do
	[ -x "$tmp/bin/$(basename "$t")" ] || missing+=" $(basename "$t")"
done
[ -z "$missing" ] || echo "# missing tools:$missing"
check "every tool installed" test -z "$missing" -a -n "$(ls "$build"/bin 2>/dev/null)"
missing=""
for m in models/*.json; do
	cmp -s "$m" "$tmp/share/xfer/models/$(basename "$m")" || missing+=" $m"
done
[ -z "$missing" ] || echo "# missing models:$missing"
check "models installed under share/xfer/models" test -z "$missing"

missing=""
for m in man/*.[1378]; do
	cmp -s "$m" "$tmp/share/man/man${m##*.}/$(basename "$m")" || missing+=" $m"
done
[ -z "$missing" ] || echo "# missing man pages:$missing"
check "man pages installed under share/man/man{1,3,7,8}" test -z "$missing" -a -n "$(ls man 2>/dev/null)"
if command -v man >/dev/null; then
	check "man finds xfer(7) and xfer_write(3) in the installed tree" \
		sh -c "MANPATH='$tmp/share/man' man -w 7 xfer >/dev/null 2>&1 &&
		       MANPATH='$tmp/share/man' man -w xfer_write >/dev/null 2>&1"
	# every other name of a family leads to its page (a .so link page)
	out=$(MANPATH=$tmp/share/man MANWIDTH=80 man xfer_op_wait 2>/dev/null | head -1)
	check "man xfer_op_wait shows xfer_write(3)" sh -c "echo '$out' | grep -q '^XFER_WRITE(3)'"
fi

pc=$tmp/lib/pkgconfig/xfer.pc
check "xfer.pc names the install prefix" grep -qx "prefix=$tmp" "$pc"
grep -q '@[A-Z_]*@' "$pc" && echo "# unsubstituted: $(grep '@[A-Z_]*@' "$pc")"
check "xfer.pc has no @PLACEHOLDER@ left" sh -c "! grep -q '@[A-Z_]*@' '$pc'"
export PKG_CONFIG_PATH=$tmp/lib/pkgconfig
cflags=$(pkg-config --cflags xfer 2>&1 | xargs)   # the words, without trailing blanks
echo "# pkg-config --cflags xfer: $cflags"
check "pkg-config --cflags xfer is -I\$prefix/include alone" test "$cflags" = "-I$tmp/include"
libs=$(pkg-config --libs xfer 2>&1 | xargs)
check "pkg-config --libs xfer links libxfer from the prefix" test "$libs" = "-L$tmp/lib -lxfer"
check "pkg-config --static --libs xfer lists the private libraries" \
	sh -c "pkg-config --static --libs xfer | grep -q -- -lpthread"

# A user's program, away from the repository and its include paths.
mkdir -p "$tmp/user"
cp tests/user_program.c "$tmp/user/user.c"
# shellcheck disable=SC2046
if (cd "$tmp/user" && cc -std=c11 -Wall -Werror -o user user.c $(pkg-config --cflags --libs xfer)) \
	> "$tmp/cc.log" 2>&1; then
	ok "a program outside the tree builds with pkg-config's flags alone"
	out=$(cd "$tmp/user" && LD_LIBRARY_PATH=$tmp/lib ./user 2>&1)
	rc=$?
	echo "# user program: $out"
	check "it creates and destroys an engine on provider local" test $rc -eq 0
	check "it runs against the installed library" \
		sh -c "LD_LIBRARY_PATH='$tmp/lib' ldd '$tmp/user/user' | grep -q '$tmp/lib/libxfer.so'"
	check "xfer_strerror(-ERANGE) says what -ERANGE means" \
		test "$out" = "$(printf 'range outside the registered region')"
else
	sed 's/^/# /' "$tmp/cc.log"
	not_ok "a program outside the tree builds with pkg-config's flags alone"
fi
# Static linking: libxfer.a plus what Libs.private lists.
static_libs=$(pkg-config --static --libs xfer | sed 's/\(^\| \)-lxfer\( \|$\)/ /')
# shellcheck disable=SC2046,SC2086
if (cd "$tmp/user" && cc -std=c11 -o user-static user.c $(pkg-config --cflags xfer) \
	"$tmp/lib/libxfer.a" $static_libs) > "$tmp/cc-static.log" 2>&1 &&
   "$tmp/user/user-static" >/dev/null 2>&1 &&
   ! ldd "$tmp/user/user-static" | grep -q libxfer; then
	ok "the same program links libxfer.a with Libs.private and runs"
else
	sed 's/^/# /' "$tmp/cc-static.log"
	not_ok "the same program links libxfer.a with Libs.private and runs"
fi

# Installed tools find the library beside them ($ORIGIN/../lib), without
# LD_LIBRARY_PATH.
ws=$tmp/bin/xfer-weightsync
check "installed xfer-weightsync runs from \$prefix/bin (help)" \
	sh -c "'$ws' help >/dev/null 2>&1"
check "installed xfer-weightsync uses the installed library" \
	sh -c "ldd '$ws' | grep -q '$tmp/bin/../lib/libxfer.so\|$tmp/lib/libxfer.so'"
check "installed xfer-weightsync --help exits 0" sh -c "'$ws' --help >/dev/null 2>&1"

make -s all BUILD="$build" >/dev/null 2>&1
check "a second make all rebuilds nothing" make -q all BUILD="$build"
finish
