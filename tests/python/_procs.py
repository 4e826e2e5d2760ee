# SPDX-License-Identifier: MIT
"""What each process of test_procs.py runs (a module of its own: the
'spawn' start method imports it in the child). Children import numpy and
xfer, never torch (seconds per process)."""

SLOT = 64 * 1024   # bytes each rank writes into each other rank
PAGE = 4096


def pattern(rank):
    import numpy as np
    return np.random.default_rng(1000 + rank).integers(0, 256, SLOT, dtype=np.uint8)


def perm(rank):
    """The paged half's destination pages (a permutation) for writer rank."""
    import numpy as np
    half = SLOT // 2 // PAGE
    return np.random.default_rng(2000 + rank).permutation(half).astype(np.uint32)


def rank_main(provider, rank, world, url, job, q):
    try:
        q.put((rank, _run(provider, rank, world, url, job)))
    except BaseException as exc:   # reported, not lost in a child's stderr
        q.put((rank, f"{type(exc).__name__}: {exc}"))


def _run(provider, rank, world, url, job):
    import numpy as np
    import xfer

    T = 30.0
    with xfer.Engine(provider=provider, peer_timeout_ms=10000) as e:
        addrs = xfer.exchange(url, job + ".addr", rank, world, e.address)
        peers = {r: e.add_peer(addrs[r]) for r in range(world) if r != rank}
        dbuf = np.zeros(world * SLOT, dtype=np.uint8)
        mine = e.register(dbuf)
        descs = xfer.exchange(url, job + ".desc", rank, world, mine.descriptor)
        remote = {r: e.import_region(p, descs[r]) for r, p in peers.items()}
        sbuf = pattern(rank)
        src = e.register(sbuf, remote_write=False)
        half = SLOT // 2
        ops = []
        for r, d in remote.items():
            # first half: one write with an immediate; second half: pages,
            # permuted, each landing at its permuted place in the slot
            ops.append(e.write(src, d, half, 0, rank * SLOT, imm=100 + rank))
            pages = np.arange(half // PAGE, dtype=np.uint32)
            ops.append(e.write_paged(src, d, pages, perm(rank), PAGE, imm=200 + rank,
                                     src_offset=half, dst_offset=rank * SLOT + half))
        for o in ops:
            o.wait(T)
        for r in peers:
            e.imm_wait(100 + r, 1, timeout=T)
            e.imm_wait(200 + r, 1, timeout=T)
        bad = []
        for r in peers:
            want = pattern(r)
            got = dbuf[r * SLOT:(r + 1) * SLOT]
            if not np.array_equal(got[:half], want[:half]):
                bad.append(f"from {r}: the write's bytes differ")
            for i, dp in enumerate(perm(r)):
                if not np.array_equal(got[half + dp * PAGE:half + (dp + 1) * PAGE],
                                      want[half + i * PAGE:half + (i + 1) * PAGE]):
                    bad.append(f"from {r}: page {i} -> {dp} differs")
                    break
        if dbuf[rank * SLOT:(rank + 1) * SLOT].any():
            bad.append("own slot written")
        # nobody leaves (and takes its memory) before everyone checked
        xfer.exchange(url, job + ".done", rank, world, b"1")
        return "ok" if not bad else "; ".join(bad)
