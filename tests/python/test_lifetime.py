# SPDX-License-Identifier: MIT
"""Lifetimes from Python: what keeps what alive, closing with operations
in flight, collected buffers and handles, use after close."""

import errno
import gc
import weakref

import numpy as np
import pytest

import xfer

T = 10.0


class Buf(bytearray):
    """A bytearray that can be weakly referenced (to see when it goes)."""


def _engines():
    a = xfer.Engine(provider="local")
    b = xfer.Engine(provider="local")
    pb = a.add_peer(b.address)
    b.add_peer(a.address)
    return a, b, pb


def test_region_keeps_its_buffer_alive():
    a, b, pb = _engines()
    buf = Buf(4096)
    ref = weakref.ref(buf)
    r = b.register(buf)
    del buf
    gc.collect()
    assert ref() is not None   # held by the region: the peer may write into it
    d = a.import_region(pb, r.descriptor)
    src = a.register(np.full(4096, 9, dtype=np.uint8), remote_write=False)
    a.write(src, d, imm=1).wait(T)
    b.imm_wait(1, timeout=T)
    assert ref() == bytearray([9]) * 4096
    r.close()
    gc.collect()
    assert ref() is None   # released with the region
    a.close()
    b.close()


def test_collected_source_of_a_running_op():
    """A source whose Region and buffer are dropped while the write runs:
    the Op holds them; the bytes that arrive are the source's."""
    a, b, pb = _engines()
    n = 8 << 20
    dbuf = np.zeros(n, dtype=np.uint8)
    d = a.import_region(pb, (dr := b.register(dbuf)).descriptor)
    op = a.write(a.register(np.full(n, 0x3C, dtype=np.uint8), remote_write=False), d, imm=2)
    gc.collect()
    op.wait(T)
    b.imm_wait(2, timeout=T)
    assert (dbuf == 0x3C).all()
    del dr
    a.close()
    b.close()


def test_dropped_handle_and_region_while_in_flight():
    """Op handle and region dropped before the write finished: the region
    stays registered (memory kept) until the worker is done with it, then
    goes at the next registration or at close."""
    a, b, pb = _engines()
    n = 16 << 20
    dbuf = np.zeros(n, dtype=np.uint8)
    dr = b.register(dbuf)
    d = a.import_region(pb, dr.descriptor)
    sbuf = np.full(n, 0x42, dtype=np.uint8)
    ref = weakref.ref(sbuf)
    for _ in range(4):
        a.write(a.register(sbuf, remote_write=False), d, imm=3)   # Op and Region dropped
    del sbuf
    gc.collect()
    b.imm_wait(3, 4, timeout=T)
    assert (dbuf == 0x42).all()
    a.register(bytearray(8))   # retries the regions left busy
    a.close()
    gc.collect()
    assert ref() is None and not a._mrs and not a._zombies


def test_close_engine_with_ops_in_flight():
    """close() with writes still queued: every op ends (0 or ECANCELED),
    handles stay readable, the regions are released, nothing crashes."""
    a, b, pb = _engines()
    n = 16 << 20
    dbuf = np.zeros(n, dtype=np.uint8)
    dr = b.register(dbuf)
    d = a.import_region(pb, dr.descriptor)
    s = a.register(np.full(n, 1, dtype=np.uint8), remote_write=False)
    ops = [a.write(s, d) for _ in range(16)]
    a.close()
    for o in ops:
        assert o.status in (0, -errno.ECANCELED)
        if o.status:
            with pytest.raises(xfer.XferError) as ei:
                o.wait(1)
            assert ei.value.errno == errno.ECANCELED and ei.value.call == "xfer_write"
    assert s.closed and d.closed
    s.close()
    d.close()
    for o in ops:
        o.close()
        o.close()
    with pytest.raises(ValueError, match="Op is closed"):
        ops[0].wait()
    b.close()


def test_delete_engine_with_ops_in_flight():
    """Dropping every reference to an engine with ops in flight: the ops
    keep it; when they go too it is closed by the collector."""
    a, b, pb = _engines()
    n = 16 << 20
    dbuf = np.zeros(n, dtype=np.uint8)
    dr = b.register(dbuf)
    d = a.import_region(pb, dr.descriptor)
    s = a.register(np.full(n, 7, dtype=np.uint8), remote_write=False)
    ops = [a.write(s, d, imm=4) for _ in range(8)]
    ref = weakref.ref(a)
    del a, s, d
    gc.collect()
    assert ref() is not None   # the ops hold it
    ops[-1].wait(T)
    b.imm_wait(4, 8, timeout=T)
    assert (dbuf == 7).all()
    del ops
    gc.collect()
    assert ref() is None
    b.close()


def test_use_after_close_everywhere():
    a, b, pb = _engines()
    r = b.register(bytearray(64))
    d = a.import_region(pb, r.descriptor)
    s = a.register(bytearray(64))
    op = a.write(s, d, 8)
    op.wait(T)
    x = b.expect(1)
    w = a.watch(s, d, 8)
    a.close()
    b.close()
    for call in (lambda: r.descriptor, lambda: r.share(), lambda: w.fired, lambda: w.fire(),
                 lambda: a.write(s, d, 8), lambda: a.write_paged(s, d, [0], [0], 8),
                 lambda: a.scatter(s, [(d, 0, 0, 8)])):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert op.status == 0 and op.test()   # a handle stays readable
    for obj in (r, d, s, w, op, a, b):
        obj.close()
        obj.close()
    with pytest.raises(ValueError, match="closed"):
        x.wait(0.01)
    gc.collect()


def test_close_without_waiting_cancels():
    """close(timeout=0) with large writes queued: the engine is destroyed at
    once, what had not finished says ECANCELED, the busy source region is
    left to the engine (a ResourceWarning says so); no crash, no hang."""
    a, b, pb = _engines()
    n = 16 << 20
    dbuf = np.zeros(n, dtype=np.uint8)
    dr = b.register(dbuf)
    d = a.import_region(pb, dr.descriptor)
    s = a.register(np.full(n, 1, dtype=np.uint8), remote_write=False)
    ops = [a.write(s, d) for _ in range(32)]
    with pytest.warns(ResourceWarning, match="still in use"):
        a.close(timeout=0)
    st = [o.status for o in ops]
    assert all(x in (0, -errno.ECANCELED) for x in st) and -errno.ECANCELED in st
    b.close()
