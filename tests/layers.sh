#!/usr/bin/env bash
# The layers' include paths are set per folder in the Makefile; this checks
# the one way around them, a quoted include that climbs out of its folder
# ("../"), and that the public headers include nothing but public headers.
# Prints TAP.
set -uo pipefail
cd "$(dirname "$0")/.."
n=0 fail=0
tap() { # ok|not-ok name
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}

climbs=$(grep -rnE '#[[:space:]]*include[[:space:]]*"[^"]*\.\./' include lib tools tests kernels \
	--include='*.c' --include='*.h' --include='*.cu' || true)
[ -z "$climbs" ] && tap ok "no include climbs out of its folder" ||
	{ echo "$climbs" | sed 's/^/# /'; tap not-ok "no include climbs out of its folder"; }

private=$(grep -nE '#[[:space:]]*include[[:space:]]*"' include/*.h | grep -vE '"xfer[a-z_]*\.h"' || true)
[ -z "$private" ] && tap ok "public headers include only public headers" ||
	{ echo "$private" | sed 's/^/# /'; tap not-ok "public headers include only public headers"; }

# Each layer's include paths, as the Makefile gives them, must not reach
# the headers of the layers above it: a leak is then a compile error.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
reaches() { # layer header
	printf '#include "%s"\n' "$2" > "$probe/leak.c"
	cc -std=gnu11 -fsyntax-only $(make -s --no-print-directory print-INC_$1) "$probe/leak.c" \
		>/dev/null 2>&1
}
for rule in "weightsync internal.h" "weightsync backend.h" "backend internal.h" \
	    "kmod internal.h" "util xfer.h" "tools internal.h" "tools backend.h" \
	    "tools ws_internal.h" "user internal.h" "user backend.h" \
	    "moe internal.h" "moe ws_internal.h" "rdzv internal.h" "rdzv backend.h" \
	    "user store.h" "tools store.h" "moe store.h"; do
	set -- $rule
	if reaches "$1" "$2"; then
		tap not-ok "layer $1 cannot include $2"
	else
		tap ok "layer $1 cannot include $2"
	fi
done
echo "1..$n"
exit $fail
