# SPDX-License-Identifier: MIT
"""xfer - one-sided RDMA transfers (KV-cache pages, weight updates, MoE
dispatch) from Python: a ctypes binding over libxfer.so, one to one with
the C API (include/xfer.h, include/xfer_rdzv.h; man pages xfer(7),
xfer_engine_create(3), xfer_mr_reg(3), xfer_write(3), xfer_imm_wait(3),
xfer_watch_add(3), xfer_rdzv_open(3)).

SYNOPSIS
    import numpy as np, xfer
    with xfer.Engine(provider="local") as e:
        peer = e.add_peer(peer_address)               # bytes from the peer
        src = e.register(np.arange(1 << 20, dtype=np.uint8))
        dst = e.import_region(peer, peer_descriptor)  # bytes from the peer
        e.write(src, dst, 4096, imm=7).wait(5.0)
        e.write_paged(src, dst, [0, 3], [5, 1], page_size=4096).wait()
    # the peer: e.imm_wait(7, count=1, timeout=5.0), then read its buffer

CLASSES
    Engine        xfer_engine_create(3): Engine(provider=..., num_rails=...,
                  peer_timeout_ms=..., ...) with the struct xfer_engine_attr
                  fields as keyword arguments; .address, .info, .stats(),
                  .add_peer(), .peer_status(), .connect(); register(),
                  import_region(), open_shared(); write(), imm(),
                  write_paged(), scatter(), barrier() (each returns an Op);
                  imm_count(), imm_wait(), expect() (an Expectation),
                  watch() (a Watch); close() / a context manager.
    Region        xfer_mr_reg(3): a registered buffer (numpy array, any
                  buffer-protocol object, torch tensor, HostBuffer);
                  .descriptor bytes for peers; close().
    RemoteRegion  xfer_rmr_import(3): a peer's region from its descriptor.
    Op            an operation handle: test(), wait(timeout), status.
    Expectation   xfer_imm_expect(3) with a flag word (a numpy view).
    Watch         xfer_watch_add(3): a write posted when a word increases.
    Rendezvous    xfer_rdzv_open(3): ranks meeting through etcd:// or file://.
    DictStore     an in-process store with torch's store methods.
    XferError     every failure of a C call: an OSError whose errno is the
                  positive errno value and whose strerror is
                  "<call>: <xfer_strerror text> (<detail>)"; .call, .text,
                  .detail. XferTimeoutError (ETIMEDOUT) is also a
                  TimeoutError; RdzvError carries xfer_rdzv_last_error.

FUNCTIONS
    exchange(store, prefix, rank, world_size, blob) -> list[bytes]
    strerror(err), host_alloc(nbytes), launch_from_env()

ERRORS
    A C call's negative errno raises XferError (errno, the call, the text,
    what was asked: "xfer_write: Numerical result out of range (4096 bytes
    from offset 0 of 1024 ...)"). Arguments of the wrong type raise
    TypeError, bad values that never reach C (index arrays of unequal
    length, negative page indices) ValueError. Using a closed Engine,
    Region, RemoteRegion, Op handle or Rendezvous raises ValueError
    ("xfer: Engine is closed"), as Python's files do.

LIFETIMES
    A Region keeps its buffer alive (a bytearray cannot be resized while
    registered) until it is closed or collected; an Op keeps its engine and
    source region alive; regions and remote regions keep their engine
    alive. A Region collected while an operation still reads it (its Op
    dropped early) stays registered, with its memory, until the operation
    finished. Engine.close() removes watches, deregisters regions (waiting
    for operations that still read them, at most the peer timeout), then
    destroys the engine: what is still in flight completes with ECANCELED,
    and Op handles stay readable. close() twice is harmless everywhere.
    One thread closes an engine while no other thread uses it.

THREADING
    Every C call releases the GIL (ctypes), so other Python threads run
    while one waits. Waits (Op.wait, Engine.imm_wait) are sliced into
    0.1 s pieces so that Ctrl-C interrupts them. No Python callback ever
    runs on the engine's worker thread: the C API's completion callbacks
    and xfer_notify.fn are not exposed. The worker posts every transfer of
    the engine and must never wait: a Python callback would need the GIL,
    and the worker would stall - with every transfer behind it - whenever
    any Python thread holds the interpreter (a long numpy call, the garbage
    collector, an import). Completion is observed instead through Op
    handles and flag words: Engine.expect() has the worker store a value
    into a 64-bit word (a numpy view, or a slot of a pinned tensor a CUDA
    stream waits on with cuStreamWaitValue64), which costs the worker one
    store.

LIBRARY
    libxfer.so is found at $XFER_LIB, else in the build folder of the
    checkout this package sits in (build/lib, or $XFER_BUILD/lib), else on
    the system's library path (make install; ldconfig). xfer.LIBRARY is
    the path loaded.
"""

from ._lib import (ADDR_MAX, DESC_MAX, MAX_RAILS, MEM_CUDA, MEM_DMABUF, MEM_HOST,
                   MR_KMOD_PIN, MR_NO_KMOD, MR_REMOTE_WRITE, OP_IMM, SHARE_GROUP, SHARE_OWNER,
                   SHARE_UID, WATCH_MAX_STEP, DEFAULT_TIMEOUT_MS, API_VERSION)
from ._lib import path as LIBRARY
from .core import (Engine, EngineInfo, Expectation, HostBuffer, Op, RailStats, Region,
                   RemoteRegion, Watch, XferError, XferTimeoutError, host_alloc, strerror)
from .rdzv import (DictStore, Launch, Rendezvous, RdzvError, RdzvTimeoutError, exchange,
                   launch_from_env)

__all__ = [
    "Engine", "Region", "RemoteRegion", "Op", "Expectation", "Watch", "HostBuffer",
    "EngineInfo", "RailStats", "XferError", "XferTimeoutError", "strerror", "host_alloc",
    "Rendezvous", "RdzvError", "RdzvTimeoutError", "DictStore", "Launch", "exchange",
    "launch_from_env", "LIBRARY", "API_VERSION", "ADDR_MAX", "DESC_MAX", "MAX_RAILS",
    "MEM_HOST", "MEM_CUDA", "MEM_DMABUF", "MR_REMOTE_WRITE", "MR_KMOD_PIN", "MR_NO_KMOD",
    "OP_IMM", "SHARE_OWNER", "SHARE_GROUP", "SHARE_UID", "WATCH_MAX_STEP",
    "DEFAULT_TIMEOUT_MS",
]
__version__ = "0.1.0"

for _c in (Engine, EngineInfo, Expectation, HostBuffer, Op, RailStats, Region, RemoteRegion, Watch,
           XferError, XferTimeoutError, DictStore, Launch, Rendezvous, RdzvError, RdzvTimeoutError):
    _c.__module__ = "xfer"   # xfer.XferError in tracebacks and help(), not xfer.core's
del _c
