#!/usr/bin/env bash
# The Python binding's suite (python/xfer, tests/python/test_*.py) under
# pytest, for tests/run.sh: one TAP line per test ("ok N - file::test",
# "not ok ...", "... # SKIP why"), then on a failure the end of pytest's
# report as TAP comments. Exits 77 (SKIP, with the reason) without
# /usr/bin/python3, pytest or numpy (scripts/deps.sh test installs
# python3-pytest, python3-numpy and python3-torch); the torch tests skip
# alone without torch. The library is $XFER_BUILD/lib's (default build/;
# a build-san one runs under ASan+UBSan).
set -uo pipefail
cd "$(dirname "$0")/../.."
py=${XFER_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || { echo "SKIP: no $py"; exit 77; }
for m in pytest numpy; do
	"$py" -c "import $m" 2>/dev/null ||
		{ echo "SKIP: $py has no $m (scripts/deps.sh test installs python3-$m)"; exit 77; }
done
lib=${XFER_BUILD:-build}/lib/libxfer.so.0
[ -e "$lib" ] || { echo "not ok 1 - $lib is not built (make)"; exit 1; }
# A sanitizer build (make test-python SANITIZE=1: build-san) is loaded into
# a Python that is not: the sanitizers' runtimes go first (and leaks are
# the interpreter's, not counted).
case "${XFER_BUILD:-build}" in
*-san)
	export LD_PRELOAD="$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} ;;
esac
tap=$(mktemp) log=$(mktemp)
trap 'rm -f "$tap" "$log"' EXIT
# No bytecode or cache in the tree (make deb hashes the files git would see).
PYTHONDONTWRITEBYTECODE=1 XFER_TAP=$tap XFER_BUILD=${XFER_BUILD:-build} \
	"$py" -m pytest -p no:cacheprovider -q tests/python > "$log" 2>&1
rc=$?
cat "$tap"
if [ "$rc" != 0 ]; then
	tail -n 60 "$log" | sed 's/^/# /'
	grep -q '^not ok' "$tap" || echo "not ok $(( $(grep -c '^ok' "$tap") + 1 )) - pytest exited $rc"
fi
tail -n 1 "$log" | sed 's/^/# /'
exit "$rc"
