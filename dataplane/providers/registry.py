"""Provider adapters by name, rebuilt when a snapshot changes their configuration.

Adapters are created on snapshot swap, never on the request path, and an adapter whose
configuration did not change is kept (with its warm connection pool and cached credentials).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

import httpx

from dataplane.providers.anthropic import AnthropicProvider
from dataplane.providers.base import Provider
from dataplane.providers.bedrock import BedrockProvider
from dataplane.providers.simulator import SimulatorProvider
from dataplane.providers.vertex import VertexProvider
from dataplane.snapshot import ProviderConfig, Snapshot

log = logging.getLogger("tollgate.providers")


def shared_client() -> httpx.AsyncClient:
    """One pooled HTTP client for every HTTP provider of this data plane."""
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=60)
    return httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)


class ProviderRegistry:
    def __init__(self, client: httpx.AsyncClient, env: Mapping[str, str] | None = None) -> None:
        self._client = client
        self._env = env
        self._configs: dict[str, ProviderConfig] = {}
        self._adapters: Mapping[str, Provider] = MappingProxyType({})

    def build(self, config: ProviderConfig) -> Provider | None:
        if config.kind == "anthropic":
            return AnthropicProvider(config, self._client, self._env)
        if config.kind == "simulator":
            return SimulatorProvider(config)
        if config.kind == "bedrock":
            return BedrockProvider(config, self._client, self._env)
        if config.kind == "vertex":
            return VertexProvider(config, self._client, self._env)
        log.warning(
            "provider %s has kind %r, which this data plane cannot serve", config.name, config.kind
        )
        return None

    def update(self, snapshot: Snapshot) -> None:
        """Snapshot listener: rebuild changed adapters, keep unchanged ones."""
        adapters: dict[str, Provider] = {}
        for name, config in snapshot.providers.items():
            current = self._adapters.get(name)
            if current is not None and self._configs.get(name) == config:
                adapters[name] = current
                continue
            adapter = self.build(config)
            if adapter is not None:
                adapters[name] = adapter
        self._configs = dict(snapshot.providers)
        self._adapters = MappingProxyType(adapters)

    def get(self, name: str) -> Provider | None:
        return self._adapters.get(name)

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
        await self._client.aclose()
