# SPDX-License-Identifier: MIT
"""Operations on `local` and `shm` between two engines of this process:
write, write with immediate, immediate alone, paged (numpy, list,
array.array indices; strides and offsets), scatter, barrier; every byte
checked at the receiver, and the bytes that must stay untouched too."""

import array
import errno

import numpy as np
import pytest

import xfer

T = 10.0   # seconds: generous, never a timing assertion


def test_write(pair):
    op = pair.a.write(pair.src, pair.dst, 4096, src_offset=100, dst_offset=8192)
    op.wait(T)
    assert op.test() and op.status == 0
    want = np.zeros_like(pair.dbuf)
    want[8192:8192 + 4096] = pair.sbuf[100:100 + 4096]
    assert np.array_equal(pair.dbuf, want)
    st = pair.a.stats(0)
    assert st.ops_posted >= 1 and st.bytes_posted >= 4096


def test_write_whole_region_default_length(pair):
    pair.a.write(pair.src, pair.dst).wait(T)
    assert np.array_equal(pair.dbuf, pair.sbuf)


def test_write_with_immediate(pair):
    pair.a.write(pair.src, pair.dst, 1000, imm=0xABC).wait(T)
    pair.b.imm_wait(0xABC, 1, timeout=T)   # the payload landed before the count
    assert np.array_equal(pair.dbuf[:1000], pair.sbuf[:1000])
    assert not pair.dbuf[1000:].any()
    assert pair.b.imm_count(0xABC) == 0


def test_immediate_alone_and_zero_length_write(pair):
    pair.a.imm(pair.pb, 41).wait(T)
    pair.a.write(pair.src, pair.dst, 0, imm=41).wait(T)
    pair.b.imm_wait(41, 2, timeout=T)
    assert not pair.dbuf.any()
    assert pair.b.stats(0).imm_received >= 2


@pytest.mark.parametrize("kind", ["numpy32", "numpy64", "list", "array", "range"])
def test_paged(pair, kind):
    page = 1024
    sp_l, dp_l = [5, 0, 17, 3], [60, 2, 9, 0]
    conv = {"numpy32": lambda v: np.array(v, dtype=np.uint32),
            "numpy64": lambda v: np.array(v, dtype=np.int64),
            "list": list, "array": lambda v: array.array("I", v),
            "range": lambda v: v}[kind]
    pair.a.write_paged(pair.src, pair.dst, conv(sp_l), conv(dp_l), page, imm=77).wait(T)
    pair.b.imm_wait(77, 1, timeout=T)
    want = np.zeros_like(pair.dbuf)
    for s, d in zip(sp_l, dp_l):
        want[d * page:(d + 1) * page] = pair.sbuf[s * page:(s + 1) * page]
    assert np.array_equal(pair.dbuf, want)


def test_paged_strides_offsets(pair):
    page, ss, ds, so, do = 512, 2048, 1536, 64, 128
    sp, dp = np.array([0, 3, 7]), np.array([9, 1, 4])
    pair.a.write_paged(pair.src, pair.dst, sp, dp, page, src_stride=ss, dst_stride=ds,
                       src_offset=so, dst_offset=do).wait(T)
    want = np.zeros_like(pair.dbuf)
    for s, d in zip(sp, dp):
        want[do + d * ds:do + d * ds + page] = pair.sbuf[so + s * ss:so + s * ss + page]
    assert np.array_equal(pair.dbuf, want)


def test_paged_errors(lpair):
    p = lpair
    with pytest.raises(ValueError, match="3 pages and dst_pages 2"):
        p.a.write_paged(p.src, p.dst, [0, 1, 2], [0, 1], 64)
    with pytest.raises(ValueError, match="outside 0..2"):
        p.a.write_paged(p.src, p.dst, [-1], [0], 64)
    with pytest.raises(ValueError, match="outside 0..2"):
        p.a.write_paged(p.src, p.dst, np.array([1 << 33]), np.array([0]), 64)
    with pytest.raises(TypeError, match="integers"):
        p.a.write_paged(p.src, p.dst, np.array([0.5]), np.array([0]), 64)
    with pytest.raises(TypeError, match="sequence of ints"):
        p.a.write_paged(p.src, p.dst, ["a"], [0], 64)
    with pytest.raises(xfer.XferError) as ei:   # a page past the destination
        p.a.write_paged(p.src, p.dst, [0], [len(p.dbuf) // 64], 64)
    assert ei.value.errno == errno.ERANGE and "1 pages of 64 bytes" in str(ei.value)
    with pytest.raises(xfer.XferError) as ei:   # no pages
        p.a.write_paged(p.src, p.dst, [], [], 64)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(TypeError, match="Region and a RemoteRegion"):
        p.a.write_paged(p.dst, p.src, [0], [0], 64)
    assert not p.dbuf.any()


def test_write_errors(lpair):
    p = lpair
    n = len(p.dbuf)
    for kw in (dict(nbytes=n + 1), dict(nbytes=16, dst_offset=n - 8), dict(nbytes=16, src_offset=n)):
        with pytest.raises(xfer.XferError) as ei:
            p.a.write(p.src, p.dst, **kw)
        assert ei.value.errno == errno.ERANGE
        assert ei.value.call == "xfer_write"
        assert "range outside the registered region" in ei.value.strerror
        assert f"of {n}" in str(ei.value)
    with pytest.raises(xfer.XferError) as ei:   # no bytes and no immediate
        p.a.write(p.src, p.dst, 0)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(TypeError, match="Region and a RemoteRegion"):
        p.a.write(p.dst, p.src, 8)
    with pytest.raises(TypeError, match="xfer_write"):
        p.a.write(p.src, p.dst, "8")
    with pytest.raises(xfer.XferError) as ei:
        p.a.imm(5, 1)   # a peer never added
    assert ei.value.errno == errno.EINVAL and "peer 5" in str(ei.value)
    assert not p.dbuf.any()


def test_scatter_and_barrier(pair):
    # a second destination engine: scatter to two peers at once
    c = xfer.Engine(provider=pair.a.provider)
    try:
        pc = pair.a.add_peer(c.address)
        c.add_peer(pair.a.address)
        cbuf = np.zeros(8192, dtype=np.uint8)
        cr = c.register(cbuf)
        cdst = pair.a.import_region(pc, cr.descriptor)
        pair.a.scatter(pair.src, [(pair.dst, 0, 4096, 2000), (cdst, 3000, 17, 5000)],
                       imm=9).wait(T)
        pair.b.imm_wait(9, 1, timeout=T)
        c.imm_wait(9, 1, timeout=T)
        want_b = np.zeros_like(pair.dbuf)
        want_b[4096:6096] = pair.sbuf[:2000]
        want_c = np.zeros_like(cbuf)
        want_c[17:5017] = pair.sbuf[3000:8000]
        assert np.array_equal(pair.dbuf, want_b) and np.array_equal(cbuf, want_c)
        pair.a.barrier([pair.pb, pc], 0xBA).wait(T)
        pair.b.imm_wait(0xBA, 1, timeout=T)
        c.imm_wait(0xBA, 1, timeout=T)
        with pytest.raises(TypeError, match="destination 0"):
            pair.a.scatter(pair.src, [(pair.src, 0, 0, 1)])
        with pytest.raises(TypeError, match="not a tuple"):
            pair.a.scatter(pair.src, [5])
        with pytest.raises(xfer.XferError) as ei:
            pair.a.scatter(pair.src, [(cdst, 0, 8000, 1000)])
        assert ei.value.errno == errno.ERANGE
        with pytest.raises(xfer.XferError) as ei:
            pair.a.barrier([], 1)
        assert ei.value.errno == errno.EINVAL
    finally:
        c.close()


def test_many_ops_in_flight(lpair):
    p = lpair
    ops = [p.a.write(p.src, p.dst, 256, src_offset=i * 256, dst_offset=i * 256, imm=3)
           for i in range(len(p.dbuf) // 256)]
    for o in ops:
        o.wait(T)
    p.b.imm_wait(3, len(ops), timeout=T)
    assert np.array_equal(p.dbuf, p.sbuf)


def test_op_wait_times_out():
    """A write behind a long queue of large ones is still in progress at a
    zero timeout: XferTimeoutError (ETIMEDOUT), and the op goes on."""
    with xfer.Engine(provider="local") as a, xfer.Engine(provider="local") as b:
        pb = a.add_peer(b.address)
        n = 32 << 20
        s = a.register(np.full(n, 0x5A, dtype=np.uint8), remote_write=False)
        dbuf = np.zeros(n, dtype=np.uint8)
        dr = b.register(dbuf)
        d = a.import_region(pb, dr.descriptor)
        ops = [a.write(s, d) for _ in range(8)]
        last = ops[-1]
        with pytest.raises(xfer.XferTimeoutError) as ei:
            last.wait(0)
        assert ei.value.errno == errno.ETIMEDOUT and isinstance(ei.value, TimeoutError)
        assert "still in progress" in str(ei.value)
        for o in ops:
            o.wait(60)
        assert last.status == 0 and (dbuf == 0x5A).all()


def test_imm_wait_times_out(lpair):
    with pytest.raises(xfer.XferTimeoutError) as ei:
        lpair.b.imm_wait(0x1234, 2, timeout=0.05)
    assert ei.value.errno == errno.ETIMEDOUT
    assert "0 of 2 arrivals of imm 0x1234" in str(ei.value)
    lpair.a.imm(lpair.pb, 0x1234).wait(T)
    with pytest.raises(xfer.XferTimeoutError):   # one of two: nothing consumed
        lpair.b.imm_wait(0x1234, 2, timeout=0.05)
    lpair.b.imm_wait(0x1234, 1, timeout=T)
    with pytest.raises(xfer.XferError) as ei:
        lpair.b.imm_wait(1, 0)
    assert ei.value.errno == errno.EINVAL


def test_wait_is_interruptible(lpair):
    """Ctrl-C (here SIGALRM raising) interrupts a wait that would last forever."""
    import signal

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            lpair.b.imm_wait(0x5151, 1, timeout=None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    lpair.a.imm(lpair.pb, 0x5151).wait(T)   # the engine still counts
    lpair.b.imm_wait(0x5151, 1, timeout=T)
