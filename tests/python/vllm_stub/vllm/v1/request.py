# SPDX-License-Identifier: MIT
"""vllm.v1.request.Request: the fields KV connectors read (v0.10.1)."""
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class Request:
    request_id: str
    prompt_token_ids: list
    kv_transfer_params: Optional[dict] = None
    num_computed_tokens: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids)
