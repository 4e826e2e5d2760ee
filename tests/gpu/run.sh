#!/usr/bin/env bash
# GPU checks: build the CUDA kernels and tests/gpu/test_*.cu, run each on the
# GPU; every kernel is compared bit for bit with its C reference. TAP lines
# from the programs; exits 77 (skip) without nvcc or without a usable GPU,
# 1 on any failure. Not part of `make test` (CI has no GPU): `make test-gpu`.
# XFER_GPU_BUILD_ONLY=1 builds everything and runs nothing (tests/gpu/build.sh,
# make test's check that the CUDA sources compile).
#
# Built with nvcc and the host compiler alone, from the kernel sources and
# the C references they are checked against (lib/weightsync/quant.c, and
# lib/moe's ref.c with the layout and error files it needs, none of which
# call the engine), so it runs on a GPU machine that has CUDA but not
# libfabric or hwloc. About a minute on an H200, most of it the C references.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
ARCH=${CUDA_ARCH:-sm_90}
CC=${CC:-cc}

if [ ! -x "$NVCC" ]; then
	echo "SKIP: nvcc not found"
	exit 77
fi
out=$BUILD/tests/gpu
mkdir -p "$out"
inc="-Ikernels -Iinclude -Ilib/util -Ilib/weightsync -Ilib/moe"
objs=()
for k in kernels/*.cu; do
	o=$out/$(basename "$k" .cu).o
	"$NVCC" -arch="$ARCH" -O2 -std=c++17 $inc -c "$k" -o "$o" || { echo "not ok - build $k"; exit 1; }
	objs+=("$o")
done
for c in lib/weightsync/quant.c lib/moe/ref.c lib/moe/layout.c lib/moe/error.c; do
	o=$out/ref_$(basename "$c" .c).o
	$CC -std=gnu11 -O2 -Wall -Wextra -Werror $inc -c "$c" -o "$o" || { echo "not ok - build $c"; exit 1; }
	objs+=("$o")
done
fail=0 ran=0 skipped=0
for src in tests/gpu/test_*.cu; do
	name=$(basename "$src" .cu)
	if ! "$NVCC" -arch="$ARCH" -O2 -std=c++17 $inc -o "$out/$name" "$src" "${objs[@]}" -lm; then
		echo "not ok - build $name"
		fail=1
		continue
	fi
	if [ -n "${XFER_GPU_BUILD_ONLY:-}" ]; then
		echo "built $name"
		ran=$((ran + 1))
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
