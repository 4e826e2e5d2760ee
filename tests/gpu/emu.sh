#!/usr/bin/env bash
# The MoE kernels' logic on the CPU, with no GPU and no nvcc: kernels/moe.cu
# and tests/gpu/test_moe.cu are compiled as C++ against a stand-in for the
# CUDA runtime (tests/gpu/emu/cuda_runtime.h: every CUDA thread a fiber,
# barriers and warp votes and shuffles emulated) and the kernels compared
# with lib/moe's C references byte for byte, on DeepSeek-V3's and V2-Lite's
# geometry with fewer tokens. A pass here says the indexing, the prefix
# sums and the barriers are right; tests/gpu/run.sh on a GPU says the rest.
# TAP lines from test_moe; an argument picks shapes by name, as test_moe's.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${XFER_BUILD:-${BUILD:-build}}
CXX=${CXX:-g++}
CC=${CC:-cc}
flags="-U_FORTIFY_SOURCE ${EMU_CFLAGS:-}" # e.g. -fsanitize=undefined (ASan and fibers do not mix)
out=$BUILD/tests/gpu-emu
mkdir -p "$out"
inc="-Itests/gpu/emu -Ikernels -Iinclude -Ilib/util -Ilib/moe"
objs=()
# k<<<grid, block, smem, stream>>>(args) -> emu::launch(grid, block, smem, stream, k)(args)
perl -pe 's/(\w+(?:<\w+>)?)<<<([^>]*)>>>\(/emu::launch($2, $1)(/g' kernels/moe.cu > "$out/moe.cpp"
if grep -q '<<<' "$out/moe.cpp"; then
	echo "not ok 1 - emu: a kernel launch in kernels/moe.cu was not rewritten"
	exit 1
fi
$CXX -std=c++17 -O2 -Wall -Wextra -Werror -Wno-unused-function $flags $inc -c "$out/moe.cpp" -o "$out/moe.o" ||
	{ echo "not ok 1 - emu: build kernels/moe.cu"; exit 1; }
objs+=("$out/moe.o")
for c in lib/moe/ref.c lib/moe/layout.c lib/moe/error.c; do
	o=$out/ref_$(basename "$c" .c).o
	$CC -std=gnu11 -O2 -Wall -Wextra -Werror $flags $inc -c "$c" -o "$o" || { echo "not ok 1 - emu: build $c"; exit 1; }
	objs+=("$o")
done
$CXX -std=c++17 -O2 -Wall -Wextra -Werror -Wno-unused-function $flags $inc -x c++ tests/gpu/test_moe.cu -x none \
	"${objs[@]}" -lm -o "$out/test_moe" || { echo "not ok 1 - emu: build tests/gpu/test_moe.cu"; exit 1; }
exec "$out/test_moe" "$@"
