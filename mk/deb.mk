# Debian packages (debian/): `make deb` builds libxfer0, libxfer-dev,
# xfer-tools and xfer-dkms with dpkg-buildpackage -b in a scratch copy of the
# tree (build/deb/src: the files git tracks or would track, so no build
# output of this tree leaks in and the tree itself stays clean); the
# packages land in build/deb/. A build whose sources and options have not
# changed since the last one is reused (build/deb/SOURCE holds their hash;
# tests/, docs/ and *.md are left out of it: no package holds them).
# tests/deb.sh checks the packages and installs them into a throwaway root.
TEST_SUITES += tests/deb.sh

DEB_OUT  := $(BUILD)/deb
# No test suite in the package build (it needs qemu and root: `make test`),
# no -dbgsym packages (time), every core. The invoking make's flags and
# variables (MAKEFLAGS) stay out of the package build.
DEB_BUILD_OPTIONS ?= nocheck noautodbgsym parallel=$(shell nproc 2>/dev/null || echo 1)

.PHONY: deb
deb:
	@command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null || \
	  { echo "deb: dpkg-buildpackage or debhelper missing (scripts/deps.sh test installs them)"; exit 1; }
	@set -e; out=$(DEB_OUT); \
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  files() { git ls-files -z --cached --others --exclude-standard | \
	            xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh; }; \
	else \
	  files() { find . \( -path ./build -o -path './build-*' -o -name .git \) -prune -o \
	            \( -type f -o -type l \) -printf '%P\0'; }; \
	fi; \
	hash=$$( { echo "$(DEB_BUILD_OPTIONS)"; files | tr '\0' '\n' | grep -v -e '^tests/' -e '^docs/' -e '\.md$$' | \
	         tr '\n' '\0' | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1); \
	if [ -f $$out/SOURCE ] && [ "$$(cat $$out/SOURCE)" = "$$hash" ] && ls $$out/*.deb >/dev/null 2>&1; then \
	  echo "deb: $$out/*.deb are up to date"; exit 0; fi; \
	rm -rf $$out; mkdir -p $$out/src; \
	files | tar --null -T - -cf - | tar -xf - -C $$out/src; \
	echo "deb: dpkg-buildpackage -b -us -uc in $$out/src (log: $$out/build.log)"; \
	if ! (cd $$out/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" \
	      dpkg-buildpackage -b -us -uc) \
	     > $$out/build.log 2>&1; then tail -30 $$out/build.log; echo "deb: failed, see $$out/build.log"; exit 1; fi; \
	rm -rf $$out/src; echo "$$hash" > $$out/SOURCE; ls $$out/*.deb
