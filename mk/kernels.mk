# CUDA kernels (optional; never part of `make`; `make test` only compiles them, see below).
#   make kernels       builds kernels/*.cu into $(BUILD)/kernels/libxfer_kernels.a when nvcc exists
#   make test-gpu      builds and runs tests/gpu (kernel vs its C reference); skips without a GPU
#   make test-gpu-emu  runs the MoE kernels against their references on the CPU (no GPU, no nvcc):
#                      tests/gpu/emu.sh, about 10 s of CPU (20 s with the build)
# Each kernel has a C reference of the same buffer layout in lib/ (they share lib/util/fp8_e4m3.h and
# lib/util/bf16.h) that the CPU tests cover; tests/gpu compares the two bit for bit.

NVCC        ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CUDA_ARCH   ?= sm_90
NVCCFLAGS   ?= -O2
KERNEL_SRCS := $(sort $(wildcard kernels/*.cu))
KERNEL_OBJS := $(KERNEL_SRCS:%.cu=$(BUILD)/%.o)
KERNEL_LIB  := $(BUILD)/kernels/libxfer_kernels.a

.PHONY: kernels test-gpu

ifneq ($(NVCC),)
kernels: $(KERNEL_LIB)

KERNEL_DEPS := $(wildcard kernels/*.h) lib/util/fp8_e4m3.h lib/util/bf16.h include/xfer.h \
               include/xfer_weightsync.h include/xfer_moe.h

$(BUILD)/kernels/%.o: kernels/%.cu $(KERNEL_DEPS)
	@mkdir -p $(dir $@)
	$(NVCC) -arch=$(CUDA_ARCH) $(NVCCFLAGS) -std=c++17 -Ikernels -Iinclude -Ilib/util -Xcompiler -fPIC -c $< -o $@

$(KERNEL_LIB): $(KERNEL_OBJS)
	rm -f $@; ar rcs $@ $^
else
kernels:
	@echo "kernels: nvcc not found; the C references in lib/ are built and tested instead"
endif

# make test compiles everything test-gpu would run (about 15 s of CPU; a skip without nvcc),
# so that a kernel that no longer compiles fails CI, which has no GPU.
TEST_SUITES += tests/gpu/build.sh
# ... and runs the MoE kernels' logic on the CPU against their C references
# (kernels compiled as C++ over an emulated CUDA runtime; about 45 s of CPU).
TEST_SUITES += tests/gpu/emu.sh

.PHONY: test-gpu-emu
test-gpu-emu:
	@BUILD="$(BUILD)" tests/gpu/emu.sh

# exit 77 (no nvcc or no GPU) is a skip, not a failure
test-gpu:
	@NVCC="$(NVCC)" CUDA_ARCH="$(CUDA_ARCH)" BUILD="$(BUILD)" tests/gpu/run.sh; rc=$$?; \
	if [ $$rc = 77 ]; then echo "test-gpu: skipped"; else exit $$rc; fi
