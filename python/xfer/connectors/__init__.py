# SPDX-License-Identifier: MIT
"""Framework connectors: xfer.connectors.vllm (a vLLM v1 KV connector)."""
