# Kernel module (kmod/): build for every kernel with headers, DKMS, install.
# Included by the top-level Makefile; its qemu suite joins `make test`.
TEST_SUITES += tests/kmod/run.sh

KMOD_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
# Versions from /lib/modules (never uname -r): every kernel with headers.
KMOD_KVERS   ?= $(notdir $(patsubst %/build/,%,$(wildcard /lib/modules/*/build/)))
KMOD_SRC     := kmod/Kbuild $(wildcard kmod/*.c kmod/*.h) kmod/include
KMOD_OUT     := $(BUILD)/kmod
DKMS_SRC     := $(DESTDIR)/usr/src/xfer-$(KMOD_VERSION)
# Where the udev rule and the modules-load file go. An install by make is the
# administrator's, not a package's, so it goes to /etc, for dkms-install as for
# install-kmod: udev and systemd-modules-load read /etc before /usr/lib, so a
# local install overrides a package's file of the same name instead of being
# silently shadowed. The Debian package passes KMOD_CONFDIR=/usr/lib.
KMOD_CONFDIR ?= /etc

.PHONY: kmod test-kmod dkms-src dkms-install dkms-uninstall install-kmod kmod-conf

# One build tree per kernel: objects of two kernels must not mix.
kmod:
	@test -n "$(KMOD_KVERS)" || { echo "kmod: no kernel headers in /lib/modules/*/build"; exit 1; }
	@set -e; for k in $(KMOD_KVERS); do \
	  mkdir -p $(KMOD_OUT)/$$k/src; cp -r $(KMOD_SRC) $(KMOD_OUT)/$$k/src/; \
	  $(MAKE) -C /lib/modules/$$k/build M=$(CURDIR)/$(KMOD_OUT)/$$k/src W=1 modules; \
	  echo "kmod: $(KMOD_OUT)/$$k/src/xfer.ko"; \
	done

# TAP from every kernel, then the project's closing line.
test-kmod: deps-test
	@mkdir -p $(BUILD); rc=0; tests/kmod/run.sh > $(BUILD)/kmod-tap.log || rc=$$?; \
	cat $(BUILD)/kmod-tap.log; \
	awk '/^ok [0-9]+.*# *SKIP/ { s++; next } /^ok [0-9]+/ { p++ } /^not ok [0-9]+/ { f++ } \
	     END { printf "\n%d passed, %d failed, %d skipped\n", p, f + 0, s + 0 }' $(BUILD)/kmod-tap.log; \
	[ $$rc -eq 0 ] && ! grep -q '^not ok' $(BUILD)/kmod-tap.log

# The module's source as DKMS wants it (also what the xfer-dkms package ships).
dkms-src:
	install -d $(DKMS_SRC)/kmod/include/uapi/linux
	install -m 0644 dkms.conf $(DKMS_SRC)/
	install -m 0644 kmod/Kbuild kmod/Makefile kmod/*.c kmod/*.h $(DKMS_SRC)/kmod/
	install -m 0644 kmod/include/uapi/linux/xfer.h $(DKMS_SRC)/kmod/include/uapi/linux/

# /dev/xfer as 0660 group xfer (udev), xfer.ko loaded at boot (modules-load.d).
# On the live system (no DESTDIR) also the group and a reload of udev's rules;
# reloading fails where udevd is not running (a container): not an error.
kmod-conf:
	install -D -m 0644 kmod/60-xfer.rules $(DESTDIR)$(KMOD_CONFDIR)/udev/rules.d/60-xfer.rules
	install -D -m 0644 kmod/xfer-modules-load.conf $(DESTDIR)$(KMOD_CONFDIR)/modules-load.d/xfer.conf
	@if [ -z "$(DESTDIR)" ]; then \
	  getent group xfer >/dev/null || groupadd --system xfer; \
	  if command -v udevadm >/dev/null; then udevadm control --reload-rules 2>/dev/null || \
	    echo "kmod-conf: udevd not running, rules not reloaded"; fi; \
	fi

# With a DESTDIR the files are only staged there (DKMS works on the live
# system's /usr/src and /var/lib/dkms, not on a staging tree).
dkms-install: dkms-src kmod-conf
	@set -e; if [ -n "$(DESTDIR)" ]; then echo "dkms-install: staged in $(DESTDIR), DKMS not run"; exit 0; fi; \
	dkms add -m xfer -v $(KMOD_VERSION) || true; \
	for k in $(KMOD_KVERS); do \
	  dkms build -m xfer -v $(KMOD_VERSION) -k $$k; \
	  dkms install -m xfer -v $(KMOD_VERSION) -k $$k; \
	done

# The group stays: files and processes may still carry its id, and a group id
# freed for reuse would hand them to whatever group takes it next.
dkms-uninstall:
	-[ -n "$(DESTDIR)" ] || dkms remove -m xfer -v $(KMOD_VERSION) --all
	rm -rf $(DKMS_SRC)
	rm -f $(DESTDIR)$(KMOD_CONFDIR)/udev/rules.d/60-xfer.rules \
	      $(DESTDIR)$(KMOD_CONFDIR)/modules-load.d/xfer.conf
	@if [ -z "$(DESTDIR)" ] && command -v udevadm >/dev/null; then \
	  udevadm control --reload-rules 2>/dev/null || true; fi

# Module for every kernel with headers, /dev/xfer as 0660 group xfer, load at boot.
install-kmod: kmod kmod-conf
	@set -e; for k in $(KMOD_KVERS); do \
	  install -D -m 0644 $(KMOD_OUT)/$$k/src/xfer.ko $(DESTDIR)/lib/modules/$$k/updates/xfer.ko; \
	  if [ -z "$(DESTDIR)" ]; then depmod -a $$k; fi; \
	done
	install -D -m 0644 kmod/include/uapi/linux/xfer.h $(DESTDIR)$(PREFIX)/include/linux/xfer.h
