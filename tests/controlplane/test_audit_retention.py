"""Audit-log retention: rows past ``--audit-retention-days`` are deleted in bounded batches (one
transaction each), newer rows and a retention of 0 keep everything, the server runs the purge on
start when asked. SQLite and PostgreSQL; an injected ``now`` instead of sleeping."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, col, select

from controlplane import audit_retention
from controlplane.audit_retention import DAY_MS, purge, purge_batch, purge_forever
from controlplane.server import main, running
from controlplane.settings import MAX_AUDIT_RETENTION_DAYS, Settings
from controlplane.store.db import Database
from controlplane.store.models.admin import AuditRow
from tests.controlplane.conftest import make_settings

NOW = 1_800_000_000_000  # a fixed "now" (2027-01-15), ms


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.create_all()
    yield database
    database.dispose()


def add_rows(db: Database, times: list[int]) -> None:
    def insert(s: Session) -> None:
        for i, t in enumerate(times):
            s.add(AuditRow(time_ms=t, action="key.create", resource_kind="key", resource=f"k{i}"))

    db.run_sync(insert)


def remaining(db: Database) -> list[int]:
    return sorted(
        db.read_sync(lambda s: list(s.exec(select(AuditRow.time_ms).order_by(col(AuditRow.id)))))
    )


async def test_rows_older_than_the_retention_are_deleted_newer_kept(db: Database) -> None:
    cutoff = NOW - 30 * DAY_MS
    old = [cutoff - 1, cutoff - DAY_MS, NOW - 400 * DAY_MS]
    kept = [cutoff, cutoff + 1, NOW - DAY_MS, NOW]  # exactly 30 days old is not yet past it
    add_rows(db, old + kept)

    assert await purge(db, NOW, 30) == len(old)
    assert remaining(db) == sorted(kept)
    assert await purge(db, NOW, 30) == 0  # nothing left to do
    # A day later the row that was exactly at the cutoff (and the one 1 ms after) have aged out.
    assert await purge(db, NOW + DAY_MS, 30) == 2
    assert remaining(db) == [NOW - DAY_MS, NOW]


async def test_zero_keeps_everything(db: Database) -> None:
    times = [0, NOW - 10_000 * DAY_MS, NOW - DAY_MS, NOW]
    add_rows(db, times)
    assert await purge(db, NOW, 0) == 0
    assert remaining(db) == sorted(times)


async def test_batches_are_bounded_oldest_first_and_commit_separately(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = [NOW - (100 + i) * DAY_MS for i in range(10)]
    add_rows(db, [*old, NOW])

    # One batch deletes at most batch_size rows, the oldest ones.
    assert db.run_sync(lambda s: purge_batch(s, NOW - 30 * DAY_MS, 3)) == 3
    assert remaining(db) == [*sorted(old)[3:], NOW]

    sizes: list[int] = []

    def spy(s: Session, cutoff: int, batch_size: int) -> int:
        n = purge_batch(s, cutoff, batch_size)
        sizes.append(n)
        return n

    monkeypatch.setattr(audit_retention, "purge_batch", spy)
    assert await purge(db, NOW, 30, batch_size=3) == 7
    assert sizes == [3, 3, 1]  # stops at the first short batch
    assert remaining(db) == [NOW]


async def test_a_failed_batch_keeps_what_earlier_batches_purged(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_rows(db, [NOW - (100 + i) * DAY_MS for i in range(5)])
    calls = 0

    def second_fails(s: Session, cutoff: int, batch_size: int) -> int:
        nonlocal calls
        calls += 1
        n = purge_batch(s, cutoff, batch_size)
        if calls == 2:
            raise RuntimeError("connection lost")  # this batch's transaction rolls back
        return n

    monkeypatch.setattr(audit_retention, "purge_batch", second_fails)
    with pytest.raises(RuntimeError):
        await purge(db, NOW, 30, batch_size=2)
    # The first batch was its own committed transaction; the failed one deleted nothing.
    assert len(remaining(db)) == 3


async def test_purge_rejects_nonsense_arguments(db: Database) -> None:
    with pytest.raises(ValueError):
        await purge(db, NOW, -1)
    with pytest.raises(ValueError):
        await purge(db, NOW, 30, batch_size=0)


async def test_periodic_purge_runs_at_once_and_logs_the_count(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    add_rows(db, [NOW - 31 * DAY_MS, NOW - 40 * DAY_MS, NOW])
    caplog.set_level(logging.INFO, logger="controlplane.audit_retention")
    task = asyncio.create_task(purge_forever(db, 30, interval_s=3600, clock=lambda: NOW))
    try:
        for _ in range(200):
            if remaining(db) == [NOW]:
                break
            await asyncio.sleep(0.02)
        assert remaining(db) == [NOW]
        for _ in range(100):
            if "purged 2 audit events older than 30 days" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert "purged 2 audit events older than 30 days" in caplog.text
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Purging is not an admin change: it recorded no audit row of its own.
    assert remaining(db) == [NOW]


@pytest.mark.parametrize("days", [0, 30])
async def test_server_purges_on_start_only_when_asked(db_url: str, db: Database, days: int) -> None:
    now = int(time.time() * 1000)
    add_rows(db, [now - 31 * DAY_MS, now - DAY_MS])
    async with running(make_settings(db_url, audit_retention_days=days)) as r:
        # A once-per-fleet job: run by the leader (alone on SQLite, elected on PostgreSQL).
        names = {name for name, _ in r.state.fleet.leader.jobs}
        assert ("audit-purge" in names) == bool(days)
        if days:
            for _ in range(250):
                if len(remaining(db)) == 1:
                    break
                await asyncio.sleep(0.02)
            assert remaining(db) == [now - DAY_MS]
        else:
            assert len(remaining(db)) == 2


def test_setting_from_flag_and_env() -> None:
    env = {"TOLLGATE_ADMIN_TOKEN": "adm", "TOLLGATE_DATAPLANE_TOKEN": "dp"}
    assert Settings.from_args([], env).audit_retention_days == 0
    assert Settings.from_args([], {**env, "TOLLGATE_AUDIT_RETENTION_DAYS": " 90 "}) == (
        Settings(admin_token="adm", dataplane_token="dp", audit_retention_days=90)
    )
    s = Settings.from_args(
        ["--audit-retention-days", "365"], {**env, "TOLLGATE_AUDIT_RETENTION_DAYS": "90"}
    )
    assert s.audit_retention_days == 365  # the flag wins over the environment
    s.validate()
    Settings(
        admin_token="x", dataplane_token="y", audit_retention_days=MAX_AUDIT_RETENTION_DAYS
    ).validate()


@pytest.mark.parametrize(
    ("flag", "env"),
    [
        ("-1", None),
        ("abc", None),
        ("1.5", None),
        ("١٢", None),  # Arabic-Indic digits: int() would take them
        (str(MAX_AUDIT_RETENTION_DAYS + 1), None),
        (None, "thirty"),
        (None, "-7"),
    ],
)
def test_invalid_setting_is_refused_readably(flag: str | None, env: str | None) -> None:
    argv = ["--audit-retention-days", flag] if flag is not None else []
    environ = {"TOLLGATE_ADMIN_TOKEN": "adm", "TOLLGATE_DATAPLANE_TOKEN": "dp"}
    if env is not None:
        environ["TOLLGATE_AUDIT_RETENTION_DAYS"] = env
    s = Settings.from_args(argv, environ)
    with pytest.raises(ValueError) as exc:
        s.validate()
    message = str(exc.value)
    assert "--audit-retention-days" in message and "TOLLGATE_AUDIT_RETENTION_DAYS" in message
    assert f"0 to {MAX_AUDIT_RETENTION_DAYS}" in message and "keep the audit log forever" in message
    assert str(flag if flag is not None else env) in message  # the value that was refused


@pytest.mark.parametrize("value", [-1, True, 1.5])
def test_invalid_value_given_directly_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="--audit-retention-days"):
        Settings(admin_token="x", dataplane_token="y", audit_retention_days=value).validate()


def test_command_line_refuses_bad_value_with_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", "x")
    monkeypatch.setenv("TOLLGATE_DATAPLANE_TOKEN", "y")
    assert main(["--audit-retention-days", "soon"]) == 2
    err = capsys.readouterr().err
    assert "--audit-retention-days 'soon'" in err and "Traceback" not in err
