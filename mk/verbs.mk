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

# The backend test drives a rail through the ops table: internals, as a unit test.
$(BUILD)/tests/verbs/test_verbs_backend: tests/verbs/test_verbs_backend.c $(HARNESS) $(LIBA) | $(KSELFTEST)/kselftest_harness.h
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(TEST_CFLAGS) $(INC_unit) $(CFLAGS) -MMD -MP $(LDFLAGS) -o $@ $< $(HARNESS) $(LIBA) $(LDLIBS)

# The share test speaks the module's uapi too (its owner process imports and
# shares a dma-buf through /dev/xfer itself).
$(BUILD)/tests/verbs/test_verbs_share: tests/verbs/test_verbs_share.c $(HARNESS) $(LIBSO) | $(KSELFTEST)/kselftest_harness.h
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(TEST_CFLAGS) $(INC_user) $(UAPI) $(CFLAGS) -MMD -MP $(LDFLAGS) $(RPATH_TEST) -o $@ $< $(HARNESS) \
	      $(LINK_SO) $(PKG_LIBS) -lpthread -lm
