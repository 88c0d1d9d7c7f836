"""Provider adapters: built from a snapshot's provider configurations, off the request path.

:meth:`ProviderRegistry.adapters` is called when a snapshot is compiled into a runtime
(:mod:`dataplane.policy.runtime`), never on the request path. An adapter whose configuration did not
change is kept (with its warm connection pool and cached credentials); the registry itself holds
no adapters, only what they are built with (the shared transport and the environment).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from dataplane.config.snapshot import ProviderConfig
from dataplane.providers.anthropic import AnthropicProvider
from dataplane.providers.base import Provider
from dataplane.providers.bedrock import BedrockProvider
from dataplane.providers.simulator import SimulatorProvider
from dataplane.providers.transport import Transport
from dataplane.providers.vertex import VertexProvider

log = logging.getLogger("tollgate.providers")


def shared_transport() -> Transport:
    """One pooled upstream HTTP transport for every HTTP provider of this data plane."""
    return Transport()


class ProviderRegistry:
    def __init__(self, transport: Transport, env: Mapping[str, str] | None = None) -> None:
        self._transport = transport
        self._env = env

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

    def adapters(
        self,
        providers: Mapping[str, ProviderConfig],
        previous: Mapping[str, ProviderConfig],
        built: Mapping[str, Provider],
    ) -> Mapping[str, Provider]:
        """Adapters for ``providers``: those in ``built`` (made from the ``previous``
        configurations) are kept where the configuration is unchanged, the others are built."""
        adapters: dict[str, Provider] = {}
        for name, config in providers.items():
            current = built.get(name)
            was = previous.get(name)
            if current is not None and (was is config or was == config):
                adapters[name] = current
                continue
            adapter = self.build(config)
            if adapter is not None:
                adapters[name] = adapter
        return MappingProxyType(adapters)

    async def aclose(self, adapters: Iterable[Provider]) -> None:
        """Close ``adapters`` (the serving ones), then the transport they share."""
        for adapter in adapters:
            await adapter.aclose()
        await self._transport.aclose()
