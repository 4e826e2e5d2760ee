# SPDX-License-Identifier: MIT
"""KVConnectorBase_V1 as vLLM v0.10.1 declares it: one class, built twice
(role SCHEDULER in the engine core, role WORKER in each worker).
Scheduler side: get_num_new_matched_tokens, update_state_after_alloc,
build_connector_meta, request_finished. Worker side: register_kv_caches,
bind_connector_metadata / clear_connector_metadata (by the model runner,
around each forward), start_load_kv, wait_for_layer_load, save_kv_layer,
wait_for_save, get_finished."""
import enum
from abc import ABC, abstractmethod
from typing import Any, Optional


class KVConnectorRole(enum.Enum):
    SCHEDULER = 0
    WORKER = 1


class KVConnectorMetadata(ABC):  # noqa: B024 (as vLLM: a marker base)
    pass


class KVConnectorBase_V1(ABC):

    def __init__(self, vllm_config, role: KVConnectorRole):
        self._connector_metadata: Optional[KVConnectorMetadata] = None
        self._vllm_config = vllm_config
        self._role = role

    @property
    def role(self) -> KVConnectorRole:
        return self._role

    # ---- worker side ----
    def bind_connector_metadata(self, connector_metadata: KVConnectorMetadata) -> None:
        self._connector_metadata = connector_metadata

    def clear_connector_metadata(self) -> None:
        self._connector_metadata = None

    def _get_connector_metadata(self) -> KVConnectorMetadata:
        assert self._connector_metadata is not None
        return self._connector_metadata

    def register_kv_caches(self, kv_caches: dict) -> None:
        return

    @abstractmethod
    def start_load_kv(self, forward_context: Any, **kwargs) -> None:
        ...

    @abstractmethod
    def wait_for_layer_load(self, layer_name: str) -> None:
        ...

    @abstractmethod
    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs) -> None:
        ...

    @abstractmethod
    def wait_for_save(self):
        ...

    def get_finished(self, finished_req_ids: set) -> tuple:
        return None, None

    # ---- scheduler side ----
    @abstractmethod
    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> tuple:
        ...

    @abstractmethod
    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int):
        ...

    @abstractmethod
    def build_connector_meta(self, scheduler_output: Any) -> KVConnectorMetadata:
        ...

    def request_finished(self, request: Any, block_ids: list) -> tuple:
        return False, None
