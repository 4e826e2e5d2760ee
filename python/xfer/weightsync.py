# SPDX-License-Identifier: MIT
"""xfer.weightsync - RL weight updates from Python: trainers write their
shards straight into the inference ranks' weight buffers (xfer_weightsync(7),
xfer_ws_plan(3), xfer_ws_trainer_exec_create(3)).

SYNOPSIS
    from xfer import weightsync as ws
    plan = ws.Plan("config.json", trainer="fsdp=2", inference="tp=1,dp=1", dtype="fp8")

    # a trainer rank (rank < plan.ntrainers)
    t = ws.Trainer(plan, rank, store, provider="tcp;ofi_rxm")   # init_transfer_engine
    t.shard("model.layers.0.mlp.down_proj.weight")[:] = ...       # its rows, in place
    t.send_weights()                                              # trainer_send_weights

    # an inference rank (rank - plan.ntrainers)
    r = ws.Receiver(plan, rank, store)                            # init_transfer_engine
    r.receive_weights(timeout=30)                                 # receive_weights
    w = r.tensor("model.layers.0.mlp.down_proj.weight")           # its slice, as stored

The shape follows vLLM's weight-transfer engine interface
(init_transfer_engine, receive_weights on the inference side,
trainer_send_weights on the trainer's). Ranks 0 .. ntrainers-1 of the world
are the trainers, the next ninfer the inference ranks. The ranks meet
through `store` (torch.distributed's TCPStore or PrefixStore, an
xfer.DictStore, or an etcd:// / file:// URL; xfer.exchange), which also
paces the steps: every step starts when every rank has called its step
(send_weights / receive_weights), so an inference rank is never written
while it reads the previous step's weights.

BUFFERS
    A trainer's shards live in one registered arena (Trainer.shard(name):
    a numpy view, bf16 as uint16 bits, f32 as float32; Trainer.shard_torch:
    the same memory as a torch tensor of the parameter's dtype). An FSDP
    trainer points its parameters' storage at these views, or copies into
    them before each step. An inference rank's weights live in one buffer
    (Receiver.buffer, Receiver.tensor(name) / tensor_torch(name)): fp8
    tensors come with a float32 grid of 128x128 block scales
    (Receiver.scales(name)).

ERRORS
    XferError (xfer.XferError) from any C call, with the schedule's or
    planner's own text; TimeoutError when peers do not come within the
    timeout; ValueError for names and layouts that do not fit.
"""

from __future__ import annotations

import ctypes
from ctypes import byref, c_char_p, c_uint32, c_uint64, c_void_p
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from . import _lib as L
from . import _ws_lib as W
from .core import Engine, XferError, _error, host_alloc
from .rdzv import exchange

__all__ = ["Plan", "Trainer", "Receiver", "ParamInfo", "TensorInfo", "StepStats"]

_DTYPES = {"bf16": W.DT_BF16, "fp8": W.DT_FP8E4M3}


def _ws_check(ret: int, call: str, what: str = "") -> None:
    """Raise XferError for a negative ret, with what was asked and the
    library's xfer_ws_last_error text."""
    if ret < 0:
        text = W.last_error()
        text = text.decode() if text else ""
        raise _error(ret, call, "; ".join(t for t in (what, text) if t))


class ParamInfo(NamedTuple):
    """A trained parameter (struct xfer_ws_param): its full shape."""
    index: int
    name: str
    rows: int
    cols: int
    dtype: str       # "bf16" or "f32"


class TensorInfo(NamedTuple):
    """A destination tensor in an inference rank's buffer (struct xfer_ws_tensor)."""
    name: str
    offset: int
    nbytes: int
    rows: int
    cols: int
    dtype: str       # "bf16", "f32" or "fp8_e4m3"
    scale_offset: int
    scale_bytes: int


class StepStats(NamedTuple):
    """struct xfer_ws_exec_stats: one trainer's step."""
    seconds: float
    bytes_written: int
    bytes_gathered: int
    writes: int
    bytes_staged: int
    gather_s: float
    prepare_s: float
    wait_s: float


class Plan:
    """xfer_ws_plan(3): the schedule of one weight update.

    Plan(config, trainer="fsdp=2", inference="tp=1,dp=1", dtype="fp8",
         min_chunk_mib=0, max_chunk_mib=0)

    config: a Hugging Face config.json (a path, or its text starting
    with '{'). trainer / inference: the layouts as xfer-weightsync takes
    them. The schedule is read-only and shared by every rank (each computes
    the same one). Raises XferError with the planner's text."""

    def __init__(self, config: str, trainer: str = "fsdp=1", inference: str = "tp=1",
                 dtype: str = "fp8", min_chunk_mib: int = 0, max_chunk_mib: int = 0):
        self._s = None
        if dtype not in _DTYPES:
            raise ValueError(f"xfer: dtype {dtype!r}: 'bf16' or 'fp8'")
        model = c_void_p()
        if config.lstrip().startswith("{"):
            _ws_check(W.model_parse(config.encode(), 0, byref(model)), "xfer_ws_model_parse")
        else:
            _ws_check(W.model_load(config.encode(), 0, byref(model)), "xfer_ws_model_load",
                      config)
        try:
            t = W.TrainerLayout()
            i = W.InferLayout()
            _ws_check(W.trainer_parse_size(trainer.encode(), byref(t), ctypes.sizeof(t)),
                      f"xfer_ws_trainer_parse {trainer!r}")
            _ws_check(W.infer_parse_size(inference.encode(), byref(i), ctypes.sizeof(i)),
                      f"xfer_ws_infer_parse {inference!r}")
            i.dtype = _DTYPES[dtype]
            a = W.PlanAttr(ctypes.sizeof(W.PlanAttr), 0, min_chunk_mib << 20, max_chunk_mib << 20)
            s = ctypes.POINTER(W.Schedule)()
            _ws_check(W.plan(model, byref(t), byref(i), byref(a), byref(s)), "xfer_ws_plan")
        finally:
            W.model_free(model)
        self._s = s
        self.sched = s.contents
        self.dtype = dtype
        self.ntrainers = self.sched.ntrainers
        self.ninfer = self.sched.ninfer
        self.world_size = self.ntrainers + self.ninfer
        self.params: List[ParamInfo] = []
        self._param_index: Dict[str, int] = {}
        for k in range(self.sched.nparams):
            p = self.sched.params[k]
            name = p.name.decode()
            self.params.append(ParamInfo(k, name, p.rows, p.cols, _dtype_name(p.dtype)))
            self._param_index[name] = k

    def close(self) -> None:
        """xfer_ws_schedule_free(3). Harmless twice."""
        if self._s:
            W.schedule_free(self._s)
            self._s = None

    def __del__(self):
        if hasattr(self, "_s"):
            self.close()

    def _live(self):
        if not self._s:
            raise ValueError("xfer: Plan is closed")
        return self._s

    def param(self, name: str) -> ParamInfo:
        """The parameter called name (its Hugging Face name); KeyError if none."""
        if name not in self._param_index:
            raise KeyError(f"xfer: no parameter {name!r} in this model")
        return self.params[self._param_index[name]]

    def shard_rows(self, param: int, trainer: int) -> Tuple[int, int]:
        """xfer_ws_shard_rows(3): (first row, rows) of param that trainer holds."""
        row0, rows = c_uint64(), c_uint64()
        _ws_check(W.shard_rows(self._live(), param, trainer, byref(row0), byref(rows)),
                  "xfer_ws_shard_rows")
        return row0.value, rows.value

    def tensors(self, infer_rank: int) -> List[TensorInfo]:
        """The destination tensors of inference rank infer_rank (0-based
        among the inference ranks), in buffer order."""
        s = self.sched
        self._live()
        if not 0 <= infer_rank < s.ninfer:
            raise ValueError(f"xfer: inference rank {infer_rank} of {s.ninfer}")
        ir = s.infers[infer_rank]
        out = []
        for k in range(ir.first_tensor, ir.first_tensor + ir.ntensors):
            t = s.tensors[k]
            name = ctypes.string_at(s.strtab + t.name).decode()
            out.append(TensorInfo(name, t.offset, t.bytes, t.rows, t.cols, _dtype_name(t.dtype),
                                  t.scale_offset, t.scale_bytes))
        return out

    def buffer_bytes(self, infer_rank: int) -> int:
        """The size of inference rank infer_rank's weight buffer."""
        return self.sched.infers[infer_rank].buf_bytes

    def validate(self) -> None:
        """xfer_ws_schedule_validate(3); ValueError with the reason."""
        err = ctypes.create_string_buffer(512)
        if W.schedule_validate(self._live(), err, len(err)) < 0:
            raise ValueError("xfer: schedule invalid: " + err.value.decode())


def _dtype_name(dt: int) -> str:
    return {W.DT_BF16: "bf16", W.DT_F32: "f32", W.DT_FP8E4M3: "fp8_e4m3"}.get(dt, f"dtype{dt}")


_NP = {"bf16": "uint16", "f32": "float32", "fp8_e4m3": "uint8"}
_TORCH = {"bf16": "bfloat16", "f32": "float32", "fp8_e4m3": "uint8"}


def _to_torch(a, dtype: str):
    """A numpy view as a torch tensor of dtype, sharing memory (torch has
    no uint16: bf16 bits go through int16)."""
    import torch
    if dtype == "bf16":
        a = a.view("int16")
    return torch.from_numpy(a).view(getattr(torch, _TORCH[dtype]))


def _align64(n: int) -> int:
    return (n + 63) & ~63


class _Side:
    """What a trainer and an inference rank share: the engine, the
    exchange of addresses and descriptors, the step barrier."""

    def __init__(self, plan: Plan, rank: int, store: Any, prefix: str, provider: Optional[str],
                 timeout: float, engine_attrs: Dict[str, Any]):
        if not 0 <= rank < plan.world_size:
            raise ValueError(f"xfer: rank {rank} is not below the world size {plan.world_size} "
                             f"({plan.ntrainers} trainers + {plan.ninfer} inference ranks)")
        self.plan = plan
        self.rank = rank
        self.store = store
        self.prefix = prefix
        self.timeout = timeout
        self.steps = 0
        self.engine = Engine(provider=provider, **engine_attrs)
        self.peers: List[Optional[int]] = [None] * plan.world_size

    def _exchange(self, name: str, blob: bytes) -> List[bytes]:
        return exchange(self.store, f"{self.prefix}/{name}", self.rank, self.plan.world_size,
                        blob or b"-", timeout=self.timeout)

    def _meet(self, desc: bytes, want_peers) -> List[bytes]:
        addrs = self._exchange("addr", self.engine.address)
        for r in want_peers:
            self.peers[r] = self.engine.add_peer(addrs[r])
        return self._exchange("desc", desc)

    def _go(self) -> None:
        """A step starts when every rank is there: the inference ranks
        are done reading the last step's weights."""
        self._exchange(f"go{self.steps}", b"1")
        self.steps += 1

    def close(self) -> None:
        self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Trainer(_Side):
    """A trainer rank's side (rank < plan.ntrainers): init_transfer_engine.

    Trainer(plan, rank, store, prefix="xfer-ws", provider=None,
            timeout=60.0, window=0, threads=0, timeout_ms=0, **engine_attrs)

    Allocates and registers the arena of its shards and its gather
    buffer, meets every rank through store (addresses, descriptors), and
    creates the executor (xfer_ws_trainer_exec_create(3)). Fill the shards
    (shard(name)) before each send_weights()."""

    def __init__(self, plan: Plan, rank: int, store: Any, prefix: str = "xfer-ws",
                 provider: Optional[str] = None, timeout: float = 60.0, window: int = 0,
                 threads: int = 0, timeout_ms: int = 0, **engine_attrs: Any):
        if not 0 <= rank < plan.ntrainers:
            raise ValueError(f"xfer: trainer rank {rank} of {plan.ntrainers}")
        super().__init__(plan, rank, store, prefix, provider, timeout, engine_attrs)
        try:
            self._setup(window, threads, timeout_ms)
        except BaseException:
            self.close()
            raise

    def _setup(self, window, threads, timeout_ms):
        plan, s, rank = self.plan, self.plan.sched, self.rank
        self._views: Dict[int, Tuple[int, int, int]] = {}   # param -> offset, rows, row0
        off = 0
        for p in plan.params:
            row0, rows = plan.shard_rows(p.index, rank)
            if rows:
                self._views[p.index] = (off, rows, row0)
            off += _align64(rows * p.cols * (2 if p.dtype == "bf16" else 4))
        self.arena = host_alloc(max(off, 64))
        self._src = self.engine.register(self.arena, remote_write=False)
        gbytes = s.trainers[rank].gather_bytes
        self._gather = host_alloc(gbytes) if gbytes else None
        self._gmr = self.engine.register(self._gather) if gbytes else None
        others = [r for r in range(plan.world_size) if r != rank]
        descs = self._meet(self._gmr.descriptor if self._gmr else b"", others)
        nt, ni = plan.ntrainers, plan.ninfer
        self._rmrs = []
        infer = (c_void_p * (ni + 1))()
        tgather = (c_void_p * nt)()
        for r in others:
            if r >= nt or descs[r] != b"-":
                rr = self.engine.import_region(self.peers[r], descs[r])
                self._rmrs.append(rr)
                if r >= nt:
                    infer[r - nt] = rr._handle()
                else:
                    tgather[r] = rr._handle()
        shard = (c_void_p * max(plan.sched.nparams, 1))()
        for k, (o, _, _) in self._views.items():
            shard[k] = self.arena.address + o
        ipeer = (c_uint32 * max(ni, 1))(*[self.peers[nt + i] for i in range(ni)])
        self._keep = (infer, tgather, shard, ipeer)
        io = W.TrainerIO(ctypes.sizeof(W.TrainerIO), rank, self.engine._handle(),
                         ctypes.cast(shard, ctypes.POINTER(c_void_p)), self._src._handle(),
                         self._gather.address if self._gather else None,
                         self._gmr._handle() if self._gmr else None,
                         ctypes.cast(infer, ctypes.POINTER(c_void_p)),
                         ctypes.cast(tgather, ctypes.POINTER(c_void_p)),
                         ctypes.cast(ipeer, ctypes.POINTER(c_uint32)))
        a = W.ExecAttr(ctypes.sizeof(W.ExecAttr), window, 0, timeout_ms, 0, threads)
        x = c_void_p()
        _ws_check(W.trainer_exec_create(plan._live(), byref(io), byref(a), byref(x)),
                  "xfer_ws_trainer_exec_create")
        self._x = x.value

    def shard(self, name: str):
        """This rank's rows of parameter name, in the arena: a numpy array
        [rows, cols] (bf16 as uint16 bits, f32 as float32), written in
        place. KeyError if this rank holds none of it."""
        import numpy as np
        p = self.plan.param(name)
        if p.index not in self._views:
            raise KeyError(f"xfer: trainer {self.rank} holds no rows of {name}")
        off, rows, _ = self._views[p.index]
        a = np.frombuffer(self.arena.memory, dtype=_NP[p.dtype], count=rows * p.cols,
                          offset=off)
        return a.reshape(rows, p.cols)

    def shard_torch(self, name: str):
        """shard(name) as a torch tensor of the parameter's dtype (the same memory)."""
        p = self.plan.param(name)
        return _to_torch(self.shard(name), p.dtype)

    def shard_rows(self, name: str) -> Tuple[int, int]:
        """(first row, rows) of parameter name that this rank holds."""
        return self.plan.shard_rows(self.plan.param(name).index, self.rank)

    def send_weights(self) -> StepStats:
        """trainer_send_weights: one step (xfer_ws_trainer_exec_step(3)), once
        every rank is there; returns once every write of this rank completed
        and its barrier reached every inference rank."""
        if not self._x:
            raise ValueError("xfer: Trainer is closed")
        self._go()
        st = W.ExecStats()
        ret = W.trainer_exec_step(self._x, byref(st))
        if ret < 0:
            raise _error(ret, "xfer_ws_trainer_exec_step", f"trainer {self.rank}, step {self.steps - 1}")
        return StepStats(st.seconds, st.bytes_written, st.bytes_gathered, st.writes,
                         st.bytes_staged, st.gather_s, st.prepare_s, st.wait_s)

    def close(self) -> None:
        """The executor, the engine (with its regions). Harmless twice."""
        if getattr(self, "_x", None):
            W.trainer_exec_destroy(self._x)
        self._x = None
        super().close()


class Receiver(_Side):
    """An inference rank's side (plan.ntrainers <= rank < world_size):
    init_transfer_engine.

    Receiver(plan, rank, store, prefix="xfer-ws", provider=None,
             timeout=60.0, **engine_attrs)

    Allocates and registers its weight buffer (plan.buffer_bytes), meets
    every rank through store. receive_weights() waits for a step."""

    def __init__(self, plan: Plan, rank: int, store: Any, prefix: str = "xfer-ws",
                 provider: Optional[str] = None, timeout: float = 60.0, **engine_attrs: Any):
        if not plan.ntrainers <= rank < plan.world_size:
            raise ValueError(f"xfer: rank {rank} is not an inference rank (ranks "
                             f"{plan.ntrainers} .. {plan.world_size - 1})")
        super().__init__(plan, rank, store, prefix, provider, timeout, engine_attrs)
        try:
            self.infer_rank = rank - plan.ntrainers
            self.buffer = host_alloc(plan.buffer_bytes(self.infer_rank))
            self._mr = self.engine.register(self.buffer)
            self._tensors = {t.name: t for t in plan.tensors(self.infer_rank)}
            # connections both ways: RC queue pairs need both ends
            self._meet(self._mr.descriptor, range(plan.ntrainers))
        except BaseException:
            self.close()
            raise

    @property
    def tensor_infos(self) -> List[TensorInfo]:
        return list(self._tensors.values())

    def _info(self, name: str) -> TensorInfo:
        if name not in self._tensors:
            raise KeyError(f"xfer: inference rank {self.infer_rank} holds no tensor {name!r}")
        return self._tensors[name]

    def tensor(self, name: str):
        """The tensor called name in the buffer, as stored (fused names such
        as ...qkv_proj.weight; this rank's tp slice): numpy [rows, cols],
        bf16 as uint16 bits, fp8 as uint8 bits, f32 as float32."""
        import numpy as np
        t = self._info(name)
        return np.frombuffer(self.buffer.memory, dtype=_NP[t.dtype], count=t.rows * t.cols,
                             offset=t.offset).reshape(t.rows, t.cols)

    def tensor_torch(self, name: str):
        """tensor(name) as a torch tensor (bf16 as torch.bfloat16, fp8 as uint8)."""
        t = self._info(name)
        return _to_torch(self.tensor(name), t.dtype)

    def scales(self, name: str):
        """The float32 block scales of an fp8 tensor: [ceil(rows/128),
        ceil(cols/128)]; None for other dtypes."""
        import numpy as np
        t = self._info(name)
        if not t.scale_bytes:
            return None
        b = W.FP8_BLOCK
        return np.frombuffer(self.buffer.memory, dtype=np.float32, count=t.scale_bytes // 4,
                             offset=t.scale_offset).reshape((t.rows + b - 1) // b, -1)

    def receive_weights(self, timeout: Optional[float] = None) -> None:
        """receive_weights: one step. Once every rank is there, waits until
        every write due to this rank and every trainer's barrier arrived
        (xfer_ws_exec_receive(3)); raises XferTimeoutError after timeout
        seconds (default: the constructor's)."""
        self._go()
        t = self.timeout if timeout is None else timeout
        ret = W.exec_receive(self.plan._live(), self.engine._handle(), self.infer_rank,
                             int(t * 1000))
        if ret < 0:
            raise _error(ret, "xfer_ws_exec_receive",
                         f"inference rank {self.infer_rank}, step {self.steps - 1}")
