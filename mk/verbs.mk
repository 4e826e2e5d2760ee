# The verbs backend's guest suite and benchmark (tests/verbs/run.sh): rdma_rxe
# inside a qemu guest booted from a Debian kernel. `make tests` also builds the
# verbs test programs, `make test` runs the suite, `make test-verbs` alone.
VERBS_PROGS := $(patsubst tests/verbs/%.c,$(BUILD)/tests/verbs/%,$(wildcard tests/verbs/*.c))
TEST_SUITES += tests/verbs/run.sh

.PHONY: test-verbs bench-verbs
tests: $(VERBS_PROGS)

test-verbs: tests
	XFER_BUILD=$(BUILD) tests/verbs/run.sh

bench-verbs: tests
	XFER_BUILD=$(BUILD) tests/verbs/run.sh --bench
