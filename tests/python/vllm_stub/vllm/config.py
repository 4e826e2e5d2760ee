# SPDX-License-Identifier: MIT
"""vllm.config: the two fields of KVTransferConfig and the one of VllmConfig
that KV connectors read (v0.10.1 names)."""
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class KVTransferConfig:
    kv_connector: Optional[str] = None
    kv_role: Optional[str] = None            # "kv_producer", "kv_consumer", "kv_both"
    kv_connector_module_path: Optional[str] = None
    kv_connector_extra_config: dict = field(default_factory=dict)

    def get_from_extra_config(self, key: str, default: Any) -> Any:
        return self.kv_connector_extra_config.get(key, default)


@dataclass
class VllmConfig:
    kv_transfer_config: Optional[KVTransferConfig] = None
