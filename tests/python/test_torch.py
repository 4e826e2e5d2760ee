# SPDX-License-Identifier: MIT
"""torch: CPU tensors as regions, tensor page indices, int64 tensors as
flag words, and exchange through torch's TCPStore. Skipped without torch."""

import errno
import socket
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xfer  # noqa: E402

T = 10.0


def test_tensors_and_tensor_indices(pair):
    """A KV-like cache [2, blocks, block_size, heads, head_dim] per layer as
    the destination; blocks chosen by tensor indices."""
    src = torch.arange(2 * 8 * 16 * 2 * 8, dtype=torch.float16).reshape(2, 8, 16, 2, 8)
    dst = torch.zeros_like(src)
    s = pair.a.register(src, remote_write=False)
    dr = pair.b.register(dst)
    assert s.nbytes == src.numel() * 2 and s.address == src.data_ptr()
    d = pair.a.import_region(pair.pb, dr.descriptor)
    block = 16 * 2 * 8 * 2   # bytes of one block
    sb = torch.tensor([1, 4, 6], dtype=torch.int64)
    db = torch.tensor([7, 0, 3], dtype=torch.int32)
    # K then V: the V half starts 8 blocks in
    for kv in range(2):
        pair.a.write_paged(s, d, sb, db, block, src_offset=kv * 8 * block,
                           dst_offset=kv * 8 * block, imm=kv).wait(T)
        pair.b.imm_wait(kv, timeout=T)
    want = torch.zeros_like(src)
    want[:, db.long()] = src[:, sb]
    assert torch.equal(dst, want)


def test_tensor_errors(lpair):
    with pytest.raises(ValueError, match="not contiguous"):
        lpair.a.register(torch.zeros(8, 8).t())
    with pytest.raises(ValueError, match="outside 0..2"):
        lpair.a.write_paged(lpair.src, lpair.dst, torch.tensor([-1]), torch.tensor([0]), 64)


def test_tensor_flag_words(pair):
    words = torch.zeros(3, dtype=torch.int64)
    xs = [pair.b.expect(0x70 + i, 1, flag=words, index=i, value=10 + i) for i in range(3)]
    for i in range(3):
        pair.a.imm(pair.pb, 0x70 + i).wait(T)
    for x in xs:
        x.wait(T)
    assert words.tolist() == [10, 11, 12]


def _stores(n):
    """n TCPStores on one server: the master made here, not waiting for
    the workers (its constructor holds the GIL while it waits: threads
    could not come)."""
    from datetime import timedelta
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = timedelta(seconds=30)
    master = dist.TCPStore("127.0.0.1", port, None, True, t, wait_for_workers=False)
    return [master] + [dist.TCPStore("127.0.0.1", port, None, False, t) for _ in range(n - 1)]


def test_exchange_through_tcpstore():
    import torch.distributed as dist

    world = 3
    stores = _stores(world)
    out = [None] * world

    def rank(r):
        try:
            st = stores[r]
            out[r] = xfer.exchange(dist.PrefixStore("xfer", st), "addrs", r, world,
                                   b"blob-%d" % r)
        except BaseException as exc:
            out[r] = exc

    ts = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert out == [[b"blob-%d" % r for r in range(world)]] * world


def test_engine_pair_through_tcpstore():
    """Two engines meet through a TCPStore and write: the bytes arrive."""
    stores = _stores(2)
    res = {}
    bufs = {0: torch.arange(4096, dtype=torch.int32) % 251, 1: torch.zeros(4096, dtype=torch.int32)}

    def rank(r):
        try:
            st = stores[r]
            with xfer.Engine(provider="local") as e:
                addrs = xfer.exchange(st, "a", r, 2, e.address)
                peer = e.add_peer(addrs[1 - r])
                reg = e.register(bufs[r])
                descs = xfer.exchange(st, "d", r, 2, reg.descriptor)
                if r == 0:
                    e.write(reg, e.import_region(peer, descs[1]), imm=1).wait(T)
                else:
                    e.imm_wait(1, timeout=T)
                xfer.exchange(st, "end", r, 2, b".")
            res[r] = "ok"
        except BaseException as exc:
            res[r] = exc

    ts = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert res == {0: "ok", 1: "ok"}
    assert torch.equal(bufs[1], bufs[0])
