# SPDX-License-Identifier: MIT
"""Shared fixtures of the Python binding's tests: the package from this
checkout (python/), the library from $XFER_BUILD (build), and pairs of
engines in this process (`local` and `shm` both work within one process)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

np = pytest.importorskip("numpy")
import xfer  # noqa: E402

PROVIDERS = os.environ.get("XFER_TEST_PROVIDERS", "local shm").split()


class Pair:
    """Engine a writes into engine b: a's peer index of b is pb."""

    def __init__(self, provider, size=1 << 16):
        self.a = xfer.Engine(provider=provider, peer_timeout_ms=5000)
        self.b = xfer.Engine(provider=provider, peer_timeout_ms=5000)
        self.pb = self.a.add_peer(self.b.address)
        self.pa = self.b.add_peer(self.a.address)
        self.sbuf = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8)
        self.dbuf = np.zeros(size, dtype=np.uint8)
        self.src = self.a.register(self.sbuf, remote_write=False)
        self.dst_mr = self.b.register(self.dbuf)
        self.dst = self.a.import_region(self.pb, self.dst_mr.descriptor)

    def close(self):
        self.a.close()
        self.b.close()


@pytest.fixture(params=PROVIDERS)
def pair(request):
    p = Pair(request.param)
    yield p
    p.close()


@pytest.fixture
def lpair():
    """A pair on `local` only (tests of the binding, not of a provider)."""
    p = Pair("local")
    yield p
    p.close()
