# SPDX-License-Identifier: MIT
"""xfer.connectors.vllm - a vLLM v1 KV connector that pushes KV-cache blocks
layer by layer with one-sided writes (push mode, as Mooncake's connector).

Load it in vLLM (interface of v0.10.1) with
    --kv-transfer-config '{"kv_connector": "XferConnector",
        "kv_connector_module_path": "xfer.connectors.vllm",
        "kv_role": "kv_consumer" | "kv_producer",
        "kv_connector_extra_config": {"xfer_store": "HOST:PORT", "xfer_provider": "efa"}}'
and give requests kv_transfer_params {"do_remote_prefill": true} on the
decode instance, {"do_remote_decode": true} on the prefill instance, with
the same request id (the proxy's).

The request cycle:
  decode scheduler   get_num_new_matched_tokens: the prompt's tokens come
                     from the remote prefill, asynchronously;
                     update_state_after_alloc: the blocks vLLM allocated and
                     a range of immediates (one per layer) go into the
                     connector metadata;
  decode worker      start_load_kv: for each new request, publishes its
                     engine address, one region descriptor per layer, its
                     block ids and its first immediate in the side channel
                     (the store, key "xfer-kv/<request id>"), and registers
                     one expectation per layer whose flag word the engine's
                     worker sets when that layer's immediate arrives;
  prefill worker     save_kv_layer(layer): for each request to send, one
                     paged write from this layer's K/V blocks into the
                     decode's blocks of the same layer, with that layer's
                     immediate: the layer leaves as soon as it is computed;
  decode worker      wait_for_layer_load(layer) waits on the layer's flag
                     words; get_finished reports a request once every
                     layer's flag is set (or its deadline passed: reported,
                     its blocks freed, the failure kept in .failed);
  prefill worker     get_finished reports a request once its writes are
                     complete (or failed), so its blocks may be freed.

Flag words instead of a host sync per layer: on a GPU the flag words sit
in host memory mapped to the device, and a CUDA stream waits on layer l's
word (cuStreamWaitValue64) before that layer's attention kernel, while
the host goes on launching. No SM spins and no host thread waits per layer.
On this project's machines there is no GPU: the words are polled from
the host (docs/vllm.md).

Limits: one worker per instance (tensor parallel 1: with TP the keys need
the worker's rank); the KV caches are CPU tensors here (CUDA tensors
register through dma-buf, issue 17); whole blocks are sent.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np

import xfer
from vllm.distributed.kv_transfer.kv_connector.v1.base import (KVConnectorBase_V1,
                                                                  KVConnectorMetadata,
                                                                  KVConnectorRole)

log = logging.getLogger("xfer.connectors.vllm")

IMM_BASE = 0x80000000      # this connector's immediates: the high half of the space
LAYERS_MAX = 256           # immediates reserved per request (one per layer)
KEY = "xfer-kv/"


@dataclass
class RecvReq:
    blocks: List[int]
    imm: int


@dataclass
class SendReq:
    blocks: List[int]


@dataclass
class XferConnectorMetadata(KVConnectorMetadata):
    recv: Dict[str, RecvReq] = field(default_factory=dict)   # decode: to receive
    send: Dict[str, SendReq] = field(default_factory=dict)   # prefill: to send
    aborted: List[str] = field(default_factory=list)


def _connect_store(spec: Any, timeout: float):
    """The side channel: an object with set/get/wait (given), or
    "HOST:PORT" of a torch TCPStore someone serves."""
    if not isinstance(spec, str):
        return spec
    import torch.distributed as dist
    host, port = spec.rsplit(":", 1)
    return dist.TCPStore(host, int(port), None, False,
                         timeout=datetime.timedelta(seconds=timeout))


class XferConnector(KVConnectorBase_V1):
    """KVConnectorBase_V1 over libxfer: see the module's docstring."""

    def __init__(self, vllm_config: Any, role: KVConnectorRole):
        super().__init__(vllm_config, role)
        kt = vllm_config.kv_transfer_config
        extra = kt.kv_connector_extra_config if kt else {}
        self.is_producer = kt.kv_role in ("kv_producer", "kv_both")
        self.timeout = float(extra.get("xfer_timeout_s", 30.0))
        self.load_async = bool(extra.get("xfer_load_async", True))
        self._store_spec = extra.get("xfer_store")
        self._provider = extra.get("xfer_provider")
        # scheduler side
        self._seq = 0
        self._new_recv: Dict[str, RecvReq] = {}
        self._new_send: Dict[str, SendReq] = {}
        self._aborted: List[str] = []
        self._busy: Set[str] = set()   # requests whose blocks the transfer still holds
        # worker side
        self.engine: Optional[xfer.Engine] = None
        self.store = None
        self.layers: List[str] = []
        self._regions: List[xfer.Region] = []
        self._page_bytes = 0
        self._nblocks = 0
        self._recv: Dict[str, dict] = {}      # decode: request -> flags, deadline, expectations
        self._send: Dict[str, dict] = {}      # prefill: request -> ops, remote
        self._peers: Dict[bytes, Tuple[int, List[xfer.RemoteRegion]]] = {}
        self.failed: Dict[str, str] = {}      # request -> why (reported, blocks freed)
        self._aborted_ids: Set[str] = set()   # prefill: never sent again, even if still in a step's metadata
        self.layer_times: Dict[str, List[float]] = {}   # decode: arrival per layer

    # ================= scheduler side =================
    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> Tuple[int, bool]:
        p = request.kv_transfer_params or {}
        if p.get("do_remote_prefill") and not p.get("xfer_loaded"):
            return max(len(request.prompt_token_ids) - num_computed_tokens, 0), self.load_async
        return 0, False

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        p = request.kv_transfer_params or {}
        ids = list(blocks.get_block_ids()[0]) if hasattr(blocks, "get_block_ids") else list(blocks)
        if p.get("do_remote_prefill") and num_external_tokens > 0:
            imm = IMM_BASE | ((self._seq * LAYERS_MAX) & 0x7FFFFFFF)
            self._seq += 1
            self._new_recv[request.request_id] = RecvReq(ids, imm)
            self._busy.add(request.request_id)
            p["xfer_loaded"] = True   # its tokens are on their way: not matched twice
        elif p.get("do_remote_decode"):
            self._new_send[request.request_id] = SendReq(ids)
            self._busy.add(request.request_id)

    def build_connector_meta(self, scheduler_output: Any) -> XferConnectorMetadata:
        meta = XferConnectorMetadata(self._new_recv, self._new_send, self._aborted)
        self._new_recv, self._new_send, self._aborted = {}, {}, []
        return meta

    def request_finished(self, request: Any, block_ids: list) -> Tuple[bool, Optional[dict]]:
        """Finished or aborted: while a transfer still reads or writes its
        blocks, they stay allocated (True) until get_finished reports it."""
        rid = request.request_id
        if rid in self._new_send or rid in self._new_recv:   # never reached a worker
            self._new_send.pop(rid, None)
            self._new_recv.pop(rid, None)
            self._busy.discard(rid)
            return False, None
        if rid in self._busy:
            self._aborted.append(rid)
            return True, None
        return False, None

    def finished(self, req_ids: Set[str]) -> None:
        """The scheduler side hears get_finished's requests (vLLM passes them
        through the model runner's output): their blocks are free again."""
        self._busy -= set(req_ids)

    # ================= worker side =================
    def register_kv_caches(self, kv_caches: Dict[str, Any]) -> None:
        """One region per layer: vLLM's [2, num_blocks, block_size, heads,
        head_dim] tensors, a page per block of K (pages 0 .. n-1) then V."""
        self.engine = xfer.Engine(provider=self._provider, peer_timeout_ms=int(self.timeout * 1000))
        self.store = _connect_store(self._store_spec, self.timeout)
        self.layers = list(kv_caches)
        if len(self.layers) > LAYERS_MAX:
            raise ValueError(f"xfer: {len(self.layers)} layers: at most {LAYERS_MAX}")
        for name, t in kv_caches.items():
            if t.dim() != 5 or t.shape[0] != 2 or not t.is_contiguous():
                raise ValueError(f"xfer: layer {name}: want a contiguous [2, num_blocks, "
                                 f"block_size, heads, head_dim] tensor, got {tuple(t.shape)}")
            self._regions.append(self.engine.register(t))
        t0 = next(iter(kv_caches.values()))
        self._nblocks = t0.shape[1]
        self._page_bytes = t0[0, 0].numel() * t0.element_size()

    def start_load_kv(self, forward_context: Any, **kwargs) -> None:
        meta = self._get_connector_metadata()
        self._abort(meta.aborted)
        for rid, r in meta.recv.items():
            flags = np.zeros(len(self.layers), dtype=np.int64)
            exps = [self.engine.expect(r.imm + l, 1, flags, index=l)
                    for l in range(len(self.layers))]
            blob = {"addr": self.engine.address.hex(),
                    "descs": [m.descriptor.hex() for m in self._regions],
                    "blocks": r.blocks, "imm": r.imm, "nblocks": self._nblocks,
                    "page_bytes": self._page_bytes}
            self._recv[rid] = {"flags": flags, "exps": exps, "start": time.monotonic(),
                               "deadline": time.monotonic() + self.timeout, "seen": 0}
            self.layer_times[rid] = [0.0] * len(self.layers)
            self.store.set(KEY + rid, json.dumps(blob))

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Until layer_name's flag word is set for every request loading in
        this step (a CUDA stream would wait on the word instead)."""
        meta = self._connector_metadata
        if meta is None:
            return
        l = self.layers.index(layer_name)
        for rid in meta.recv:
            st = self._recv.get(rid)
            if st is None:
                continue
            while not st["flags"][l]:
                if time.monotonic() > st["deadline"]:
                    raise TimeoutError(f"xfer: request {rid}: layer {layer_name} did not "
                                       f"arrive within {self.timeout} s")
                time.sleep(0.0002)
            self._arrived(rid, st)

    def _arrived(self, rid: str, st: dict) -> None:
        now = time.monotonic() - st["start"]
        for l in range(len(self.layers)):
            if st["flags"][l] and not self.layer_times[rid][l]:
                self.layer_times[rid][l] = now

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs) -> None:
        meta = self._connector_metadata
        if meta is None or not meta.send:
            return
        l = self.layers.index(layer_name)
        for rid, s in meta.send.items():
            if rid in self._aborted_ids:
                continue
            st = self._send.setdefault(rid, {"ops": [], "remote": None, "error": None})
            if st["error"]:
                continue
            try:
                if st["remote"] is None:
                    st["remote"] = self._remote(rid)
                peer, rmrs, blob = st["remote"]
                dst = blob["blocks"]
                if len(dst) < len(s.blocks):
                    raise ValueError(f"decode gave {len(dst)} blocks for {len(s.blocks)}")
                n, dn = self._nblocks, blob["nblocks"]
                src_pages = np.array(s.blocks + [b + n for b in s.blocks], dtype=np.uint32)
                dst_pages = np.array(dst[:len(s.blocks)] + [b + dn for b in dst[:len(s.blocks)]],
                                     dtype=np.uint32)
                st["ops"].append(self.engine.write_paged(self._regions[l], rmrs[l], src_pages,
                                                         dst_pages, self._page_bytes,
                                                         imm=blob["imm"] + l))
            except (xfer.XferError, TimeoutError, ValueError, RuntimeError, LookupError) as exc:
                st["error"] = f"layer {layer_name}: {exc}"
                log.error("xfer: request %s not sent: %s", rid, st["error"])

    def _remote(self, rid: str):
        """The decode's published blob for rid: its engine (added once per
        address) and its layers' regions."""
        self.store.wait([KEY + rid], datetime.timedelta(seconds=self.timeout))
        blob = json.loads(self.store.get(KEY + rid))
        addr = bytes.fromhex(blob["addr"])
        if addr not in self._peers:
            peer = self.engine.add_peer(addr)
            self._peers[addr] = (peer, [self.engine.import_region(peer, bytes.fromhex(d))
                                        for d in blob["descs"]])
        peer, rmrs = self._peers[addr]
        if blob["page_bytes"] != self._page_bytes or len(rmrs) != len(self._regions):
            raise ValueError(f"decode's KV layout differs: {len(rmrs)} layers of pages of "
                             f"{blob['page_bytes']} bytes, here {len(self._regions)} of "
                             f"{self._page_bytes}")
        return peer, rmrs, blob

    def wait_for_save(self) -> None:
        """Nothing to wait for: the writes run on; get_finished reports them."""
        return

    def _abort(self, rids: List[str]) -> None:
        """Aborted requests: a prefill sends no more of their layers and
        reports them once the writes in flight completed (at once if none);
        a decode keeps waiting for what is on its way into their blocks
        (until it arrived, or the deadline) before reporting them."""
        for rid in rids:
            if self.is_producer and rid not in self._aborted_ids:
                self._aborted_ids.add(rid)
                st = self._send.setdefault(rid, {"ops": [], "remote": None, "error": None})
                st["error"] = st["error"] or "aborted"

    def get_finished(self, finished_req_ids: Set[str]) -> Tuple[Optional[Set[str]], Optional[Set[str]]]:
        sending, recving = set(), set()
        meta = self._connector_metadata
        if meta is not None:
            self._abort(meta.aborted)
        for rid, st in list(self._send.items()):
            done = all(op.test() for op in st["ops"])
            if not done:
                continue
            for op in st["ops"]:
                if op.status:
                    st["error"] = st["error"] or f"a write failed: {xfer.strerror(op.status)}"
                op.close()
            if st["error"]:
                self.failed[rid] = st["error"]
            sending.add(rid)
            del self._send[rid]
        now = time.monotonic()
        for rid, st in list(self._recv.items()):
            self._arrived(rid, st)
            if st["flags"].all():
                recving.add(rid)
            elif now > st["deadline"]:
                missing = [self.layers[l] for l in range(len(self.layers)) if not st["flags"][l]]
                self.failed[rid] = (f"{len(missing)} of {len(self.layers)} layers did not arrive "
                                    f"within {self.timeout} s (first: {missing[0]})")
                recving.add(rid)
            else:
                continue
            del self._recv[rid]
            try:
                self.store.delete_key(KEY + rid)
            except Exception:   # a store without delete_key: the key stays
                pass
        return sending or None, recving or None

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
