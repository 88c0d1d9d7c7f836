"""Spend per budget period from the ledger, and the snapshot's spend seeds, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from controlplane.store.db import Database
from controlplane.store.models.config import ProviderRow, VirtualKeyRow, WorkspaceRow
from controlplane.store.models.usage import UsageEventRow
from controlplane.usage.spend import current_spend, scopes_for
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.snapshots.reference_builder import build


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000


NOW = ms(2026, 11, 28, 23, 30)  # already 29 November in Berlin
BERLIN_DAY = ms(2026, 11, 28, 23)  # 29 Nov 00:00 Europe/Berlin
UTC_DAY = ms(2026, 11, 28)


def budgets(*pairs: tuple[int, str]) -> str:
    items = ",".join(f'{{"amount_micros":{a},"period":"{p}"}}' for a, p in pairs)
    return f'{{"budgets":[{items}]}}'


def fill(s: Session) -> None:
    s.add(ProviderRow(name="sim", kind="simulator"))
    s.add(
        WorkspaceRow(
            name="berlin",
            timezone="Europe/Berlin",
            limits_json=budgets((100_000_000, "day"), (1_000_000_000, "lifetime")),
            alert_webhook="https://hooks.example.com/secret-path",
            redis_failure="open",
        )
    )
    s.add(WorkspaceRow(name="utc", limits_json=budgets((10_000_000, "day"))))
    s.add(WorkspaceRow(name="free"))  # no budgets: no seeds, no queries
    s.flush()
    for key_id, ws, limits, revoked in (
        ("key_b", "berlin", budgets((5_000_000, "day"), (9_000_000, "month")), 0),
        ("key_u", "utc", budgets((5_000_000, "day")), 0),
        ("key_f", "free", "{}", 0),
        ("key_r", "berlin", budgets((5_000_000, "day")), 7),
    ):
        s.add(
            VirtualKeyRow(
                id=key_id,
                secret_sha256=key_id.ljust(64, "0"),
                workspace=ws,
                provider="sim",
                limits_json=limits,
                revoked_at_ms=revoked,
            )
        )
    events = [
        # (id, workspace, key, time, cost)
        ("e1", "berlin", "key_b", BERLIN_DAY - 1, 1_000),  # 28 Nov in Berlin: not today
        ("e2", "berlin", "key_b", BERLIN_DAY, 20_000),  # the first millisecond of 29 Nov
        ("e3", "berlin", "key_b", NOW, 300_000),
        ("e4", "berlin", "key_r", NOW, 4_000_000),  # a revoked key still counts for its workspace
        ("e5", "utc", "key_u", UTC_DAY - 1, 50_000),  # yesterday in UTC
        ("e6", "utc", "key_u", UTC_DAY + 5, 600_000),
        ("e7", "free", "key_f", NOW, 7_000_000),
        ("e8", "berlin", "key_b", ms(2026, 11, 2), 5_000_000),  # earlier this month (Berlin)
    ]
    for rid, ws, key, t, cost in events:
        s.add(UsageEventRow(request_id=rid, workspace=ws, key_id=key, time_ms=t, cost_micros=cost))


def test_current_spend_per_period_and_time_zone(db: Database) -> None:
    db.run_sync(fill)

    def spend(s: Session) -> dict[tuple[str, str, str], tuple[int, int, int]]:
        scopes = scopes_for(s, key_ids=["key_b", "key_u", "key_f", "nope"], workspaces=["berlin"])
        return {
            (sp.scope.kind, sp.scope.id, sp.budget.period.word): (
                sp.window.start_ms,
                sp.window.end_ms,
                sp.spent_micros,
            )
            for sp in current_spend(s, scopes, NOW)
        }

    got = db.read_sync(spend)
    assert got == {
        ("workspace", "berlin", "day"): (BERLIN_DAY, BERLIN_DAY + 86_400_000, 4_320_000),
        ("workspace", "berlin", "lifetime"): (0, 0, 9_321_000),
        ("key", "key_b", "day"): (BERLIN_DAY, BERLIN_DAY + 86_400_000, 320_000),
        ("key", "key_b", "month"): (ms(2026, 10, 31, 23), ms(2026, 11, 30, 23), 5_321_000),
        ("key", "key_u", "day"): (UTC_DAY, UTC_DAY + 86_400_000, 600_000),
    }


def test_snapshot_seeds(db: Database) -> None:
    db.run_sync(fill)
    snap = db.read_sync(lambda s: build(s, NOW))
    seeds = [(e.scope, e.id, e.period, e.period_start_ms, e.spent_micros) for e in snap.spend]
    assert seeds == [
        ("key", "key_b", pb.PERIOD_DAY, BERLIN_DAY, 320_000),
        ("key", "key_b", pb.PERIOD_MONTH, ms(2026, 10, 31, 23), 5_321_000),
        ("key", "key_u", pb.PERIOD_DAY, UTC_DAY, 600_000),
        ("workspace", "berlin", pb.PERIOD_DAY, BERLIN_DAY, 4_320_000),
        ("workspace", "berlin", pb.PERIOD_LIFETIME, 0, 9_321_000),
        ("workspace", "utc", pb.PERIOD_DAY, UTC_DAY, 600_000),
    ]  # no seeds for the revoked key_r nor for the budget-less key_f / free
    berlin = next(w for w in snap.workspaces if w.name == "berlin")
    assert (berlin.timezone, berlin.redis_failure, berlin.alert_webhook) == (
        "Europe/Berlin",
        "open",
        "",  # never sent to data planes
    )
    assert next(w for w in snap.workspaces if w.name == "utc").redis_failure == "closed"

    # The next Berlin day starts with zero spend and a new start: a new version.
    tomorrow = db.read_sync(lambda s: build(s, BERLIN_DAY + 86_400_000))
    assert tomorrow.version != snap.version
    day = next(e for e in tomorrow.spend if (e.id, e.period) == ("berlin", pb.PERIOD_DAY))
    assert (day.period_start_ms, day.spent_micros) == (BERLIN_DAY + 86_400_000, 0)

    # New spend changes the version; the same content keeps it.
    assert db.read_sync(lambda s: build(s, NOW + 1)).version == snap.version
    db.run_sync(
        lambda s: s.add(
            UsageEventRow(
                request_id="e9", workspace="utc", key_id="key_u", time_ms=NOW, cost_micros=1
            )
        )
    )
    assert db.read_sync(lambda s: build(s, NOW)).version != snap.version


def test_many_scopes_in_one_window(db: Database) -> None:
    """More keys than one IN list holds: still one sum per key."""

    def many(s: Session) -> None:
        s.add(ProviderRow(name="sim", kind="simulator"))
        s.add(WorkspaceRow(name="big"))
        s.flush()
        for i in range(1_100):
            s.add(
                VirtualKeyRow(
                    id=f"key_{i:05d}",
                    secret_sha256=f"{i:064d}",
                    workspace="big",
                    provider="sim",
                    limits_json=budgets((1_000_000, "day")),
                )
            )
            s.add(
                UsageEventRow(
                    request_id=f"r{i}",
                    workspace="big",
                    key_id=f"key_{i:05d}",
                    time_ms=NOW,
                    cost_micros=i,
                )
            )

    db.run_sync(many)
    snap = db.read_sync(lambda s: build(s, NOW))
    assert len(snap.spend) == 1_100
    assert all(e.spent_micros == int(e.id[4:]) for e in snap.spend)
