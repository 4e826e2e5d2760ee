# SPDX-License-Identifier: MIT
"""xfer.weightsync: the plan from Python, its refusals, and weight updates
across processes launched with torchrun (Debian's python3-torch), ranks
meeting through a torch TCPStore: 2 trainers -> 1 inference rank in bf16 on
shm, 4 -> 2 in fp8 on local, every write of every step checked byte for
byte at its receiver (tests/python/ws_rank.py), nothing outside the
destinations, and the check shown to catch a changed byte."""

import json
import os
import shutil
import socket
import subprocess

import pytest

from conftest import ROOT
import xfer
from xfer import weightsync as ws

TINY = ('{"model_type":"qwen2","hidden_size":256,"intermediate_size":640,'
        '"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,'
        '"vocab_size":1000,"tie_word_embeddings":false}')


def test_plan():
    p = ws.Plan(TINY, trainer="fsdp=2", inference="tp=1,dp=1", dtype="bf16")
    assert (p.ntrainers, p.ninfer, p.world_size) == (2, 1, 3)
    names = [q.name for q in p.params]
    assert "model.embed_tokens.weight" in names
    q = p.param("model.layers.0.mlp.down_proj.weight")
    assert (q.rows, q.cols, q.dtype) == (256, 640, "bf16")
    # the two trainers' rows tile the parameter
    (a0, an), (b0, bn) = p.shard_rows(q.index, 0), p.shard_rows(q.index, 1)
    assert a0 == 0 and b0 == an and an + bn == q.rows
    ts = p.tensors(0)
    assert any(t.name.endswith("qkv_proj.weight") for t in ts)   # fused as vLLM stores it
    assert all(t.offset + t.nbytes <= p.buffer_bytes(0) for t in ts)
    p.validate()
    p.close()
    p.close()
    with pytest.raises(ValueError, match="closed"):
        p.shard_rows(0, 0)


def test_plan_refusals():
    with pytest.raises(ValueError, match="dtype"):
        ws.Plan(TINY, dtype="fp16")
    with pytest.raises(xfer.XferError) as e:
        ws.Plan(TINY, trainer="fsdp=0")
    assert e.value.errno == 22 and "fsdp=0" in str(e.value)
    with pytest.raises(xfer.XferError) as e:
        ws.Plan(TINY, inference="tp=8")     # more ways than the 4 heads
    assert e.value.errno == 22
    with pytest.raises(xfer.XferError) as e:
        ws.Plan("/nonexistent/config.json")
    assert "config.json" in str(e.value)
    with pytest.raises(xfer.XferError):
        ws.Plan('{"model_type": "qwen2"')      # truncated JSON
    p = ws.Plan(TINY, trainer="fsdp=2")
    with pytest.raises(KeyError, match="no parameter"):
        p.param("model.nope")
    with pytest.raises(ValueError, match="inference rank 5"):
        p.tensors(5)
    store = xfer.DictStore()
    with pytest.raises(ValueError, match="trainer rank 2 of 2"):
        ws.Trainer(p, 2, store, provider="local")
    with pytest.raises(ValueError, match="not an inference rank"):
        ws.Receiver(p, 0, store, provider="local")
    with pytest.raises(ValueError, match=r"rank 7 is not an inference rank \(ranks 2 .. 2\)"):
        ws.Receiver(p, 7, store, provider="local")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("trainer,inference,dtype,provider,world", [
    ("fsdp=2", "tp=1,dp=1", "bf16", "shm", 3),
    ("fsdp=4", "tp=1,dp=2", "fp8", "local", 6),
])
def test_torchrun(tmp_path, trainer, inference, dtype, provider, world):
    pytest.importorskip("torch")
    torchrun = shutil.which("torchrun") or "/usr/bin/torchrun"
    if not os.path.exists(torchrun):
        pytest.skip("torchrun is not installed (python3-torch)")
    cfg = tmp_path / "config.json"
    cfg.write_text(TINY)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    # -r 1 -t 1: Debian's torch 1.13 on Python 3.11 fails with the default
    # redirects ("0": IntFlag's zero member is not iterated any more)
    cmd = [torchrun, "--standalone", "--nproc_per_node", str(world), "-r", "1", "-t", "1",
           "--log_dir", str(tmp_path / "logs"), "--master_port", str(_free_port()),
           os.path.join(ROOT, "tests", "python", "ws_rank.py"), str(cfg), trainer, inference,
           dtype, "2", provider]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    out = [json.loads(line.split(":", 1)[1]) for line in p.stdout.splitlines()
           if line.startswith("[") and ':{"rank"' in line]
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert sorted(d["rank"] for d in out) == list(range(world))
    plan = ws.Plan(TINY, trainer=trainer, inference=inference, dtype=dtype)
    infer = [d for d in out if d["role"] == "inference"]
    assert len(infer) == plan.ninfer
    for d in infer:
        writes = sum(1 for i in range(plan.sched.nwrites)
                     if plan.sched.writes[i].dst_rank == d["rank"] - plan.ntrainers)
        assert d["steps"] == 2 and d["checked"] == 2 * writes > 0
        assert d["bad"] == 0 and d["stray"] == 0 and d["torch_ok"] and d["caught"]
    assert all(d["steps"] == 2 and d["bytes_written"] > 0 for d in out if d["role"] == "trainer")
