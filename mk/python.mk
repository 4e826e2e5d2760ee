# The Python binding (python/xfer: ctypes over libxfer.so, no compiler).
# make test runs its pytest suite through tests/python/run.sh (TAP, one line
# per test; SKIP without python3-pytest / python3-numpy); `make test-python`
# alone; `make bench-python` its per-operation cost next to xfer-bench's.
TEST_SUITES += tests/python/run.sh

.PHONY: test-python bench-python
test-python: lib
	XFER_BUILD=$(BUILD) tests/python/run.sh

bench-python: all
	$(BUILD)/bin/xfer-bench -p local -t single,paged,imm --target busy -s 4K --page-size 4K --pages 64
	PYTHONPATH=python XFER_BUILD=$(BUILD) /usr/bin/python3 -m xfer.bench
