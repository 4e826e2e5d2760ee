# Two hosts on one machine (tests/netns/run.sh): xfer-bench's server and
# client in two network namespaces joined by a veth pair, over tcp;ofi_rxm.
# Needs root and iproute2; SKIPs without. `make test` runs it, `make
# test-netns` alone.
TEST_SUITES += tests/netns/run.sh

.PHONY: test-netns
test-netns: tools
	XFER_BUILD=$(BUILD) tests/netns/run.sh
