#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The man pages (man/): each renders with groff -ww (and man --warnings
# where man-db is installed) without a word of warning; its .TH names the
# file; the xfer pages its SEE ALSO names exist; every function the public
# headers declare is named in some page's NAME or SYNOPSIS, with the
# header's types (tests/man/protos.py); every --option
# a tool's --help prints is in that tool's page (xferctl's: section 8,
# with its objects and environment variables). Uses $XFER_BUILD (default
# build) for the tools. Prints TAP.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
build=${XFER_BUILD:-build}
. tests/tap.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! command -v groff >/dev/null; then
	echo "1..0 # SKIP groff is not installed (scripts/deps.sh test: groff-base)"
	exit 77   # tests/run.sh counts it as skipped
fi
pages=$(ls man/*.[1378] 2>/dev/null)
[ -n "$pages" ] && tap ok "man/ holds pages" || { tap not-ok "man/ holds pages"; echo "1..$n"; exit 1; }

# The source as text: roff escapes for dashes and fonts removed, so that
# "\-\-provider" and "\fBxfer_write\fP" are found as written in C or a shell.
plain() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e 's/\\f\[[A-Z]*\]//g' \
	      -e 's/\\&//g' -e 's/\\(em/--/g' "$@"; }

for p in $pages; do
	# -ww: every warning; -z: format, print nothing but the warnings.
	w=$(groff -ww -man -Tutf8 -z "$p" 2>&1)
	[ -z "$w" ] && tap ok "$p: groff -ww -man renders without warnings" ||
		tap not-ok "$p: groff -ww -man renders without warnings" "$w"
	base=$(basename "$p") sec=${p##*.}
	name=${base%.*}
	th=$(awk '$1 == ".TH" { print $2, $3; exit }' "$p" | tr -d '"')
	[ "$th" = "${name^^} $sec" ] || [ "$th" = "$name $sec" ] &&
		tap ok "$p: .TH names $name($sec)" ||
		tap not-ok "$p: .TH names $name($sec)" "found: .TH $th"
	missing=""
	for ref in $(plain "$p" | awk '/^\.SH "?SEE ALSO/ { s = 1; next } /^\.SH/ { s = 0 } s' |
		grep -oE '\bxfer[a-z0-9_-]*\([1-9]\)' | sort -u); do
		f=man/${ref%(*}.${ref: -2:1}
		[ -f "$f" ] || missing+=" $ref"
	done
	[ -z "$missing" ] && tap ok "$p: every xfer page in SEE ALSO exists" ||
		tap not-ok "$p: every xfer page in SEE ALSO exists" "missing:$missing"
done

# man-db's own check (it runs groff with its preprocessors and the width a
# terminal would have): man --warnings -l prints the warnings on stderr.
if man --help 2>/dev/null | grep -q -- '--warnings'; then
	bad=""
	for p in $pages; do
		w=$(MANWIDTH=80 MAN_KEEP_FORMATTING=0 man --warnings=w -l "$p" 2>&1 >/dev/null)
		[ -z "$w" ] || bad+="$p: $w"$'\n'
	done
	[ -z "$bad" ] && tap ok "man --warnings -l: no warnings on any page" ||
		tap not-ok "man --warnings -l: no warnings on any page" "$bad"
else
	tap ok "man --warnings -l # SKIP man-db is not installed"
fi

# The functions the public headers declare, as tests/abi.sh lists them.
for h in include/*.h; do printf '#include "%s"\n' "${h#include/}"; done > "$tmp/all.c"
if cc -std=gnu11 -Iinclude $(pkg-config --cflags libfabric 2>/dev/null) -fsyntax-only \
	-aux-info "$tmp/aux" "$tmp/all.c" 2>"$tmp/err"; then
	declared=$(grep -E '^/\* include/[^:]*\.h:[0-9]+:[A-Z]+ \*/ extern ' "$tmp/aux" |
		grep -oE '\bxfer_[A-Za-z0-9_]+ \(' | tr -d ' (' | sort -u)
	# The words of every page's NAME and SYNOPSIS sections.
	plain $pages | awk '/^\.SH/ { s = ($0 ~ /NAME|SYNOPSIS/); next } s' |
		grep -oE '\bxfer_[A-Za-z0-9_]+' | sort -u > "$tmp/named"
	missing=$(comm -23 <(echo "$declared") "$tmp/named" | xargs)
	[ -n "$declared" ] && [ -z "$missing" ] &&
		tap ok "every function of include/*.h ($(echo "$declared" | wc -l)) is named in a page's NAME or SYNOPSIS" ||
		tap not-ok "every function of include/*.h is named in a page's NAME or SYNOPSIS" "missing: $missing"
	# ... and with the header's types: a page must not drift from the API.
	if d=$(python3 tests/man/protos.py "$tmp/aux" man/*.3 2>&1); then
		tap ok "every SYNOPSIS prototype has the header's return and parameter types"
	else
		tap not-ok "every SYNOPSIS prototype has the header's return and parameter types" "$d"
	fi
else
	tap not-ok "public headers compile" "$(cat "$tmp/err")"
fi

# Every --long option each tool's --help prints (and its subcommands'),
# in the tool's page.
for tool in xfer-bench xfer-weightsync xfer-moe xferctl; do
	bin=$build/bin/$tool page=man/$tool.1
	[ "$tool" = xferctl ] && page=man/$tool.8
	if [ ! -x "$bin" ]; then
		tap ok "$tool: options in $page # SKIP $bin not built (make all)"
		continue
	fi
	"$bin" --help > "$tmp/help" 2>&1
	[ "$tool" = xfer-moe ] && "$bin" sim --help >> "$tmp/help" 2>&1
	opts=$(grep -oE -- '--[a-z][a-z0-9-]*' "$tmp/help" | sort -u)
	plain "$page" > "$tmp/page" 2>/dev/null
	missing=""
	for o in $opts; do
		grep -qE -- "(^|[^a-z0-9-])$o([^a-z0-9-]|\$)" "$tmp/page" || missing+=" $o"
	done
	[ -n "$opts" ] && [ -z "$missing" ] &&
		tap ok "$tool: every option of --help ($(echo "$opts" | wc -l)) is in $page" ||
		tap not-ok "$tool: every option of --help is in $page" "missing:$missing"
done

# xferctl(8): every object its --help lists, and every environment
# variable it reads, is in the page.
bin=$build/bin/xferctl
if [ -x "$bin" ]; then
	"$bin" --help > "$tmp/help" 2>&1
	plain man/xferctl.8 > "$tmp/page"
	objs=$(awk '/^OBJECTS/ { s = 1; next } /^[A-Z]/ { s = 0 } s && $1 ~ /^[a-z]+$/ { print $1 }' "$tmp/help")   # not a description's second line
	envs=$(grep -ohE '"(XFERCTL_[A-Z_]+|XFER_KMOD_DEV)"' tools/xferctl/*.c | tr -d '"' | sort -u)
	missing=""
	for o in $objs; do grep -qE "^\.(TP|B|BR) .*\b$o\b|^\.B $o\$" "$tmp/page" || missing+=" $o"; done
	for e in $envs; do grep -qx "\.B $e" "$tmp/page" || missing+=" $e"; done
	[ -n "$objs" ] && [ -n "$envs" ] && [ -z "$missing" ] &&
		tap ok "xferctl: every object of --help ($(echo $objs | wc -w)) and environment variable ($(echo $envs | wc -w)) is in man/xferctl.8" ||
		tap not-ok "xferctl: every object and environment variable is in man/xferctl.8" "missing:$missing"
else
	tap ok "xferctl: objects in man/xferctl.8 # SKIP $bin not built (make all)"
fi
echo "1..$n"
exit $fail
