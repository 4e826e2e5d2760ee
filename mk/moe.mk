# MoE numbers (issue 13): `make bench-moe` runs every xfer-moe configuration
# at EP 2, 4 and 8 on `local` (R rank processes on this host), and the
# cluster simulator. Decode configurations run BENCH_MOE_ITERS timed layers
# after 20 warm-up ones. Prefill moves a few GB per rank per layer, so it
# runs BENCH_MOE_PREFILL_ITERS after 2, on one slot: each slot's packed
# buffers stay resident once touched (about 2.2 GB per rank at EP8, so two
# slots of 8 ranks would not fit in 24 GB). Minutes on 2 cores.
# BENCH_MOE_EP, BENCH_MOE_PROVIDER and BENCH_MOE_ARGS (say -j) change it.
BENCH_MOE_EP              ?= 2,4,8
BENCH_MOE_ITERS           ?= 200
BENCH_MOE_PREFILL_ITERS   ?= 5
BENCH_MOE_PROVIDER        ?= local
BENCH_MOE_ARGS            ?=

.PHONY: bench-moe
bench-moe: all
	$(BUILD)/bin/xfer-moe run -c v3-decode,kimi-k2-decode,v2-lite --ep $(BENCH_MOE_EP) \
		-p '$(BENCH_MOE_PROVIDER)' -w 20 -i $(BENCH_MOE_ITERS) $(BENCH_MOE_ARGS)
	$(BUILD)/bin/xfer-moe sim $(BENCH_MOE_ARGS)
	$(BUILD)/bin/xfer-moe run -c v3-prefill --ep $(BENCH_MOE_EP) --slots 1 \
		-p '$(BENCH_MOE_PROVIDER)' -w 2 -i $(BENCH_MOE_PREFILL_ITERS) $(BENCH_MOE_ARGS)
