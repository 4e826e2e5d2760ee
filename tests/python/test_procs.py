# SPDX-License-Identifier: MIT
"""Two and three processes on `local` and `shm`: each rank writes a write
with an immediate and a permuted paged write into every other rank,
addresses and descriptors swapped through the file:// rendezvous
(xfer.exchange); every byte checked at the receiver."""

import multiprocessing as mp

import pytest

import _procs
from conftest import PROVIDERS


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_ranks(provider, world, tmp_path):
    ctx = mp.get_context("spawn")   # no engine threads or torch state inherited
    q = ctx.Queue()
    job = f"py-{provider}-{world}"
    procs = [ctx.Process(target=_procs.rank_main,
                         args=(provider, r, world, f"file://{tmp_path}", job, q))
             for r in range(world)]
    for p in procs:
        p.start()
    res = {}
    try:
        for _ in range(world):
            rank, out = q.get(timeout=90)
            res[rank] = out
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert res == {r: "ok" for r in range(world)}
    assert all(p.exitcode == 0 for p in procs)
