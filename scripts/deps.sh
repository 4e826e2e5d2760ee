#!/usr/bin/env bash
# Install what a step needs, only when it is missing (Debian 12, as root).
#   deps.sh build   compiler and libraries for the library and the tools
#   deps.sh test    also etcd (the rendezvous tests), qemu, Debian kernels and headers,
#                   busybox (kmod/verbs guests), the kernel's kselftest harness headers,
#                   groff and man-db (tests/man.sh), debhelper, dh-dkms, lintian and
#                   mmdebstrap (tests/deb.sh), python3-pytest, python3-numpy and
#                   python3-torch (the Python binding's tests, tests/python)
#   deps.sh kselftest  only the harness headers
set -euo pipefail
what=${1:-build}

# The test harness is the kernel's own kselftest_harness.h (header-only,
# GPL-2.0), taken from Debian's linux-source package: the .deb (~140 MB)
# is downloaded once, the two headers extracted (~20 s), the rest dropped.
KSELFTEST_DIR=${XFER_KSELFTEST_DIR:-/var/cache/xfer/kselftest}
kselftest() {
	[ -f "$KSELFTEST_DIR/kselftest_harness.h" ] && [ -f "$KSELFTEST_DIR/kselftest.h" ] && return 0
	if [ "$(id -u)" != 0 ] && [ ! -w "$(dirname "$KSELFTEST_DIR")" ]; then
		echo "deps: $KSELFTEST_DIR/kselftest_harness.h missing (run as root, or set XFER_KSELFTEST_DIR)" >&2
		return 1
	fi
	local tmp pkg tarball
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	pkg=$(apt-cache depends linux-source 2>/dev/null | sed -n 's/.*Depends: \(linux-source-[0-9.]*\)$/\1/p' | head -1)
	if [ -z "$pkg" ]; then
		apt-get update -qq
		pkg=$(apt-cache depends linux-source | sed -n 's/.*Depends: \(linux-source-[0-9.]*\)$/\1/p' | head -1)
	fi
	[ -n "$pkg" ] || { echo "deps: no linux-source package known to apt" >&2; return 1; }
	echo "deps: extracting kselftest_harness.h from $pkg"
	(cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null) || {
		apt-get update -qq && (cd "$tmp" && apt-get download -qq "$pkg"); }
	dpkg-deb --fsys-tarfile "$tmp"/"$pkg"_*.deb | tar -x -C "$tmp" --wildcards './usr/src/linux-source-*.tar.xz'
	tarball=$(ls "$tmp"/usr/src/linux-source-*.tar.xz)
	tar -xJf "$tarball" -C "$tmp" --wildcards --no-anchored \
		'tools/testing/selftests/kselftest_harness.h' 'tools/testing/selftests/kselftest.h'
	mkdir -p "$KSELFTEST_DIR"
	install -m 0644 "$tmp"/linux-source-*/tools/testing/selftests/kselftest_harness.h \
		"$tmp"/linux-source-*/tools/testing/selftests/kselftest.h "$KSELFTEST_DIR/"
	echo "$pkg" > "$KSELFTEST_DIR/SOURCE"
}
if [ "$what" = kselftest ]; then
	kselftest
	exit
fi

pkgs=(build-essential pkg-config libfabric-dev libfabric-bin libhwloc-dev libjson-c-dev
      libcurl4-openssl-dev libibverbs-dev ibverbs-providers rdma-core)
if [ "$what" = test ]; then
	# etcd-server: tests/integration/test_rdzv starts one (etcd-client: etcdctl);
	# iproute2, nftables, curl: the cluster test bed (tests/cluster)
	pkgs+=(etcd-server etcd-client iproute2 nftables curl qemu-system-x86 busybox-static cpio xz-utils kmod dkms perftest
	       groff-base man-db linux-image-amd64 linux-headers-amd64 linux-image-6.12-amd64
	       linux-headers-6.12-amd64 dpkg-dev debhelper dh-dkms lintian mmdebstrap
	       python3-pytest python3-numpy python3-torch)   # tests/python (torch: CPU)
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	[ "$what" = test ] && kselftest
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages: ${missing[*]} (run as root, or install them)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$what" = test ] && kselftest
exit 0
