# SPDX-License-Identifier: MIT
"""A stub of the parts of vLLM's interface that xfer.connectors.vllm uses,
mirroring vLLM v0.10.1 (August 2025): the v1 KV connector base class
(vllm/distributed/kv_transfer/kv_connector/v1/base.py: KVConnectorBase_V1,
KVConnectorRole, KVConnectorMetadata, their method names, arguments and
return types), KVTransferConfig's fields the connector reads
(kv_role, kv_connector_extra_config), VllmConfig.kv_transfer_config, and
Request's request_id, prompt_token_ids and kv_transfer_params. vLLM cannot
be installed on this project's machines (no PyPI); its tests of the NIXL
connector use a fake transfer wrapper the same way. Nothing here transfers
anything: the connector under test does, through libxfer."""
__version__ = "0.10.1+xfer-stub"
