"""Engine construction and the async Database facade."""

import asyncio

import pytest
from sqlalchemy import text
from sqlmodel import select

from controlplane.store.db import Database, make_engine, normalize_url, redact_url
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.usage import UsageEventRow
from tests.controlplane.store.schema_data import written_by_older_code


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


def test_route_rows_written_without_the_settings_read_as_defaults(db_url: str) -> None:
    """A row written by code that predates the cache/breaker settings (an older replica during
    a rolling upgrade) gets the columns' server defaults and reads as the defaults."""
    from controlplane.store.models.config import RouteRow

    row = written_by_older_code(
        db_url,
        "INSERT INTO route (name, mode, retries, timeout_connect_ms, "
        "timeout_first_byte_ms, timeout_idle_ms, cache_ttl_s, created_at_ms, "
        "updated_at_ms) VALUES ('old', 'fallback', 0, 0, 0, 0, 0, 0, 0)",
        RouteRow,
        "old",
    )
    assert (row.cache_sampled, row.breaker_failures, row.breaker_cooldown_s) == (False, 0, 0)


def test_server_tool_fees_filled_in_at_start(db_url: str) -> None:
    """Rows written by code from before server-tool fees: ledger rows read 0, price rows get
    the shipped fees at start, and a fee an operator set (0 included) stays."""
    from controlplane.catalog.prices import list_all
    from controlplane.server import open_database
    from controlplane.store.models.config import PriceRow

    db = open_database(db_url)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO usage_event (request_id, time_ms, workspace, key_id, key_name, "
                "session_id, model_requested, model_served, provider, attempts, status, "
                "error_type, error_message, ttfb_ms, latency_ms, input_tokens, output_tokens, "
                "cache_creation_input_tokens, cache_read_input_tokens, cache_write_5m_tokens, "
                "cache_write_1h_tokens, cost_micros, priced_as, stream, path, user_agent, "
                "client_version, dataplane_id, upstream_request_id, client_disconnected, "
                "received_at_ms) VALUES ('req_old', 0, '', '', '', '', '', '', '', 0, 0, '', '', "
                "0, 0, 0, 0, 0, 0, 0, 0, 7, '', false, '', '', '', '', '', false, 0)"
            )
        )
        conn.execute(text("UPDATE price SET web_search_per_1k = NULL, web_fetch_per_1k = NULL"))
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

        def operator_sets(s) -> None:
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
