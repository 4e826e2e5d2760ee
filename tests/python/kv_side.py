# SPDX-License-Identifier: MIT
"""One side of the vLLM KV connector test (tests/python/test_vllm_connector.py):
a prefill or a decode instance, its scheduler-side and worker-side
XferConnector in one process (the metadata pickled between them, as it
crosses vLLM's process boundary), KV caches as torch CPU tensors in vLLM's
paged layout, per layer [2, num_blocks, block_size, heads, head_dim].

usage: kv_side.py prefill|decode STORE_PORT PROVIDER; prints one JSON line.

Requests (ids shared by both sides, as a proxy gives them):
  r1, r2  prefilled, pushed layer by layer, every byte checked at decode;
  r3      the prefill never has it: the decode's wait times out, the
          request is reported (its blocks freed) with the reason;
  r4      aborted at the prefill after two of its four layers: the prefill
          reports it once its writes in flight completed; the decode gets
          layers 0 and 1 (checked), times out on 2 and 3, reports it.
"""
import datetime
import json
import os
import pickle
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "vllm_stub"), os.path.join(HERE, "..", "..", "python")]

import numpy as np                     # noqa: E402
import torch                           # noqa: E402
import torch.distributed as dist       # noqa: E402
from vllm.config import KVTransferConfig, VllmConfig                       # noqa: E402
from vllm.distributed.kv_transfer.kv_connector.v1 import KVConnectorRole   # noqa: E402
from vllm.v1.request import Request                                        # noqa: E402
from xfer.connectors.vllm import XferConnector                             # noqa: E402

LAYERS = [f"model.layers.{i}.self_attn.attn" for i in range(4)]
NBLOCKS, BLOCK, HEADS, HDIM = 32, 16, 2, 64
PROMPT = {"r1": 40, "r2": 33, "r3": 20, "r4": 48}   # tokens: 3, 3, 2, 3 blocks


def caches(seed):
    g = torch.Generator().manual_seed(seed)
    return {n: (torch.randn(2, NBLOCKS, BLOCK, HEADS, HDIM, generator=g).to(torch.bfloat16)
                if seed else torch.zeros(2, NBLOCKS, BLOCK, HEADS, HDIM, dtype=torch.bfloat16))
            for n in LAYERS}


def blocks_for(rid, rng, free):
    n = (PROMPT[rid] + BLOCK - 1) // BLOCK
    got = [free.pop(int(rng.integers(len(free)))) for _ in range(n)]
    return got


def main():
    role, port, provider = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = dist.TCPStore("127.0.0.1", port, None, False, timeout=datetime.timedelta(seconds=60))
    producer = role == "prefill"
    cfg = VllmConfig(KVTransferConfig(
        kv_connector="XferConnector", kv_connector_module_path="xfer.connectors.vllm",
        kv_role="kv_producer" if producer else "kv_consumer",
        kv_connector_extra_config={"xfer_store": f"127.0.0.1:{port}", "xfer_provider": provider,
                                   "xfer_timeout_s": 3.0}))
    sched = XferConnector(cfg, KVConnectorRole.SCHEDULER)
    work = XferConnector(cfg, KVConnectorRole.WORKER)
    kv = caches(1234 if producer else 0)
    work.register_kv_caches(kv)
    rng = np.random.default_rng(7 if producer else 8)
    free = list(range(NBLOCKS))
    rids = ["r1", "r2", "r4"] if producer else ["r1", "r2", "r3", "r4"]
    reqs = {r: Request(r, list(range(PROMPT[r])),
                       {"do_remote_decode": True} if producer else {"do_remote_prefill": True})
            for r in rids}
    blocks = {}
    for r, req in reqs.items():
        n, is_async = sched.get_num_new_matched_tokens(req, 0)
        assert (n, is_async) == ((0, False) if producer else (PROMPT[r], True)), (r, n)
        blocks[r] = blocks_for(r, rng, free)
        sched.update_state_after_alloc(req, blocks[r], 0 if producer else n)
        # matched once only: a second look finds nothing more to load
        assert sched.get_num_new_matched_tokens(req, 0)[0] == 0
    meta = pickle.loads(pickle.dumps(sched.build_connector_meta(None)))
    out = {"role": role, "failed": {}}
    t0 = time.monotonic()
    if not producer:
        work.bind_connector_metadata(meta)
        work.start_load_kv(None)
        store.set("test/decode_ready", json.dumps(blocks))
        # r1 and r2 arrive layer by layer; the waits return in layer order
        order = []
        meta12 = pickle.loads(pickle.dumps(meta))
        meta12.recv = {r: meta.recv[r] for r in ("r1", "r2")}
        work.bind_connector_metadata(meta12)
        for name in LAYERS:
            work.wait_for_layer_load(name)
            order.append(name)
        work.bind_connector_metadata(meta)
        done = set()
        while len(done) < 4 and time.monotonic() - t0 < 20:
            _, rec = work.get_finished(set())
            done |= rec or set()
            time.sleep(0.005)
        sched.finished(done)
        out["reported"] = sorted(done)
        out["layer_times"] = {r: work.layer_times[r] for r in ("r1", "r2")}
        out["layer_order_ok"] = order == LAYERS and all(
            a <= b for r in ("r1", "r2") for a, b in zip(work.layer_times[r], work.layer_times[r][1:]))
        # every byte: r1, r2 whole; r4 its first two layers; the rest of the cache 0
        pblocks = json.loads(store.get("test/prefill_blocks"))
        src = caches(1234)
        bad = []
        want = caches(0)
        for r, nl in (("r1", 4), ("r2", 4), ("r4", 2)):
            for li, name in enumerate(LAYERS[:nl]):
                for kvi in (0, 1):
                    want[name][kvi, blocks[r]] = src[name][kvi, pblocks[r]]
        for name in LAYERS:
            if not torch.equal(kv[name].view(torch.int16), want[name].view(torch.int16)):
                bad.append(name)
        out["bytes_ok"] = not bad
        out["bad_layers"] = bad
        out["bytes_checked"] = sum(t.numel() * t.element_size() for t in kv.values())
    else:
        store.wait(["test/decode_ready"], datetime.timedelta(seconds=30))
        store.set("test/prefill_blocks", json.dumps(blocks))
        work.bind_connector_metadata(meta)
        done = set()
        for li, name in enumerate(LAYERS):     # the forward: layer by layer
            work.save_kv_layer(name, kv[name], None)
            if li == 1:
                # r4 aborted between layers: the scheduler holds its blocks,
                # the next metadata tells the worker
                held, _ = sched.request_finished(reqs["r4"], blocks["r4"])
                assert held is True
                work.bind_connector_metadata(sched.build_connector_meta(None))
                time.sleep(0.2)   # its two layers' writes complete first: reported now,
                done |= work.get_finished(set())[0] or set()   # and never sent again
                work.bind_connector_metadata(meta)
        work.wait_for_save()
        while len(done) < 3 and time.monotonic() - t0 < 20:
            sent, _ = work.get_finished(set())
            done |= sent or set()
            time.sleep(0.002)
        sched.finished(done)
        out["reported"] = sorted(done)
        out["scheduler_holds"] = sorted(sched._busy)
        store.set("test/prefill_done", "1")
    out["failed"] = work.failed
    if not producer:
        store.wait(["test/prefill_done"], datetime.timedelta(seconds=30))
    work.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
