"""Snapshot building: deterministic content, content-hash version, validation."""

import json

import pytest
from sqlmodel import Session

from controlplane.catalog import prices
from controlplane.domain.pricing import load_default_prices
from controlplane.store.db import Database
from controlplane.store.models.config import ProviderRow, RouteRow, VirtualKeyRow, WorkspaceRow
from tests.controlplane.snapshots.reference_builder import (
    InvalidSnapshot,
    build,
    content_version,
    read_snapshot,
)


def fill(s: Session, order: int = 1) -> None:
    """The same content, inserted in a different order depending on ``order``."""
    rows: list[object] = [
        WorkspaceRow(
            name="b-team",
            limits_json='{"budgets":[{"amount_micros":5,"period":"month"},'
            '{"amount_micros":1,"period":"day"}],"rpm":1}',
        ),
        WorkspaceRow(name="a-team"),
        ProviderRow(name="zeta", kind="simulator", options_json=json.dumps({"b": "2", "a": "1"})),
        ProviderRow(name="alpha", kind="anthropic", base_url="https://api.anthropic.com"),
        RouteRow(
            name="main",
            targets_json=json.dumps(
                [
                    {"provider": "zeta", "weight": 0, "model": ""},
                    {"provider": "alpha", "weight": 0, "model": ""},
                ]
            ),
            retry_on_json="[429,529]",
        ),
        VirtualKeyRow(
            id="key_00000000000000bb",
            secret_sha256="b" * 64,
            workspace="b-team",
            provider="alpha",
            models_json='["claude-*","claude-opus-*"]',
        ),
        VirtualKeyRow(
            id="key_00000000000000aa",
            secret_sha256="a" * 64,
            workspace="a-team",
            route="main",
            revoked_at_ms=5,
        ),
    ]
    if order < 0:
        rows.reverse()
        rows.sort(key=lambda r: isinstance(r, VirtualKeyRow))  # keys last (foreign keys)
    for r in rows:
        s.add(r)
        s.flush()
    prices.seed(s, reversed(load_default_prices()) if order < 0 else load_default_prices(), 0)


def test_snapshot_is_sorted_and_version_is_a_content_hash(tmp_path) -> None:
    dbs = [Database(f"sqlite:///{tmp_path}/{n}.db") for n in ("one", "two")]
    for db, order in zip(dbs, (1, -1), strict=True):
        db.create_all()
        db.run_sync(lambda s, o=order: fill(s, o))
    a = dbs[0].read_sync(lambda s: build(s, now_ms=1))
    b = dbs[1].read_sync(lambda s: build(s, now_ms=2))
    assert a.version == b.version and len(a.version) == 16
    assert a.built_at_ms == 1 and b.built_at_ms == 2
    assert a.SerializeToString(deterministic=True) != b.SerializeToString(deterministic=True)
    b.built_at_ms = 1
    assert a == b
    assert [w.name for w in a.workspaces] == ["a-team", "b-team"]
    assert [p.name for p in a.providers] == ["alpha", "zeta"]
    assert [k.id for k in a.keys] == ["key_00000000000000aa", "key_00000000000000bb"]
    assert [p.model_prefix for p in a.prices] == sorted(p.model_prefix for p in a.prices)
    assert [b_.period for b_ in a.workspaces[1].limits.budgets] == [1, 3]
    assert [t.provider for t in a.routes[0].targets] == ["zeta", "alpha"]  # order kept
    assert list(a.keys[1].models) == ["claude-*", "claude-opus-*"]
    assert a.keys[0].revoked and not a.keys[1].revoked
    assert content_version(a) == a.version  # version/built_at are excluded from the hash
    for db in dbs:
        db.dispose()


def test_any_content_change_changes_the_version(db: Database) -> None:
    db.run_sync(fill)
    v1 = db.read_sync(lambda s: build(s, 0)).version

    def revoke(s: Session) -> None:
        row = s.get(VirtualKeyRow, "key_00000000000000bb")
        assert row is not None
        row.revoked_at_ms = 9
        s.add(row)

    db.run_sync(revoke)
    v2 = db.read_sync(lambda s: build(s, 0)).version
    assert v2 != v1


def test_invalid_snapshot_refused(db: Database) -> None:
    db.run_sync(fill)

    def break_it(s: Session) -> None:
        key = s.get(VirtualKeyRow, "key_00000000000000bb")
        assert key is not None
        key.provider = "ghost"
        s.add(key)
        s.add(RouteRow(name="empty", targets_json="[]"))
        s.add(RouteRow(name="dangling", targets_json='[{"provider":"nope"}]'))

    db.run_sync(break_it)
    with pytest.raises(InvalidSnapshot) as info:
        db.read_sync(lambda s: build(s, 0))
    problems = info.value.problems
    assert "key key_00000000000000bb: provider 'ghost' does not exist" in problems
    assert "route 'empty': has no targets" in problems
    assert "route 'dangling': provider 'nope' does not exist" in problems
    # A revoked key pointing at a deleted route is fine: it routes nowhere.
    snap = db.read_sync(read_snapshot)
    assert not any("key_00000000000000aa" in p for p in problems) and snap.keys[0].revoked
