# SPDX-License-Identifier: MIT
"""Engine: attributes, address, peers, query, stats, errors, close."""

import errno

import pytest

import xfer


def test_create_attributes_and_info():
    with xfer.Engine(provider="local", num_rails=1, peer_timeout_ms=1234, idle_spin_us=10,
                     max_inflight=64, stripe_threshold=1 << 20, worker_cpu=-1, gpu=-1) as e:
        info = e.info
        assert info.provider == "local" and e.provider == "local"
        assert info.num_rails == 1 and info.rail_names == ("local",)
        assert info.imm_bits == 32 and info.max_msg_size > 0
        assert 0 < len(e.address) <= xfer.ADDR_MAX
        assert e.address == e.address   # stable
        st = e.stats()
        assert len(st) == 1 and st[0] == e.stats(0) and st[0].ops_posted == 0
        assert "local" in repr(e)


def test_bad_provider_is_enodev():
    with pytest.raises(xfer.XferError) as ei:
        xfer.Engine(provider="no-such-provider")
    assert ei.value.errno == errno.ENODEV
    assert ei.value.call == "xfer_engine_create"
    assert "no-such-provider" in str(ei.value)
    assert ei.value.text == xfer.strerror(-errno.ENODEV)
    assert isinstance(ei.value, OSError)


@pytest.mark.parametrize("attrs", [dict(num_rails=99), dict(idle_spin_us=2_000_000),
                                   dict(max_inflight=1 << 20), dict(gpu=-5)])
def test_bad_attributes_are_einval(attrs):
    with pytest.raises(xfer.XferError) as ei:
        xfer.Engine(provider="local", **attrs)
    assert ei.value.errno == errno.EINVAL
    k = next(iter(attrs))
    assert f"{k}={attrs[k]}" in str(ei.value)


def test_wrong_argument_types():
    with pytest.raises(TypeError, match="unknown attributes.*bogus"):
        xfer.Engine(provider="local", bogus=1)
    with pytest.raises(TypeError, match="num_rails must be an int"):
        xfer.Engine(provider="local", num_rails="2")
    with xfer.Engine(provider="local") as e:
        with pytest.raises(TypeError):
            e.add_peer(12)
        with pytest.raises(TypeError):
            e.imm("peer", 1)
        with pytest.raises(ValueError, match="not a 32-bit"):
            e.imm_count(-1)


@pytest.mark.parametrize("provider", ["local", "shm"])
def test_peers_connect_status(provider):
    with xfer.Engine(provider=provider) as a, xfer.Engine(provider=provider) as b:
        p = a.add_peer(b.address)
        assert a.peer_status(p) == 0
        a.connect([p], timeout=5)
        assert a.peer_status(p) == 0
        with pytest.raises(xfer.XferError) as ei:
            a.peer_status(99) if False else a.connect([7], timeout=1)
        assert ei.value.errno == errno.EINVAL and "[7]" in str(ei.value)
        assert a.peer_status(77) == -errno.EINVAL


def test_malformed_addresses():
    with xfer.Engine(provider="local") as a, xfer.Engine(provider="local") as b:
        good = b.address
        for bad in (b"", b"\0" * 64, good[:-1], good[:20]):
            with pytest.raises(xfer.XferError) as ei:
                a.add_peer(bad)
            assert ei.value.errno == errno.EINVAL, bad
            assert f"{len(bad)}-byte address" in str(ei.value)
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 0xFF   # the checksum catches it
        with pytest.raises(xfer.XferError) as ei:
            a.add_peer(bytes(flipped))
        assert ei.value.errno == errno.EINVAL
        with xfer.Engine(provider="shm") as s:   # another provider's address
            with pytest.raises(xfer.XferError) as ei:
                a.add_peer(s.address)
            assert ei.value.errno == errno.EPROTO


def test_close_twice_and_use_after_close():
    e = xfer.Engine(provider="local")
    e.close()
    e.close()
    assert e.closed and "closed" in repr(e)
    for call in (lambda: e.address, lambda: e.info, lambda: e.stats(), lambda: e.add_peer(b"x"),
                 lambda: e.imm_count(1), lambda: e.imm_wait(1, 1, 0.01),
                 lambda: e.register(bytearray(8)), lambda: e.expect(1),
                 lambda: e.imm(0, 1), lambda: e.barrier([0], 1), lambda: e.connect([0])):
        with pytest.raises(ValueError, match="Engine is closed"):
            call()


def test_strerror():
    assert xfer.strerror(-errno.ERANGE) == xfer.strerror(errno.ERANGE)
    assert xfer.strerror(0)
    assert xfer.strerror(-(1 << 31))   # any int, INT_MIN included


def test_docs_read_like_man_pages():
    assert "xfer_engine_create(3)" in xfer.__doc__ and "THREADING" in xfer.__doc__
    for name in xfer.__all__:
        obj = getattr(xfer, name)
        if callable(obj) and not isinstance(obj, int):
            assert obj.__doc__, name
    for cls in (xfer.Engine, xfer.Region, xfer.RemoteRegion, xfer.Op, xfer.Expectation,
                xfer.Watch, xfer.Rendezvous):
        for m, f in vars(cls).items():
            if not m.startswith("_") and callable(f):
                assert f.__doc__, f"{cls.__name__}.{m}"


def test_library_not_found_names_the_paths(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, XFER_LIB=str(tmp_path / "nope.so"), XFER_BUILD="no-such-build",
               PYTHONPATH=os.path.dirname(os.path.dirname(xfer.__file__)),
               PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", "import xfer"], env=env, capture_output=True,
                       text=True)
    if "libxfer.so not found" not in r.stderr and r.returncode == 0:
        pytest.skip("libxfer.so.0 is installed on the system path")
    assert r.returncode != 0 and "ImportError: xfer: libxfer.so not found" in r.stderr
    assert "nope.so (no such file)" in r.stderr and "no-such-build/lib/libxfer.so.0" in r.stderr


def test_library_from_xfer_lib():
    import os
    import subprocess
    import sys

    env = dict(os.environ, XFER_LIB=os.path.realpath(xfer.LIBRARY),
               PYTHONPATH=os.path.dirname(os.path.dirname(xfer.__file__)),
               PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-c", "import xfer; print(xfer.LIBRARY)"], env=env,
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == os.path.realpath(xfer.LIBRARY)
