#!/usr/bin/env bash
# make test's check of the CUDA sources: everything tests/gpu/run.sh builds
# (kernels/*.cu for sm_90, the C references, tests/gpu/test_*.cu) is built
# with nvcc and nothing runs, so a compile error in a kernel fails the suite
# on a machine without a GPU. About 15 s of CPU; SKIP without nvcc.
exec env XFER_GPU_BUILD_ONLY=1 BUILD="${XFER_BUILD:-${BUILD:-build}}" "$(dirname "$0")/run.sh"
