# xfer top-level build. `make` builds the library and the tools; `make run`
# and `make test` are the README's two quick-start commands.
#
# Sources are found by wildcard: a new lib/<layer>/*.c, tools/<name>/*.c or
# tests/{unit,integration}/test_*.c is picked up without editing this file.
# Subsystems with their own targets (kmod, verbs guest tests, weight sync)
# add them through mk/*.mk.

VERSION     := 0.1.0
SOVERSION   := 0
PREFIX      ?= /usr/local
# Where the libraries and xfer.pc go (Debian: /usr/lib/<multiarch triplet>).
LIBDIR      ?= $(PREFIX)/lib
CC          ?= gcc
SANITIZE    ?= 0
BUILD       ?= $(if $(filter 1,$(SANITIZE)),build-san,build)

PKGS        := libfabric hwloc json-c libcurl
HAVE_VERBS  := $(shell pkg-config --exists libibverbs 2>/dev/null && echo 1)
ifeq ($(HAVE_VERBS),1)
PKGS        += libibverbs
endif
PKG_CFLAGS  := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libfabric is not linked: lib/backend/fabric_load.c loads it on first use;
# nor libcurl: lib/rdzv/etcd.c loads it on first use of an etcd:// store.
PKG_LIBS    := $(shell pkg-config --libs $(filter-out libfabric libcurl,$(PKGS)) 2>/dev/null)

WARN        := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2
CFLAGS      ?= -O2 -g
BASE_CFLAGS := -std=gnu11 $(WARN) -fPIC -D_GNU_SOURCE
ifeq ($(HAVE_VERBS),1)
BASE_CFLAGS += -DXFER_HAVE_VERBS=1
endif
LDLIBS      := $(PKG_LIBS) -lpthread -lm -ldl
ifeq ($(SANITIZE),1)
BASE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS     += -fsanitize=address,undefined
endif

# ---- layers -------------------------------------------------------------
# Each folder is a layer and sees only the include paths listed for it, so
# that reaching into another layer's internals is a compile error:
#   include/          public headers (installed)
#   lib/util/         small shared utilities (clock, futexes, little-endian, crc)
#   lib/kmod/         the library's side of /dev/xfer
#   lib/backend/      NIC backends behind one ops table
#   lib/core/         the engine: queue, worker, operations, counters, regions
#   lib/weightsync/   weight-update planning and execution, over the public API
#   lib/moe/          MoE dispatch/combine, its C reference kernels and simulator, over the public API
#   lib/rdzv/         rendezvous through etcd or a shared directory, launcher environments
#   tools/common/     what every tool shares (output, options, out-of-band)
#   tools/NAME/       one folder per tool, linked against libxfer.so
#   tests/harness/    the one test harness
# tests/layers.sh checks it: no "../" include, public headers include only
# public ones, and probes that a layer cannot reach a header above it.
UAPI        := -Ikmod/include/uapi
INC_util       := -Ilib/util
INC_kmod       := -Iinclude -Ilib/util $(UAPI)
INC_backend    := -Iinclude -Ilib/util $(PKG_CFLAGS)
INC_core       := -Iinclude -Ilib/util -Ilib/backend -Ilib/kmod $(UAPI) $(PKG_CFLAGS)
INC_weightsync := -Iinclude -Ilib/util
INC_moe        := -Iinclude -Ilib/util
INC_rdzv       := -Iinclude -Ilib/util $(PKG_CFLAGS)
INC_tools      := -Iinclude -Ilib/util -Itools/common $(PKG_CFLAGS)
# unit tests see the internals they test; every other test sees what a user does.
# Both see the kernel's kselftest harness (scripts/deps.sh kselftest puts it there).
# Its EXPECT_EQ(0, x) compares an int with x's type: the kernel's selftests
# build without -Wsign-compare, and so do ours.
KSELFTEST      ?= /var/cache/xfer/kselftest
TEST_CFLAGS    := -Wno-sign-compare
INC_unit       := $(INC_core) -Ilib/core -Ilib/weightsync -Ilib/moe -Itests/harness -I$(KSELFTEST)
INC_user       := -Iinclude -Ilib/util -Itests/harness -I$(KSELFTEST)
layer_inc    = $(INC_$(word 2,$(subst /, ,$(1))))

LIB_SRCS    := $(sort $(wildcard lib/*/*.c))
ifneq ($(HAVE_VERBS),1)
LIB_SRCS    := $(filter-out lib/backend/verbs%.c,$(LIB_SRCS))
endif
LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TOOL_NAMES  := $(notdir $(patsubst %/,%,$(filter-out tools/common/,$(sort $(dir $(wildcard tools/*/*.c))))))
TOOLS       := $(TOOL_NAMES:%=$(BUILD)/bin/%)
# The tools call libfabric too (provider lists, xfer-bench's raw baseline):
# through the same loader, linked into each.
TOOL_COMMON := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tools/common/*.c))) \
               $(BUILD)/lib/backend/fabric_load.o
HARNESS     := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tests/harness/*.c)))
UNIT_SRCS   := $(sort $(wildcard tests/unit/test_*.c))
INTEG_SRCS  := $(sort $(wildcard tests/integration/test_*.c))
TESTS       := $(UNIT_SRCS:tests/%.c=$(BUILD)/tests/%) $(INTEG_SRCS:tests/%.c=$(BUILD)/tests/%)

SONAME      := libxfer.so.$(SOVERSION)
LIBSO       := $(BUILD)/lib/libxfer.so.$(VERSION)
LIBA        := $(BUILD)/lib/libxfer.a
# Programs find the library beside them (bin/../lib, installed or built);
# test programs also by its absolute path, which the qemu guests copy.
RPATH_TOOL  := -Wl,-rpath,'$$ORIGIN/../lib'
RPATH_TEST  := -Wl,-rpath,'$$ORIGIN/../../lib:$(abspath $(BUILD)/lib)'
LINK_SO     := $(LIBSO) -Wl,--as-needed

.PHONY: all lib tools tests run test test-unit deps-build deps-test bench install clean
all: lib tools

lib: $(LIBSO) $(LIBA)
tools: $(TOOLS)
tests: $(TESTS) tools

# The library: hidden by default, exported by XFER_EXPORT and lib/xfer.map.
$(BUILD)/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -fvisibility=hidden $(call layer_inc,$<) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tools/%.o: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(INC_tools) -I$(dir $<) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/harness/%.o: tests/harness/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(INC_user) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIBSO): $(LIB_OBJS) lib/xfer.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/xfer.map -Wl,--no-undefined \
	      $(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)
	ln -sf libxfer.so.$(VERSION) $(BUILD)/lib/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/lib/libxfer.so

$(LIBA): $(LIB_OBJS)
	rm -f $@; ar rcs $@ $^

# A tool is its folder's sources and tools/common, against the shared
# library as an installed user's program would be.
.SECONDEXPANSION:
# Tool objects are only named through that expansion, which would make
# them intermediate and deleted after linking (then rebuilt by install).
.SECONDARY:
$(BUILD)/bin/%: $$(addprefix $(BUILD)/,$$(subst .c,.o,$$(wildcard tools/$$*/*.c))) $(TOOL_COMMON) $(LIBSO)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(RPATH_TOOL) -o $@ $(filter %.o,$^) $(LINK_SO) $(PKG_LIBS) -lpthread -lm

$(KSELFTEST)/kselftest_harness.h:
	XFER_KSELFTEST_DIR=$(KSELFTEST) scripts/deps.sh kselftest

# Unit tests link the static library: they call internals.
$(BUILD)/tests/unit/%: tests/unit/%.c $(HARNESS) $(LIBA) | $(KSELFTEST)/kselftest_harness.h
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(TEST_CFLAGS) $(INC_unit) $(CFLAGS) -MMD -MP $(LDFLAGS) -o $@ $< $(HARNESS) $(LIBA) $(LDLIBS)

# Every other test program uses the public API through the shared library.
$(BUILD)/tests/%: tests/%.c $(HARNESS) $(LIBSO) | $(KSELFTEST)/kselftest_harness.h
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(TEST_CFLAGS) $(INC_user) $(CFLAGS) -MMD -MP $(LDFLAGS) $(RPATH_TEST) -o $@ $< $(HARNESS) \
	      $(LINK_SO) $(PKG_LIBS) -lpthread -lm

# The value of a make variable (tests/layers.sh reads the layers' include paths).
print-%:
	@echo $($*)

deps-build:
	@scripts/deps.sh build
deps-test:
	@scripts/deps.sh test

# Quick start 1: build and run the main job (two-process shm loopback bench).
run: deps-build
	$(MAKE) all
	$(BUILD)/bin/xfer-bench

# Quick start 2: every test; the runner ends with "N passed, N failed, N skipped".
# TEST_SUITES grows through mk/*.mk (kmod, verbs).
TEST_SUITES := tests/layers.sh tests/abi.sh tests/install.sh tests/tools/cli.sh
-include mk/*.mk

# The sanitizer build sits beside $(BUILD) (build -> build-san): a BUILD given
# on the command line reaches sub-makes, so it is named for both explicitly.
test: deps-test
	$(MAKE) tests
	$(MAKE) tests SANITIZE=1 BUILD=$(BUILD)-san
	tests/run.sh --build $(BUILD) --build-san $(BUILD)-san $(TEST_SUITES)

test-unit: tests
	tests/run.sh --build $(BUILD)

bench: all
	$(BUILD)/bin/xfer-bench -p shm --raw --reps 5

# The pkg-config file is written here, for the PREFIX of this install.
install: all
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include/linux \
	           $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/xfer/models
	install -m 0755 $(LIBSO) $(DESTDIR)$(LIBDIR)/
	ln -sf libxfer.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libxfer.so
	install -m 0644 $(LIBA) $(DESTDIR)$(LIBDIR)/
	install -m 0644 include/*.h $(DESTDIR)$(PREFIX)/include/
	install -m 0644 kmod/include/uapi/linux/xfer.h $(DESTDIR)$(PREFIX)/include/linux/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(PKG_LIBS) -lpthread -lm -ldl|g' lib/xfer.pc.in \
	    > $(DESTDIR)$(LIBDIR)/pkgconfig/xfer.pc
	install -m 0755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 models/*.json $(DESTDIR)$(PREFIX)/share/xfer/models/
	for s in 1 3 7 8; do install -d $(DESTDIR)$(PREFIX)/share/man/man$$s && \
	  install -m 0644 man/*.$$s $(DESTDIR)$(PREFIX)/share/man/man$$s/ || exit 1; done
	scripts/man-links.sh $(DESTDIR)$(PREFIX)/share/man/man3

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
