# Hosts on one machine (tests/cluster/run.sh on the bed of tests/cluster/bed.sh):
# four network namespaces on a bridge, etcd in one, ranks of xfer-weightsync,
# xfer-moe, xfer-bench and a rendezvous over tcp;ofi_rxm across them, and the
# faults (loss, rate limit, a cut link, a killed host, a killed etcd). Needs
# root, iproute2, nftables and etcd; SKIPs without. `make test` runs it,
# `make test-cluster` alone.
TEST_SUITES += tests/cluster/run.sh
tests: $(BUILD)/tests/cluster/rdzv_rank

.PHONY: test-cluster
test-cluster: tests
	XFER_BUILD=$(BUILD) tests/cluster/run.sh
