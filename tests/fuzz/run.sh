#!/usr/bin/env bash
# The fuzzers' short run in make test: a fixed seed, a few seconds per
# provider, in the build the runner names ($XFER_BUILD) and, when it was
# built, its sanitizer twin. TAP lines, counted by tests/run.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
b=${XFER_BUILD:-build}
rc=0
ran=0
for d in "$b" "$b-san"; do
	f=$d/tests/fuzz/fuzz_wire
	[ -x "$f" ] || continue
	ran=1
	echo "# $f"
	"$f" -s 1 -t "${XFER_FUZZ_SECONDS:-4}" | sed "s|^\(\(not \)\?ok [0-9]*\) |\1 [$d] |" || rc=1
done
[ $ran = 1 ] || { echo "SKIP: no $b/tests/fuzz/fuzz_wire (make tests first)"; exit 77; }
exit $rc
