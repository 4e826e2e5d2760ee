#!/usr/bin/env bash
# Install what a step needs, only when it is missing (Debian 12, as root).
#   deps.sh build   compiler and libraries for the library and the tools
#   deps.sh test    also qemu, Debian kernels and headers, busybox (kmod/verbs guests)
set -euo pipefail
what=${1:-build}

pkgs=(build-essential pkg-config libfabric-dev libfabric-bin libhwloc-dev libjson-c-dev
      libibverbs-dev ibverbs-providers rdma-core)
if [ "$what" = test ]; then
	pkgs+=(qemu-system-x86 busybox-static cpio xz-utils kmod dkms perftest
	       linux-image-amd64 linux-headers-amd64 linux-image-6.12-amd64 linux-headers-6.12-amd64)
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages: ${missing[*]} (run as root, or install them)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
