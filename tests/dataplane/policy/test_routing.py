"""Router.plan: key providers, fallback order, weighted and sticky load balancing, and that
planning is pure; and the order in which the attempt chain tries a plan's targets
(CircuitBreaker.tried_order: open targets last, a half-open lead's probe claimed as it starts)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

import pytest

from dataplane.config.snapshot import Snapshot
from dataplane.edge.attempts import record_outcome
from dataplane.errors import GatewayError
from dataplane.policy.auth import Principal
from dataplane.policy.breaker import CircuitBreaker
from dataplane.policy.retry import DEFAULT_RETRY_ON
from dataplane.policy.routing import Plan, Router
from dataplane.policy.runtime import Target
from dataplane.providers.transport import Timeouts
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane import runtimes


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
    return Principal(key, snapshot.workspaces["w"], runtimes.runtime(snapshot))


class Planner:
    """A data plane's router and breakers, as the request path uses them: the router plans, the
    attempt chain orders the plan's targets with the breakers and feeds them."""

    def __init__(self, clock: Callable[[], float] | None = None, seed: int = 42) -> None:
        self.router = Router(rng=random.Random(seed))
        self.breaker = CircuitBreaker(clock) if clock is not None else CircuitBreaker()

    def plan(self, p: Principal, session_id: str = "") -> Plan:
        return self.router.plan(p, session_id)

    def tried(self, p: Principal, session_id: str = "") -> list[str]:
        """The targets of a new plan in the order the attempt chain tries them now (claiming a
        half-open lead's probe, as the chain does when it starts)."""
        return [t.name for t in self.breaker.tried_order(self.plan(p, session_id).targets)]

    def breaker_states(self) -> dict[str, str]:
        return self.breaker.states()


def router_for(seed: int = 42) -> tuple[Planner, Clock]:
    clock = Clock()
    return Planner(clock, seed), clock


def names(plan: Plan) -> list[str]:
    return [t.name for t in plan.targets]


def target_of(p: Principal, name: str) -> Target:
    runtime, member = p.runtime, p.member
    if member.provider:
        return runtime.direct[name]
    return next(t for t in runtime.routes[member.route].targets if t.name == name)


def record(planner: Planner, p: Principal, name: str, ok: bool) -> None:
    """An attempt's outcome on ``name``, recorded as the attempt chain does (with the thresholds
    of the principal's route)."""
    record_outcome(planner.breaker, target_of(p, name), ok)


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


def test_a_key_with_a_provider_gets_a_one_target_plan() -> None:
    snap = build()
    router, _ = router_for()
    p = principal(snap, "direct")
    plan = router.plan(p, "sess")
    assert names(plan) == ["a"] and plan.targets[0].model == ""
    assert plan.targets[0].provider is p.runtime.adapters["a"]
    assert plan == Plan(plan.targets)  # defaults: one attempt, default retry_on, no overrides
    assert plan.attempts_per_target == 1 and plan.retry_on == DEFAULT_RETRY_ON
    assert plan.timeouts is None and plan.route == "" and plan.cache_ttl_s == 0


def test_fallback_route_plan() -> None:
    snap = build(FALLBACK)
    router, _ = router_for()
    plan = router.plan(principal(snap, "key-fb"), "")
    assert names(plan) == ["a", "b", "c"]
    assert [t.model for t in plan.targets] == ["", "claude-sonnet-4-5@20250929", ""]
    assert plan.attempts_per_target == 3
    assert plan.retry_on == frozenset({429, 529})
    assert plan.timeouts == Timeouts(connect=1.5, read=600.0, first_byte=4.0)
    assert (plan.cache_ttl_s, plan.cache_sampled, plan.route) == (300, True, "fb")
    route = snap.routes["fb"]
    assert (route.breaker_failures, route.breaker_cooldown_s, route.cache_sampled) == (2, 10, True)


def test_route_defaults() -> None:
    snap = build(LB)
    route = snap.routes["lb"]
    assert (route.breaker_failures, route.breaker_cooldown_s, route.cache_sampled) == (5, 30, False)
    router, _ = router_for()
    plan = router.plan(principal(snap, "key-lb"), "")
    assert plan.timeouts is None and plan.retry_on == DEFAULT_RETRY_ON
    assert plan.attempts_per_target == 1


def test_targets_without_an_adapter_are_dropped() -> None:
    route = common_pb2.Route(name="r", targets=[target("x"), target("b")])
    snap = build(route)
    router, _ = router_for()
    assert names(router.plan(principal(snap, "key-r"), "")) == ["b"]


def test_nothing_servable_is_a_readable_503() -> None:
    route = common_pb2.Route(name="r", targets=[target("x")])
    snap = build(route)
    router, _ = router_for()
    for key, words in [("key-r", "route 'r'"), ("ghost", "provider 'x'")]:
        with pytest.raises(GatewayError) as info:
            router.plan(principal(snap, key), "")
        assert info.value.status == 503
        assert words in info.value.message and "platform team" in info.value.message


def test_open_breakers_go_last_and_recover() -> None:
    snap = build(FALLBACK)
    router, clock = router_for()
    p = principal(snap, "key-fb")
    record(router, p, "a", False)  # the route's breaker settings: 2 failures, 10 s
    assert router.tried(p) == ["a", "b", "c"]
    record(router, p, "a", False)
    assert router.breaker_states() == {"a": "open"}
    assert names(router.plan(p)) == ["a", "b", "c"]  # the plan never reads the breakers ...
    assert router.tried(p) == ["b", "c", "a"]  # ... the chain puts the open target last
    for _ in range(2):
        record(router, p, "b", False)
    assert router.tried(p) == ["c", "a", "b"]
    for _ in range(2):
        record(router, p, "c", False)
    assert router.tried(p) == ["a", "b", "c"]  # all open: still tried, in order
    assert router.breaker_states() == {"a": "open", "b": "open", "c": "open"}
    clock.now = 11
    assert router.breaker_states() == {"a": "half_open", "b": "half_open", "c": "half_open"}
    assert router.tried(p) == ["a", "b", "c"]  # a's probe leads, and is claimed
    assert not router.breaker.may_probe("a")
    assert router.tried(p) == ["b", "a", "c"]  # a probing: behind; b's probe leads
    record(router, p, "a", True)
    assert router.breaker_states()["a"] == "closed"
    assert router.tried(p) == ["a", "b", "c"]  # b probing, c half-open: behind a
    record(router, p, "b", True)
    assert router.tried(p) == ["a", "b", "c"]
    assert router.breaker_states() == {"a": "closed", "b": "closed", "c": "half_open"}


def fallback_with_a_half_open() -> tuple[Planner, Principal]:
    """The FALLBACK route's key, with target a half-open (opened, then its cooldown over)."""
    router, clock = router_for()
    p = principal(build(FALLBACK), "key-fb")
    for _ in range(2):
        record(router, p, "a", False)
    clock.now = 11
    return router, p


def test_a_probe_is_claimed_only_when_its_attempt_is_made() -> None:
    """A plan answered from the cache or refused by a limit never sends its probe: nothing is
    claimed until the attempt chain hands its first target out, so the next request may probe
    at once, not after the probe lease."""
    router, p = fallback_with_a_half_open()
    mine, theirs = router.plan(p), router.plan(p)
    order = router.breaker.tried_order(mine.targets)
    assert router.breaker.may_probe("a")  # planned, ordered: nothing claimed yet
    assert next(order).name == "a" and not router.breaker.may_probe("a")  # sent: claimed
    assert [t.name for t in order] == ["b", "c"]  # the rest follow, in plan order
    # Another request planned at the same time starts later: a is probing, so b leads.
    assert [t.name for t in router.breaker.tried_order(theirs.targets)] == ["b", "c", "a"]
    # A one-target plan (a key naming its provider) is tried regardless.
    direct = principal(build(), "direct")
    for _ in range(5):
        record(router, direct, "a", False)
    assert router.breaker_states()["a"] == "open"
    assert router.tried(direct) == ["a"]


def test_planning_is_pure() -> None:
    """The same request planned twice against the same runtime gets the same plan, and planning
    changes no breaker state (a half-open target's probe stays free)."""
    three = common_pb2.Route(
        name="lb", mode="loadbalance", targets=[target("a", 3), target("b", 1), target("c", 2)]
    )
    snap = build(FALLBACK, three)
    router, clock = router_for()
    fb, lb = principal(snap, "key-fb"), principal(snap, "key-lb")
    for _ in range(2):
        record(router, fb, "b", False)  # b opens (2 failures, 10 s)
    clock.now = 11  # ... and is half-open now
    before = (router.breaker_states(), router.breaker.may_probe("b"))
    assert before == ({"b": "half_open"}, True)
    for p, session in ((fb, ""), (lb, "s-1"), (lb, "s-2"), (fb, "x")):
        first, second = router.plan(p, session), router.plan(p, session)
        assert first == second
        assert all(a is b for a, b in zip(first.targets, second.targets, strict=True))
    assert (router.breaker_states(), router.breaker.may_probe("b")) == before


def test_weighted_split_without_sessions() -> None:
    snap = build(LB)
    router, _ = router_for(seed=2024)
    p = principal(snap, "key-lb")
    plans = [router.plan(p, "") for _ in range(2000)]
    firsts = Counter(plan.targets[0].name for plan in plans)
    assert abs(firsts["a"] / 2000 - 0.75) <= 0.05
    assert abs(firsts["b"] / 2000 - 0.25) <= 0.05
    assert all(sorted(names(plan)) == ["a", "b"] for plan in plans)  # the other is the fallback


def test_sticky_sessions_split_by_weight_and_stay() -> None:
    snap = build(LB)
    router, _ = router_for()
    p = principal(snap, "key-lb")
    sessions = [f"session-{i:04d}" for i in range(1000)]
    first = {s: router.plan(p, s).targets[0].name for s in sessions}
    share = Counter(first.values())["a"] / 1000
    assert 0.70 <= share <= 0.80
    for s in sessions[:200]:
        assert router.plan(p, s).targets[0].name == first[s]
    # Another router (another data plane) maps every session the same way.
    other, _ = router_for(seed=7)
    assert all(other.plan(p, s).targets[0].name == first[s] for s in sessions)


def test_removing_a_target_moves_only_its_sessions() -> None:
    three = common_pb2.Route(
        name="lb", mode="loadbalance", targets=[target("a", 3), target("b", 1), target("c", 2)]
    )
    snap = build(three)
    router, _ = router_for()
    sessions = [f"s{i}" for i in range(1000)]
    before = {s: router.plan(principal(snap, "key-lb"), s).targets[0].name for s in sessions}
    assert set(before.values()) == {"a", "b", "c"}
    snap2 = build(
        common_pb2.Route(name="lb", mode="loadbalance", targets=[target("a", 3), target("c", 2)])
    )
    router2, _ = router_for()
    after = {s: router2.plan(principal(snap2, "key-lb"), s).targets[0].name for s in sessions}
    moved = [s for s in sessions if before[s] != after[s]]
    assert moved and all(before[s] == "b" for s in moved)
    assert len(moved) == sum(1 for s in sessions if before[s] == "b")


def test_a_sticky_session_fails_over_while_its_target_is_open() -> None:
    snap = build(LB)
    router, clock = router_for()
    p = principal(snap, "key-lb")
    session = next(
        s for s in (f"s{i}" for i in range(100)) if router.plan(p, s).targets[0].name == "a"
    )
    for _ in range(5):
        record(router, p, "a", False)
    assert names(router.plan(p, session)) == ["a", "b"]  # still its target in the plan ...
    assert router.tried(p, session) == ["b", "a"]  # ... but tried last while open
    clock.now = 31
    assert router.tried(p, session) == ["a", "b"]  # the probe
    record(router, p, "a", True)
    assert router.tried(p, session) == ["a", "b"]


def test_plan_is_fast() -> None:

    snap = build(FALLBACK, LB)
    router, _ = router_for()
    fb, lb = principal(snap, "key-fb"), principal(snap, "key-lb")
    start = time.perf_counter()
    for _ in range(2000):
        router.plan(fb, "")
        router.plan(lb, "sess")
    per_plan_us = (time.perf_counter() - start) / 4000 * 1e6
    assert per_plan_us < 100  # typically a few microseconds
