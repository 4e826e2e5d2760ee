# SPDX-License-Identifier: MIT
"""xfer.connectors.vllm against a stub of vLLM v0.10.1's connector
interface (tests/python/vllm_stub): a prefill and a decode process
(tests/python/kv_side.py) on local and shm, meeting through a torch
TCPStore served here: layer-by-layer push of two requests with every byte
of the decode's KV cache checked, a request the prefill never has (the
decode times out and reports it), and one aborted at the prefill after two
of its layers."""
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import PROVIDERS

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.mark.parametrize("provider", PROVIDERS)
def test_request_cycle(provider):
    torch = pytest.importorskip("torch")
    import datetime
    import torch.distributed as dist
    port = _free_port()
    store = dist.TCPStore("127.0.0.1", port, None, True, timeout=datetime.timedelta(seconds=60))
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    procs = {r: subprocess.Popen([py, os.path.join(HERE, "kv_side.py"), r, str(port), provider],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in ("decode", "prefill")}
    res = {}
    for r, p in procs.items():
        o, e = p.communicate(timeout=90)
        assert p.returncode == 0, f"{r}: {e[-2000:]}"
        res[r] = json.loads(o.strip().splitlines()[-1])
    del store, torch
    d, p = res["decode"], res["prefill"]
    # prefill: r1, r2 sent; r4 reported once its two layers' writes completed
    assert p["reported"] == ["r1", "r2", "r4"]
    assert p["failed"] == {"r4": "aborted"}
    assert p["scheduler_holds"] == []
    # decode: every request reported, its blocks freed; r3 and r4 with the reason
    assert d["reported"] == ["r1", "r2", "r3", "r4"]
    assert set(d["failed"]) == {"r3", "r4"}
    assert d["failed"]["r3"].startswith("4 of 4 layers did not arrive within 3.0 s")
    assert d["failed"]["r4"].startswith("2 of 4 layers did not arrive within 3.0 s "
                                        "(first: model.layers.2.self_attn.attn)")
    # every byte of the decode's cache: what was pushed, and 0 elsewhere
    assert d["bytes_ok"], d["bad_layers"]
    assert d["bytes_checked"] == 4 * 2 * 32 * 16 * 2 * 64 * 2
    assert d["layer_order_ok"], d["layer_times"]
