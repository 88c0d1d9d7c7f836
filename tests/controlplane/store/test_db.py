"""Engine construction and the async Database facade."""

import asyncio

import pytest
from sqlalchemy import inspect, text
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


def test_create_all_upgrades_a_database_from_before_p3(db_url: str) -> None:
    """An existing database without the P3 columns, indexes and table is upgraded in place."""
    old = Database(db_url)
    old.create_all()
    with old.engine.begin() as conn:
        conn.execute(text("DROP TABLE budget_alert"))
        conn.execute(text("DROP INDEX ix_usage_event_key_time_cost"))
        conn.execute(text("ALTER TABLE workspace DROP COLUMN redis_failure"))
        conn.execute(text("ALTER TABLE workspace DROP COLUMN alert_webhook"))
        conn.execute(
            text(
                "INSERT INTO workspace (name, description, limits_json, timezone, created_at_ms,"
                " updated_at_ms) VALUES ('legacy', '', '{}', '', 1, 1)"
            )
        )
    old.dispose()

    db = Database(db_url)
    db.create_all()
    db.create_all()  # idempotent
    row = db.read_sync(lambda s: s.get(WorkspaceRow, "legacy"))
    assert row is not None and (row.redis_failure, row.alert_webhook) == ("closed", "")
    indexes = {i["name"] for i in inspect(db.engine).get_indexes("usage_event")}
    assert {"ix_usage_event_key_time_cost", "ix_usage_event_workspace_time_cost"} <= indexes
    assert "budget_alert" in inspect(db.engine).get_table_names()
    db.dispose()


def test_route_settings_columns_added_to_an_existing_table(db_url: str) -> None:
    """A database made before the cache/breaker settings gains them; old rows read as defaults."""
    from controlplane.store.models import RouteRow

    db = Database(db_url)
    try:
        db.create_all()
        with db.engine.begin() as conn:
            for column in ("cache_sampled", "breaker_failures", "breaker_cooldown_s"):
                conn.execute(text(f"ALTER TABLE route DROP COLUMN {column}"))
            conn.execute(
                text(
                    "INSERT INTO route (name, mode, retries, timeout_connect_ms, "
                    "timeout_first_byte_ms, timeout_idle_ms, cache_ttl_s, created_at_ms, "
                    "updated_at_ms) VALUES ('old', 'fallback', 0, 0, 0, 0, 0, 0, 0)"
                )
            )
        db.create_all()
        have = {c["name"] for c in inspect(db.engine).get_columns("route")}
        assert {"cache_sampled", "breaker_failures", "breaker_cooldown_s"} <= have
        row = db.run_sync(lambda s: s.get(RouteRow, "old"))
        assert row is not None
        assert (row.cache_sampled, row.breaker_failures, row.breaker_cooldown_s) == (False, 0, 0)
    finally:
        db.dispose()


def test_server_tool_columns_added_and_fees_filled_in_at_start(db_url: str) -> None:
    """A database from before server-tool fees: the ledger gains its columns (old rows read 0),
    price rows get the shipped fees at start, and a fee an operator set (0 included) stays."""
    from controlplane.catalog.prices import list_all
    from controlplane.server import open_database
    from controlplane.store.models import PriceRow

    db = open_database(db_url)
    db.run_sync(lambda s: s.add(UsageEventRow(request_id="req_old", cost_micros=7)))
    with db.engine.begin() as conn:
        for column in ("web_search_requests", "web_fetch_requests", "output_estimated"):
            conn.execute(text(f"ALTER TABLE usage_event DROP COLUMN {column}"))
        for column in ("web_search_per_1k", "web_fetch_per_1k"):
            conn.execute(text(f"ALTER TABLE price DROP COLUMN {column}"))
        conn.execute(
            text(
                "INSERT INTO price (model_prefix, family, family_default, input, output, "
                "cache_write_5m, cache_write_1h, cache_read, long_context_threshold, "
                "long_context_beta, long_input, long_output, long_cache_write_5m, "
                "long_cache_write_1h, long_cache_read, updated_at_ms) VALUES "
                "('claude-custom-1', 'opus', false, 1, 2, 3, 4, 5, 0, '', 0, 0, 0, 0, 0, 0)"
            )
        )
    db.dispose()

    db = open_database(db_url)
    try:
        old = db.read_sync(lambda s: s.get(UsageEventRow, "req_old"))
        assert old is not None
        assert (old.web_search_requests, old.web_fetch_requests, old.output_estimated) == (
            0,
            0,
            False,
        )
        prices = {p.model_prefix: p for p in db.read_sync(list_all)}
        # Shipped rows and an operator's own row alike: $10 per 1,000 searches, fetch free.
        for prefix in ("claude-opus-4-8", "claude-custom-1"):
            assert prices[prefix].web_search_per_1k == 10_000_000, prefix
            assert prices[prefix].web_fetch_per_1k == 0
        assert prices["claude-custom-1"].rates.output == 2  # the rest untouched

        def operator_sets(s) -> None:  # type: ignore[no-untyped-def]
            row = s.get(PriceRow, "claude-opus-4-8")
            row.web_search_per_1k = 0
            s.add(row)

        db.run_sync(operator_sets)
    finally:
        db.dispose()
    db = open_database(db_url)  # a restart keeps the operator's value
    try:
        prices = {p.model_prefix: p for p in db.read_sync(list_all)}
        assert prices["claude-opus-4-8"].web_search_per_1k == 0
        assert prices["claude-sonnet-4-6"].web_search_per_1k == 10_000_000
    finally:
        db.dispose()
