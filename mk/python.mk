# The Python binding (python/xfer: ctypes over libxfer.so, no compiler).
# make test runs its pytest suite through tests/python/run.sh (TAP, one line
# per test; SKIP without python3-pytest / python3-numpy); `make test-python`
# alone (`make test-python SANITIZE=1`: against build-san under ASan+UBSan); `make bench-python` its per-operation cost next to xfer-bench's.
# `make install-python` copies the package to PYTHONDIR (Debian's python3
# reads /usr/lib/python3/dist-packages and /usr/local/lib/python3.X/
# dist-packages) with the LIBDIR it was installed for, where it then looks
# for libxfer.so.0 first. Not part of `make install`: the Debian packages
# do not ship the binding (yet), and would refuse files no package holds.
TEST_SUITES += tests/python/run.sh

PYTHONDIR ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/python3/dist-packages,$(PREFIX)/lib/python3/dist-packages)

.PHONY: test-python bench-python install-python
install-python:
	install -d $(DESTDIR)$(PYTHONDIR)/xfer/connectors
	install -m 0644 python/xfer/*.py $(DESTDIR)$(PYTHONDIR)/xfer/
	install -m 0644 python/xfer/connectors/*.py $(DESTDIR)$(PYTHONDIR)/xfer/connectors/
	echo 'LIBDIR = "$(LIBDIR)"   # written by make install-python' > $(DESTDIR)$(PYTHONDIR)/xfer/_paths.py

test-python: lib
	XFER_BUILD=$(BUILD) tests/python/run.sh

bench-python: all
	$(BUILD)/bin/xfer-bench -p local -t single,paged,imm --target busy -s 4K --page-size 4K --pages 64
	PYTHONPATH=python XFER_BUILD=$(BUILD) /usr/bin/python3 -m xfer.bench
