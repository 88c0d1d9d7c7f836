"""Change detection: every write to a configuration table records (kind, name) in the same
transaction, through the ORM or a bulk statement, without any bookkeeping in catalog code."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from controlplane.snapshots.cache import trim
from controlplane.store.changes import ALL, MAX_NAMES_PER_STATEMENT
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


def changes_after(db: Database, seq: int) -> list[tuple[str, str]]:
    def read(s: Session) -> list[tuple[str, str]]:
        rows = s.exec(
            select(ConfigChangeRow)
            .where(col(ConfigChangeRow.seq) > seq)
            .order_by(col(ConfigChangeRow.seq))
        )
        return [(r.kind, r.name) for r in rows]

    return db.read_sync(read)


def top(db: Database) -> int:
    return max(
        (s for s in db.read_sync(lambda s: list(s.exec(select(ConfigChangeRow.seq))))), default=0
    )


ROWS = [  # (kind, name, new row, a change to it)
    ("workspace", "w", lambda: WorkspaceRow(name="w"), lambda r: setattr(r, "description", "d")),
    (
        "provider",
        "p",
        lambda: ProviderRow(name="p", kind="simulator"),
        lambda r: setattr(r, "base_url", "http://x"),
    ),
    ("route", "r", lambda: RouteRow(name="r"), lambda r: setattr(r, "retries", 2)),
    (
        "price",
        "claude-x",
        lambda: PriceRow(model_prefix="claude-x", family="x"),
        lambda r: setattr(r, "input", 5),
    ),
    (
        "sso",
        "sso",
        lambda: SsoConfigRow(issuer="https://idp.example"),
        lambda r: setattr(r, "client_id", "c"),
    ),
    (
        "signing_key",
        "kid1",
        lambda: SigningKeyRow(kid="kid1", key_ciphertext="x"),
        lambda r: setattr(r, "retired_at_ms", 9),
    ),
    (
        "telemetry_destination",
        "t",
        lambda: TelemetryDestinationRow(name="t", url="https://c"),
        lambda r: setattr(r, "url", "https://d"),
    ),
    (
        "developer",
        "dev_1",
        lambda: DeveloperRow(id="dev_1", workspace="w", email="a@example.com"),
        lambda r: setattr(r, "disabled_at_ms", 5),
    ),
    (
        "key",
        "key_1",
        lambda: VirtualKeyRow(id="key_1", secret_sha256="a" * 64, workspace="w"),
        lambda r: setattr(r, "revoked_at_ms", 5),
    ),
]


@pytest.mark.parametrize(("kind", "name", "make", "change"), ROWS, ids=[r[0] for r in ROWS])
def test_orm_insert_update_delete_are_recorded(
    db: Database, kind: str, name: str, make: Any, change: Any
) -> None:
    row = make()
    model = type(row)
    pk = getattr(row, model.__mapper__.primary_key[0].name)
    if kind == "key":
        db.run_sync(lambda s: s.add(WorkspaceRow(name="w")))
    seq = top(db)
    db.run_sync(lambda s: s.add(row))
    assert changes_after(db, seq) == [(kind, name)]
    seq = top(db)
    db.run_sync(lambda s: change(s.get(model, pk)))
    assert changes_after(db, seq) == [(kind, name)]
    seq = top(db)
    db.run_sync(lambda s: s.delete(s.get(model, pk)))
    assert changes_after(db, seq) == [(kind, name)]


def _seed_keys(db: Database, n: int) -> None:
    def seed(s: Session) -> None:
        s.add(WorkspaceRow(name="w"))
        s.add(WorkspaceRow(name="v"))
        s.flush()
        for i in range(n):
            s.add(
                VirtualKeyRow(
                    id=f"key_{i:016d}", secret_sha256=f"{i:064x}", workspace="w" if i % 2 else "v"
                )
            )
        s.add(DeveloperRow(id="dev_1", workspace="w", email="a@example.com", subject="a"))

    db.run_sync(seed)


def test_keys_and_developers_and_bulk_statements(db: Database) -> None:
    _seed_keys(db, 4)
    seq = top(db)
    # A bulk statement is recorded by the primary keys its WHERE clause matches.
    db.run_sync(
        lambda s: s.exec(  # type: ignore[call-overload]
            update(VirtualKeyRow).where(col(VirtualKeyRow.workspace) == "w").values(name="n")
        )
    )
    assert sorted(changes_after(db, seq)) == [
        ("key", "key_0000000000000001"),
        ("key", "key_0000000000000003"),
    ]
    seq = top(db)
    db.run_sync(
        lambda s: s.exec(delete(VirtualKeyRow).where(col(VirtualKeyRow.workspace) == "v"))  # type: ignore[call-overload]
    )
    assert sorted(changes_after(db, seq)) == [
        ("key", "key_0000000000000000"),
        ("key", "key_0000000000000002"),
    ]


def test_unchanged_object_and_other_tables_record_nothing(db: Database) -> None:
    _seed_keys(db, 1)
    seq = top(db)

    def noop(s: Session) -> None:
        k = s.get(VirtualKeyRow, "key_0000000000000000")
        assert k is not None
        k.name = k.name  # assigned, not modified
        s.add(UsageEventRow(request_id="r1", workspace="w"))

    db.run_sync(noop)
    assert changes_after(db, seq) == []


def test_a_rolled_back_transaction_records_nothing_and_names_are_written_once(db: Database) -> None:
    seq = top(db)

    def fail(s: Session) -> None:
        s.add(WorkspaceRow(name="gone"))
        s.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        db.run_sync(fail)
    assert changes_after(db, seq) == []

    def twice(s: Session) -> None:
        s.add(WorkspaceRow(name="w2"))
        s.flush()
        w = s.get(WorkspaceRow, "w2")
        assert w is not None
        w.description = "again"
        s.flush()

    db.run_sync(twice)
    assert changes_after(db, seq) == [("workspace", "w2")]


def test_a_huge_bulk_statement_records_the_whole_kind(db: Database) -> None:
    _seed_keys(db, MAX_NAMES_PER_STATEMENT + 1)
    seq = top(db)
    db.run_sync(lambda s: s.exec(update(VirtualKeyRow).values(name="all")))  # type: ignore[call-overload]
    assert changes_after(db, seq) == [("key", ALL)]


def test_trim_keeps_the_newest_row(db: Database) -> None:
    db.run_sync(lambda s: s.add(WorkspaceRow(name="a")))
    db.run_sync(lambda s: s.add(WorkspaceRow(name="b")))
    newest = top(db)
    assert db.run_sync(lambda s: trim(s, keep_ms=-10_000)) >= 1
    assert db.read_sync(lambda s: list(s.exec(select(ConfigChangeRow.seq)))) == [newest]
