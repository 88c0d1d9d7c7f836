"""Router.plan: key providers, fallback order, weighted and sticky load balancing, breakers."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from dataplane.auth import Principal
from dataplane.errors import GatewayError
from dataplane.providers.registry import ProviderRegistry
from dataplane.providers.transport import Timeouts, Transport
from dataplane.retry import DEFAULT_RETRY_ON
from dataplane.routing import Plan, Router
from dataplane.snapshot import Snapshot
from gwapi.v1 import common_pb2, discovery_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def target(provider: str, weight: int = 0, model: str = "") -> common_pb2.RouteTarget:
    return common_pb2.RouteTarget(provider=provider, weight=weight, model=model)


def build(*routes: common_pb2.Route, kinds: dict[str, str] | None = None) -> Snapshot:
    kinds = kinds or {"a": "simulator", "b": "simulator", "c": "simulator", "x": "mainframe"}
    keys = [
        discovery_pb2.SnapshotKey(
            id="k-direct", secret_sha256="0" * 64, name="direct", workspace="w", provider="a"
        ),
        discovery_pb2.SnapshotKey(
            id="k-ghost", secret_sha256="1" * 64, name="ghost", workspace="w", provider="x"
        ),
    ]
    for i, r in enumerate(routes):
        keys.append(
            discovery_pb2.SnapshotKey(
                id=f"k-{r.name}",
                secret_sha256=str(i + 2) * 64,
                name=f"key-{r.name}",
                workspace="w",
                route=r.name,
            )
        )
    msg = discovery_pb2.Snapshot(
        version="v1",
        workspaces=[common_pb2.Workspace(name="w")],
        providers=[common_pb2.Provider(name=n, kind=k) for n, k in kinds.items()],
        routes=list(routes),
        keys=keys,
    )
    return Snapshot.from_proto(msg)


def principal(snapshot: Snapshot, key_name: str) -> Principal:
    key = next(k for k in snapshot.keys_by_hash.values() if k.name == key_name)
    return Principal(key, snapshot.workspaces["w"], snapshot)


@pytest.fixture
def registry() -> Iterator[ProviderRegistry]:
    yield ProviderRegistry(Transport())


def router_for(
    registry: ProviderRegistry, snapshot: Snapshot, seed: int = 42
) -> tuple[Router, Clock]:
    registry.update(snapshot)
    clock = Clock()
    return Router(registry, clock=clock, rng=random.Random(seed)), clock


def names(plan: Plan) -> list[str]:
    return [t.name for t in plan.targets]


FALLBACK = common_pb2.Route(
    name="fb",
    mode="fallback",
    targets=[target("a"), target("b", model="claude-sonnet-4-5@20250929"), target("c")],
    retries=2,
    retry_on=[429, 529],
    timeout_connect_ms=1500,
    timeout_first_byte_ms=4000,
    cache_ttl_s=300,
    cache_sampled=True,
    breaker_failures=2,
    breaker_cooldown_s=10,
)
LB = common_pb2.Route(name="lb", mode="loadbalance", targets=[target("a", 3), target("b", 1)])


def test_a_key_with_a_provider_gets_a_one_target_plan(registry: ProviderRegistry) -> None:
    snap = build()
    router, _ = router_for(registry, snap)
    plan = router.plan(principal(snap, "direct"), "sess")
    assert names(plan) == ["a"] and plan.targets[0].model == ""
    assert plan.targets[0].provider is registry.get("a")
    assert plan == Plan(plan.targets)  # defaults: one attempt, default retry_on, no overrides
    assert plan.attempts_per_target == 1 and plan.retry_on == DEFAULT_RETRY_ON
    assert plan.timeouts is None and plan.route == "" and plan.cache_ttl_s == 0


def test_fallback_route_plan(registry: ProviderRegistry) -> None:
    snap = build(FALLBACK)
    router, _ = router_for(registry, snap)
    plan = router.plan(principal(snap, "key-fb"), "")
    assert names(plan) == ["a", "b", "c"]
    assert [t.model for t in plan.targets] == ["", "claude-sonnet-4-5@20250929", ""]
    assert plan.attempts_per_target == 3
    assert plan.retry_on == frozenset({429, 529})
    assert plan.timeouts == Timeouts(connect=1.5, read=600.0, first_byte=4.0)
    assert (plan.cache_ttl_s, plan.cache_sampled, plan.route) == (300, True, "fb")
    route = snap.routes["fb"]
    assert (route.breaker_failures, route.breaker_cooldown_s, route.cache_sampled) == (2, 10, True)


def test_route_defaults(registry: ProviderRegistry) -> None:
    snap = build(LB)
    route = snap.routes["lb"]
    assert (route.breaker_failures, route.breaker_cooldown_s, route.cache_sampled) == (5, 30, False)
    router, _ = router_for(registry, snap)
    plan = router.plan(principal(snap, "key-lb"), "")
    assert plan.timeouts is None and plan.retry_on == DEFAULT_RETRY_ON
    assert plan.attempts_per_target == 1


def test_targets_without_an_adapter_are_dropped(registry: ProviderRegistry) -> None:
    route = common_pb2.Route(name="r", targets=[target("x"), target("b")])
    snap = build(route)
    router, _ = router_for(registry, snap)
    assert names(router.plan(principal(snap, "key-r"), "")) == ["b"]


def test_nothing_servable_is_a_readable_503(registry: ProviderRegistry) -> None:
    route = common_pb2.Route(name="r", targets=[target("x")])
    snap = build(route)
    router, _ = router_for(registry, snap)
    for key, words in [("key-r", "route 'r'"), ("ghost", "provider 'x'")]:
        with pytest.raises(GatewayError) as info:
            router.plan(principal(snap, key), "")
        assert info.value.status == 503
        assert words in info.value.message and "platform team" in info.value.message


def test_open_breakers_go_last_and_recover(registry: ProviderRegistry) -> None:
    snap = build(FALLBACK)
    router, clock = router_for(registry, snap)
    p = principal(snap, "key-fb")
    router.plan(p, "")  # learns the route's breaker settings (2 failures, 10 s)
    router.record("a", False)
    assert names(router.plan(p, "")) == ["a", "b", "c"]
    router.record("a", False)
    assert router.breaker_states() == {"a": "open"}
    assert names(router.plan(p, "")) == ["b", "c", "a"]
    for _ in range(2):
        router.record("b", False)
    assert names(router.plan(p, "")) == ["c", "a", "b"]
    for _ in range(2):
        router.record("c", False)
    assert names(router.plan(p, "")) == ["a", "b", "c"]  # all open: still tried, in order
    clock.now = 11
    assert router.breaker_states() == {"a": "half_open", "b": "half_open", "c": "half_open"}
    assert names(router.plan(p, "")) == ["a", "b", "c"]  # a's probe leads
    assert names(router.plan(p, "")) == ["b", "a", "c"]  # a probing: skipped; b's probe leads
    router.record("a", True)
    assert router.breaker_states()["a"] == "closed"
    assert names(router.plan(p, "")) == ["a", "b", "c"]  # b probing, c half-open: behind a
    router.record("b", True)
    assert names(router.plan(p, "")) == ["a", "b", "c"]
    assert router.breaker_states() == {"a": "closed", "b": "closed", "c": "half_open"}


def test_an_abandoned_plan_gives_its_probe_back(registry: ProviderRegistry) -> None:
    """A plan answered from the cache or refused by a limit never sends its probe: the next
    request must be able to probe at once, not after the probe lease."""
    snap = build(FALLBACK)
    router, clock = router_for(registry, snap)
    p = principal(snap, "key-fb")
    router.plan(p, "")
    for _ in range(2):
        router.record("a", False)
    clock.now = 11
    plan = router.plan(p, "")
    assert names(plan) == ["a", "b", "c"]  # a's probe leads
    assert names(router.plan(p, "")) == ["b", "c", "a"]  # claimed: the next plan puts it last
    router.abandon(plan)
    assert names(router.plan(p, "")) == ["a", "b", "c"]  # given back: probed again at once


def test_weighted_split_without_sessions(registry: ProviderRegistry) -> None:
    snap = build(LB)
    router, _ = router_for(registry, snap, seed=2024)
    p = principal(snap, "key-lb")
    plans = [router.plan(p, "") for _ in range(2000)]
    firsts = Counter(plan.targets[0].name for plan in plans)
    assert abs(firsts["a"] / 2000 - 0.75) <= 0.05
    assert abs(firsts["b"] / 2000 - 0.25) <= 0.05
    assert all(sorted(names(plan)) == ["a", "b"] for plan in plans)  # the other is the fallback


def test_sticky_sessions_split_by_weight_and_stay(registry: ProviderRegistry) -> None:
    snap = build(LB)
    router, _ = router_for(registry, snap)
    p = principal(snap, "key-lb")
    sessions = [f"session-{i:04d}" for i in range(1000)]
    first = {s: router.plan(p, s).targets[0].name for s in sessions}
    share = Counter(first.values())["a"] / 1000
    assert 0.70 <= share <= 0.80
    for s in sessions[:200]:
        assert router.plan(p, s).targets[0].name == first[s]
    # Another router (another data plane) maps every session the same way.
    other, _ = router_for(registry, snap, seed=7)
    assert all(other.plan(p, s).targets[0].name == first[s] for s in sessions)


def test_removing_a_target_moves_only_its_sessions(registry: ProviderRegistry) -> None:
    three = common_pb2.Route(
        name="lb", mode="loadbalance", targets=[target("a", 3), target("b", 1), target("c", 2)]
    )
    snap = build(three)
    router, _ = router_for(registry, snap)
    sessions = [f"s{i}" for i in range(1000)]
    before = {s: router.plan(principal(snap, "key-lb"), s).targets[0].name for s in sessions}
    assert set(before.values()) == {"a", "b", "c"}
    snap2 = build(
        common_pb2.Route(name="lb", mode="loadbalance", targets=[target("a", 3), target("c", 2)])
    )
    router2, _ = router_for(registry, snap2)
    after = {s: router2.plan(principal(snap2, "key-lb"), s).targets[0].name for s in sessions}
    moved = [s for s in sessions if before[s] != after[s]]
    assert moved and all(before[s] == "b" for s in moved)
    assert len(moved) == sum(1 for s in sessions if before[s] == "b")


def test_a_sticky_session_fails_over_while_its_target_is_open(registry: ProviderRegistry) -> None:
    snap = build(LB)
    router, clock = router_for(registry, snap)
    p = principal(snap, "key-lb")
    session = next(
        s for s in (f"s{i}" for i in range(100)) if router.plan(p, s).targets[0].name == "a"
    )
    for _ in range(5):
        router.record("a", False)
    assert names(router.plan(p, session)) == ["b", "a"]
    clock.now = 31
    assert names(router.plan(p, session)) == ["a", "b"]  # the probe
    router.record("a", True)
    assert names(router.plan(p, session)) == ["a", "b"]


def test_plan_is_fast(registry: ProviderRegistry) -> None:

    snap = build(FALLBACK, LB)
    router, _ = router_for(registry, snap)
    fb, lb = principal(snap, "key-fb"), principal(snap, "key-lb")
    start = time.perf_counter()
    for _ in range(2000):
        router.plan(fb, "")
        router.plan(lb, "sess")
    per_plan_us = (time.perf_counter() - start) / 4000 * 1e6
    assert per_plan_us < 100  # typically a few microseconds
