# SPDX-License-Identifier: MIT
"""Rendezvous (include/xfer_rdzv.h) and exchange(): how ranks swap engine
addresses and region descriptors."""

from __future__ import annotations

import ctypes
import errno as _errno
import re
import threading
import time
from ctypes import byref, c_void_p
from datetime import timedelta
from typing import Any, List, NamedTuple, Optional, Union

from . import _lib as L
from .core import XferError, XferTimeoutError, _closed

_JOB_BAD = re.compile(r"[^A-Za-z0-9._-]")


class RdzvError(XferError):
    """A rendezvous call failed; ``detail`` is xfer_rdzv_last_error's text
    (which ranks, which URL, which key)."""


class RdzvTimeoutError(RdzvError, XferTimeoutError):
    """RdzvError with errno ETIMEDOUT."""


def _rdzv_error(ret: int, call: str, detail: str) -> RdzvError:
    cls = RdzvTimeoutError if ret == -_errno.ETIMEDOUT else RdzvError
    return cls(ret, call, detail)


class Launch(NamedTuple):
    """xfer_launch_from_env(3): where a launcher put this process."""
    rank: int
    world_size: int
    local_rank: int
    source: str


def launch_from_env() -> Optional[Launch]:
    """xfer_launch_from_env(3): rank, world size and local rank from
    torchrun's, Open MPI's or Slurm's variables. None when no launcher's
    variables are set; RdzvError EINVAL (naming the variable) when one is
    malformed."""
    out = L.Launch()
    out.size = ctypes.sizeof(out)
    ret = L.launch_from_env(byref(out))
    if ret == -_errno.ENOENT:
        return None
    if ret < 0:
        raise _rdzv_error(ret, "xfer_launch_from_env", L.rdzv_last_error(None).decode())
    return Launch(out.rank, out.world_size, out.local_rank, (out.source or b"").decode())


class Rendezvous:
    """xfer_rdzv_open(3): this rank of a job of world_size ranks, meeting
    its peers through a store: "etcd://host:port[,host:port...]" or
    "file:///shared/dir".

    Rendezvous(url, job, rank, world_size, timeout=None, lease_ttl=None)

    timeout (seconds) applies per call (0/None: 60 s); lease_ttl (seconds):
    how long a dead rank's keys survive it (None: 10 s). Raises RdzvError:
    EEXIST (the rank is registered already), EINVAL, ETIMEDOUT. A context
    manager; close() is the job's last barrier."""

    def __init__(self, url: str, job: str, rank: int, world_size: int,
                 timeout: Optional[float] = None, lease_ttl: Optional[int] = None):
        self._h = None
        a = L.RdzvAttr()
        a.size = ctypes.sizeof(a)
        self._url = str(url).encode()
        self._job = str(job).encode()
        a.url, a.job = self._url, self._job
        a.rank, a.world_size = int(rank), int(world_size)
        a.timeout_ms = 0 if not timeout else max(1, int(timeout * 1000))
        a.lease_ttl_s = int(lease_ttl or 0)
        h = c_void_p()
        ret = L.rdzv_open(byref(a), byref(h))
        if ret < 0:
            raise _rdzv_error(ret, "xfer_rdzv_open", L.rdzv_last_error(None).decode())
        self._h = h.value
        self.rank, self.world_size = int(rank), int(world_size)

    def _handle(self) -> int:
        if self._h is None:
            raise _closed("Rendezvous")
        return self._h

    def exchange(self, name: str, blob: bytes) -> List[bytes]:
        """xfer_rdzv_exchange(3): publish blob (1 byte .. 1 MiB) under name
        and return every rank's blob, indexed by rank. Each name once."""
        h = self._handle()
        blob = bytes(blob)
        out = ctypes.POINTER(L.RdzvBlob)()
        ret = L.rdzv_exchange(h, str(name).encode(), blob, len(blob), byref(out))
        if ret < 0:
            raise _rdzv_error(ret, "xfer_rdzv_exchange", L.rdzv_last_error(h).decode())
        return [ctypes.string_at(out[i].data, out[i].len) for i in range(self.world_size)]

    def barrier(self, name: str) -> None:
        """xfer_rdzv_barrier(3): wait until every rank reached `name`."""
        h = self._handle()
        ret = L.rdzv_barrier(h, str(name).encode())
        if ret < 0:
            raise _rdzv_error(ret, "xfer_rdzv_barrier", L.rdzv_last_error(h).decode())

    def close(self) -> None:
        """xfer_rdzv_close(3): a last barrier, then this rank's keys go.
        Frees the handle in every case; raises the barrier's error. Harmless
        twice."""
        h = self._h
        if h is None:
            return
        self._h = None
        ret = L.rdzv_close(h)
        if ret < 0:
            raise _rdzv_error(ret, "xfer_rdzv_close", L.rdzv_last_error(None).decode())

    def __enter__(self) -> "Rendezvous":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        h = self._h
        if h is not None:
            self._h = None
            L.rdzv_close(h)


class DictStore:
    """A store in one process's memory with the methods exchange() uses from
    torch.distributed's stores (set, get, wait, add, check, delete_key):
    for threads of one process, and for tests."""

    def __init__(self, timeout: float = 300.0):
        self._d: dict = {}
        self._cv = threading.Condition()
        self.timeout = timeout

    def set(self, key: str, value: Union[bytes, str]) -> None:
        with self._cv:
            self._d[key] = value.encode() if isinstance(value, str) else bytes(value)
            self._cv.notify_all()

    def get(self, key: str) -> bytes:
        self.wait([key])
        with self._cv:
            return self._d[key]

    def add(self, key: str, n: int) -> int:
        with self._cv:
            v = int(self._d.get(key, b"0")) + n
            self._d[key] = str(v).encode()
            self._cv.notify_all()
            return v

    def check(self, keys: List[str]) -> bool:
        with self._cv:
            return all(k in self._d for k in keys)

    def delete_key(self, key: str) -> bool:
        with self._cv:
            return self._d.pop(key, None) is not None

    def wait(self, keys: List[str], timeout: Optional[Any] = None) -> None:
        t = self.timeout if timeout is None else (
            timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout))
        end = time.monotonic() + t
        with self._cv:
            while not all(k in self._d for k in keys):
                left = end - time.monotonic()
                if left <= 0:
                    missing = [k for k in keys if k not in self._d]
                    raise TimeoutError(f"DictStore.wait: keys {missing[:8]} not set within {t} s")
                self._cv.wait(left)


def exchange(store: Any, prefix: str, rank: int, world_size: int, blob: bytes,
             timeout: Optional[float] = None) -> List[bytes]:
    """Exchange one blob per rank; returns every rank's blob, indexed by
    rank (this rank's included).

    store: an object with set/get/wait (torch.distributed's TCPStore,
    FileStore, PrefixStore, or xfer.DictStore): this rank sets
    "<prefix>/<rank>", waits for every rank's key and reads them; use a
    prefix once per exchange. Or a URL string, "etcd://host:port" or
    "file:///shared/dir": the C rendezvous (Rendezvous), with the prefix as
    its job id (characters outside [A-Za-z0-9._-] become '_'), closed
    before returning (a barrier: every rank has read every blob).
    timeout in seconds (None: the store's own). Raises RdzvError or the
    store's error (TimeoutError, RuntimeError) when ranks do not come."""
    blob = bytes(blob)
    rank, world_size = int(rank), int(world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"xfer: rank {rank} is not below world_size {world_size}")
    if isinstance(store, str):
        job = _JOB_BAD.sub("_", prefix)
        with Rendezvous(store, job, rank, world_size, timeout=timeout) as r:
            return r.exchange("blob", blob)
    for m in ("set", "get", "wait"):
        if not callable(getattr(store, m, None)):
            raise TypeError(f"xfer: exchange's store {type(store).__name__} has no {m}(); "
                            "give a torch.distributed store, an xfer.DictStore or a URL")
    keys = [f"{prefix}/{r}" for r in range(world_size)]
    store.set(keys[rank], blob)
    if timeout is None:
        store.wait(keys)
    else:
        store.wait(keys, timedelta(seconds=timeout))
    return [bytes(store.get(k)) for k in keys]
