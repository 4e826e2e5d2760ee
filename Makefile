# xfer top-level build. `make` builds the library and the tools; `make run`
# and `make test` are the README's two quick-start commands.
#
# Sources are found by wildcard: a new lib/*.c, lib/*/*.c, tools/<name>.c or
# tests/{unit,integration}/test_*.c is picked up without editing this file.
# Subsystems with their own targets (kmod, verbs guest tests, weight sync)
# add them through mk/*.mk.

VERSION     := 0.1.0
SOVERSION   := 0
PREFIX      ?= /usr/local
CC          ?= gcc
SANITIZE    ?= 0
BUILD       ?= $(if $(filter 1,$(SANITIZE)),build-san,build)

PKGS        := libfabric hwloc json-c
HAVE_VERBS  := $(shell pkg-config --exists libibverbs 2>/dev/null && echo 1)
ifeq ($(HAVE_VERBS),1)
PKGS        += libibverbs
endif
PKG_CFLAGS  := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN        := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2
CFLAGS      ?= -O2 -g
XCFLAGS     := -std=gnu11 $(WARN) -fPIC -fvisibility=hidden -D_GNU_SOURCE \
               -Ilib/include -Ilib -Ikmod/include/uapi -Ikernels $(PKG_CFLAGS)
ifeq ($(HAVE_VERBS),1)
XCFLAGS     += -DXFER_HAVE_VERBS=1
endif
LDLIBS      := $(PKG_LIBS) -lpthread -lm -ldl
ifeq ($(SANITIZE),1)
XCFLAGS     += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS     += -fsanitize=address,undefined
endif

LIB_SRCS    := $(sort $(wildcard lib/*.c lib/*/*.c))
ifneq ($(HAVE_VERBS),1)
LIB_SRCS    := $(filter-out lib/backend/verbs%.c,$(LIB_SRCS))
endif
LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TOOL_SRCS   := $(sort $(wildcard tools/*.c))
TOOL_COMMON := $(sort $(wildcard tools/common/*.c))
TOOLS       := $(TOOL_SRCS:tools/%.c=$(BUILD)/%)
TEST_SRCS   := $(sort $(wildcard tests/unit/test_*.c tests/integration/test_*.c))
TEST_COMMON := $(sort $(wildcard tests/common/*.c))
TESTS       := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)

SONAME      := libxfer.so.$(SOVERSION)
LIBSO       := $(BUILD)/libxfer.so.$(VERSION)
LIBA        := $(BUILD)/libxfer.a

.PHONY: all lib tools tests run test test-unit deps-build deps-test bench install clean
all: lib tools

lib: $(LIBSO) $(LIBA) $(BUILD)/xfer.pc
tools: $(TOOLS)
tests: $(TESTS) tools

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) -Itests/common $(CFLAGS) -MMD -MP -c $< -o $@

$(LIBSO): $(LIB_OBJS) lib/xfer.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/xfer.map -Wl,--no-undefined \
	      $(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)
	ln -sf libxfer.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libxfer.so

$(LIBA): $(LIB_OBJS)
	rm -f $@; ar rcs $@ $^

$(BUILD)/xfer.pc: lib/xfer.pc.in Makefile
	@mkdir -p $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@REQUIRES@|$(PKGS)|g' $< > $@

# Tools and tests link the static library so that they see internal symbols
# the unit tests need, and run from the build tree without LD_LIBRARY_PATH.
$(BUILD)/%: tools/%.c $(TOOL_COMMON:%.c=$(BUILD)/%.o) $(LIBA)
	$(CC) $(XCFLAGS) $(CFLAGS) -Itools $(LDFLAGS) -o $@ $< $(TOOL_COMMON:%.c=$(BUILD)/%.o) $(LIBA) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_COMMON:%.c=$(BUILD)/%.o) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(CFLAGS) -Itests/common $(LDFLAGS) -o $@ $< $(TEST_COMMON:%.c=$(BUILD)/%.o) $(LIBA) $(LDLIBS)

deps-build:
	@scripts/deps.sh build
deps-test:
	@scripts/deps.sh test

# Quick start 1: build and run the main job (two-process shm loopback bench).
run: deps-build
	$(MAKE) all
	$(BUILD)/xfer-bench

# Quick start 2: every test; the runner ends with "N passed, N failed, N skipped".
# TEST_SUITES grows through mk/*.mk (kmod, verbs).
TEST_SUITES :=
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
	$(BUILD)/xfer-bench --raw --reps 5

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
	           $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/linux
	install -m 0755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libxfer.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libxfer.so
	install -m 0644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/
	install -m 0644 lib/include/xfer.h $(DESTDIR)$(PREFIX)/include/
	if [ -f kmod/include/uapi/linux/xfer.h ]; then \
	  install -m 0644 kmod/include/uapi/linux/xfer.h $(DESTDIR)$(PREFIX)/include/linux/; fi
	sed -e 's|$(PREFIX)|$(PREFIX)|' $(BUILD)/xfer.pc > $(DESTDIR)$(PREFIX)/lib/pkgconfig/xfer.pc
	install -m 0755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
