#!/usr/bin/env bash
# GPU checks: build the CUDA kernels and tests/gpu/test_*.cu, run each on the
# GPU; every kernel is compared bit for bit with its C reference. TAP lines
# from the programs; exits 77 (skip) without nvcc or without a usable GPU,
# 1 on any failure. Not part of `make test` (CI has no GPU): `make test-gpu`.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
ARCH=${CUDA_ARCH:-sm_90}

if [ ! -x "$NVCC" ]; then
	echo "SKIP: nvcc not found"
	exit 77
fi
make -s kernels "$BUILD/libxfer.a" BUILD="$BUILD" NVCC="$NVCC" CUDA_ARCH="$ARCH" || { echo "not ok 1 - build kernels"; exit 1; }
out=$BUILD/tests/gpu
mkdir -p "$out"
fail=0 ran=0 skipped=0
for src in tests/gpu/test_*.cu; do
	name=$(basename "$src" .cu)
	if ! "$NVCC" -arch="$ARCH" -O2 -std=c++17 -Ikernels -Ilib/include -o "$out/$name" "$src" \
		"$BUILD/kernels/libxfer_kernels.a" "$BUILD/libxfer.a" -lm; then
		echo "not ok - build $name"
		fail=1
		continue
	fi
	timeout -k 5 300 "$out/$name"
	rc=$?
	case $rc in
	0) ran=$((ran + 1)) ;;
	77) skipped=$((skipped + 1)) ;;
	*) echo "FAIL $name (exit $rc)"; fail=1 ;;
	esac
done
[ "$fail" -ne 0 ] && exit 1
[ "$ran" -eq 0 ] && [ "$skipped" -gt 0 ] && exit 77
exit 0
