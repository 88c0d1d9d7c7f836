"""The compiled runtime: one snapshot and everything the request path derives from it.

At every swap (a whole snapshot, or one applied delta) :class:`SnapshotHolder` compiles the
snapshot into one immutable :class:`Runtime` — the snapshot itself, its provider adapters, its
routes compiled for planning (targets with their adapters, retry and timeout rules, hashing
weights), and the one-target plans of members that name a provider — then makes it current with
one attribute assignment, and only then tells its listeners. A request takes the runtime once (the
:class:`dataplane.policy.auth.Principal` pins it) and uses that object throughout: a swap in the middle of
a request never mixes two versions, and the adapters it sends through are the ones built from its
own snapshot.

Compiling is cheap when little changed, which is the common case with incremental snapshots: an
adapter is reused when its provider's configuration is the same object or an equal one (its warm
connection pool and cached credentials kept), and a delta that touched neither providers nor
routes (a key, a developer, spend) shares the previous runtime's adapters and compiled routes
whole, so one key changed in a fleet of 20,000 costs the same as in a fleet of 10. For the same
reason the members' own model lists are not compiled by walking every member at a swap: each
distinct list is compiled once, into one regex, by the first request that meets it, and kept for
every later request and runtime (:class:`ModelLists`, handed from runtime to runtime).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dataplane.config.snapshot import RouteConfig, Snapshot
from dataplane.metering.pricing import PriceTable
from dataplane.policy.breaker import DEFAULT_COOLDOWN_S, DEFAULT_FAILURES
from dataplane.policy.retry import DEFAULT_RETRY_ON
from dataplane.providers.base import Provider
from dataplane.providers.registry import ProviderRegistry
from dataplane.providers.transport import Timeouts
from gwcommon.allowlists import compile_models

log = logging.getLogger("tollgate.snapshot")

# A route's timeouts replace the provider's as a set; the ones it leaves unset (0) take these
# (the providers' own defaults, options timeout_connect_s / timeout_read_s).
DEFAULT_CONNECT_S = 10.0
DEFAULT_IDLE_S = 600.0


@dataclass(frozen=True, slots=True)
class Target:
    """One provider a plan may try, with the rules its circuit breaker follows."""

    provider: Provider
    name: str  # the provider's name: what the breaker knows it by
    model: str  # the route's model override for this target, or "" (send the requested model)
    breaker_failures: int = DEFAULT_FAILURES  # the route's thresholds (defaults: no route)
    breaker_cooldown_s: float = DEFAULT_COOLDOWN_S


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """What a route contributes to every plan, computed once per runtime (or reused)."""

    config: RouteConfig
    loadbalance: bool
    attempts_per_target: int  # 1 + the route's retries
    retry_on: frozenset[int]
    timeouts: Timeouts | None
    targets: tuple[Target, ...]  # those with an adapter on this data plane, in route order
    hash_keys: tuple[bytes, ...]  # per target: b"\0" + provider name, for rendezvous hashing
    weights: tuple[float, ...]  # per target


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


def compile_route(route: RouteConfig, adapters: Mapping[str, Provider]) -> CompiledRoute:
    failures, cooldown_s = route.breaker_failures, float(route.breaker_cooldown_s)
    servable = [t for t in route.targets if t.provider in adapters]
    return CompiledRoute(
        config=route,
        loadbalance=route.mode == "loadbalance",
        attempts_per_target=1 + max(route.retries, 0),
        retry_on=frozenset(route.retry_on) if route.retry_on else DEFAULT_RETRY_ON,
        timeouts=route_timeouts(route),
        targets=tuple(
            Target(adapters[t.provider], t.provider, t.model, failures, cooldown_s)
            for t in servable
        ),
        hash_keys=tuple(b"\0" + t.provider.encode() for t in servable),
        weights=tuple(float(max(t.weight, 1)) for t in servable),
    )


class ModelLists:
    """Members' model lists (glob patterns), each distinct list compiled once into one regex that
    matches exactly what :func:`fnmatch.fnmatchcase` over the list matches
    (:func:`gwcommon.allowlists.compile_models`). Members mostly share a few lists; a list no
    longer used stays until ``MAX_LISTS`` distinct lists were kept, then all are compiled anew."""

    MAX_LISTS = 65_536

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, ...], re.Pattern[str]] = {}

    def admits(self, patterns: tuple[str, ...], model: str) -> bool:
        """Whether the list ``patterns`` (empty = any model) admits ``model``."""
        if not patterns:
            return True
        matcher = self._compiled.get(patterns)
        if matcher is None:
            matcher = compile_models(patterns)
            assert matcher is not None  # a non-empty list
            if len(self._compiled) >= self.MAX_LISTS:
                self._compiled.clear()
            self._compiled[patterns] = matcher
        return matcher.match(model) is not None


@dataclass(frozen=True, slots=True)
class Runtime:
    """One snapshot compiled for the request path; never changed once built."""

    snapshot: Snapshot
    adapters: Mapping[str, Provider]  # by provider name; a kind this data plane cannot serve: none
    routes: Mapping[str, CompiledRoute]  # by route name
    direct: Mapping[str, Target]  # by provider name: the target of a member naming a provider
    model_lists: ModelLists  # the members' model lists, compiled (shared with the previous)

    @property
    def version(self) -> str:
        return self.snapshot.version

    @property
    def prices(self) -> PriceTable:
        return self.snapshot.prices


def compile_runtime(
    snapshot: Snapshot, registry: ProviderRegistry, previous: Runtime | None
) -> Runtime:
    """The runtime of ``snapshot``, reusing what it shares with ``previous`` (see module doc)."""
    if previous is not None and snapshot.providers is previous.snapshot.providers:
        adapters, direct = previous.adapters, previous.direct
    else:
        adapters = registry.adapters(
            snapshot.providers,
            previous.snapshot.providers if previous is not None else {},
            previous.adapters if previous is not None else {},
        )
        direct = MappingProxyType(
            {name: Target(adapter, name, "") for name, adapter in adapters.items()}
        )
    if (
        previous is not None
        and adapters is previous.adapters
        and snapshot.routes is previous.snapshot.routes
    ):
        routes = previous.routes
    else:
        old = previous.routes if previous is not None else {}
        compiled: dict[str, CompiledRoute] = {}
        for name, route in snapshot.routes.items():
            was = old.get(name)
            same = was is not None and was.config is route and _same_adapters(was, adapters)
            compiled[name] = was if same and was is not None else compile_route(route, adapters)
        routes = MappingProxyType(compiled)
    lists = previous.model_lists if previous is not None else ModelLists()
    return Runtime(snapshot, adapters, routes, direct, lists)


def _same_adapters(compiled: CompiledRoute, adapters: Mapping[str, Provider]) -> bool:
    """Whether every provider of the route still has exactly the adapter it was compiled with
    (and none of those without one has gained one)."""
    held = {t.name: t.provider for t in compiled.targets}
    return all(adapters.get(t.provider) is held.get(t.provider) for t in compiled.config.targets)


Listener = Callable[[Runtime], None]


class SnapshotHolder:
    """The one mutable reference to the current runtime (and so to the current snapshot).

    :meth:`swap` compiles the new snapshot, then flips: assignment of an attribute is atomic in
    CPython and runtimes are immutable, so readers need no lock. Listeners run after the flip,
    synchronously: while one runs, ``runtime`` is already the runtime it is given.
    """

    def __init__(self, registry: ProviderRegistry) -> None:
        self._registry = registry
        self._runtime: Runtime | None = None
        self._listeners: list[Listener] = []

    @property
    def runtime(self) -> Runtime | None:
        """What a request pins (``None`` until the first snapshot arrives)."""
        return self._runtime

    @property
    def current(self) -> Snapshot | None:
        """The current runtime's snapshot, for readers that need only the configuration."""
        runtime = self._runtime
        return runtime.snapshot if runtime is not None else None

    def on_swap(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def swap(self, snapshot: Snapshot) -> Runtime:
        runtime = compile_runtime(snapshot, self._registry, self._runtime)
        self._runtime = runtime
        for listener in self._listeners:
            listener(runtime)
        log.info("serving snapshot %s", snapshot.version)
        return runtime

    async def aclose(self) -> None:
        """Close the current runtime's adapters and the transport they share (at shutdown)."""
        runtime = self._runtime
        await self._registry.aclose(runtime.adapters.values() if runtime is not None else ())
