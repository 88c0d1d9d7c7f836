"""Delta correctness, as a property: after any sequence of configuration writes (through the ORM
and through bulk statements), the incremental cache equals a full read (``builder.build``), and a
data plane that applied every delta holds exactly what a full snapshot gives it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from controlplane.catalog.common import now_ms
from controlplane.secrets import MasterKey
from controlplane.services.delta_watch import changes, full_state
from controlplane.signin import signing_keys
from controlplane.snapshots.cache import SnapshotCache
from controlplane.store.db import Database
from controlplane.store.models.config import (
    ConfigChangeRow,
    PriceRow,
    ProviderRow,
    RouteRow,
    TelemetryDestinationRow,
    VirtualKeyRow,
    WorkspaceRow,
)
from controlplane.store.models.signin import DeveloperRow, SigningKeyRow, SsoConfigRow
from controlplane.store.models.usage import UsageEventRow
from dataplane import delta
from dataplane.snapshot import Snapshot
from gwapi.v1 import discovery_pb2 as dpb
from tests.controlplane.snapshots.reference_builder import build

MASTER = MasterKey(os.urandom(32))
BUDGET = json.dumps({"budgets": [{"amount_micros": 5_000_000, "period": "day"}], "rpm": 3})
Op = Callable[[Session, int], None]


def _names(s: Session, model: Any, attr: str) -> list[str]:
    return sorted(s.exec(select(getattr(model, attr))).all())


def _pick(names: list[str], i: int) -> str | None:
    return names[i % len(names)] if names else None


def ws_add(s: Session, i: int) -> None:
    if s.get(WorkspaceRow, f"w{i}") is None:
        s.add(WorkspaceRow(name=f"w{i}", limits_json=BUDGET if i % 2 else "{}"))


def ws_update(s: Session, i: int) -> None:
    name = _pick(_names(s, WorkspaceRow, "name"), i)
    if name is None:
        return
    ws = s.get(WorkspaceRow, name)
    assert ws is not None
    ws.timezone = "" if ws.timezone else "Europe/Paris"
    ws.member_limits_json = BUDGET if i % 2 else "{}"
    ws.member_provider = _pick(_names(s, ProviderRow, "name"), i) or "" if i % 3 == 0 else ""


def ws_delete(s: Session, i: int) -> None:  # bulk statements, as the catalog's delete does
    name = _pick(_names(s, WorkspaceRow, "name"), i)
    if name is None:
        return
    s.exec(delete(VirtualKeyRow).where(col(VirtualKeyRow.workspace) == name))  # type: ignore[call-overload]
    s.exec(delete(DeveloperRow).where(col(DeveloperRow.workspace) == name))  # type: ignore[call-overload]
    s.exec(delete(WorkspaceRow).where(col(WorkspaceRow.name) == name))  # type: ignore[call-overload]


def key_add(s: Session, i: int) -> None:
    ws, prov = _pick(_names(s, WorkspaceRow, "name"), i), _pick(_names(s, ProviderRow, "name"), i)
    kid = f"key_{i:04d}{len(_names(s, VirtualKeyRow, 'id')):012d}"
    if ws is None or prov is None or s.get(VirtualKeyRow, kid) is not None:
        return
    s.add(
        VirtualKeyRow(
            id=kid,
            secret_sha256=os.urandom(32).hex(),
            workspace=ws,
            provider=prov,
            name=f"k{i}",
            limits_json=BUDGET if i % 2 else "{}",
        )
    )


def key_change(s: Session, i: int) -> None:
    kid = _pick(_names(s, VirtualKeyRow, "id"), i)
    if kid is None:
        return
    key = s.get(VirtualKeyRow, kid)
    assert key is not None
    if i % 3 == 0:
        s.delete(key)
    elif i % 3 == 1:
        key.revoked_at_ms = 1
    else:
        key.limits_json = BUDGET if key.limits_json == "{}" else "{}"


def provider_add(s: Session, i: int) -> None:
    if s.get(ProviderRow, f"p{i}") is None:
        secret = MASTER.encrypt(f"p{i}", f"sk-{i}") if i % 2 else ""
        s.add(ProviderRow(name=f"p{i}", kind="simulator", secret_ciphertext=secret))


def provider_delete(s: Session, i: int) -> None:
    """Like the catalog's guards: nothing may still point at it (here: revoke, clear, drop)."""
    name = _pick(_names(s, ProviderRow, "name"), i)
    if name is None:
        return
    for route in s.exec(select(RouteRow)).all():
        if name in route.targets_json:
            _drop_route(s, route.name)
    s.exec(update(VirtualKeyRow).where(col(VirtualKeyRow.provider) == name).values(revoked_at_ms=2))  # type: ignore[call-overload]
    s.exec(
        update(WorkspaceRow)
        .where(col(WorkspaceRow.member_provider) == name)
        .values(member_provider="")
    )  # type: ignore[call-overload]
    s.exec(
        update(SsoConfigRow)
        .where(col(SsoConfigRow.default_provider) == name)
        .values(default_provider="")
    )  # type: ignore[call-overload]
    s.flush()
    s.delete(s.get(ProviderRow, name))


def route_add(s: Session, i: int) -> None:
    prov = _pick(_names(s, ProviderRow, "name"), i)
    if prov is not None and s.get(RouteRow, f"r{i}") is None:
        targets = json.dumps([{"provider": prov, "weight": 1, "model": ""}])
        s.add(RouteRow(name=f"r{i}", targets_json=targets))


def _drop_route(s: Session, name: str) -> None:
    s.exec(update(VirtualKeyRow).where(col(VirtualKeyRow.route) == name).values(revoked_at_ms=3))  # type: ignore[call-overload]
    s.exec(
        update(WorkspaceRow).where(col(WorkspaceRow.member_route) == name).values(member_route="")
    )  # type: ignore[call-overload]
    s.exec(
        update(SsoConfigRow).where(col(SsoConfigRow.default_route) == name).values(default_route="")
    )  # type: ignore[call-overload]
    s.flush()
    s.delete(s.get(RouteRow, name))


def route_delete(s: Session, i: int) -> None:
    name = _pick(_names(s, RouteRow, "name"), i)
    if name is not None:
        _drop_route(s, name)


def sso_toggle(s: Session, i: int) -> None:
    row = s.get(SsoConfigRow, 1)
    if row is None:
        s.add(SsoConfigRow(issuer=f"https://idp{i}.example"))
        s.flush()
        signing_keys.ensure_current(s, MASTER, now_ms())
    elif i % 2:
        s.delete(row)
    else:
        row.default_provider = _pick(_names(s, ProviderRow, "name"), i) or ""


def developer_op(s: Session, i: int) -> None:
    ws = _pick(_names(s, WorkspaceRow, "name"), i)
    dev = _pick(_names(s, DeveloperRow, "id"), i)
    if i % 3 == 0 and ws is not None:
        dev_id = f"dev_{i}_{len(_names(s, DeveloperRow, 'id'))}"
        if s.get(DeveloperRow, dev_id) is None:
            s.add(
                DeveloperRow(id=dev_id, subject=dev_id, workspace=ws, email=f"{dev_id}@example.com")
            )
    elif dev is not None:
        row = s.get(DeveloperRow, dev)
        assert row is not None
        if i % 3 == 1:
            row.disabled_at_ms = 0 if row.disabled_at_ms else 1
            row.has_limits, row.limits_json = True, BUDGET
        else:
            s.delete(row)


def misc_op(s: Session, i: int) -> None:
    if i % 3 == 0:
        price = s.get(PriceRow, f"m{i}")
        if price is None:
            s.add(PriceRow(model_prefix=f"m{i}", family="f", input=i))
        else:
            price.input += 1
    elif i % 3 == 1:
        if s.get(TelemetryDestinationRow, f"t{i}") is None:
            s.add(
                TelemetryDestinationRow(
                    name=f"t{i}", url="https://c.example", signals_json='["logs"]'
                )
            )
    elif s.get(SsoConfigRow, 1) is not None:
        signing_keys.rotate(s, MASTER, now_ms())


OPS: list[Op] = [
    ws_add,
    ws_update,
    ws_delete,
    key_add,
    key_add,
    key_change,
    provider_add,
    provider_delete,
    route_add,
    route_delete,
    sso_toggle,
    developer_op,
    misc_op,
]


def _clean(snap: dpb.Snapshot) -> dpb.Snapshot:
    out = dpb.Snapshot()
    out.CopyFrom(snap)
    out.version, out.built_at_ms = "", 0
    return out


def _comparable(snap: Snapshot) -> Snapshot:
    import dataclasses

    return dataclasses.replace(snap, version="", built_at_ms=0, prices=None)  # type: ignore[arg-type]


def _reset(s: Session) -> None:
    """Every example starts from an empty configuration (reproducible examples)."""
    for model in (
        VirtualKeyRow,
        DeveloperRow,
        WorkspaceRow,
        RouteRow,
        ProviderRow,
        SigningKeyRow,
        SsoConfigRow,
        PriceRow,
        TelemetryDestinationRow,
        UsageEventRow,
        ConfigChangeRow,
    ):
        s.exec(delete(model))  # type: ignore[call-overload]


async def _check(db: Database, steps: list[tuple[int, int]]) -> None:
    await db.run(_reset)
    cache = SnapshotCache(db, master=MASTER)
    await cache.rebuild()
    state = delta.apply(
        None,
        dpb.DeltaWatchResponse(
            system_version=cache.version, resources=full_state(cache.table), full_state=True
        ),
    )
    sent = cache.publication
    for op, i in SETUP + steps:
        await db.run(lambda s: OPS[op](s, i))  # noqa: B023 (called at once)
        await cache.rebuild()
        full = db.read_sync(lambda s: build(s, now_ms(), MASTER))
        assert cache.last_error == ""
        assert cache.version and cache.current is not None
        assert _clean(cache.current) == _clean(full), f"after {OPS[op].__name__}({i})"
        refs = cache.table.changed_since(sent)
        assert refs is not None
        send, removed = changes(cache.table, refs)
        sent = cache.publication
        state = delta.apply(
            state,
            dpb.DeltaWatchResponse(
                system_version=cache.version,
                spend_version=cache.spend_version,
                resources=send,
                removed_resources=removed,
            ),
        )
        expected = Snapshot.from_proto(full)
        assert _comparable(state.snapshot) == _comparable(expected), OPS[op].__name__
        assert state.snapshot.prices.entries == expected.prices.entries  # type: ignore[attr-defined]


# Every example starts with some of everything, so that each random step has material.
SETUP = [
    (OPS.index(provider_add), 1),
    (OPS.index(ws_add), 1),
    (OPS.index(ws_add), 2),
    (OPS.index(sso_toggle), 0),
    (OPS.index(developer_op), 0),
    (OPS.index(developer_op), 3),
    (OPS.index(key_add), 1),
    (OPS.index(route_add), 1),
]
steps = st.lists(st.tuples(st.integers(0, len(OPS) - 1), st.integers(0, 7)), max_size=30)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_incremental_equals_full(db: Database, steps: list[tuple[int, int]]) -> None:
    asyncio.run(_check(db, steps))


def test_spend_only_updates_keep_the_config_version(db: Database) -> None:
    async def run() -> None:
        await db.run(lambda s: ws_add(s, 1))  # a workspace with a budget
        cache = SnapshotCache(db, master=MASTER)
        await cache.rebuild()
        config, spend, pub = cache.version, cache.spend_version, cache.publication
        await db.run(
            lambda s: s.add(
                UsageEventRow(request_id="r1", workspace="w1", time_ms=now_ms(), cost_micros=42)
            )
        )
        assert await cache.rebuild() is False  # not a config change, nothing asked for spend
        cache.rebuild_soon([("workspace", "w1")])
        assert await cache.wait_for_publication(pub, timeout=5)
        assert cache.version == config and cache.spend_version != spend
        seeds = {(e.scope, e.id): e.spent_micros for e in cache.current.spend}  # type: ignore[union-attr]
        assert seeds == {("workspace", "w1"): 42}
        await cache.close()

    asyncio.run(run())
