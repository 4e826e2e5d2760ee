# SPDX-License-Identifier: MIT
"""xfer.exchange through a DictStore, torch's TCPStore and the file://
rendezvous (ranks as threads of this process), and the Rendezvous class."""

import errno
import os
import threading

import pytest

import xfer


def _ranks(world, fn):
    """Run fn(rank) on world threads; their results (or raised errors)."""
    out = [None] * world

    def go(r):
        try:
            out[r] = fn(r)
        except BaseException as exc:   # returned, checked by the caller
            out[r] = exc

    ts = [threading.Thread(target=go, args=(r,)) for r in range(world)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def _blob(r):
    return bytes([r]) * (r + 1) + b"addr-%d" % r


def test_dict_store():
    store = xfer.DictStore()
    out = _ranks(3, lambda r: xfer.exchange(store, "x", r, 3, _blob(r)))
    assert out == [[_blob(r) for r in range(3)]] * 3
    # keys stay: a second exchange needs its own prefix
    assert store.check([f"x/{r}" for r in range(3)])
    with pytest.raises(TimeoutError, match="x2/1"):
        xfer.exchange(store, "x2", 0, 2, b"a", timeout=0.05)


def test_file_url(tmp_path):
    url = f"file://{tmp_path}"
    out = _ranks(3, lambda r: xfer.exchange(url, "job/one", r, 3, _blob(r)))
    assert out == [[_blob(r) for r in range(3)]] * 3


def test_rendezvous_class(tmp_path):
    url = f"file://{tmp_path}"

    def rank(r):
        with xfer.Rendezvous(url, "rz", r, 2, timeout=20) as z:
            a = z.exchange("first", b"A%d" % r)
            z.barrier("mid")
            b = z.exchange("second", b"B" * (r + 1))
        return a, b

    out = _ranks(2, rank)
    assert out == [([b"A0", b"A1"], [b"B", b"BB"])] * 2


def test_rendezvous_errors(tmp_path):
    with pytest.raises(xfer.RdzvError) as ei:
        xfer.Rendezvous("nosuch://x", "j", 0, 1)
    assert ei.value.errno == errno.EINVAL and ei.value.detail
    with pytest.raises(xfer.RdzvError) as ei:
        xfer.Rendezvous(f"file://{tmp_path}", "bad job!", 0, 1)
    assert ei.value.errno == errno.EINVAL and "job" in ei.value.detail
    with pytest.raises(xfer.RdzvTimeoutError) as ei:   # rank 1 never comes
        with xfer.Rendezvous(f"file://{tmp_path}", "lonely", 0, 2, timeout=0.3) as z:
            z.exchange("n", b"x")
    assert ei.value.errno == errno.ETIMEDOUT and "1" in ei.value.detail
    z = xfer.Rendezvous(f"file://{tmp_path}", "single", 0, 1)
    assert z.exchange("n", b"solo") == [b"solo"]
    z.close()
    z.close()
    with pytest.raises(ValueError, match="Rendezvous is closed"):
        z.barrier("b")


def test_exchange_argument_errors():
    with pytest.raises(ValueError, match="rank 3 is not below world_size 3"):
        xfer.exchange(xfer.DictStore(), "p", 3, 3, b"x")
    with pytest.raises(TypeError, match="has no set"):
        xfer.exchange(object(), "p", 0, 1, b"x")


def test_launch_from_env(monkeypatch):
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
              "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(v, raising=False)
    assert xfer.launch_from_env() is None
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert xfer.launch_from_env() == xfer.Launch(2, 4, 0, "torchrun")
    monkeypatch.setenv("RANK", "9")
    with pytest.raises(xfer.RdzvError) as ei:
        xfer.launch_from_env()
    assert ei.value.errno == errno.EINVAL and "RANK" in str(ei.value)
