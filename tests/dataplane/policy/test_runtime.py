"""The compiled runtime: listeners run after the flip, a request keeps the runtime it pinned, and
an applied delta reuses what did not change (adapters, compiled routes)."""

from __future__ import annotations

import fnmatch
import time

from dataplane.config.snapshot import Snapshot
from dataplane.policy.auth import Principal
from dataplane.policy.routing import Router
from dataplane.policy.runtime import Runtime, SnapshotHolder
from dataplane.sync import delta
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane import runtimes

ROUTE = common_pb2.Route(
    name="r", targets=[common_pb2.RouteTarget(provider="a"), common_pb2.RouteTarget(provider="b")]
)


def provider(name: str, base_url: str = "") -> common_pb2.Provider:
    return common_pb2.Provider(name=name, kind="simulator", base_url=base_url)


def key(i: int) -> discovery_pb2.SnapshotKey:
    return discovery_pb2.SnapshotKey(
        id=f"k{i}", secret_sha256=f"{i:064x}", name=f"key-{i}", workspace="w", route="r"
    )


def snapshot(version: str, a_url: str = "") -> Snapshot:
    return Snapshot.from_proto(
        discovery_pb2.Snapshot(
            version=version,
            workspaces=[common_pb2.Workspace(name="w")],
            providers=[provider("a", a_url), provider("b")],
            routes=[ROUTE],
            keys=[key(1)],
        )
    )


def pinned(runtime: Runtime, i: int = 1) -> Principal:
    member = runtime.snapshot.keys_by_hash[f"{i:064x}"]
    return Principal(member, runtime.snapshot.workspaces["w"], runtime)


def test_listeners_run_after_the_flip() -> None:
    holder = runtimes.holder()
    seen: list[tuple[Runtime, Runtime | None, Snapshot | None]] = []
    holder.on_swap(lambda runtime: seen.append((runtime, holder.runtime, holder.current)))
    first = holder.swap(snapshot("v1"))
    second = holder.swap(snapshot("v2", "http://elsewhere"))
    assert [(r.version, current is r, snap is r.snapshot) for r, current, snap in seen] == [
        ("v1", True, True),
        ("v2", True, True),
    ]
    assert seen[0][0] is first and seen[1][0] is second and holder.runtime is second


def test_a_request_keeps_the_adapters_of_the_runtime_it_pinned() -> None:
    holder = runtimes.holder()
    old = holder.swap(snapshot("v1"))
    request = pinned(old)  # authenticated against v1 ...
    new = holder.swap(snapshot("v2", "http://elsewhere"))  # ... then a's configuration changes
    assert new.adapters["a"] is not old.adapters["a"]  # rebuilt for v2
    assert new.adapters["b"] is old.adapters["b"]  # unchanged: kept, with its warm pool
    plan = Router().plan(request)
    assert [t.provider for t in plan.targets] == [old.adapters["a"], old.adapters["b"]]
    assert request.snapshot.version == "v1"


def test_an_equal_configuration_keeps_its_adapter() -> None:
    holder = runtimes.holder()
    old = holder.swap(snapshot("v1"))
    new = holder.swap(snapshot("v2"))  # a whole new snapshot with equal providers
    assert new.adapters["a"] is old.adapters["a"] and new.adapters["b"] is old.adapters["b"]
    assert new.routes["r"] is not old.routes["r"]  # a new route object: compiled again ...
    assert new.routes["r"].targets == old.routes["r"].targets  # ... onto the same adapters


def _resource(kind: str, name: str, **body: object) -> discovery_pb2.Resource:
    return discovery_pb2.Resource(kind=kind, name=name, version=f"{kind}-{name}-1", **body)  # type: ignore[arg-type]


def test_a_key_delta_in_a_big_fleet_shares_everything_else() -> None:
    """One key changed among 20,000: the new runtime shares the previous one's adapters and
    compiled routes whole (no per-key work when compiling)."""
    full = discovery_pb2.DeltaWatchResponse(
        system_version="s1",
        full_state=True,
        resources=[
            _resource("workspace", "w", workspace=common_pb2.Workspace(name="w")),
            _resource("provider", "a", provider=provider("a")),
            _resource("provider", "b", provider=provider("b")),
            _resource("route", "r", route=ROUTE),
            *(_resource("key", f"k{i}", key=key(i)) for i in range(20_000)),
        ],
    )
    holder = runtimes.holder()
    state = delta.apply(None, full)
    before = holder.swap(state.snapshot)
    one_key = discovery_pb2.DeltaWatchResponse(
        system_version="s2", resources=[_resource("key", "k20000", key=key(20_000))]
    )
    state = delta.apply(state, one_key)
    started = time.perf_counter()
    after = holder.swap(state.snapshot)
    took = time.perf_counter() - started
    assert after.adapters is before.adapters and after.routes is before.routes
    assert after.direct is before.direct and after.model_lists is before.model_lists
    assert len(after.snapshot.keys_by_hash) == 20_001 and after is holder.runtime
    assert took < 0.01  # typically tens of microseconds


def test_a_members_model_list_is_compiled_once_and_matches_as_fnmatchcase() -> None:
    """The member's glob list is one compiled regex, kept across swaps, deciding exactly as
    fnmatchcase over the list (empty = any model)."""
    globs = ["claude-sonnet-*", "claude-haiku-4-5", "*[!a-z]opus?"]
    listed_key = key(2)
    listed_key.models.extend(globs)
    msg = discovery_pb2.Snapshot(
        version="v1",
        workspaces=[common_pb2.Workspace(name="w")],
        providers=[provider("a"), provider("b")],
        routes=[ROUTE],
        keys=[key(1), listed_key],
    )
    holder = runtimes.holder()
    first = holder.swap(Snapshot.from_proto(msg))
    free, listed = pinned(first, 1), pinned(first, 2)
    models = [
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-haiku-4-5x",
        "x9opus1",
        "Claude-sonnet",
    ]
    for model in models:
        assert free.member_admits(model)
        assert listed.member_admits(model) == any(fnmatch.fnmatchcase(model, g) for g in globs)
    assert {listed.member_admits(m) for m in models} == {True, False}
    compiled = first.model_lists._compiled[tuple(globs)]
    msg.version = "v2"
    second = holder.swap(Snapshot.from_proto(msg))
    assert second.model_lists is first.model_lists
    assert pinned(second, 2).member_admits("claude-sonnet-4")
    assert second.model_lists._compiled[tuple(globs)] is compiled  # not compiled again


def test_a_holder_before_its_first_snapshot() -> None:
    holder: SnapshotHolder = runtimes.holder()
    assert holder.runtime is None and holder.current is None
