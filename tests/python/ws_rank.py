# SPDX-License-Identifier: MIT
"""One rank of a weight-sync run from Python, as torchrun starts it
(tests/python/test_weightsync.py): RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT from torchrun; the ranks meet through a TCPStore that rank 0
serves on MASTER_PORT (as init_process_group's env:// does), under a
PrefixStore. Trainers fill their shards (torch tensors over the
arena) with a pattern of (parameter, row, column); each inference rank
checks every write of every step byte for byte against the same pattern
put through the library's transform (copy or fp8 with block scales), and
that every byte outside the destinations is 0. Prints one JSON line.

usage: torchrun --standalone --nproc-per-node N ws_rank.py CONFIG TRAINER INFERENCE DTYPE STEPS PROVIDER
"""
import ctypes
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from xfer import weightsync as ws            # noqa: E402
from xfer import _ws_lib as W                # noqa: E402


def pattern(param, rows, cols, dtype):
    """bf16 bits (uint16) or float32 values of param's rows x cols."""
    v = ((param * 131 + rows[:, None] * 31 + cols[None, :] * 7 + STEP * 17) % 1021)
    v = v.astype(np.float32) / 64.0 - 8.0
    if dtype == "bf16":
        return (v.view(np.uint32) >> 16).astype(np.uint16)
    return v


def check(plan, r, buf):
    """(tensors checked, mismatching writes, stray bytes) of this step."""
    s = plan.sched
    exp = np.zeros(len(buf), dtype=np.uint8)
    checked = bad = 0
    for i in range(s.nwrites):
        w = s.writes[i]
        if w.dst_rank != r.infer_rank:
            continue
        ch = s.chunks[w.chunk]
        p = plan.params[ch.param]
        src = np.ascontiguousarray(pattern(ch.param, np.arange(ch.row0, ch.row0 + ch.rows),
                                           np.arange(ch.col0, ch.col0 + ch.cols), p.dtype))
        out = np.zeros(ch.out_bytes, dtype=np.uint8)
        sc = np.zeros(max(ch.scale_bytes, 1), dtype=np.uint8)
        W.chunk_transform(plan._live(), ctypes.byref(ch), src.ctypes.data, ch.cols,
                          out.ctypes.data, sc.ctypes.data if ch.scale_bytes else None)
        exp[w.dst_offset:w.dst_offset + ch.out_bytes] = out
        checked += 1
        ok = np.array_equal(buf[w.dst_offset:w.dst_offset + ch.out_bytes], out)
        if ch.scale_bytes:
            exp[w.scale_offset:w.scale_offset + ch.scale_bytes] = sc[:ch.scale_bytes]
            ok = ok and np.array_equal(buf[w.scale_offset:w.scale_offset + ch.scale_bytes],
                                       sc[:ch.scale_bytes])
        bad += not ok
    return checked, bad, int(np.count_nonzero(buf != exp)) - 0


def main():
    global STEP
    config, trainer, inference, dtype, steps, provider = sys.argv[1:7]
    import torch.distributed as dist
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    # as init_process_group's env:// does: rank 0 serves the store on
    # MASTER_PORT (torch 1.13's torchrun keeps its own store to itself)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          rank == 0, timeout=__import__("datetime").timedelta(seconds=60))
    store = dist.PrefixStore("xfer-ws-test", store)
    plan = ws.Plan(config, trainer=trainer, inference=inference, dtype=dtype)
    res = {"rank": rank, "world_size": world, "steps": 0, "checked": 0, "bad": 0, "stray": 0}
    assert world == plan.world_size, (world, plan.world_size)
    if rank < plan.ntrainers:
        side = ws.Trainer(plan, rank, store, provider=provider, timeout=60)
        res["role"] = "trainer"
    else:
        side = ws.Receiver(plan, rank, store, provider=provider, timeout=60)
        res["role"] = "inference"
        res["tensors"] = len(side.tensor_infos)
    t0 = time.monotonic()
    for STEP in range(int(steps)):
        if res["role"] == "trainer":
            for p in plan.params:
                row0, rows = plan.shard_rows(p.index, rank)
                if rows:
                    side.shard(p.name)[:] = pattern(p.index, np.arange(row0, row0 + rows),
                                                    np.arange(p.cols), p.dtype)
            st = side.send_weights()
            res["bytes_written"] = res.get("bytes_written", 0) + st.bytes_written
        else:
            buf = side.buffer.numpy()
            buf[:] = 0      # what this step does not write stays 0
            side.receive_weights(timeout=30)
            c, b, stray = check(plan, side, buf)
            res["checked"] += c
            res["bad"] += b
            res["stray"] += stray
            # the torch view of each tensor holds the same bytes
            for t in side.tensor_infos:
                tt = side.tensor_torch(t.name)
                res["torch_ok"] = res.get("torch_ok", True) and tt.shape == (t.rows, t.cols) and \
                    bytes(tt.contiguous().view(-1).view(__import__("torch").uint8).numpy()) == \
                    side.tensor(t.name).tobytes()
        res["steps"] += 1
    if res["role"] == "inference":
        # the check itself: one byte changed inside a destination and one
        # outside every destination (the buffer's last byte, past the
        # last tensor's alignment padding when there is any) must be found
        buf = side.buffer.numpy()
        w0 = next(plan.sched.writes[i] for i in range(plan.sched.nwrites)
                  if plan.sched.writes[i].dst_rank == side.infer_rank)
        buf[w0.dst_offset] ^= 0xFF
        _, bad_in, _ = check(plan, side, buf)
        buf[w0.dst_offset] ^= 0xFF
        end = max(t.offset + t.nbytes for t in side.tensor_infos)
        end = max([end] + [t.scale_offset + t.scale_bytes for t in side.tensor_infos])
        stray_out = None
        if end < len(buf):
            buf[-1] ^= 0x5A
            _, _, stray_out = check(plan, side, buf)
            buf[-1] ^= 0x5A
        res["caught"] = bad_in == 1 and stray_out in (None, 1)
    res["seconds"] = time.monotonic() - t0
    # rank 0 serves the store: it stays until every rank is done with it
    store.add("done", 1)
    while rank == 0 and int(store.add("done", 0)) < world:
        time.sleep(0.01)
    side.close()
    plan.close()
    print(json.dumps(res), flush=True)


STEP = 0
if __name__ == "__main__":
    main()
