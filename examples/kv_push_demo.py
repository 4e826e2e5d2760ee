#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Disaggregated prefill -> decode with xfer's vLLM connector, end to end:
a prefill process and a decode process, KV caches as torch tensors in
vLLM's paged layout (per layer [2, num_blocks, block_size, heads, head_dim]),
random block tables on both sides. The prefill "computes" its layers one by
one (--layer-ms each) and pushes each as soon as it is done
(save_kv_layer); the decode prints when each layer arrived
(wait_for_layer_load) and checks every byte of its cache.

    PYTHONPATH=python:tests/python/vllm_stub python3 examples/kv_push_demo.py \\
        [--provider local|shm|'tcp;ofi_rxm'] [--layers 16] [--blocks 256] \\
        [--block-size 16] [--heads 8] [--head-dim 128] [--tokens 2048] [--layer-ms 2]

vLLM is not installed here: tests/python/vllm_stub stands in for its base
classes (the interface of vLLM v0.10.1); with vLLM installed, leave it off
PYTHONPATH. Prints one line per layer, then the transfer's rate.
"""
import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (os.path.join(ROOT, "python"), os.path.join(ROOT, "tests", "python", "vllm_stub")):
    if p not in sys.path:
        sys.path.insert(0, p)


def args_of(argv):
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--provider", default="local")
    a.add_argument("--layers", type=int, default=16)
    a.add_argument("--blocks", type=int, default=256)
    a.add_argument("--block-size", type=int, default=16)
    a.add_argument("--heads", type=int, default=8)
    a.add_argument("--head-dim", type=int, default=128)
    a.add_argument("--tokens", type=int, default=2048)
    a.add_argument("--layer-ms", type=float, default=2.0)
    a.add_argument("--requests", type=int, default=2,
                   help="one after the other; the first pays connection set-up and first touch")
    a.add_argument("--role", choices=["prefill", "decode"], help=argparse.SUPPRESS)
    a.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return a.parse_args(argv)


def side(o):
    import numpy as np
    import torch
    import torch.distributed as dist
    from vllm.config import KVTransferConfig, VllmConfig
    from vllm.distributed.kv_transfer.kv_connector.v1 import KVConnectorRole
    from vllm.v1.request import Request
    from xfer.connectors.vllm import XferConnector

    prod = o.role == "prefill"
    store = dist.TCPStore("127.0.0.1", o.port, None, False, timeout=datetime.timedelta(seconds=60))
    cfg = VllmConfig(KVTransferConfig(kv_connector="XferConnector",
                                      kv_connector_module_path="xfer.connectors.vllm",
                                      kv_role="kv_producer" if prod else "kv_consumer",
                                      kv_connector_extra_config={
                                          "xfer_store": f"127.0.0.1:{o.port}",
                                          "xfer_provider": o.provider, "xfer_timeout_s": 60}))
    sched, work = XferConnector(cfg, KVConnectorRole.SCHEDULER), XferConnector(cfg, KVConnectorRole.WORKER)
    names = [f"model.layers.{i}.self_attn.attn" for i in range(o.layers)]
    shape = (2, o.blocks, o.block_size, o.heads, o.head_dim)
    g = torch.Generator().manual_seed(99)
    kv = {n: (torch.randn(shape, generator=g).to(torch.bfloat16) if prod
              else torch.zeros(shape, dtype=torch.bfloat16)) for n in names}
    for t in kv.values() if not prod else ():
        t.zero_()     # touched, as a serving engine's cache is (calloc leaves it unmapped)
    work.register_kv_caches(kv)
    nb = (o.tokens + o.block_size - 1) // o.block_size
    if o.requests * nb > o.blocks:
        sys.exit(f"kv_push_demo: {o.requests} requests of {nb} blocks need more than {o.blocks}")
    perm = [int(b) for b in np.random.default_rng(1 if prod else 2).permutation(o.blocks)]
    page = o.block_size * o.heads * o.head_dim * 2
    res = []
    for i in range(o.requests):
        # the prefill reuses its blocks (same data); the decode's are disjoint
        table = perm[:nb] if prod else perm[i * nb:(i + 1) * nb]
        req = Request(f"demo-{i}", list(range(o.tokens)),
                      {"do_remote_decode": True} if prod else {"do_remote_prefill": True})
        n, _ = sched.get_num_new_matched_tokens(req, 0)
        sched.update_state_after_alloc(req, table, n)
        work.bind_connector_metadata(sched.build_connector_meta(None))
        if prod:
            store.wait([f"demo/decode_ready{i}"], datetime.timedelta(seconds=60))
            store.set(f"demo/prefill_table{i}", json.dumps(table))
            t0 = time.monotonic()
            for name in names:
                time.sleep(o.layer_ms / 1000)          # this layer's attention and MLP
                work.save_kv_layer(name, kv[name], None)
            t_saved = time.monotonic()
            while not (work.get_finished(set())[0] or set()):
                time.sleep(0.0002)
            t1 = time.monotonic()
            nbytes = o.layers * 2 * nb * page
            res.append({"bytes": nbytes, "seconds": t1 - t0, "after_last_layer_s": t1 - t_saved,
                        "push_GBps": nbytes / max(t1 - t0 - o.layers * o.layer_ms / 1000, 1e-9) / 1e9})
        else:
            work.start_load_kv(None)
            store.set(f"demo/decode_ready{i}", "1")
            arrived = []
            for name in names:
                work.wait_for_layer_load(name)
                arrived.append(time.monotonic())
            while not (work.get_finished(set())[1] or set()):
                time.sleep(0.0002)
            ptable = json.loads(store.get(f"demo/prefill_table{i}"))
            res.append({"arrival_ms": [round((t - arrived[0]) * 1000, 2) for t in arrived],
                        "table": table, "ptable": ptable})
        work.clear_connector_metadata()
    if prod:
        print(json.dumps({"role": "prefill", "requests": res}))
    else:
        g = torch.Generator().manual_seed(99)
        bad = 0
        for name in names:
            src = torch.randn(shape, generator=g).to(torch.bfloat16)
            want = torch.zeros(shape, dtype=torch.bfloat16)
            for r in res:
                want[:, r["table"]] = src[:, r["ptable"]]
            bad += not torch.equal(kv[name].view(torch.int16), want.view(torch.int16))
        print(json.dumps({"role": "decode", "requests": [{"arrival_ms": r["arrival_ms"]} for r in res],
                          "layers_bad": bad, "failed": work.failed,
                          "bytes_checked": sum(t.numel() * 2 for t in kv.values())}))
    store.set(f"demo/{o.role}_done", "1")
    if not prod:
        store.wait(["demo/prefill_done"], datetime.timedelta(seconds=60))
    work.close()


def main():
    o = args_of(sys.argv[1:])
    if o.role:
        return side(o)
    import torch.distributed as dist
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    store = dist.TCPStore("127.0.0.1", port, None, True, timeout=datetime.timedelta(seconds=60))
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", r,
                               "--port", str(port)] + sys.argv[1:], stdout=subprocess.PIPE, text=True)
             for r in ("decode", "prefill")]
    out = {}
    for p in procs:
        o_, _ = p.communicate(timeout=300)
        if p.returncode:
            sys.exit(f"kv_push_demo: a side failed (status {p.returncode})")
        d = json.loads(o_.strip().splitlines()[-1])
        out[d["role"]] = d
    del store
    d, p = out["decode"], out["prefill"]
    page = o.block_size * o.heads * o.head_dim * 2
    print(f"{o.requests} requests, {o.layers} layers, {(o.tokens + o.block_size - 1) // o.block_size} blocks of "
          f"{page // 1024} KiB per K and V, provider {o.provider}, a layer computed every {o.layer_ms} ms")
    for k, (dr, pr) in enumerate(zip(d["requests"], p["requests"])):
        print(f"request {k}:")
        for i, t in enumerate(dr["arrival_ms"]):
            print(f"  layer {i:3d} arrived at decode {t:8.2f} ms after layer 0")
        print(f"  pushed {pr['bytes'] / 2**20:.1f} MiB in {pr['seconds'] * 1000:.1f} ms "
              f"({pr['after_last_layer_s'] * 1000:.2f} ms after the last layer was computed); "
              f"{pr['push_GBps']:.2f} GB/s besides the compute")
    ok = d["layers_bad"] == 0 and not d["failed"]
    print(f"decode checked {d['bytes_checked'] / 2**20:.1f} MiB of its KV cache: "
          f"{'every byte as pushed' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
