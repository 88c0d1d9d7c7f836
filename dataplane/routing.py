"""Which providers serve a request, in which order, with which retry and timeout rules.

:meth:`Router.plan` turns the caller (a key or a developer) into a :class:`Plan`: its provider
alone, or its route's targets — in order for a ``fallback`` route; for a ``loadbalance`` route a weighted choice
first, sticky per Claude Code session (``x-claude-code-session-id``) so that a session keeps
hitting the provider where its prompt cache is warm, then the others as fallbacks. Targets whose
circuit breaker is open go last (never dropped: with every target open, they are still tried).
The proxy walks the plan and reports each attempt's outcome with :meth:`Router.record`.

Pure and fast: in-memory snapshot and breaker state only, no I/O.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b

from dataplane.auth import Principal
from dataplane.breaker import DEFAULT_COOLDOWN_S, DEFAULT_FAILURES, CircuitBreaker
from dataplane.errors import GatewayError
from dataplane.providers.base import Provider
from dataplane.providers.registry import ProviderRegistry
from dataplane.providers.transport import Timeouts
from dataplane.retry import DEFAULT_RETRY_ON
from dataplane.snapshot import RouteConfig

# A route's timeouts replace the provider's as a set; the ones it leaves unset (0) take these
# (the providers' own defaults, options timeout_connect_s / timeout_read_s).
DEFAULT_CONNECT_S = 10.0
DEFAULT_IDLE_S = 600.0

_2_64 = float(2**64)


@dataclass(frozen=True, slots=True)
class Target:
    provider: Provider
    name: str  # the provider's name: what Router.record and the breaker know it by
    model: str  # the route's model override for this target, or "" (send the requested model)


@dataclass(frozen=True, slots=True)
class Plan:
    targets: tuple[Target, ...]  # in the order to try; never empty
    attempts_per_target: int = 1  # 1 + the route's retries
    retry_on: frozenset[int] = DEFAULT_RETRY_ON
    timeouts: Timeouts | None = None  # None: each provider's own
    cache_ttl_s: int = 0  # 0: no response cache
    cache_sampled: bool = False  # cache temperature > 0 requests too
    route: str = ""  # "" when the key names a provider directly


@dataclass(frozen=True, slots=True)
class _Compiled:
    """What a route contributes to every plan, computed once per route object."""

    config: RouteConfig
    loadbalance: bool
    retry_on: frozenset[int]
    timeouts: Timeouts | None
    hash_keys: tuple[bytes, ...]  # per target: b"\0" + provider name, for rendezvous hashing
    weights: tuple[float, ...]


def route_timeouts(route: RouteConfig) -> Timeouts | None:
    """The route's timeouts (None when it sets none: the providers' own apply)."""
    connect, first_byte, idle = (
        route.timeout_connect_ms,
        route.timeout_first_byte_ms,
        route.timeout_idle_ms,
    )
    if connect <= 0 and first_byte <= 0 and idle <= 0:
        return None
    return Timeouts(
        connect=connect / 1000 if connect > 0 else DEFAULT_CONNECT_S,
        read=idle / 1000 if idle > 0 else DEFAULT_IDLE_S,
        first_byte=first_byte / 1000 if first_byte > 0 else None,
    )


def _compile(route: RouteConfig) -> _Compiled:
    return _Compiled(
        config=route,
        loadbalance=route.mode == "loadbalance",
        retry_on=frozenset(route.retry_on) if route.retry_on else DEFAULT_RETRY_ON,
        timeouts=route_timeouts(route),
        hash_keys=tuple(b"\0" + t.provider.encode() for t in route.targets),
        weights=tuple(float(max(t.weight, 1)) for t in route.targets),
    )


def rendezvous_score(session: bytes, hash_key: bytes, weight: float) -> float:
    """Weighted rendezvous hashing: the target with the LOWEST score wins a session, and a
    target wins with probability weight / total. Adding or removing a target only moves the
    sessions that it wins or had won."""
    h = int.from_bytes(blake2b(session + hash_key, digest_size=8).digest(), "big")
    return -math.log((h + 0.5) / _2_64) / weight


class Router:
    def __init__(
        self,
        registry: ProviderRegistry,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.registry = registry
        self.breaker = breaker if breaker is not None else CircuitBreaker(clock)
        self._rng = rng if rng is not None else random.Random()
        self._compiled: dict[str, _Compiled] = {}
        # Breaker thresholds per target, from the last plan that included it.
        self._settings: dict[str, tuple[int, float]] = {}

    def candidates(self, principal: Principal) -> list[str]:
        """Provider names of the member's provider or route, in configuration order."""
        member = principal.member
        if member.provider:
            return [member.provider]
        route = principal.snapshot.routes.get(member.route)
        if route is None:
            return []
        return [t.provider for t in route.targets]

    def plan(self, principal: Principal, session_id: str = "") -> Plan:
        """The targets to try for this request and the rules for trying them.

        Raises GatewayError 503 when no target has an adapter on this data plane.
        """
        member = principal.member
        if member.provider:
            adapter = self.registry.get(member.provider)
            if adapter is None:
                raise self._unservable(principal)
            self._settings[member.provider] = (DEFAULT_FAILURES, DEFAULT_COOLDOWN_S)
            self.breaker.allow(member.provider)  # claims the probe if half-open; tried regardless
            return Plan(targets=(Target(adapter, member.provider, ""),))
        route = principal.snapshot.routes.get(member.route)
        if route is None:
            raise self._unservable(principal)
        compiled = self._compiled.get(route.name)
        if compiled is None or compiled.config is not route:
            compiled = self._compiled[route.name] = _compile(route)

        # (order key, Target) for every target with an adapter.
        settings = (route.breaker_failures, float(route.breaker_cooldown_s))
        scored: list[tuple[float, Target]] = []
        session = session_id.encode() if compiled.loadbalance and session_id else b""
        for i, t in enumerate(route.targets):
            adapter = self.registry.get(t.provider)
            if adapter is None:
                continue
            self._settings[t.provider] = settings
            if not compiled.loadbalance:
                order = float(i)
            elif session:
                order = rendezvous_score(session, compiled.hash_keys[i], compiled.weights[i])
            else:  # weighted random order (exponential race: P(first) = weight / total)
                order = -math.log(1.0 - self._rng.random()) / compiled.weights[i]
            scored.append((order, Target(adapter, t.provider, t.model)))
        if not scored:
            raise self._unservable(principal)
        if compiled.loadbalance:
            scored.sort(key=lambda pair: pair[0])
        return Plan(
            targets=self._healthy_first([t for _, t in scored]),
            attempts_per_target=1 + max(route.retries, 0),
            retry_on=compiled.retry_on,
            timeouts=compiled.timeouts,
            cache_ttl_s=route.cache_ttl_s,
            cache_sampled=route.cache_sampled,
            route=route.name,
        )

    def _healthy_first(self, targets: list[Target]) -> tuple[Target, ...]:
        """Closed targets keep their order; a half-open one may take the lead as the probe
        (only ever the first target of a plan claims it, the one surely tried); the rest
        (open, or half-open behind a healthier target) go last, in order."""
        breaker = self.breaker
        ready: list[Target] = []
        later: list[Target] = []
        for target in targets:
            if breaker.is_closed(target.name) or (not ready and breaker.allow(target.name)):
                ready.append(target)
            else:
                later.append(target)
        return tuple(ready + later) if later else tuple(ready)

    def record(self, name: str, ok: bool) -> None:
        """One attempt's outcome on target ``name``: ok = a usable response; failures are
        connect errors, timeouts and retryable statuses (or a retryable first error event)."""
        failures, cooldown_s = self._settings.get(name, (DEFAULT_FAILURES, DEFAULT_COOLDOWN_S))
        self.breaker.record(name, ok, failures=failures, cooldown_s=cooldown_s)

    def breaker_states(self) -> dict[str, str]:
        """Breaker state of every target that ever failed: closed | open | half_open."""
        return dict(self.breaker.states())

    def abandon(self, plan: Plan) -> None:
        """The plan will not be tried (cache hit, a refusal before any attempt): give back the
        half-open probe it may hold, instead of blocking the target until the probe lease ends."""
        first = plan.targets[0].name
        if not self.breaker.is_closed(first):
            self.breaker.release(first)

    @staticmethod
    def _unservable(principal: Principal) -> GatewayError:
        member = principal.member
        if member.provider:
            why = f"its provider '{member.provider}' is not available on this data plane"
        elif not member.route:
            return member.no_target_error()
        elif member.route not in principal.snapshot.routes:
            why = f"its route '{member.route}' does not exist"
        else:
            why = (
                f"none of the targets of its route '{member.route}' is available on this data plane"
            )
        return GatewayError(
            503,
            f"{member.title} has no provider this gateway can serve right now ({why}). "
            f"Ask your platform team to check the {member.kind}'s provider or route.",
        )
