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


# ---- TAP for tests/run.sh ------------------------------------------------------
# With XFER_TAP=<file>, one TAP line per test goes there as it ends
# ("ok N - id", "not ok N - id", "ok N - id # SKIP reason"); tests/python/run.sh
# prints the file so that tests/run.sh counts each test.
_tap = {"n": 0, "f": None}


def pytest_configure(config):
    path = os.environ.get("XFER_TAP")
    if path:
        _tap["f"] = open(path, "w", buffering=1)


def pytest_runtest_logreport(report):
    f = _tap["f"]
    if f is None:
        return
    name = report.nodeid.replace("tests/python/", "")
    if report.when == "call" or (report.when == "setup" and not report.passed) or \
            (report.when == "teardown" and report.failed):
        _tap["n"] += 1
        n = _tap["n"]
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            f.write(f"ok {n} - {name} # SKIP {reason.replace('Skipped: ', '')}\n")
        elif report.passed:
            f.write(f"ok {n} - {name}\n")
        else:
            f.write(f"not ok {n} - {name}{' (' + report.when + ')' if report.when != 'call' else ''}\n")


def pytest_unconfigure(config):
    if _tap["f"] is not None:
        _tap["f"].write(f"1..{_tap['n']}\n")
        _tap["f"].close()
