# Added latency and reordering (tests/cluster/netem-guest.sh): netem inside a
# qemu guest booting a Debian kernel (this machine's kernel has no
# sch_netem), xfer-bench and xfer-weightsync's launcher mode across two
# network namespaces over tcp;ofi_rxm. SKIPs without qemu or such a kernel.
# `make test` runs it, `make test-netem` alone.
TEST_SUITES += tests/cluster/netem-guest.sh

.PHONY: test-netem
test-netem: tools
	XFER_BUILD=$(BUILD) tests/cluster/netem-guest.sh
