#!/usr/bin/env bash
# libxfer's ABI is exactly the functions declared in include/*.h: each is
# named in lib/xfer.map (one by one, no wildcard), marked XFER_EXPORT, and
# exported by $XFER_BUILD/lib/libxfer.so (default build/) under the map's
# version; nothing else is exported (test helpers, data). Prints TAP.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${XFER_BUILD:-build}
so=$build/lib/libxfer.so
map=lib/xfer.map
n=0 fail=0
tap() { # ok|not-ok name
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}
# same NAME A B: the two sorted lists must match; differences as TAP comments
same() {
	local d
	d=$(diff <(echo "$2") <(echo "$3"))
	if [ -z "$d" ] && [ -n "$2" ]; then
		tap ok "$1"
	else
		echo "$d" | sed 's/^/# /'
		tap not-ok "$1"
	fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The functions the public headers declare, as the compiler sees them
# (-aux-info lists every prototype with the header it came from; static
# inline helpers are not part of the ABI).
for h in include/*.h; do printf '#include "%s"\n' "${h#include/}"; done > "$tmp/all.c"
if ! cc -std=gnu11 -Iinclude $(pkg-config --cflags libfabric 2>/dev/null) -fsyntax-only \
	-aux-info "$tmp/aux" "$tmp/all.c" 2>"$tmp/err"; then
	sed 's/^/# /' "$tmp/err"
	tap not-ok "public headers compile"
	echo "1..$n"
	exit 1
fi
declared=$(grep -E '^/\* include/[^:]*\.h:[0-9]+:[A-Z]+ \*/ extern ' "$tmp/aux" |
	grep -oE '\bxfer_[A-Za-z0-9_]+ \(' | tr -d ' (' | sort -u)
[ -n "$declared" ] && tap ok "public headers declare functions" ||
	tap not-ok "public headers declare functions"

# The map: nodes that name their functions one by one.
globals=$(sed 's:/\*.*\*/::' "$map" | awk '/global:/ { g = 1; next } /local:|^}/ { g = 0 }
	g { gsub(/[ \t;]/, ""); if ($0 != "") print }' | sort)
if echo "$globals" | grep -q '[*?]'; then
	tap not-ok "map names its symbols without wildcards"
else
	tap ok "map names its symbols without wildcards"
fi
same "map lists exactly the declared functions" "$declared" "$globals"
[ "$(echo "$globals" | uniq -d)" = "" ] && tap ok "map names each symbol once" ||
	tap not-ok "map names each symbol once"

# The sources: XFER_EXPORT marks the same set (hidden otherwise).
marked=$(grep -rh --include='*.c' 'XFER_EXPORT' lib | grep -oE '\bxfer_[A-Za-z0-9_]+[[:space:]]*\(' |
	tr -d ' \t(' | sort -u)
same "XFER_EXPORT marks exactly the declared functions" "$declared" "$marked"

# The built library.
if [ ! -e "$so" ]; then
	tap not-ok "$so exists (build it first)"
	echo "1..$n"
	exit 1
fi
tap ok "$so exists"
nm -D --defined-only "$so" > "$tmp/nm"
exported=$(awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' "$tmp/nm" | sort -u)
same "libxfer.so exports exactly the declared functions" "$declared" "$exported"
# Each export carries the version of the map's node that names it (a
# function added later goes to a new node, so old binaries keep theirs).
sed 's:/\*.*\*/::' "$map" | awk '/^[A-Z][A-Z0-9_.]* *\{/ { node = $1; next }
	/global:/ { g = 1; next } /local:|^}/ { g = 0 }
	g { gsub(/[ \t;]/, ""); if ($0 != "") print $0 "@@" node }' | sort > "$tmp/want"
awk '$2 == "T" { print $3 }' "$tmp/nm" | sort > "$tmp/have"
d=$(diff "$tmp/want" "$tmp/have")
[ -z "$d" ] && [ -s "$tmp/want" ] && tap ok "every export carries the version of its map node" ||
	{ echo "$d" | sed 's/^/# /'; tap not-ok "every export carries the version of its map node"; }
others=$(awk '$2 != "T" && !($2 == "A" && $3 ~ /^XFER_/) { print $2, $3 }' "$tmp/nm")
[ -z "$others" ] && tap ok "nothing but functions and version nodes exported" ||
	{ echo "$others" | sed 's/^/# /'; tap not-ok "nothing but functions and version nodes exported"; }
echo "1..$n"
exit $fail
