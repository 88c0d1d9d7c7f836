"""Engine construction and the async Database facade."""

import asyncio

import pytest
from sqlalchemy import text
from sqlmodel import select

from controlplane.store.db import Database, make_engine, normalize_url, redact_url
from controlplane.store.models import UsageEventRow, WorkspaceRow


def test_normalize_and_redact_urls() -> None:
    assert normalize_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "hunter2" not in redact_url("postgresql+psycopg://u:hunter2@h/db")
    assert make_engine("postgresql://u@127.0.0.1/db").dialect.driver == "psycopg"


def test_unsupported_urls() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        make_engine("mysql://u@h/db")
    with pytest.raises(ValueError, match="invalid database URL"):
        make_engine("not a url")


def test_sqlite_creates_parents_and_sets_pragmas(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "tollgate.db"
    db = Database(f"sqlite:///{path}")
    db.create_all()
    assert path.exists()
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
    db.dispose()


async def test_run_commits_or_rolls_back(db: Database) -> None:
    await db.run(lambda s: s.add(WorkspaceRow(name="kept")))

    def fail(s) -> None:
        s.add(WorkspaceRow(name="dropped"))
        s.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.run(fail)
    names = await db.read(lambda s: [w.name for w in s.exec(select(WorkspaceRow)).all()])
    assert names == ["kept"]


async def test_concurrent_writers_do_not_fail(db: Database) -> None:
    async def write(i: int) -> None:
        await db.run(lambda s: s.add(UsageEventRow(request_id=f"r{i}", time_ms=i)))

    await asyncio.gather(*(write(i) for i in range(40)))
    count = await db.read(lambda s: len(s.exec(select(UsageEventRow)).all()))
    assert count == 40


async def test_big_integers_fit(db: Database) -> None:
    big = 2**62
    await db.run(lambda s: s.add(UsageEventRow(request_id="big", time_ms=big, cost_micros=big)))
    row = await db.read(lambda s: s.get(UsageEventRow, "big"))
    assert row is not None and row.time_ms == big and row.cost_micros == big
