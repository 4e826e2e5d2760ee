#!/usr/bin/env bash
# The test runner. Runs every test program (and every suite script given on
# the command line) under a timeout and ends with "N passed, N failed, N skipped".
#
# A test program passes with exit 0, skips with exit 77 (printing the reason),
# fails otherwise. A program or suite that prints TAP lines ("ok N - name",
# "not ok N - name", "ok N - name # SKIP why") is counted line by line instead;
# a non-zero exit without any "not ok" line still counts as one failure.
set -uo pipefail
cd "$(dirname "$0")/.."

builds=()
suites=()
while [ $# -gt 0 ]; do
	case "$1" in
	--build|--build-san) builds+=("$2"); shift 2 ;;
	*) suites+=("$1"); shift ;;
	esac
done
[ ${#builds[@]} -gt 0 ] || builds=(build)
timeout_s=${XFER_TEST_TIMEOUT:-180}
suite_timeout_s=${XFER_SUITE_TIMEOUT:-1200}   # guest suites boot qemu several times
out=tests/out
mkdir -p "$out"
pass=0 fail=0 skip=0
: > "$out/times"   # seconds per program: the suite's budget is 25 minutes in CI
failed_names=()

count_one() { # name logfile rc
	local name=$1 log=$2 rc=$3 ok notok sk
	ok=$(grep -cE '^ok [0-9]+' "$log")
	notok=$(grep -cE '^not ok [0-9]+' "$log")
	sk=$(grep -cE '^ok [0-9]+.*# *SKIP' "$log")
	if [ $((ok + notok)) -gt 0 ]; then
		pass=$((pass + ok - sk)); skip=$((skip + sk)); fail=$((fail + notok))
		grep -E '^not ok [0-9]+' "$log" | sed "s|^|  $name: |"
		grep -E '^ok [0-9]+.*# *SKIP' "$log" | sed "s|^|  $name: |"
		if [ "$notok" -gt 0 ]; then failed_names+=("$name")
		elif [ "$rc" != 0 ]; then fail=$((fail + 1)); failed_names+=("$name")
			echo "FAIL $name (exit $rc)"; tail -n 20 "$log" | sed 's/^/    /'; fi
		return
	fi
	case "$rc" in
	0) pass=$((pass + 1)); echo "PASS $name" ;;
	77) skip=$((skip + 1)); echo "SKIP $name: $(grep -m1 -i 'skip' "$log" | cut -c1-160)" ;;
	*) fail=$((fail + 1)); failed_names+=("$name"); echo "FAIL $name (exit $rc)"
	   tail -n 30 "$log" | sed 's/^/    /' ;;
	esac
}

run_one() { # name timeout cmd...
	local name=$1 limit=$2; shift 2
	local log="$out/${name//\//_}.log" rc t0=$SECONDS
	# Own session per test, so that processes it forked die with it.
	setsid timeout -k 5 "$limit" "$@" > "$log" 2>&1 < /dev/null &
	local pid=$!
	wait "$pid"; rc=$?
	kill -9 -- -"$pid" 2>/dev/null
	[ "$rc" = 124 ] && echo "timeout after ${limit}s" >> "$log"
	echo "$((SECONDS - t0)) $name" >> "$out/times"
	count_one "$name" "$log" "$rc"
}

for b in "${builds[@]}"; do
	tag=""
	[ "$b" != build ] && tag=" [$b]"
	export XFER_BUILD=$b
	for t in "$b"/tests/unit/test_* "$b"/tests/integration/test_*; do
		[ -x "$t" ] || continue
		run_one "${t#"$b"/tests/}$tag" "$timeout_s" "$t"
	done
done
export XFER_BUILD=${builds[0]}
for s in "${suites[@]}"; do
	run_one "$s" "$suite_timeout_s" "$s"
done

echo
echo "slowest (s): $(sort -rn "$out/times" | head -n 8 | tr '\n' ' ')"
[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
