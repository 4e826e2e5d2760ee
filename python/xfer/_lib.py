# SPDX-License-Identifier: MIT
"""Loading libxfer.so and its C declarations (ctypes), one to one with
include/xfer.h and include/xfer_rdzv.h. Nothing here is public: the
classes in xfer.core wrap it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_int, c_int32, c_size_t,
                    c_uint32, c_uint64, c_void_p)

# ---- constants (include/xfer.h) -------------------------------------------
API_VERSION = 1
MAX_RAILS = 8
ADDR_MAX = 1152
DESC_MAX = 512
IDLE_SPIN_MAX_US = 1000000
INFLIGHT_MAX = 65536
DEFAULT_TIMEOUT_MS = 5000
DEFAULT_STRIPE_THRESHOLD = 256 * 1024
MEM_HOST, MEM_CUDA, MEM_DMABUF = 0, 1, 2
MR_REMOTE_WRITE = 1 << 0
MR_KMOD_PIN = 1 << 1
MR_NO_KMOD = 1 << 2
OP_IMM = 1 << 0
WATCH_MAX_STEP = 65536
SHARE_OWNER, SHARE_GROUP, SHARE_UID = 0, 1, 2
RDZV_MAX_BLOB = 1 << 20
RDZV_MAX_RANKS = 65536
RDZV_MAX_NAME = 64
RDZV_MAX_JOB = 128


# ---- structs ----------------------------------------------------------------
class EngineAttr(Structure):
    _fields_ = [("size", c_uint32), ("flags", c_uint32), ("provider", c_char_p),
                ("num_rails", c_uint32), ("gpu", c_int32), ("worker_cpu", c_int32),
                ("peer_timeout_ms", c_uint32), ("node", c_char_p), ("devices", c_char_p),
                ("stripe_threshold", c_uint64), ("idle_spin_us", c_uint32),
                ("max_inflight", c_uint32)]


class EngineInfo(Structure):
    _fields_ = [("size", c_uint32), ("num_rails", c_uint32), ("provider", c_char * 32),
                ("rail_names", (c_char * 64) * MAX_RAILS), ("worker_cpu", c_int32),
                ("imm_bits", c_uint32), ("max_msg_size", c_uint64)]


class RailStats(Structure):
    _fields_ = [("bytes_posted", c_uint64), ("bytes_completed", c_uint64),
                ("ops_posted", c_uint64), ("ops_completed", c_uint64),
                ("ops_failed", c_uint64), ("imm_received", c_uint64)]


class Mem(Structure):
    _fields_ = [("size", c_uint32), ("kind", c_uint32), ("cuda_device", c_int32),
                ("dmabuf_fd", c_int32), ("dmabuf_offset", c_uint64)]


DONE_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int)


class Done(Structure):
    _fields_ = [("fn", c_void_p), ("ctx", c_void_p)]


class Paged(Structure):
    _fields_ = [("size", c_uint32), ("flags", c_uint32), ("src", c_void_p), ("dst", c_void_p),
                ("src_pages", c_void_p), ("dst_pages", c_void_p), ("num_pages", c_uint32),
                ("imm", c_uint32), ("page_size", c_uint64), ("src_stride", c_uint64),
                ("dst_stride", c_uint64), ("src_offset", c_uint64), ("dst_offset", c_uint64)]


class ScatterDst(Structure):
    _fields_ = [("dst", c_void_p), ("src_off", c_uint64), ("dst_off", c_uint64),
                ("len", c_uint64)]


class Notify(Structure):
    _fields_ = [("size", c_uint32), ("flags", c_uint32), ("fn", c_void_p), ("ctx", c_void_p),
                ("flag", c_void_p), ("flag_value", c_uint64)]


class WatchAttr(Structure):
    _fields_ = [("size", c_uint32), ("flags", c_uint32), ("word", c_void_p), ("src", c_void_p),
                ("src_off", c_uint64), ("dst", c_void_p), ("dst_off", c_uint64),
                ("len", c_uint64), ("imm", c_uint32), ("reserved", c_uint32), ("done", Done)]


class RdzvAttr(Structure):
    _fields_ = [("size", c_uint32), ("url", c_char_p), ("job", c_char_p), ("rank", c_uint32),
                ("world_size", c_uint32), ("timeout_ms", c_uint32), ("lease_ttl_s", c_uint32)]


class RdzvBlob(Structure):
    _fields_ = [("data", c_void_p), ("len", c_size_t)]


class Launch(Structure):
    _fields_ = [("size", c_uint32), ("rank", c_uint32), ("world_size", c_uint32),
                ("local_rank", c_uint32), ("source", c_char_p)]


# ---- finding the library -------------------------------------------------
def _candidates() -> list[str]:
    """Where libxfer.so is looked for, in order: $XFER_LIB; the build
    folder of the checkout this package sits in ($XFER_BUILD, else build);
    the LIBDIR make install-python wrote; the system's library path."""
    out = []
    env = os.environ.get("XFER_LIB")
    if env:
        out.append(env)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))   # python/xfer -> repository
    if os.path.isfile(os.path.join(root, "include", "xfer.h")):
        build = os.environ.get("XFER_BUILD", "build")
        out.append(os.path.join(root, build, "lib", "libxfer.so.0"))
    try:   # written by make install-python: the LIBDIR it installed for
        from ._paths import LIBDIR   # type: ignore[import]
        out.append(os.path.join(LIBDIR, "libxfer.so.0"))
    except ImportError:
        pass
    found = ctypes.util.find_library("xfer")
    if found:
        out.append(found)
    out.append("libxfer.so.0")
    return out


def _load() -> ctypes.CDLL:
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} (no such file)")
            continue
        try:
            return ctypes.CDLL(path, use_errno=False)
        except OSError as exc:
            tried.append(f"{path} ({exc})")
    raise ImportError("xfer: libxfer.so not found; tried: " + "; ".join(tried) +
                      " (set XFER_LIB to its path, build it with `make`, or `make install`)")


lib = _load()
path = getattr(lib, "_name", "?")


def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


P = c_void_p
PP = POINTER(c_void_p)
engine_attr_init_size = _fn("xfer_engine_attr_init_size", None, POINTER(EngineAttr), c_size_t)
engine_create = _fn("xfer_engine_create", c_int, POINTER(EngineAttr), PP)
engine_destroy = _fn("xfer_engine_destroy", None, P)
engine_address = _fn("xfer_engine_address", c_int, P, P, POINTER(c_size_t))
engine_add_peer = _fn("xfer_engine_add_peer", c_int, P, c_char_p, c_size_t, POINTER(c_uint32))
peer_status = _fn("xfer_peer_status", c_int, P, c_uint32)
engine_connect = _fn("xfer_engine_connect", c_int, P, POINTER(c_uint32), c_uint32, c_int)
engine_query = _fn("xfer_engine_query", c_int, P, POINTER(EngineInfo))
engine_stats = _fn("xfer_engine_stats", c_int, P, c_uint32, POINTER(RailStats))
mr_reg = _fn("xfer_mr_reg", c_int, P, P, c_size_t, POINTER(Mem), c_uint32, PP)
mr_dereg = _fn("xfer_mr_dereg", c_int, P)
mr_addr = _fn("xfer_mr_addr", c_void_p, P)
mr_len = _fn("xfer_mr_len", c_size_t, P)
host_alloc = _fn("xfer_host_alloc", c_void_p, c_size_t)
mr_descriptor = _fn("xfer_mr_descriptor", c_int, P, P, POINTER(c_size_t))
rmr_import = _fn("xfer_rmr_import", c_int, P, c_uint32, c_char_p, c_size_t, PP)
rmr_free = _fn("xfer_rmr_free", None, P)
rmr_len = _fn("xfer_rmr_len", c_uint64, P)
write = _fn("xfer_write", c_int, P, P, c_uint64, P, c_uint64, c_uint64, c_uint32, c_uint32,
            P, PP)
imm = _fn("xfer_imm", c_int, P, c_uint32, c_uint32, P, PP)
write_paged = _fn("xfer_write_paged", c_int, P, POINTER(Paged), P, PP)
scatter = _fn("xfer_scatter", c_int, P, P, POINTER(ScatterDst), c_uint32, c_uint32, c_uint32,
              P, PP)
barrier = _fn("xfer_barrier", c_int, P, POINTER(c_uint32), c_uint32, c_uint32, P, PP)
op_test = _fn("xfer_op_test", c_int, P)
op_wait = _fn("xfer_op_wait", c_int, P, c_int)
op_release = _fn("xfer_op_release", None, P)
imm_count = _fn("xfer_imm_count", c_uint64, P, c_uint32)
imm_wait = _fn("xfer_imm_wait", c_int, P, c_uint32, c_uint64, c_int)
imm_expect = _fn("xfer_imm_expect", c_int, P, c_uint32, c_uint64, POINTER(Notify))
watch_add = _fn("xfer_watch_add", c_int, P, POINTER(WatchAttr), PP)
watch_fired = _fn("xfer_watch_fired", c_uint64, P)
watch_remove = _fn("xfer_watch_remove", c_int, P)
mr_share = _fn("xfer_mr_share", c_int, P, c_uint32, c_uint32, POINTER(c_uint64))
mr_open_shared = _fn("xfer_mr_open_shared", c_int, P, c_uint64, c_uint32, PP)
strerror = _fn("xfer_strerror", c_char_p, c_int)
rdzv_open = _fn("xfer_rdzv_open", c_int, POINTER(RdzvAttr), PP)
rdzv_exchange = _fn("xfer_rdzv_exchange", c_int, P, c_char_p, c_char_p, c_size_t,
                    POINTER(POINTER(RdzvBlob)))
rdzv_barrier = _fn("xfer_rdzv_barrier", c_int, P, c_char_p)
rdzv_close = _fn("xfer_rdzv_close", c_int, P)
rdzv_last_error = _fn("xfer_rdzv_last_error", c_char_p, P)
launch_from_env = _fn("xfer_launch_from_env", c_int, POINTER(Launch))

_libc = ctypes.CDLL(None)
free = _libc.free
free.restype = None
free.argtypes = [c_void_p]
