"""Provider adapters by name, rebuilt when a snapshot changes their configuration.

Adapters are created on snapshot swap, never on the request path, and an adapter whose
configuration did not change is kept (with its warm connection pool and cached credentials).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from dataplane.providers.anthropic import AnthropicProvider
from dataplane.providers.base import Provider
from dataplane.providers.bedrock import BedrockProvider
from dataplane.providers.simulator import SimulatorProvider
from dataplane.providers.transport import Transport
from dataplane.providers.vertex import VertexProvider
from dataplane.snapshot import ProviderConfig, Snapshot

log = logging.getLogger("tollgate.providers")


def shared_transport() -> Transport:
    """One pooled upstream HTTP transport for every HTTP provider of this data plane."""
    return Transport()


class ProviderRegistry:
    def __init__(self, transport: Transport, env: Mapping[str, str] | None = None) -> None:
        self._transport = transport
        self._env = env
        self._configs: dict[str, ProviderConfig] = {}
        self._adapters: Mapping[str, Provider] = MappingProxyType({})

    def build(self, config: ProviderConfig) -> Provider | None:
        if config.kind == "anthropic":
            return AnthropicProvider(config, self._transport, self._env)
        if config.kind == "simulator":
            return SimulatorProvider(config)
        if config.kind == "bedrock":
            return BedrockProvider(config, self._transport, self._env)
        if config.kind == "vertex":
            return VertexProvider(config, self._transport, self._env)
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
        await self._transport.aclose()
