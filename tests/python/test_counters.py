# SPDX-License-Identifier: MIT
"""Immediate counters: count, wait, expect with flag words (fresh words,
numpy arrays of words, index); watched words firing writes."""

import errno
import time

import numpy as np
import pytest

import xfer

T = 10.0


def test_count_and_wait(pair):
    for _ in range(3):
        pair.a.imm(pair.pb, 0x77).wait(T)
    # the sender's completion may come before the target's worker counted
    # (shm): look until all three are there
    dl = time.monotonic() + T
    while pair.b.imm_count(0x77) < 3 and time.monotonic() < dl:
        time.sleep(0.001)
    assert pair.b.imm_count(0x77) == 3
    pair.b.imm_wait(0x77, 2, timeout=T)
    assert pair.b.imm_count(0x77) == 1
    pair.b.imm_wait(0x77, timeout=T)
    assert pair.b.imm_count(0x77) == 0


def test_expect_fresh_word(pair):
    x = pair.b.expect(0x33, count=2)
    assert x.flag.dtype == np.uint64 and x.flag.shape == (1,) and int(x.flag[0]) == 0
    assert not x.done()
    pair.a.write(pair.src, pair.dst, 512, imm=0x33).wait(T)
    pair.a.write(pair.src, pair.dst, 512, src_offset=512, dst_offset=512, imm=0x33).wait(T)
    x.wait(T)
    assert x.done() and int(x.flag[0]) == 1
    assert np.array_equal(pair.dbuf[:1024], pair.sbuf[:1024])
    assert pair.b.imm_count(0x33) == 0   # consumed by the expectation
    assert "done" in repr(x)


def test_expect_words_of_an_array(pair):
    """One word per layer: layer i's expectation stores i + 1 into words[i]."""
    words = np.zeros(4, dtype=np.uint64)
    xs = [pair.b.expect(0x100 + i, 1, flag=words, index=i, value=i + 1) for i in range(4)]
    for i in (2, 0, 3, 1):
        pair.a.write(pair.src, pair.dst, 256, src_offset=256 * i, dst_offset=256 * i,
                     imm=0x100 + i).wait(T)
    for x in xs:
        x.wait(T)
    assert list(words) == [1, 2, 3, 4]
    assert np.array_equal(pair.dbuf[:1024], pair.sbuf[:1024])
    assert xs[2].flag.__array_interface__["data"][0] == words[2:].__array_interface__["data"][0]


def test_expect_errors(lpair):
    b = lpair.b
    with pytest.raises(IndexError, match="index 4 is outside its 4 words"):
        b.expect(1, flag=np.zeros(4, dtype=np.uint64), index=4)
    with pytest.raises(ValueError, match="8-byte integers"):
        b.expect(1, flag=np.zeros(4, dtype=np.uint32).reshape(4) if False else _Tensorish())
    with pytest.raises(ValueError, match="writable"):
        b.expect(1, flag=bytes(8))
    with pytest.raises(xfer.XferError) as ei:
        b.expect(1, count=0)
    assert ei.value.errno == errno.EINVAL and ei.value.call == "xfer_imm_expect"
    x = b.expect(0x4444, 1)
    with pytest.raises(xfer.XferTimeoutError) as ei:
        x.wait(0.02)
    assert "imm 0x4444" in str(ei.value)


class _Tensorish:
    """data_ptr() and 4-byte elements: not a word array."""

    def data_ptr(self):
        return 0

    def element_size(self):
        return 4


def test_expectation_after_close(lpair):
    x = lpair.b.expect(0x99, 1)
    lpair.b.close()
    with pytest.raises(ValueError, match="engine is closed"):
        x.wait(1)


def test_watch_fires_writes(pair):
    """Each increase of the word posts the prepared write once."""
    src_buf = np.zeros(256, dtype=np.uint8)
    s = pair.a.register(src_buf, remote_write=False)
    w = pair.a.watch(s, pair.dst, 256, dst_offset=1024, imm=0x5A)
    for k in range(1, 4):
        src_buf[:] = k   # what this firing carries
        w.fire()
        pair.b.imm_wait(0x5A, 1, timeout=T)
        assert (pair.dbuf[1024:1280] == k).all()
        assert w.fired == k
    words = np.zeros(2, dtype=np.uint64)
    w2 = pair.a.watch(s, pair.dst, 16, dst_offset=1024, word=words, index=1, imm=0x5B)
    words[1] = 2   # an increase by 2 posts two writes
    pair.b.imm_wait(0x5B, 2, timeout=T)
    assert w2.fired == 2
    w.remove()
    w.remove()
    with pytest.raises(ValueError, match="Watch is closed"):
        w.fired
    with pytest.raises(xfer.XferError) as ei:
        pair.a.watch(s, pair.dst, 512)
    assert ei.value.errno == errno.ERANGE
    assert not pair.dbuf[:1024].any() and not pair.dbuf[1280:].any()
