"""Which provider serves a request: the key's provider, or its route's targets.

This first version serves from the first target of a route; fallback chains, retries, weights
and breakers (P4) build on :meth:`Router.candidates`.
"""

from __future__ import annotations

from dataplane.auth import Principal
from dataplane.errors import GatewayError
from dataplane.providers.base import Provider
from dataplane.providers.registry import ProviderRegistry


class Router:
    def __init__(self, registry: ProviderRegistry) -> None:
        self.registry = registry

    def candidates(self, principal: Principal) -> list[str]:
        """Provider names to try, in order."""
        key = principal.key
        if key.provider:
            return [key.provider]
        route = principal.snapshot.routes.get(key.route)
        if route is None:
            return []
        return [t.provider for t in route.targets]

    def primary(self, principal: Principal) -> Provider:
        for name in self.candidates(principal):
            adapter = self.registry.get(name)
            if adapter is not None:
                return adapter
        raise GatewayError(
            503,
            f"Virtual key '{principal.key.name}' has no provider this gateway can serve right now. "
            "Ask your platform team to check the key's provider or route.",
        )
