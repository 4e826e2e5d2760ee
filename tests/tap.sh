# TAP lines for the shell suites (sourced): `tap ok NAME` or
# `tap not-ok NAME [DETAIL]`, numbered; $fail is 1 once one failed.
n=0 fail=0
tap() { # ok|not-ok name [detail]
	n=$((n + 1))
	if [ "$1" = ok ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		[ -n "${3:-}" ] && printf '%s\n' "$3" | head -8 | sed 's/^/# /'
		fail=1
	fi
}
