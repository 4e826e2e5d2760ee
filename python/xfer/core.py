# SPDX-License-Identifier: MIT
"""Engines, regions, operations and immediate counters: the classes over
include/xfer.h. See the package docstring (help(xfer)) for the rules."""

from __future__ import annotations

import array
import ctypes
import errno as _errno
import time
import warnings
from ctypes import byref, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Iterable, NamedTuple, Optional, Sequence, Tuple

from . import _lib as L

try:   # numpy is optional for the binding (index arrays, word views)
    import numpy as _np
except ImportError:   # pragma: no cover - the tests need numpy
    _np = None

_U32 = _np.dtype(_np.uint32) if _np is not None else None
_I32 = _np.dtype(_np.int32) if _np is not None else None
_EINPROGRESS = -_errno.EINPROGRESS
_ETIMEDOUT = -_errno.ETIMEDOUT
_EBUSY = -_errno.EBUSY
# Blocking C waits are cut into slices this long so that the interpreter
# gets back control between them and a KeyboardInterrupt (Ctrl-C) is raised
# within that time; a wait that ends earlier returns at once.
_WAIT_SLICE_MS = 100


# ---- errors ------------------------------------------------------------------
def strerror(err: int) -> str:
    """xfer_strerror(3): the text of an error this library returns (a
    negative errno value; a positive one is taken as its negation)."""
    err = int(err)
    return L.strerror(-abs(err) if err else 0).decode()


class XferError(OSError):
    """An xfer call failed. ``errno`` is the positive errno value,
    ``strerror`` xfer_strerror's text, ``call`` the C function (or method)
    that failed; str() says all three and any detail."""

    def __init__(self, err: int, call: str, detail: str = ""):
        err = abs(int(err))
        text = strerror(err)
        super().__init__(err, f"{call}: {text}" + (f" ({detail})" if detail else ""))
        self.call = call
        self.text = text
        self.detail = detail


class XferTimeoutError(XferError, TimeoutError):
    """XferError with errno ETIMEDOUT; also a TimeoutError."""


def _error(ret: int, call: str, detail: str = "") -> XferError:
    cls = XferTimeoutError if ret == _ETIMEDOUT else XferError
    return cls(ret, call, detail)


def _check(ret: int, call: str, detail: str = "") -> int:
    if ret < 0:
        raise _error(ret, call, detail)
    return ret


def _closed(what: str) -> ValueError:
    return ValueError(f"xfer: {what} is closed")


def _u32(v: Any, what: str) -> int:
    v = int(v)
    if not 0 <= v <= 0xFFFFFFFF:
        raise ValueError(f"xfer: {what} {v} is not a 32-bit unsigned value")
    return v


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None or timeout < 0:
        return None
    return time.monotonic() + timeout


def _left_ms(deadline: Optional[float]) -> int:
    """Milliseconds of the next slice of a wait (never negative)."""
    if deadline is None:
        return _WAIT_SLICE_MS
    left = deadline - time.monotonic()
    return max(0, min(_WAIT_SLICE_MS, int(left * 1000 + 0.999)))


# ---- memory --------------------------------------------------------------------
def _memory(obj: Any, writable: bool) -> Tuple[int, int, Any, int, int]:
    """(address, bytes, what keeps it alive, XFER_MEM_* kind, CUDA device)
    of a buffer: a torch tensor (anything with data_ptr() and nbytes), or
    any contiguous object with the buffer protocol (numpy arrays, bytearray,
    mmap, ctypes arrays, memoryview)."""
    if isinstance(obj, HostBuffer):
        return obj.address, obj.nbytes, obj, L.MEM_HOST, 0
    if hasattr(obj, "data_ptr") and callable(obj.data_ptr):
        if hasattr(obj, "is_contiguous") and not obj.is_contiguous():
            raise ValueError("xfer: the tensor is not contiguous (call .contiguous() first; "
                             "a copy would not be the tensor the peer writes into)")
        nbytes = getattr(obj, "nbytes", None)
        if nbytes is None:
            nbytes = obj.numel() * obj.element_size()
        dev = getattr(obj, "device", None)
        kind, cuda = L.MEM_HOST, 0
        if dev is not None and getattr(dev, "type", "cpu") != "cpu":
            if dev.type != "cuda":
                raise ValueError(f"xfer: tensors on {dev.type} cannot be registered "
                                 "(host and CUDA only)")
            kind, cuda = L.MEM_CUDA, dev.index or 0
        return int(obj.data_ptr()), int(nbytes), obj, kind, cuda
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(f"xfer: cannot register a {type(obj).__name__}: it has neither the "
                        "buffer protocol nor data_ptr()/nbytes") from None
    if not mv.contiguous:
        raise ValueError("xfer: the buffer is not contiguous")
    mv = mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv
    if mv.readonly:
        if writable:
            raise ValueError("xfer: a read-only buffer cannot take remote writes "
                             "(register it with remote_write=False as a source)")
        if _np is None:
            raise TypeError("xfer: a read-only buffer needs numpy to be registered")
        arr = _np.frombuffer(mv, dtype=_np.uint8)
        return arr.__array_interface__["data"][0], mv.nbytes, (obj, arr), L.MEM_HOST, 0
    if mv.nbytes == 0:
        return 0, 0, obj, L.MEM_HOST, 0
    # c_char.from_buffer holds a buffer export of obj: a bytearray cannot
    # be resized (moved) while the region exists.
    c = ctypes.c_char.from_buffer(mv)
    return ctypes.addressof(c), mv.nbytes, (obj, mv, c), L.MEM_HOST, 0


def _word(obj: Any, index: int, what: str) -> Tuple[int, Any, Any]:
    """(address, keep-alive, numpy view of 1 uint64) of a 64-bit word: a
    fresh zeroed one (obj None), element `index` of a numpy/torch array of
    8-byte integers, or of any writable buffer seen as uint64."""
    if obj is None:
        if _np is not None:
            arr = _np.zeros(1, dtype=_np.uint64)
            return arr.__array_interface__["data"][0], arr, arr
        c = (c_uint64 * 1)()
        return ctypes.addressof(c), c, memoryview(c).cast("B").cast("Q")
    if hasattr(obj, "data_ptr") and callable(obj.data_ptr):
        if obj.element_size() != 8:
            raise ValueError(f"xfer: the {what} tensor must hold 8-byte integers")
        n = obj.numel()
        base = int(obj.data_ptr())
        if not obj.is_contiguous():
            raise ValueError(f"xfer: the {what} tensor is not contiguous")
    else:
        mv = memoryview(obj)
        if mv.readonly or not mv.contiguous:
            raise ValueError(f"xfer: the {what} buffer must be writable and contiguous")
        if mv.itemsize != 8 and mv.nbytes % 8:
            raise ValueError(f"xfer: the {what} buffer is not a whole number of 64-bit words")
        n = mv.nbytes // 8
        base = ctypes.addressof(ctypes.c_char.from_buffer(mv.cast("B")))
    index = int(index)
    if not 0 <= index < n:
        raise IndexError(f"xfer: {what} index {index} is outside its {n} words")
    addr = base + 8 * index
    if addr % 8:
        raise ValueError(f"xfer: the {what} word at {addr:#x} is not 8-byte aligned")
    word = (c_uint64 * 1).from_address(addr)
    view = _np.ctypeslib.as_array(word) if _np is not None else memoryview(word).cast("B").cast("Q")
    return addr, (obj, word), view


_c_char_from_buffer = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def _indices(x: Any, what: str) -> Tuple[int, int, Any]:
    """(address, count, keep-alive) of a page-index array as uint32: a
    numpy array, a torch tensor (CPU), an array.array, or any sequence of
    ints. Values outside 0..2^32-1 are a ValueError."""
    if _np is not None and isinstance(x, _np.ndarray):
        arr = x
        if arr.dtype is _U32 and arr.flags.c_contiguous and arr.flags.writeable and arr.size \
                and arr.ndim == 1:   # the common case, first
            c = _c_char_from_buffer(arr)
            return _addressof(c), arr.size, (arr, c)
    elif hasattr(x, "data_ptr") and hasattr(x, "numpy"):
        if x.device.type != "cpu":   # a block table on the GPU: copied here
            x = x.cpu()
        arr = x.detach().numpy() if x.requires_grad else x.numpy()
    elif isinstance(x, array.array) and x.typecode == "I" and x.itemsize == 4:
        return x.buffer_info()[0], len(x), x
    else:
        try:
            a = array.array("I", x)
        except OverflowError:
            raise ValueError(f"xfer: {what} holds a value outside 0..2^32-1") from None
        except TypeError as exc:
            raise TypeError(f"xfer: {what} must be a sequence of ints, a numpy array or a "
                            f"tensor ({exc})") from None
        return a.buffer_info()[0], len(a), a
    if arr.dtype is _I32 and arr.flags.c_contiguous:
        # int32 block tables (vLLM's): the same bits as uint32 once no
        # value is negative; no copy
        if arr.size and arr.min() < 0:
            raise ValueError(f"xfer: {what} holds a value outside 0..2^32-1")
        arr = arr.view(_np.uint32)
    if arr.dtype != _np.uint32 or not arr.flags.c_contiguous:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"xfer: {what} must hold integers, not {arr.dtype}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFFFFFF):
            raise ValueError(f"xfer: {what} holds a value outside 0..2^32-1")
        arr = _np.ascontiguousarray(arr, dtype=_np.uint32)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if not arr.size:
        return 0, 0, arr
    if arr.flags.writeable:
        # three times cheaper than __array_interface__ (a dict per call):
        # the submission's cost is mostly finding these addresses
        c = _c_char_from_buffer(arr)
        return _addressof(c), arr.size, (arr, c)
    return arr.__array_interface__["data"][0], arr.size, arr


class HostBuffer:
    """xfer_host_alloc(3) memory: ``nbytes`` zeroed bytes, 2 MiB aligned, on
    huge pages where the kernel offers them, faulted in now. It has the
    buffer protocol through ``.memory`` (a ctypes array) and ``numpy()``;
    registering a HostBuffer registers that memory. Freed when the last
    reference (this object, a view, a region) goes."""

    def __init__(self, nbytes: int):
        nbytes = int(nbytes)
        if nbytes <= 0:
            raise ValueError("xfer: host_alloc needs a positive size")
        addr = L.host_alloc(nbytes)
        if not addr:
            raise MemoryError(f"xfer_host_alloc: {nbytes} bytes")
        self.address = addr
        self.nbytes = nbytes
        self.memory = (ctypes.c_uint8 * nbytes).from_address(addr)
        # the array does not own the memory: this object frees it, once
        # nothing that refers to it (views keep this object) remains
        self._freer = _Free(addr)
        self.memory._xfer_owner = self._freer   # type: ignore[attr-defined]

    def __buffer__(self, flags):   # Python >= 3.12
        return memoryview(self.memory)

    def numpy(self, dtype: Any = None):
        """A numpy view of the memory (uint8, or dtype)."""
        arr = _np.frombuffer(self.memory, dtype=_np.uint8)
        return arr if dtype is None else arr.view(dtype)

    def __len__(self) -> int:
        return self.nbytes


class _Free:
    __slots__ = ("addr",)

    def __init__(self, addr: int):
        self.addr = addr

    def __del__(self):
        L.free(self.addr)


def host_alloc(nbytes: int) -> HostBuffer:
    """xfer_host_alloc(3): ``nbytes`` of zeroed, 2 MiB aligned host memory for
    long-lived registered buffers. MemoryError when out of memory."""
    return HostBuffer(nbytes)


# ---- results -------------------------------------------------------------------
class EngineInfo(NamedTuple):
    """xfer_engine_query(3)."""
    provider: str
    num_rails: int
    rail_names: Tuple[str, ...]
    worker_cpu: int
    imm_bits: int
    max_msg_size: int


class RailStats(NamedTuple):
    """xfer_engine_stats(3): one rail's counters."""
    bytes_posted: int
    bytes_completed: int
    ops_posted: int
    ops_completed: int
    ops_failed: int
    imm_received: int


_PAGED_SIZE = ctypes.sizeof(L.Paged)
_ATTRS = ("provider", "num_rails", "gpu", "worker_cpu", "peer_timeout_ms", "node", "devices",
          "stripe_threshold", "idle_spin_us", "max_inflight", "flags")


# ---- engine --------------------------------------------------------------------
class Engine:
    """xfer_engine_create(3): one process's transfer endpoint, its rails
    and the worker thread that posts all work.

    Engine(provider="local", num_rails=1, gpu=-1, worker_cpu=-1,
           peer_timeout_ms=0, node=None, devices=None, stripe_threshold=0,
           idle_spin_us=0, max_inflight=0, flags=0)

    Keyword arguments are the fields of struct xfer_engine_attr (unset ones
    keep xfer_engine_attr_init's defaults; provider None is "auto").
    Raises XferError (-ENODEV: no such provider here; -EINVAL: a bad
    attribute) and TypeError for an unknown keyword.

    Use as a context manager, or call close(). Regions, remote regions,
    operations, expectations and watches keep their engine alive; close()
    ends them (see close()). Any method of a closed engine raises ValueError.
    """

    def __init__(self, provider: Optional[str] = None, **attrs: Any):
        self._h = None
        self._mrs: dict = {}       # mr handle -> what keeps its memory alive
        self._zombies: set = set()  # mr handles whose Region went while in use
        self._watches: dict = {}   # watch handle -> (word, source region)
        self._flags: list = []     # expectations whose flag word is still owed
        self._rmrs: dict = {}      # rmr handle -> None (freed at close)
        unknown = set(attrs) - set(_ATTRS)
        if unknown:
            raise TypeError(f"xfer: Engine() got unknown attributes {sorted(unknown)}; "
                            f"known: {', '.join(_ATTRS)}")
        a = L.EngineAttr()
        L.engine_attr_init_size(byref(a), ctypes.sizeof(a))
        if provider is not None:
            a.provider = str(provider).encode()
        for k, v in attrs.items():
            if v is None:
                continue
            if k in ("node", "devices"):
                v = str(v).encode()
            elif not isinstance(v, int):
                raise TypeError(f"xfer: Engine attribute {k} must be an int, not "
                                f"{type(v).__name__}")
            setattr(a, k, v)
        h = c_void_p()
        ret = L.engine_create(byref(a), byref(h))
        if ret < 0:
            raise _error(ret, "xfer_engine_create",
                         f"provider {provider or 'auto'}" +
                         "".join(f", {k}={v}" for k, v in attrs.items()))
        self._h = h.value
        self._addr: Optional[bytes] = None
        self._peer_timeout_s = (attrs.get("peer_timeout_ms") or L.DEFAULT_TIMEOUT_MS) / 1000.0
        self.provider = self.info.provider

    # -- basics
    def _handle(self) -> int:
        h = self._h
        if h is None:
            raise _closed("Engine")
        return h

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._h is None:
            return "<xfer.Engine closed>"
        return f"<xfer.Engine {self.provider} at {self._h:#x}>"

    @property
    def address(self) -> bytes:
        """xfer_engine_address(3): this engine's address, for peers."""
        if self._addr is None:
            buf = ctypes.create_string_buffer(L.ADDR_MAX)
            n = c_size_t(L.ADDR_MAX)
            _check(L.engine_address(self._handle(), buf, byref(n)), "xfer_engine_address")
            self._addr = buf.raw[:n.value]
        return self._addr

    @property
    def info(self) -> EngineInfo:
        """xfer_engine_query(3): provider opened, rails, worker core, ..."""
        i = L.EngineInfo()
        i.size = ctypes.sizeof(i)
        _check(L.engine_query(self._handle(), byref(i)), "xfer_engine_query")
        return EngineInfo(i.provider.decode(), i.num_rails,
                          tuple(i.rail_names[r].value.decode() for r in range(i.num_rails)),
                          i.worker_cpu, i.imm_bits, i.max_msg_size)

    def stats(self, rail: Optional[int] = None):
        """xfer_engine_stats(3): a RailStats for `rail`, or a list of them
        (one per rail) when rail is None."""
        h = self._handle()
        rails = range(self.info.num_rails) if rail is None else [rail]
        out = []
        for r in rails:
            st = L.RailStats()
            _check(L.engine_stats(h, _u32(r, "rail"), byref(st)), "xfer_engine_stats",
                   f"rail {r}")
            out.append(RailStats(st.bytes_posted, st.bytes_completed, st.ops_posted,
                                 st.ops_completed, st.ops_failed, st.imm_received))
        return out if rail is None else out[0]

    # -- peers
    def add_peer(self, address: bytes) -> int:
        """xfer_engine_add_peer(3): add a peer from its address (bytes);
        returns the peer index. -EINVAL: a malformed address;
        -EPROTO: another provider's; -ECONNREFUSED: its process is gone."""
        if not isinstance(address, (bytes, bytearray, memoryview)):
            raise TypeError(f"xfer: an address is bytes, not {type(address).__name__}")
        address = bytes(address)
        p = c_uint32()
        _check(L.engine_add_peer(self._handle(), address, len(address), byref(p)),
               "xfer_engine_add_peer", f"{len(address)}-byte address")
        return p.value

    def peer_status(self, peer: int) -> int:
        """xfer_peer_status(3): 0 while the peer is usable, else the
        negative errno that took it down (xfer.strerror says its text)."""
        return L.peer_status(self._handle(), _u32(peer, "peer"))

    def connect(self, peers: Sequence[int], timeout: Optional[float] = None) -> None:
        """xfer_engine_connect(3): set up the connections to `peers` now and
        wait until they are ready (timeout in seconds; None: the engine's
        peer timeout). Raises the error of the first peer that could not
        be reached (the others stay up; see peer_status)."""
        peers = list(peers)
        arr = (c_uint32 * max(1, len(peers)))(*[_u32(p, "peer") for p in peers])
        ms = 0 if timeout is None else max(1, int(timeout * 1000))
        _check(L.engine_connect(self._handle(), arr, len(peers), ms), "xfer_engine_connect",
               f"peers {peers}")

    # -- memory
    def register(self, buffer: Any, remote_write: bool = True, flags: int = 0) -> "Region":
        """xfer_mr_reg(3): register a buffer (see Region)."""
        return Region(self, buffer, remote_write=remote_write, flags=flags)

    def import_region(self, peer: int, descriptor: bytes) -> "RemoteRegion":
        """xfer_rmr_import(3): a peer's region from its descriptor."""
        return RemoteRegion(self, peer, descriptor)

    def open_shared(self, share_id: int, flags: int = L.MR_REMOTE_WRITE) -> "Region":
        """xfer_mr_open_shared(3): map and register a region another local
        process shared (Region.share). -ENODEV without /dev/xfer."""
        h = c_void_p()
        _check(L.mr_open_shared(self._handle(), int(share_id), flags, byref(h)),
               "xfer_mr_open_shared", f"share id {share_id:#x}")
        r = Region.__new__(Region)
        addr, n = L.mr_addr(h.value), L.mr_len(h.value)
        r._init(self, h.value, addr, n, (ctypes.c_uint8 * n).from_address(addr), flags)
        return r

    # -- operations
    def write(self, src: "Region", dst: "RemoteRegion", nbytes: Optional[int] = None,
              src_offset: int = 0, dst_offset: int = 0, imm: Optional[int] = None) -> "Op":
        """xfer_write(3): `nbytes` (default: the rest of src from
        src_offset) from src+src_offset into dst+dst_offset. With imm (a
        32-bit value) the target counts one arrival of imm once every byte
        landed; nbytes may then be 0 (the immediate alone).
        Returns an Op. Raises XferError: -ERANGE (a range outside a
        region), -ENOTCONN (the peer is down), -EINVAL; TypeError for
        arguments of the wrong type."""
        if self._h is None:
            raise _closed("Engine")
        if type(src) is not Region or type(dst) is not RemoteRegion:
            raise TypeError(f"xfer: write(src, dst) takes a Region and a RemoteRegion, not "
                            f"{type(src).__name__} and {type(dst).__name__}")
        if nbytes is None:
            nbytes = src.nbytes - src_offset
        h = c_void_p()
        try:
            if imm is None:
                ret = L.write(self._h, src._handle(), src_offset, dst._handle(), dst_offset,
                              nbytes, 0, 0, None, byref(h))
            else:
                ret = L.write(self._h, src._handle(), src_offset, dst._handle(), dst_offset,
                              nbytes, L.OP_IMM, imm, None, byref(h))
        except ctypes.ArgumentError as exc:
            raise TypeError(f"xfer_write: {exc}") from None
        if ret < 0:
            raise _error(ret, "xfer_write", f"{nbytes} bytes from offset {src_offset} of "
                         f"{src.nbytes} to offset {dst_offset} of {dst.nbytes}")
        return Op(h.value, self, src, "xfer_write")

    def imm(self, peer: int, imm: int) -> "Op":
        """xfer_imm(3): the immediate `imm` alone to `peer`."""
        h = c_void_p()
        try:
            ret = L.imm(self._handle(), peer, imm, None, byref(h))
        except ctypes.ArgumentError as exc:
            raise TypeError(f"xfer_imm: {exc}") from None
        if ret < 0:
            raise _error(ret, "xfer_imm", f"peer {peer}")
        return Op(h.value, self, None, "xfer_imm")

    def write_paged(self, src: "Region", dst: "RemoteRegion", src_pages: Any, dst_pages: Any,
                    page_size: int, imm: Optional[int] = None, src_stride: int = 0,
                    dst_stride: int = 0, src_offset: int = 0, dst_offset: int = 0) -> "Op":
        """xfer_write_paged(3): page i goes from
        src + src_offset + src_pages[i] * src_stride to
        dst + dst_offset + dst_pages[i] * dst_stride, page_size bytes each
        (strides 0: page_size). Index arrays: numpy arrays, CPU torch
        tensors, array.array('I') or sequences of ints, of equal length;
        they are copied. With imm, one arrival once every page landed.
        Raises XferError -ERANGE (a page outside a region), -EINVAL;
        ValueError for arrays of different lengths or values outside
        32 bits."""
        if self._h is None:
            raise _closed("Engine")
        if type(src) is not Region or type(dst) is not RemoteRegion:
            raise TypeError(f"xfer: write_paged(src, dst, ...) takes a Region and a "
                            f"RemoteRegion, not {type(src).__name__} and {type(dst).__name__}")
        sp, sn, sk = _indices(src_pages, "src_pages")
        dp, dn, dk = _indices(dst_pages, "dst_pages")
        if sn != dn:
            raise ValueError(f"xfer: src_pages has {sn} pages and dst_pages {dn}")
        p = L.Paged()
        try:
            p.size = _PAGED_SIZE
            p.flags = 0 if imm is None else L.OP_IMM
            p.src = src._handle()
            p.dst = dst._handle()
            p.src_pages = sp
            p.dst_pages = dp
            p.num_pages = sn
            p.imm = 0 if imm is None else imm
            p.page_size = page_size
            p.src_stride = src_stride
            p.dst_stride = dst_stride
            p.src_offset = src_offset
            p.dst_offset = dst_offset
        except TypeError as exc:
            raise TypeError(f"xfer_write_paged: {exc}") from None
        h = c_void_p()
        ret = L.write_paged(self._h, byref(p), None, byref(h))
        if ret < 0:
            raise _error(ret, "xfer_write_paged", f"{sn} pages of {page_size} bytes")
        return Op(h.value, self, src, "xfer_write_paged")

    def scatter(self, src: "Region", dsts: Iterable[Tuple["RemoteRegion", int, int, int]],
                imm: Optional[int] = None) -> "Op":
        """xfer_scatter(3): one source region to many destinations, each a
        tuple (RemoteRegion, src_offset, dst_offset, nbytes); nbytes may be
        0 with imm (the immediate alone)."""
        if type(src) is not Region:
            raise TypeError(f"xfer: scatter's source must be a Region, not {type(src).__name__}")
        rows = list(dsts)
        arr = (L.ScatterDst * max(1, len(rows)))()
        for i, row in enumerate(rows):
            try:
                d, so, do, n = row
            except (TypeError, ValueError):
                raise TypeError(f"xfer: scatter destination {i} is not a tuple "
                                "(RemoteRegion, src_offset, dst_offset, nbytes)") from None
            if type(d) is not RemoteRegion:
                raise TypeError(f"xfer: scatter destination {i} is a {type(d).__name__}, "
                                "not a RemoteRegion")
            arr[i].dst, arr[i].src_off, arr[i].dst_off, arr[i].len = d._handle(), so, do, n
        h = c_void_p()
        ret = L.scatter(self._handle(), src._handle(), arr, len(rows),
                        0 if imm is None else L.OP_IMM, 0 if imm is None else imm, None, byref(h))
        if ret < 0:
            raise _error(ret, "xfer_scatter", f"{len(rows)} destinations")
        return Op(h.value, self, src, "xfer_scatter")

    def barrier(self, peers: Sequence[int], imm: int) -> "Op":
        """xfer_barrier(3): the immediate `imm` to each of `peers`."""
        peers = list(peers)
        arr = (c_uint32 * max(1, len(peers)))(*[_u32(p, "peer") for p in peers])
        h = c_void_p()
        ret = L.barrier(self._handle(), arr, len(peers), _u32(imm, "imm"), None, byref(h))
        if ret < 0:
            raise _error(ret, "xfer_barrier", f"peers {peers}")
        return Op(h.value, self, None, "xfer_barrier")

    # -- immediate counters
    def imm_count(self, imm: int) -> int:
        """xfer_imm_count(3): arrivals of imm not yet consumed."""
        return L.imm_count(self._handle(), _u32(imm, "imm"))

    def imm_wait(self, imm: int, count: int = 1, timeout: Optional[float] = None) -> None:
        """xfer_imm_wait(3): wait until `count` unconsumed arrivals of imm
        exist, then consume them. timeout in seconds (None: forever).
        Raises XferTimeoutError (errno ETIMEDOUT, consuming nothing) when
        they do not come in time. The GIL is released while waiting, and
        Ctrl-C interrupts the wait (within 0.1 s)."""
        h = self._handle()
        imm = _u32(imm, "imm")
        count = int(count)
        if count <= 0:
            raise _error(-_errno.EINVAL, "xfer_imm_wait", f"count {count}")
        if L.imm_count(h, imm) >= count:   # already there: no slice to wait
            ret = L.imm_wait(h, imm, count, 0)
            if ret != _ETIMEDOUT:   # (else taken meanwhile by another waiter)
                _check(ret, "xfer_imm_wait", f"imm {imm:#x}, count {count}")
                return
        dl = _deadline(timeout)
        while True:
            ret = L.imm_wait(h, imm, count, _left_ms(dl))
            if ret != _ETIMEDOUT:
                _check(ret, "xfer_imm_wait", f"imm {imm:#x}, count {count}")
                return
            if dl is not None and time.monotonic() >= dl:
                raise _error(ret, "xfer_imm_wait",
                             f"{L.imm_count(h, imm)} of {count} arrivals of imm {imm:#x} "
                             f"within {timeout} s")
            if self._h is None:
                raise _closed("Engine")

    def expect(self, imm: int, count: int = 1, flag: Any = None, index: int = 0,
               value: int = 1) -> "Expectation":
        """xfer_imm_expect(3) with a flag word: when `count` unconsumed
        arrivals of imm exist, the worker consumes them and stores `value`
        into the word (release order). The word is a fresh one (flag None),
        or element `index` of `flag` (a numpy array or torch tensor of
        8-byte integers, e.g. host-mapped memory a CUDA stream waits on with
        cuStreamWaitValue64). Returns an Expectation; the engine keeps the
        word's memory alive until the worker stored into it or the engine
        is closed. No Python callback: see help(xfer)."""
        h = self._handle()
        addr, keep, view = _word(flag, index, "flag")
        n = L.Notify()
        n.size = ctypes.sizeof(n)
        n.flag = addr
        n.flag_value = int(value)
        ret = L.imm_expect(h, _u32(imm, "imm"), int(count), byref(n))
        if ret < 0:
            raise _error(ret, "xfer_imm_expect", f"imm {imm:#x}, count {count}")
        x = Expectation(self, imm, count, addr, keep, view, int(value))
        # memory the worker will write into later: held until it did
        self._flags = [f for f in self._flags if f[0].value != f[1]]
        self._flags.append((x._word, x.value, keep))
        return x

    def watch(self, src: "Region", dst: "RemoteRegion", nbytes: Optional[int] = None,
              src_offset: int = 0, dst_offset: int = 0, imm: Optional[int] = None,
              word: Any = None, index: int = 0) -> "Watch":
        """xfer_watch_add(3): a prepared write the worker posts each time the
        watched word increases (by k: k times). The word is a fresh one
        (word None) or element `index` of a numpy array / torch tensor of
        8-byte integers (host-mapped memory a CUDA stream writes with
        cuStreamWriteValue64). Returns a Watch; src stays in use until the
        watch is removed."""
        h = self._handle()
        if type(src) is not Region or type(dst) is not RemoteRegion:
            raise TypeError("xfer: watch(src, dst, ...) takes a Region and a RemoteRegion")
        if nbytes is None:
            nbytes = src.nbytes - src_offset
        addr, keep, view = _word(word, index, "word")
        a = L.WatchAttr()
        a.size = ctypes.sizeof(a)
        a.flags = 0 if imm is None else L.OP_IMM
        a.word, a.src, a.src_off = addr, src._handle(), src_offset
        a.dst, a.dst_off, a.len = dst._handle(), dst_offset, nbytes
        a.imm = 0 if imm is None else _u32(imm, "imm")
        w = c_void_p()
        ret = L.watch_add(h, byref(a), byref(w))
        if ret < 0:
            raise _error(ret, "xfer_watch_add", f"{nbytes} bytes from offset {src_offset} to "
                         f"offset {dst_offset}")
        self._watches[w.value] = keep
        return Watch(self, w.value, view)

    # -- end
    def close(self, timeout: Optional[float] = None) -> None:
        """xfer_engine_destroy(3), after deregistering every region.

        Watches are removed; regions still read by an operation in flight
        are deregistered as those finish, waiting at most `timeout` seconds
        (None: the engine's peer timeout, the longest an operation to a
        dead peer takes to fail); then the engine is destroyed and what is
        still in flight completes with ECANCELED (an Op says so). A region
        still busy then is released with the engine and its handle leaks
        (a ResourceWarning says so): never freed memory under the worker.
        Closing twice is harmless; any later use of the engine, its
        regions or remote regions raises ValueError; Op handles stay
        readable."""
        h = self._h
        if h is None:
            return
        for w in list(self._watches):
            L.watch_remove(w)
        self._watches.clear()
        dl = time.monotonic() + (self._peer_timeout_s + 1.0 if timeout is None else timeout)
        pending = dict(self._mrs)
        while pending:
            for m in list(pending):
                if L.mr_dereg(m) != _EBUSY:
                    del pending[m]
            if not pending or time.monotonic() >= dl:
                break
            time.sleep(0.001)
        self._h = None
        L.engine_destroy(h)
        for r in list(self._rmrs):
            L.rmr_free(r)
        self._rmrs.clear()
        if pending:
            warnings.warn(f"xfer: {len(pending)} region(s) still in use by operations at "
                          "Engine.close(); released with the engine", ResourceWarning, 2)
        self._mrs.clear()
        self._zombies.clear()
        self._flags.clear()

    def __del__(self):
        if getattr(self, "_h", None) is None:
            return
        try:
            self.close(timeout=0)
        except Exception:   # interpreter shutdown: the module may be gone
            pass

    def _retry_zombies(self):
        """Deregister regions whose objects went while operations still read them."""
        for m in list(self._zombies):
            if L.mr_dereg(m) != _EBUSY:
                self._zombies.discard(m)
                self._mrs.pop(m, None)


class Region:
    """xfer_mr_reg(3): a local registered region over a buffer.

    Region(engine, buffer, remote_write=True, flags=0)

    buffer: a numpy array, bytearray, mmap, ctypes array, HostBuffer, or
    any contiguous object with the buffer protocol; or a torch tensor
    (anything with data_ptr() and nbytes; a CUDA tensor registers as
    XFER_MEM_CUDA). The region keeps the buffer alive (and a bytearray
    unresizable) until it is closed. remote_write=False registers a
    source only (read-only buffers are allowed then; it has no descriptor).
    Raises XferError (-EFAULT/-EACCES: memory the NIC refuses; -EINVAL),
    ValueError (a non-contiguous or read-only buffer for remote writes),
    TypeError (no buffer at all)."""

    __slots__ = ("_h", "engine", "address", "nbytes", "buffer", "flags", "_desc", "__weakref__")

    def __init__(self, engine: Engine, buffer: Any, remote_write: bool = True, flags: int = 0):
        eh = engine._handle()
        flags = int(flags) | (L.MR_REMOTE_WRITE if remote_write else 0)
        addr, nbytes, keep, kind, cuda = _memory(buffer, bool(flags & L.MR_REMOTE_WRITE))
        mem = None
        if kind != L.MEM_HOST:
            mem = L.Mem(ctypes.sizeof(L.Mem), kind, cuda, -1, 0)
        h = c_void_p()
        ret = L.mr_reg(eh, addr, nbytes, None if mem is None else byref(mem), flags, byref(h))
        if ret < 0:
            raise _error(ret, "xfer_mr_reg", f"{nbytes} bytes at {addr:#x}")
        if engine._zombies:
            engine._retry_zombies()
        self._init(engine, h.value, addr, nbytes, keep, flags)
        self.buffer = buffer

    def _init(self, engine, h, addr, nbytes, keep, flags):
        self._h = h
        self.engine = engine
        self.address = addr
        self.nbytes = nbytes
        self.buffer = keep
        self.flags = flags
        self._desc = None
        engine._mrs[h] = keep

    def _handle(self) -> int:
        h = self._h
        if h is None or self.engine._h is None:
            raise _closed("Region" if h is None else "Region's engine")
        return h

    @property
    def closed(self) -> bool:
        return self._h is None or self.engine._h is None

    @property
    def descriptor(self) -> bytes:
        """xfer_mr_descriptor(3): the bytes a peer imports
        (Engine.import_region). -EPERM for a region without remote_write."""
        h = self._handle()
        if self._desc is None:
            buf = ctypes.create_string_buffer(L.DESC_MAX)
            n = c_size_t(L.DESC_MAX)
            _check(L.mr_descriptor(h, buf, byref(n)), "xfer_mr_descriptor")
            self._desc = buf.raw[:n.value]
        return self._desc

    def share(self, rule: int = L.SHARE_OWNER, id: int = 0) -> int:
        """xfer_mr_share(3): share through /dev/xfer with other local
        processes (rule SHARE_OWNER, SHARE_GROUP with a gid, SHARE_UID with
        a uid); returns the share id. -ENODEV without the kernel module."""
        s = c_uint64()
        _check(L.mr_share(self._handle(), int(rule), int(id), byref(s)), "xfer_mr_share")
        return s.value

    def close(self) -> None:
        """xfer_mr_dereg(3), and the buffer is let go (``buffer`` becomes
        None). Raises XferError EBUSY (the region stays registered) while an
        operation or a watch still reads it. Closing twice, or after the
        engine closed, is harmless."""
        h = self._h
        if h is None:
            return
        if self.engine._h is None:   # the engine released it
            self._h = None
            self.buffer = None
            return
        ret = L.mr_dereg(h)
        if ret == _EBUSY:
            raise _error(ret, "xfer_mr_dereg", "an operation or watch still uses the region")
        self._h = None
        self.engine._mrs.pop(h, None)
        self.buffer = None   # the buffer is the caller's again (resizable, collectable)
        _check(ret, "xfer_mr_dereg")

    def __enter__(self) -> "Region":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        h = getattr(self, "_h", None)   # None too when __init__ failed
        if h is None:
            return
        try:
            e = self.engine
            if e._h is None:
                return
            if L.mr_dereg(h) == _EBUSY:
                # an operation whose handle went still reads it: keep the
                # memory until it is done (retried at the next
                # registration, and at close)
                e._zombies.add(h)
            else:
                e._mrs.pop(h, None)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<xfer.Region {self.nbytes} bytes at {self.address:#x}{' closed' if self.closed else ''}>"


class RemoteRegion:
    """xfer_rmr_import(3): a peer's region, imported from its descriptor.

    RemoteRegion(engine, peer, descriptor)

    Raises XferError EINVAL for a malformed descriptor, or one made by an
    engine other than the one added as `peer`. ``nbytes`` is its length."""

    __slots__ = ("_h", "engine", "peer", "nbytes", "__weakref__")

    def __init__(self, engine: Engine, peer: int, descriptor: bytes):
        eh = engine._handle()
        if not isinstance(descriptor, (bytes, bytearray, memoryview)):
            raise TypeError(f"xfer: a descriptor is bytes, not {type(descriptor).__name__}")
        d = bytes(descriptor)
        h = c_void_p()
        ret = L.rmr_import(eh, _u32(peer, "peer"), d, len(d), byref(h))
        if ret < 0:
            raise _error(ret, "xfer_rmr_import", f"{len(d)}-byte descriptor for peer {peer}")
        self._h = h.value
        self.engine = engine
        self.peer = peer
        self.nbytes = L.rmr_len(h.value)
        engine._rmrs[h.value] = None

    def _handle(self) -> int:
        h = self._h
        if h is None or self.engine._h is None:
            raise _closed("RemoteRegion" if h is None else "RemoteRegion's engine")
        return h

    @property
    def closed(self) -> bool:
        return self._h is None or self.engine._h is None

    def close(self) -> None:
        """xfer_rmr_free(3). Operations already submitted are unaffected
        (they hold a copy). Closing twice is harmless."""
        h = getattr(self, "_h", None)
        if h is None:
            return
        self._h = None
        if self.engine._rmrs.pop(h, 0) is None:   # not yet freed by the engine's close
            L.rmr_free(h)

    __del__ = close

    def __enter__(self) -> "RemoteRegion":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<xfer.RemoteRegion peer {self.peer}, {self.nbytes} bytes{' closed' if self.closed else ''}>"


class Op:
    """An operation handle (xfer_op_test(3), xfer_op_wait(3),
    xfer_op_release(3)). It keeps its engine and source region alive; it
    is released when closed or garbage collected (the operation goes on).
    A handle stays readable after its engine closed (an operation
    cancelled by the close says ECANCELED)."""

    __slots__ = ("_h", "engine", "_src", "_status", "call")

    def __init__(self, h: int, engine: Engine, src: Optional[Region], call: str):
        self._h = h
        self.engine = engine
        self._src = src
        self._status = None
        self.call = call   # the C function that submitted it, for errors

    def _op(self) -> int:
        h = self._h
        if h is None:
            raise _closed("Op")
        return h

    @property
    def status(self) -> Optional[int]:
        """None while in progress, else the final status: 0 or a negative
        errno (ECANCELED: the engine was closed first)."""
        if self._status is None:
            r = L.op_test(self._op())
            if r == _EINPROGRESS:
                return None
            self._status = r
        return self._status

    def test(self) -> bool:
        """xfer_op_test(3): False while in progress, True once it succeeded;
        raises XferError with the status if it failed."""
        st = self.status
        if st is None:
            return False
        if st < 0:
            raise _error(st, self.call, "the operation's status")
        return True

    def wait(self, timeout: Optional[float] = None) -> None:
        """xfer_op_wait(3): wait until the operation finished (timeout in
        seconds; None: forever). Returns on success; raises XferError with
        its status if it failed, XferTimeoutError if it is still in
        progress at the timeout (it goes on). Releases the GIL; Ctrl-C
        interrupts within 0.1 s."""
        h = self._op()
        if self._status is None:
            r = L.op_test(h)
            if r == _EINPROGRESS:
                dl = _deadline(timeout)
                while True:
                    r = L.op_wait(h, _left_ms(dl))
                    if r != _ETIMEDOUT or L.op_test(h) != _EINPROGRESS:
                        break
                    if dl is not None and time.monotonic() >= dl:
                        raise _error(_ETIMEDOUT, "xfer_op_wait",
                                     f"still in progress after {timeout} s")
            self._status = r
        if self._status < 0:
            raise _error(self._status, self.call, "the operation's status")

    def close(self) -> None:
        """xfer_op_release(3): drop the handle (the operation goes on).
        Harmless twice; status/test/wait then raise ValueError."""
        h = self._h
        if h is not None:
            self._h = None
            L.op_release(h)
            self._src = None

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None:
            self._h = None
            L.op_release(h)

    def __enter__(self) -> "Op":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._h is None:
            return "<xfer.Op released>"
        st = self.status
        return f"<xfer.Op {'in progress' if st is None else 'status %d' % st}>"


class Expectation:
    """An xfer_imm_expect(3) in flight: the worker stores ``value`` into
    ``flag`` (a numpy view of the 64-bit word) once `count` arrivals of
    ``imm`` came, consuming them. Poll with done(), or wait(timeout)."""

    __slots__ = ("engine", "imm", "count", "address", "_keep", "flag", "value", "_word")

    def __init__(self, engine, imm, count, addr, keep, view, value):
        self.engine = engine
        self.imm = imm
        self.count = count
        self.address = addr
        self._keep = keep
        self.flag = view
        self.value = value
        self._word = c_uint64.from_address(addr)

    def done(self) -> bool:
        """Whether the worker stored the value (the arrivals were consumed)."""
        return self._word.value == self.value

    def wait(self, timeout: Optional[float] = None) -> None:
        """Poll the word until it holds the value (sleeping up to 1 ms
        between looks); XferTimeoutError after `timeout` seconds. Raises
        ValueError if the engine is closed first (it will never be set)."""
        dl = _deadline(timeout)
        nap = 0.00002
        while self._word.value != self.value:
            if self.engine._h is None:
                raise _closed("Expectation's engine")
            if dl is not None and time.monotonic() >= dl:
                raise _error(_ETIMEDOUT, "Expectation.wait",
                             f"imm {self.imm:#x}, {self.count} arrivals, within {timeout} s")
            time.sleep(nap)
            nap = min(nap * 2, 0.001)

    def __repr__(self) -> str:
        return f"<xfer.Expectation imm {self.imm:#x} x{self.count}: {'done' if self.done() else 'pending'}>"


class Watch:
    """xfer_watch_add(3): a prepared write posted each time ``word`` (a numpy
    view of the 64-bit word) increases. ``fire(k)`` increases it from
    Python; ``fired`` counts the writes posted; remove() ends it."""

    __slots__ = ("engine", "_h", "word", "_w")

    def __init__(self, engine, h, view):
        self.engine = engine
        self._h = h
        self.word = view
        self._w = c_uint64.from_address(view.__array_interface__["data"][0]) \
            if hasattr(view, "__array_interface__") else None

    def _handle(self) -> int:
        h = self._h
        if h is None or self.engine._h is None:
            raise _closed("Watch")
        return h

    @property
    def fired(self) -> int:
        """xfer_watch_fired(3): the writes posted so far."""
        return L.watch_fired(self._handle())

    def fire(self, k: int = 1) -> None:
        """Increase the word by k (the producer's store, from Python)."""
        self._handle()
        self.word[0] = int(self.word[0]) + k

    def remove(self) -> None:
        """xfer_watch_remove(3). Harmless twice or after the engine closed."""
        h = getattr(self, "_h", None)
        if h is None:
            return
        self._h = None
        if self.engine._h is None:
            return
        ret = L.watch_remove(h)
        self.engine._watches.pop(h, None)
        _check(ret, "xfer_watch_remove")

    close = remove

    def __del__(self):
        try:
            self.remove()
        except Exception:
            pass
