# SPDX-License-Identifier: MIT
"""python3 -m xfer.bench: the binding's per-operation cost on `local`.

Two engines in this process (the target's worker receives; `local` writes
with process_vm_writev, which works within one process too). For a 4 KiB
write, a 64-page paged write of 4 KiB pages and an immediate alone it
prints, in microseconds per operation:
  submit   the binding's call (Engine.write / write_paged / imm, an Op back)
  ctypes   the bare ctypes call of the same C function (no wrapper)
  cycle    submission, completion and release, windows of --window ops
           (compare with xfer-bench -p local -t single,paged,imm: its
           per-operation time is size / rate)
The submission overhead of the binding is submit - ctypes, plus the ctypes
call itself (about 1 us) that C does not pay.

  python3 -m xfer.bench [--provider local] [--iters 20000] [--window 64] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from ctypes import byref, c_void_p

import numpy as np

from . import _lib as L
from .core import Engine


def _measure(fn, iters: int, reps: int) -> float:
    """Median over reps of µs per call of fn(iters) (which runs iters calls)."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(iters)
        out.append((time.perf_counter() - t0) / iters * 1e6)
    return statistics.median(out)


def run(provider: str = "local", iters: int = 20000, window: int = 64, reps: int = 5) -> dict:
    page = 4096
    npages = 64
    with Engine(provider=provider) as a, Engine(provider=provider) as b:
        pb = a.add_peer(b.address)
        b.add_peer(a.address)
        a.connect([pb])
        sbuf = np.arange(npages * 2 * page, dtype=np.uint64).view(np.uint8)
        dbuf = np.zeros(npages * 2 * page, dtype=np.uint8)
        src = a.register(sbuf, remote_write=False)
        dst_local = b.register(dbuf)
        dst = a.import_region(pb, dst_local.descriptor)
        sp = np.arange(npages, dtype=np.uint32)
        dp = np.arange(npages, dtype=np.uint32)[::-1].copy()
        res: dict = {"provider": provider, "iters": iters, "window": window, "reps": reps}

        def cycle(submit):
            def go(n):
                ops = []
                for i in range(n):
                    ops.append(submit())
                    if len(ops) == window:
                        for o in ops:
                            o.wait()
                        ops.clear()
                for o in ops:
                    o.wait()
            return go

        def submit_only(submit):
            # submissions timed alone, waited for outside the timed loop in
            # windows (so that the queue does not grow without bound)
            def go(n):
                total = 0.0
                done = 0
                while done < n:
                    k = min(window, n - done)
                    t0 = time.perf_counter()
                    ops = [submit() for _ in range(k)]
                    total += time.perf_counter() - t0
                    for o in ops:
                        o.wait()
                    done += k
                return total
            return go

        def timed_submit(submit, n):
            out = []
            for _ in range(reps):
                out.append(submit_only(submit)(n) / n * 1e6)
            return statistics.median(out)

        def raw_write():
            h = c_void_p()
            L.write(a._h, src._h, 0, dst._h, 0, page, 0, 0, None, byref(h))
            return h

        paged = L.Paged()
        paged.size = ctypes.sizeof(paged)
        paged.src, paged.dst = src._h, dst._h
        paged.src_pages = sp.__array_interface__["data"][0]
        paged.dst_pages = dp.__array_interface__["data"][0]
        paged.num_pages, paged.page_size = npages, page

        def raw_paged():
            h = c_void_p()
            L.write_paged(a._h, byref(paged), None, byref(h))
            return h

        def raw_imm():
            h = c_void_p()
            L.imm(a._h, pb, 5, None, byref(h))
            return h

        class RawOp:   # the raw handles, waited for and released like Ops
            __slots__ = ("h",)

            def __init__(self, h):
                self.h = h

            def wait(self):
                L.op_wait(self.h, -1)
                L.op_release(self.h)

        cases = {
            "write_4k": (lambda: a.write(src, dst, page), lambda: RawOp(raw_write())),
            "paged_64x4k": (lambda: a.write_paged(src, dst, sp, dp, page),
                            lambda: RawOp(raw_paged())),
            "imm": (lambda: a.imm(pb, 5), lambda: RawOp(raw_imm())),
        }
        for name, (py, raw) in cases.items():
            n = iters if name != "paged_64x4k" else max(1000, iters // 8)
            cycle(py)(min(n, 1000))   # warm up
            res[name] = {
                "submit_us": round(timed_submit(py, n), 3),
                "ctypes_us": round(timed_submit(raw, n), 3),
                "cycle_us": round(_measure(cycle(py), n, reps), 3),
            }
        # the immediates the imm case sent, consumed
        b.imm_wait(5, b.imm_count(5), timeout=10) if b.imm_count(5) else None
        return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m xfer.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--provider", default="local")
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.provider, args.iters, args.window, args.reps)
    if args.json:
        json.dump(res, sys.stdout)
        print()
        return 0
    print(f"provider {res['provider']}, {res['iters']} ops, window {res['window']}, "
          f"median of {res['reps']} (us per operation)")
    print(f"{'case':>14} {'submit':>8} {'ctypes':>8} {'cycle':>8}")
    for k in ("write_4k", "paged_64x4k", "imm"):
        r = res[k]
        print(f"{k:>14} {r['submit_us']:8.2f} {r['ctypes_us']:8.2f} {r['cycle_us']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
