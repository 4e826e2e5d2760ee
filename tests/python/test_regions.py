# SPDX-License-Identifier: MIT
"""Regions over every kind of buffer, descriptors (good and malformed),
remote regions, host memory, sharing without /dev/xfer."""

import ctypes
import errno
import mmap

import numpy as np
import pytest

import xfer

T = 10.0


@pytest.fixture
def engines():
    a = xfer.Engine(provider="local")
    b = xfer.Engine(provider="local")
    pb = a.add_peer(b.address)
    b.add_peer(a.address)
    yield a, b, pb
    a.close()
    b.close()


def _roundtrip(a, b, pb, dst_obj, view):
    """Write 1000 known bytes from a into dst_obj (registered at b) and
    check them through `view` (a numpy uint8 view of the same memory)."""
    src = a.register(np.arange(1000, dtype=np.uint16).astype(np.uint8), remote_write=False)
    r = b.register(dst_obj)
    d = a.import_region(pb, r.descriptor)
    assert d.nbytes == r.nbytes == view.nbytes
    a.write(src, d, 1000, dst_offset=24).wait(T)
    assert np.array_equal(view[24:1024], np.arange(1000, dtype=np.uint16).astype(np.uint8))
    assert not view[:24].any() and not view[1024:].any()
    return r


def test_numpy_bytearray_mmap_ctypes_hostbuffer(engines):
    a, b, pb = engines
    arr = np.zeros(2048, dtype=np.uint32)   # any dtype: registered as bytes
    _roundtrip(a, b, pb, arr, arr.view(np.uint8))
    ba = bytearray(4096)
    r = _roundtrip(a, b, pb, ba, np.frombuffer(ba, dtype=np.uint8))
    with pytest.raises(BufferError):   # a registered bytearray cannot move
        ba.extend(b"x")
    r.close()
    ba.extend(b"x")   # released with the region
    mm = mmap.mmap(-1, 8192)
    _roundtrip(a, b, pb, mm, np.frombuffer(mm, dtype=np.uint8))
    ca = (ctypes.c_uint8 * 3000)()
    _roundtrip(a, b, pb, ca, np.frombuffer(ca, dtype=np.uint8))
    hb = xfer.host_alloc(1 << 21)
    assert hb.address % (1 << 21) == 0 and len(hb) == 1 << 21
    _roundtrip(a, b, pb, hb, hb.numpy())
    mv = memoryview(np.zeros(1500, dtype=np.uint8))
    _roundtrip(a, b, pb, mv, np.asarray(mv))


def test_region_attributes(engines):
    a, b, pb = engines
    buf = np.zeros(100, dtype=np.uint8)
    with a.register(buf) as r:
        assert r.address == buf.__array_interface__["data"][0] and r.nbytes == 100
        assert r.buffer is buf and r.engine is a and not r.closed
        assert 0 < len(r.descriptor) <= xfer.DESC_MAX and r.descriptor == r.descriptor
        assert "100 bytes" in repr(r)
    assert r.closed and "closed" in repr(r) and r.buffer is None
    r.close()   # twice: harmless
    with pytest.raises(ValueError, match="Region is closed"):
        r.descriptor


def test_buffer_errors(engines):
    a, b, pb = engines
    with pytest.raises(ValueError, match="read-only"):
        a.register(b"abc")
    src = a.register(b"read-only source", remote_write=False)   # fine as a source
    with pytest.raises(xfer.XferError) as ei:   # no descriptor for a local-only region
        src.descriptor
    assert ei.value.errno == errno.EPERM and ei.value.call == "xfer_mr_descriptor"
    with pytest.raises(ValueError, match="not contiguous"):
        a.register(np.zeros((8, 8), dtype=np.uint8)[:, ::2])
    with pytest.raises(TypeError, match="cannot register a int"):
        a.register(5)
    with pytest.raises(TypeError, match="cannot register a str"):
        a.register("text")


def test_malformed_descriptors(engines):
    a, b, pb = engines
    r = b.register(bytearray(4096))
    desc = r.descriptor
    bad = [b"", desc[:-1], desc[:8], desc + b"\0" * 4, bytes(len(desc))]
    for i in range(0, len(desc), max(1, len(desc) // 16)):   # a flipped byte anywhere
        f = bytearray(desc)
        f[i] ^= 0x41
        bad.append(bytes(f))
    for d in bad:
        with pytest.raises(xfer.XferError) as ei:
            a.import_region(pb, d)
        assert ei.value.errno == errno.EINVAL, d
        assert ei.value.call == "xfer_rmr_import"
        assert f"{len(d)}-byte descriptor for peer {pb}" in str(ei.value)
    with pytest.raises(TypeError, match="descriptor is bytes"):
        a.import_region(pb, "text")
    # a descriptor of an engine other than the one added as the peer
    c = xfer.Engine(provider="local")
    try:
        other = c.register(bytearray(64)).descriptor
        with pytest.raises(xfer.XferError) as ei:
            a.import_region(pb, other)
        assert ei.value.errno == errno.EINVAL
    finally:
        c.close()
    with pytest.raises(xfer.XferError) as ei:   # a peer never added
        a.import_region(7, desc)
    assert ei.value.errno == errno.EINVAL
    d = a.import_region(pb, desc)
    assert d.nbytes == 4096 and d.peer == pb and "4096 bytes" in repr(d)
    d.close()
    d.close()
    with pytest.raises(ValueError, match="RemoteRegion is closed"):
        a.write(a.register(bytearray(8)), d, 8)


def test_region_busy_while_read():
    """Region.close() while a watch reads it: EBUSY, it stays registered."""
    with xfer.Engine(provider="local") as a, xfer.Engine(provider="local") as b:
        pb = a.add_peer(b.address)
        s = a.register(bytearray(64), remote_write=False)
        dr = b.register(bytearray(64))
        w = a.watch(s, a.import_region(pb, dr.descriptor))
        with pytest.raises(xfer.XferError) as ei:
            s.close()
        assert ei.value.errno == errno.EBUSY and "still uses" in str(ei.value)
        assert not s.closed
        w.remove()
        s.close()
        assert s.closed


def test_share_without_kernel_module(engines):
    a, b, pb = engines
    r = a.register(bytearray(4096))
    try:
        sid = r.share()
    except xfer.XferError as exc:
        assert exc.errno == errno.ENODEV and exc.call == "xfer_mr_share"
        with pytest.raises(xfer.XferError) as ei:
            b.open_shared(12345)
        assert ei.value.errno == errno.ENODEV and "0x3039" in str(ei.value)
    else:   # /dev/xfer is there: the other engine maps it
        o = b.open_shared(sid)
        assert o.nbytes == 4096


def test_host_alloc_outlives_views():
    hb = xfer.host_alloc(4096)
    v = hb.numpy(np.uint32)
    del hb   # the view keeps the memory
    v[:] = 7
    assert v.sum() == 7 * 1024
    with pytest.raises(ValueError):
        xfer.host_alloc(0)
