# Fuzzers (tests/fuzz/): built with the tests, like them against the shared
# library. make test runs the short run (seconds, fixed seed) through
# tests/fuzz/run.sh; `make fuzz` runs the long one, a million mutations
# per provider under ASan+UBSan, FUZZ_JOBS fuzzers at once (most of a
# mutation's time is waiting on timeouts and connections, not CPU); FUZZ_N,
# FUZZ_SEED, FUZZ_JOBS, FUZZ_ARGS change it.
FUZZ_SRCS   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS   := $(FUZZ_SRCS:tests/%.c=$(BUILD)/tests/%)
TESTS       += $(FUZZ_BINS)
tests: $(FUZZ_BINS)   # the Makefile's tests rule was read before this file
TEST_SUITES += tests/fuzz/run.sh

FUZZ_N      ?= 1000000
FUZZ_SEED   ?= 7
FUZZ_JOBS   ?= 8
FUZZ_ARGS   ?=

.PHONY: fuzz
fuzz:
	$(MAKE) tests SANITIZE=1 BUILD=$(BUILD)-san
	$(BUILD)-san/tests/fuzz/fuzz_wire -n $(FUZZ_N) -s $(FUZZ_SEED) -j $(FUZZ_JOBS) $(FUZZ_ARGS)
