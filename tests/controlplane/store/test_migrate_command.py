"""``gwctl controlplane migrate`` end to end (through gwctl's parser), and replicas starting
together on one PostgreSQL database."""

from __future__ import annotations

import threading

import pytest

from controlplane.store.db import Database, make_engine
from controlplane.store.schema import Migrator
from gwctl.main import main as gwctl
from tests.controlplane.store import schema_data

HEAD = Migrator.release_head()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = gwctl(["controlplane", "migrate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_status_sql_and_upgrade(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "--db", sqlite_url, "--to", "0001")
    assert code == 0
    assert "before    none\nstate     empty database" in out
    assert "applied   0001 (Baseline: the schema when migrations were introduced)" in out
    assert "now       0001" in out and "behind: serve refuses" in out

    code, out, _ = _run(capsys, "--db", sqlite_url, "--status")
    assert code == 1  # serve would refuse it
    assert "schema    0001" in out and "pending   0002 (Index request_log_body" in out

    code, out, _ = _run(capsys, "--db", sqlite_url, "--sql")
    assert code == 0
    assert "CREATE INDEX ix_request_log_body_workspace_created" in out
    assert "UPDATE alembic_version SET version_num='0002'" in out
    assert "INSERT INTO schema_revision" in out
    assert Migrator(make_engine(sqlite_url)).status().current == "0001"  # --sql changed nothing

    code, out, _ = _run(capsys, "--db", sqlite_url)
    assert code == 0
    assert f"now       {HEAD}" in out and "state     up to date" in out
    code, out, _ = _run(capsys, "--db", sqlite_url, "--status")
    assert code == 0 and "up to date" in out


def test_migrate_adopts_a_database_from_before_migrations(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(db_url)
    schema_data.pre_migrations(engine)
    engine.dispose()
    code, out, err = _run(capsys, "--db", db_url)
    assert code == 0, err
    assert "made before schema migrations" in out
    assert "adopted   its tables match the baseline" in out
    assert f"now       {HEAD}" in out


def test_migrate_refusals_are_readable(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--db", sqlite_url, "--to", "0009")
    assert code == 1
    assert "unknown revision '0009': this release has 0001, 0002" in err
    code, _, err = _run(capsys, "--db", "mysql://u@h/db")
    assert code == 1 and "unsupported database 'mysql'" in err


@pytest.mark.parametrize("start", ["empty", "0001"])
def test_replicas_starting_together_migrate_once(db_url: str, start: str) -> None:
    """Four control planes start at once on one database (empty, or behind head): each takes
    the migration lock in turn; one migrates, the others find it done."""
    if start != "empty":
        engine = make_engine(db_url)
        schema_data.at_revision(engine, start)
        engine.dispose()
    barrier = threading.Barrier(4)
    results: list[object] = []

    def replica() -> None:
        db = Database(db_url)
        try:
            barrier.wait(timeout=30)
            results.append(db.prepare_schema(migrate=True).state)
        except Exception as exc:  # reported below, with the others' outcomes
            results.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == ["current"] * 4, results
    db = Database(db_url)
    try:
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT revision FROM schema_revision").all()
        assert sorted(r[0] for r in rows) == Migrator(db.engine).chain()
    finally:
        db.dispose()


@pytest.mark.postgres
def test_postgres_schema_from_the_url_holds_everything(pg_database: str) -> None:
    """A URL selecting a schema (search_path) gets the tables, Alembic's version table and the
    revision records there, and nothing in public; another schema migrates independently."""
    import secrets

    import psycopg

    names = [f"tollgate_mig_{secrets.token_hex(4)}" for _ in range(2)]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
        for name in names:
            conn.execute(f"CREATE SCHEMA {name}")
    try:
        for name in names:
            db = Database(f"{pg_database}?options=-csearch_path%3D{name}")
            try:
                assert db.prepare_schema(migrate=False).state == "current"
            finally:
                db.dispose()
        with psycopg.connect(pg_database) as conn:
            rows = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_name IN ('alembic_version', 'schema_revision', 'workspace')"
            ).fetchall()
        assert sorted(rows) == sorted(
            (n, t) for n in names for t in ("alembic_version", "schema_revision", "workspace")
        )
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            for name in names:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
